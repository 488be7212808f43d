package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var (
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
)

func extensionCritical(t *testing.T, c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	t.Helper()
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e.Critical
		}
	}
	t.Fatalf("certificate %q has no extension %v", c.Subject, oid)
	return false
}

func TestSVIDFollowsTheX509SVIDSpecFieldByField(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	svid := pki.issue(t, "/ns/default/sa/web", map[string]string{"app": "web"})
	leaf := svid.Leaf()

	t.Run("leaf has exactly one URI SAN, the workload ID", func(t *testing.T) {
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/default/sa/web" {
			t.Fatalf("URIs = %v", leaf.URIs)
		}
		if len(leaf.DNSNames)+len(leaf.EmailAddresses)+len(leaf.IPAddresses) != 0 {
			t.Fatal("leaf carries SANs other than the SPIFFE ID")
		}
	})
	t.Run("leaf subject is empty so the SAN extension is critical", func(t *testing.T) {
		if len(leaf.RawSubject) > 2 || leaf.Subject.String() != "" {
			t.Fatalf("subject = %q", leaf.Subject)
		}
		if !extensionCritical(t, leaf, oidSubjectAltName) {
			t.Fatal("SAN extension not critical")
		}
	})
	t.Run("leaf is CA:false in a present basicConstraints", func(t *testing.T) {
		if !leaf.BasicConstraintsValid || leaf.IsCA {
			t.Fatalf("BasicConstraintsValid=%v IsCA=%v", leaf.BasicConstraintsValid, leaf.IsCA)
		}
		extensionCritical(t, leaf, oidBasicConstraints)
	})
	t.Run("leaf key usage is digitalSignature only and critical", func(t *testing.T) {
		if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Fatalf("KeyUsage = %b", leaf.KeyUsage)
		}
		if !extensionCritical(t, leaf, oidKeyUsage) {
			t.Fatal("keyUsage not critical")
		}
	})
	t.Run("leaf EKUs are serverAuth and clientAuth", func(t *testing.T) {
		if len(leaf.ExtKeyUsage) != 2 || !hasEKU(leaf, x509.ExtKeyUsageServerAuth) || !hasEKU(leaf, x509.ExtKeyUsageClientAuth) {
			t.Fatalf("ExtKeyUsage = %v", leaf.ExtKeyUsage)
		}
	})
	t.Run("leaf key is ECDSA P-256", func(t *testing.T) {
		pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			t.Fatalf("public key %T", leaf.PublicKey)
		}
	})
	t.Run("claims extension is present and not critical", func(t *testing.T) {
		found := false
		for _, e := range leaf.Extensions {
			if e.Id.Equal(ClaimsOID) {
				found = true
				if e.Critical {
					t.Fatal("claims extension is critical: foreign verifiers would refuse the SVID")
				}
			}
		}
		if !found {
			t.Fatal("no claims extension")
		}
	})
	t.Run("chain is leaf then node CA, without the root", func(t *testing.T) {
		if len(svid.Certificates) != 2 || !svid.Certificates[1].Equal(pki.node.Certificate()) {
			t.Fatalf("chain has %d certificates", len(svid.Certificates))
		}
	})
	for _, ca := range []struct {
		name string
		cert *x509.Certificate
	}{{"root", pki.root.Certificate()}, {"node", pki.node.Certificate()}} {
		t.Run(ca.name+" CA carries the trust domain ID, CA:true and keyCertSign", func(t *testing.T) {
			c := ca.cert
			if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://cluster.local" {
				t.Fatalf("URIs = %v", c.URIs)
			}
			if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
				t.Fatalf("IsCA=%v KeyUsage=%b", c.IsCA, c.KeyUsage)
			}
			if !extensionCritical(t, c, oidKeyUsage) {
				t.Fatal("keyUsage not critical")
			}
		})
	}
	t.Run("node CA may sign leaves only", func(t *testing.T) {
		c := pki.node.Certificate()
		if c.MaxPathLen != 0 || !c.MaxPathLenZero {
			t.Fatalf("MaxPathLen=%d MaxPathLenZero=%v", c.MaxPathLen, c.MaxPathLenZero)
		}
	})
}

func TestSVIDVerifiesWithGoSPIFFE(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	svid := pki.issue(t, "/ns/default/sa/web", nil)

	id, _, err := x509svid.Verify(svid.Certificates, pki.bundles)
	if err != nil {
		t.Fatal(err)
	}
	if id.String() != "spiffe://cluster.local/ns/default/sa/web" {
		t.Fatalf("id = %s", id)
	}
	// x509svid.Parse applies the rules Verify skips (digitalSignature,
	// signing certificates are CAs, key matches leaf).
	certPEM, keyPEM, err := svid.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509svid.Parse(certPEM, keyPEM); err != nil {
		t.Fatalf("go-spiffe refuses the SVID: %v", err)
	}
}

