package identity

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// testPKI is a root and a node CA of one trust domain, with the bundle and
// revocation set a verifier of that node would use.
type testPKI struct {
	td      spiffeid.TrustDomain
	root    *CA
	node    *CA
	bundles *Bundles
	revoked *Revocations
}

func newTestPKI(t testing.TB, td string, opts ...CAOption) *testPKI {
	t.Helper()
	trustDomain := spiffeid.RequireTrustDomainFromString(td)
	root, err := NewRootCA(trustDomain, DefaultRootTTL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	node, err := root.NewNodeCA("node-a", DefaultNodeTTL)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBundles()
	b.Set(trustDomain, root.Roots())
	return &testPKI{td: trustDomain, root: root, node: node, bundles: b, revoked: NewRevocations()}
}

func (p *testPKI) verifier() *Verifier { return NewVerifier(p.bundles, p.revoked) }

func (p *testPKI) issue(t testing.TB, path string, labels map[string]string) *SVID {
	t.Helper()
	svid, err := p.node.IssueSVID(SVIDRequest{
		ID:     spiffeid.RequireFromPath(p.td, path),
		TTL:    time.Hour,
		Claims: Claims{WorkloadUID: "pod-" + filepath.Base(path), Labels: labels},
	})
	if err != nil {
		t.Fatal(err)
	}
	return svid
}

// expiredLeaf returns an SVID of p's node CA that expired an hour ago.
func (p *testPKI) expiredLeaf(t testing.TB, path string) *SVID {
	t.Helper()
	svid := signTemplate(t, p.node, "spiffe://"+p.td.Name()+path, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	})
	return svid
}

// writeSVIDFiles writes an SVID's chain and key, and returns their paths.
func writeSVIDFiles(t testing.TB, dir string, svid *SVID) (certPath, keyPath string) {
	t.Helper()
	certPEM, keyPEM, err := svid.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "svid.crt"), filepath.Join(dir, "svid.key")
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// requireTool returns the path of a command line tool; without it the test
// is skipped, or fails under CI where every tool must be installed.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}
