package identity

import (
	"context"
	"crypto/x509"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

type managerFixture struct {
	mgr     *Manager
	bundles *Bundles
	revoked *Revocations
	events  <-chan Event
}

// newManagerFixture builds a manager whose CAs are created in memory on
// first use, as `ztcn agent --dev` does.
func newManagerFixture(t *testing.T, perNamespace bool, ttl, renewBefore time.Duration) *managerFixture {
	t.Helper()
	bundles, revoked := NewBundles(), NewRevocations()
	create := func(td spiffeid.TrustDomain) (*CA, error) {
		root, err := NewRootCA(td, DefaultRootTTL)
		if err != nil {
			return nil, err
		}
		return root.NewNodeCA("test-node", DefaultNodeTTL)
	}
	mgr := NewManager(ManagerConfig{
		TrustDomain:             spiffeid.RequireTrustDomainFromString("cluster.local"),
		TrustDomainPerNamespace: perNamespace,
		Authorities:             NewAuthorities(bundles, create),
		Revocations:             revoked,
		Rotation:                func(string) (time.Duration, time.Duration) { return ttl, renewBefore },
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	events := mgr.Subscribe(ctx)
	go mgr.Run(ctx)
	return &managerFixture{mgr: mgr, bundles: bundles, revoked: revoked, events: events}
}

func (f *managerFixture) next(t *testing.T, within time.Duration) Event {
	t.Helper()
	select {
	case ev := <-f.events:
		return ev
	case <-time.After(within):
		t.Fatalf("no identity event within %s", within)
		return Event{}
	}
}

func TestManagerIssuesAtStartWithTheDefaultID(t *testing.T) {
	f := newManagerFixture(t, false, time.Hour, 0)
	svid, err := f.mgr.Start(Workload{UID: "uid-1", Namespace: "shop", ServiceAccount: "cart", Labels: map[string]string{"app": "cart"}})
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://cluster.local/ns/shop/sa/cart" {
		t.Fatalf("ID = %s", svid.ID)
	}
	if ev := f.next(t, time.Second); ev.Kind != EventIssued || ev.UID != "uid-1" || ev.SVID != svid {
		t.Fatalf("event = %+v", ev)
	}
	peer, err := NewVerifier(f.bundles, f.revoked).Verify(rawChain(svid.Certificates), x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	if peer.Claims.WorkloadUID != "uid-1" || peer.Claims.Labels["app"] != "cart" {
		t.Fatalf("claims = %+v", peer.Claims)
	}
}

func TestManagerRotatesBeforeExpiryAndSubscribersSeeEveryRotation(t *testing.T) {
	// X.509 times have one-second precision, so NotAfter lands up to 1s
	// short of the TTL: 3s leaves a lifetime of at least 2s.
	const ttl = 3 * time.Second
	f := newManagerFixture(t, false, ttl, 0)
	first, err := f.mgr.Start(Workload{UID: "uid-1", Namespace: "a", ServiceAccount: "b"})
	if err != nil {
		t.Fatal(err)
	}
	f.next(t, time.Second) // issued
	prev := first
	for i := 0; i < 2; i++ {
		ev := f.next(t, 3*ttl)
		if ev.Kind != EventRotated || ev.Reason != "expiry" || ev.UID != "uid-1" {
			t.Fatalf("rotation %d: event %+v", i, ev)
		}
		if ev.SVID.Serial().Cmp(prev.Serial()) == 0 {
			t.Fatalf("rotation %d kept the serial", i)
		}
		// Rotated at half-life (minus jitter), i.e. well before expiry.
		if left := time.Until(prev.NotAfter()); left < ttl/4 {
			t.Fatalf("rotation %d came %s before expiry, want about %s", i, left, ttl/2)
		}
		if cur, _ := f.mgr.SVID("uid-1"); cur != ev.SVID {
			t.Fatalf("rotation %d: SVID() does not return the rotated SVID", i)
		}
		prev = ev.SVID
	}
}

func TestManagerHonoursRenewBefore(t *testing.T) {
	f := newManagerFixture(t, false, time.Hour, 10*time.Minute)
	if _, err := f.mgr.Start(Workload{UID: "u", Namespace: "a", ServiceAccount: "b"}); err != nil {
		t.Fatal(err)
	}
	st := f.mgr.Statuses()[0]
	if before := st.NotAfter.Sub(st.RotateAt); before < 10*time.Minute || before > 11*time.Minute {
		t.Fatalf("rotates %s before expiry, want 10m plus at most 10%% jitter", before)
	}
}

func TestManagerRevokesAtStopImmediately(t *testing.T) {
	f := newManagerFixture(t, false, time.Hour, 0)
	v := NewVerifier(f.bundles, f.revoked)
	svid, err := f.mgr.Start(Workload{UID: "uid-1", Namespace: "a", ServiceAccount: "b"})
	if err != nil {
		t.Fatal(err)
	}
	f.next(t, time.Second)
	if err := f.mgr.Stop("uid-1"); err != nil {
		t.Fatal(err)
	}
	// No waiting: the serial is refused the moment Stop returns.
	if _, err := v.Verify(rawChain(svid.Certificates), x509.ExtKeyUsageClientAuth); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("err = %v, want revoked", err)
	}
	if ev := f.next(t, time.Second); ev.Kind != EventRevoked || ev.SVID != svid {
		t.Fatalf("event = %+v", ev)
	}
	if _, ok := f.mgr.SVID("uid-1"); ok {
		t.Fatal("stopped workload still has an SVID")
	}
	if err := f.mgr.Stop("uid-1"); err == nil {
		t.Fatal("stopping twice should report the unknown workload")
	}
}

func TestManagerReissuesOnLabelChangeAndRevokesTheOldLabels(t *testing.T) {
	f := newManagerFixture(t, false, time.Hour, 0)
	v := NewVerifier(f.bundles, f.revoked)
	w := Workload{UID: "u", Namespace: "a", ServiceAccount: "b", Labels: map[string]string{"role": "reader"}}
	old, err := f.mgr.Start(w)
	if err != nil {
		t.Fatal(err)
	}
	f.next(t, time.Second)

	same, err := f.mgr.Update(w)
	if err != nil || same != old {
		t.Fatalf("update without change re-issued: %v", err)
	}
	w.Labels = map[string]string{"role": "admin"}
	updated, err := f.mgr.Update(w)
	if err != nil {
		t.Fatal(err)
	}
	if ev := f.next(t, time.Second); ev.Kind != EventRotated || ev.Reason != "labels" {
		t.Fatalf("event = %+v", ev)
	}
	peer, err := v.Verify(rawChain(updated.Certificates), x509.ExtKeyUsageClientAuth)
	if err != nil || peer.Claims.Labels["role"] != "admin" {
		t.Fatalf("new SVID: %v, %+v", err, peer)
	}
	if _, err := v.Verify(rawChain(old.Certificates), x509.ExtKeyUsageClientAuth); err == nil {
		t.Fatal("SVID with the old labels still verifies")
	}
}

func TestTrustDomainPerNamespaceIsolatesTenants(t *testing.T) {
	f := newManagerFixture(t, true, time.Hour, 0)
	a, err := f.mgr.Start(Workload{UID: "a", Namespace: "team-a", ServiceAccount: "app"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.mgr.Start(Workload{UID: "b", Namespace: "team-b", ServiceAccount: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID.String() != "spiffe://team-a.cluster.local/ns/team-a/sa/app" || b.ID.TrustDomain().Name() != "team-b.cluster.local" {
		t.Fatalf("IDs %s, %s", a.ID, b.ID)
	}
	// Each tenant has its own root.
	if a.Certificates[1].CheckSignatureFrom(f.bundles.Authorities(b.ID.TrustDomain())[0]) == nil {
		t.Fatal("tenants share a CA")
	}
	// A verifier that trusts only team-b refuses team-a's SVID.
	onlyB := NewBundles()
	onlyB.Set(b.ID.TrustDomain(), f.bundles.Authorities(b.ID.TrustDomain()))
	if _, err := NewVerifier(onlyB, nil).Verify(rawChain(a.Certificates), x509.ExtKeyUsageClientAuth); err == nil {
		t.Fatal("team-a's SVID verified against team-b's bundle")
	}
	// An explicit ID must stay inside the namespace's trust domain.
	_, err = f.mgr.Start(Workload{UID: "c", Namespace: "team-a", ServiceAccount: "x", ID: spiffeid.RequireFromString("spiffe://team-b.cluster.local/ns/team-b/sa/app")})
	if err == nil {
		t.Fatal("workload of team-a obtained an ID of team-b")
	}
}

func TestManagerRejectsWorkloadsWithoutIdentityFields(t *testing.T) {
	f := newManagerFixture(t, false, time.Hour, 0)
	for name, w := range map[string]Workload{
		"no UID":             {Namespace: "a", ServiceAccount: "b"},
		"no namespace":       {UID: "u1", ServiceAccount: "b"},
		"no service account": {UID: "u2", Namespace: "a"},
		"bad label":          {UID: "u3", Namespace: "a", ServiceAccount: "b", Labels: map[string]string{"-x": "y"}},
	} {
		if _, err := f.mgr.Start(w); err == nil {
			t.Errorf("%s: started", name)
		}
	}
}

func TestAuthoritiesReplaceACAPastHalfLife(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	now := time.Now()
	clock := func() time.Time { return now }
	root, err := NewRootCA(td, DefaultRootTTL)
	if err != nil {
		t.Fatal(err)
	}
	created := 0
	create := func(spiffeid.TrustDomain) (*CA, error) {
		created++
		node, err := root.NewNodeCA("n", time.Hour)
		if err != nil {
			return nil, err
		}
		node.now = clock
		return node, nil
	}
	a := NewAuthorities(NewBundles(), create)
	first, err := a.For(td)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := a.For(td); again != first || created != 1 {
		t.Fatal("a young CA was replaced")
	}
	now = now.Add(40 * time.Minute)
	second, err := a.For(td)
	if err != nil {
		t.Fatal(err)
	}
	if second == first || created != 2 {
		t.Fatal("a CA past half its life was not replaced")
	}
}

func TestExpiredCAIssuesNothing(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	root, err := NewRootCA(td, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	root.now = later
	if _, err := root.IssueSVID(SVIDRequest{ID: spiffeid.RequireFromPath(td, "/x"), TTL: time.Minute}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err = %v", err)
	}
}

// TestFaultClockJumpForward: a step of the wall clock past an SVID's
// rotation time (NTP, resume from suspend) is noticed within MaxWait, not
// when the monotonic timer set before the jump fires.
func TestFaultClockJumpForward(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	bundles := NewBundles()
	create := func(td spiffeid.TrustDomain) (*CA, error) {
		root, err := NewRootCA(td, DefaultRootTTL, WithClock(clock))
		if err != nil {
			return nil, err
		}
		return root.NewNodeCA("test-node", DefaultNodeTTL)
	}
	mgr := NewManager(ManagerConfig{
		TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local"),
		Authorities: NewAuthorities(bundles, create),
		Rotation:    func(string) (time.Duration, time.Duration) { return time.Hour, 0 },
		Now:         clock,
		MaxWait:     20 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := mgr.Subscribe(ctx)
	go mgr.Run(ctx)
	first, err := mgr.Start(Workload{UID: "u1", Namespace: "ns", ServiceAccount: "sa"})
	if err != nil {
		t.Fatal(err)
	}
	<-events                           // issued
	offset.Store(int64(2 * time.Hour)) // the wall clock steps past NotAfter
	select {
	case ev := <-events:
		ok := ev.Kind == EventRotated && ev.SVID.NotAfter().After(clock())
		t.Logf("SECURITY\twall clock jumps 2 h forward\tSVIDs re-issued at once, valid at the new time\trotated, old NotAfter %s, new NotAfter %s\t%v",
			first.NotAfter().Format(time.Kitchen), ev.SVID.NotAfter().Format(time.Kitchen), ok)
		if !ok {
			t.Fatalf("event %v, new NotAfter %s, now %s", ev.Kind, ev.SVID.NotAfter(), clock())
		}
	case <-time.After(5 * time.Second):
		t.Log("SECURITY\twall clock jumps 2 h forward\tSVIDs re-issued at once, valid at the new time\tno rotation within 5 s\tfalse")
		t.Fatal("the jump was not noticed")
	}
}