func TestSVIDVerifiesWithOpenSSL(t *testing.T) {
	openssl := requireTool(t, "openssl")
	pki := newTestPKI(t, "cluster.local")
	dir := t.TempDir()
	rootPath := dir + "/root.crt"
	nodePath := dir + "/node.crt"
	if err := os.WriteFile(rootPath, EncodeCertificates(pki.root.Roots()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nodePath, EncodeCertificates(pki.node.Chain()), 0o644); err != nil {
		t.Fatal(err)
	}
	leafPath := dir + "/leaf.crt"
	if err := os.WriteFile(leafPath, EncodeCertificates([]*x509.Certificate{pki.issue(t, "/ns/a/sa/b", nil).Leaf()}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, purpose := range []string{"sslclient", "sslserver"} {
		out, err := exec.Command(openssl, "verify", "-purpose", purpose, "-x509_strict", "-CAfile", rootPath, "-untrusted", nodePath, leafPath).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": OK") {
			t.Fatalf("openssl verify -purpose %s: %v\n%s", purpose, err, out)
		}
	}
	// The control: a leaf of another root must not verify.
	other := newTestPKI(t, "cluster.local")
	foreignPath := dir + "/foreign.crt"
	if err := os.WriteFile(foreignPath, EncodeCertificates([]*x509.Certificate{other.issue(t, "/ns/a/sa/b", nil).Leaf()}), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(openssl, "verify", "-CAfile", rootPath, "-untrusted", nodePath, foreignPath).CombinedOutput(); err == nil {
		t.Fatalf("openssl verified a foreign leaf:\n%s", out)
	}
}

func TestIssueRejectsBadRequests(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	cases := []struct {
		name string
		req  SVIDRequest
		want string
	}{
		{"ID of another trust domain", SVIDRequest{ID: spiffeid.RequireFromString("spiffe://other.org/ns/a/sa/b"), TTL: time.Hour}, "cannot issue"},
		{"ID without a path", SVIDRequest{ID: pki.td.ID(), TTL: time.Hour}, "has no path"},
		{"zero TTL", SVIDRequest{ID: spiffeid.RequireFromPath(pki.td, "/x"), TTL: 0}, "must be positive"},
		{"label with a space", SVIDRequest{ID: spiffeid.RequireFromPath(pki.td, "/x"), TTL: time.Hour, Claims: Claims{Labels: map[string]string{"bad key": "v"}}}, "label key"},
		{"label value too long", SVIDRequest{ID: spiffeid.RequireFromPath(pki.td, "/x"), TTL: time.Hour, Claims: Claims{Labels: map[string]string{"k": strings.Repeat("v", 64)}}}, "value"},
		{"too many labels", SVIDRequest{ID: spiffeid.RequireFromPath(pki.td, "/x"), TTL: time.Hour, Claims: Claims{Labels: manyLabels(65)}}, "at most 64"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pki.node.IssueSVID(tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := 0; i < n; i++ {
		m["k"+strings.Repeat("x", i%60)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	return m
}

func TestLeafNeverOutlivesItsCA(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	svid, err := pki.node.IssueSVID(SVIDRequest{ID: spiffeid.RequireFromPath(pki.td, "/long"), TTL: 10 * DefaultRootTTL})
	if err != nil {
		t.Fatal(err)
	}
	if svid.NotAfter().After(pki.node.Certificate().NotAfter) {
		t.Fatalf("leaf NotAfter %s after node CA NotAfter %s", svid.NotAfter(), pki.node.Certificate().NotAfter)
	}
}

func TestTTLsFromOneMinuteToThirtyDays(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	for _, ttl := range []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 29 * 24 * time.Hour} {
		svid, err := pki.node.IssueSVID(SVIDRequest{ID: spiffeid.RequireFromPath(pki.td, "/ttl"), TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		if got := time.Until(svid.NotAfter()); got > ttl || got < ttl-time.Minute {
			t.Errorf("ttl %s: leaf valid for %s", ttl, got)
		}
	}
}

func TestP384KeyType(t *testing.T) {
	root, err := NewRootCA(spiffeid.RequireTrustDomainFromString("td"), time.Hour, WithKeyType(KeyECDSAP384))
	if err != nil {
		t.Fatal(err)
	}
	svid, err := root.IssueSVID(SVIDRequest{ID: spiffeid.RequireFromString("spiffe://td/x"), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if pub := svid.Leaf().PublicKey.(*ecdsa.PublicKey); pub.Curve != elliptic.P384() {
		t.Fatalf("curve %s", pub.Curve.Params().Name)
	}
}

func BenchmarkIssueSVID(b *testing.B) {
	pki := newTestPKI(b, "cluster.local")
	req := SVIDRequest{
		ID:     spiffeid.RequireFromPath(pki.td, "/ns/default/sa/web"),
		TTL:    time.Hour,
		Claims: Claims{WorkloadUID: "0f8fad5b-d9cb-469f-a165-70867728950e", Labels: map[string]string{"app": "web", "tier": "frontend"}},
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := pki.node.IssueSVID(req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
}
