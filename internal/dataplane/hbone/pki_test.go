package hbone

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztcn/ztcn/internal/identity"
)

// testPKI is a trust domain's root and node CA with the bundles,
// revocations and verifier an agent of that node would use.
type testPKI struct {
	td       spiffeid.TrustDomain
	root     *identity.CA
	node     *identity.CA
	bundles  *identity.Bundles
	revoked  *identity.Revocations
	verifier *identity.Verifier
	// shift moves the CAs' clock (nanoseconds), to mint expired leaves.
	shift atomic.Int64
}

func newPKI(t testing.TB, td string) *testPKI {
	t.Helper()
	p := &testPKI{td: spiffeid.RequireTrustDomainFromString(td)}
	clock := func() time.Time { return time.Now().Add(time.Duration(p.shift.Load())) }
	root, err := identity.NewRootCA(p.td, 24*time.Hour, identity.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	node, err := root.NewNodeCA("node-a", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p.root, p.node = root, node
	p.bundles = identity.NewBundles()
	p.bundles.Set(p.td, root.Roots())
	p.revoked = identity.NewRevocations()
	p.verifier = identity.NewVerifier(p.bundles, p.revoked)
	return p
}

func (p *testPKI) id(path string) spiffeid.ID { return spiffeid.RequireFromPath(p.td, path) }

func (p *testPKI) issue(t testing.TB, path string) *identity.SVID {
	t.Helper()
	svid, err := p.node.IssueSVID(identity.SVIDRequest{
		ID:     p.id(path),
		TTL:    time.Hour,
		Claims: identity.Claims{WorkloadUID: "uid-" + path[len(path)-1:], Labels: map[string]string{"app": "test"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return svid
}

// issueExpired mints a leaf that expired two hours ago.
func (p *testPKI) issueExpired(t testing.TB, path string) *identity.SVID {
	t.Helper()
	p.shift.Store(int64(-3 * time.Hour))
	defer p.shift.Store(0)
	return p.issue(t, path)
}

// svidBox is a workload's current SVID, replaced on rotation.
type svidBox struct{ p atomic.Pointer[identity.SVID] }

func newSVIDBox(s *identity.SVID) *svidBox {
	b := &svidBox{}
	b.p.Store(s)
	return b
}

func (b *svidBox) get() *identity.SVID  { return b.p.Load() }
func (b *svidBox) set(s *identity.SVID) { b.p.Store(s) }
