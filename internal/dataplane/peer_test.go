package dataplane

import (
	"crypto/x509"
	"net/netip"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/policy"
)

func TestPeerEndpointTakesOnlyVerifiedFacts(t *testing.T) {
	peer := &identity.Peer{
		ID:     spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/frontend"),
		Claims: identity.Claims{WorkloadUID: "uid-1", Labels: map[string]string{"app": "frontend"}},
	}
	ep := peerEndpoint(peer, netip.MustParseAddr("10.0.0.2"))
	if !ep.Workload || ep.Namespace != "shop" || ep.ServiceAccount != "frontend" || ep.Labels["app"] != "frontend" ||
		ep.SPIFFEID != "spiffe://cluster.local/ns/shop/sa/frontend" || ep.NamespaceLabels["kubernetes.io/metadata.name"] != "shop" {
		t.Fatalf("endpoint %+v", ep)
	}

	// An ID outside the Kubernetes layout names no namespace: it can only
	// match spiffe:// selectors, never ns: or sa:.
	odd := peerEndpoint(&identity.Peer{ID: spiffeid.RequireFromString("spiffe://cluster.local/billing/worker")}, netip.Addr{})
	if odd.Namespace != "" || odd.ServiceAccount != "" {
		t.Fatalf("endpoint %+v", odd)
	}
}

// Every stream of a pooled connection (one verified peer, one source
// address) and every connection from one outside address is resolved
// against the policy once per policy version, not per connection: at
// 100,000 rules a resolution costs about 190 µs (policy.BenchmarkCompile/
// resolve).
func TestPeersAreResolvedOncePerPolicyVersion(t *testing.T) {
	compile := func(src string) *policy.Snapshot {
		set, diags := policy.LoadBytes("p.yaml", []byte(src))
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		ix, err := policy.Compile(set, policy.IsolateAll)
		if err != nil {
			t.Fatal(err)
		}
		return &policy.Snapshot{Index: ix}
	}
	snap := compile("policies:\n  - subject: \"app:frontend\"\n    allow:\n      - destination: \"app:backend\"\n")
	dp, err := New(Config{Policy: func() *policy.Snapshot { return snap }, Verifier: identity.NewVerifier(identity.NewBundles(), nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	peer := &identity.Peer{ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/frontend"),
		Claims: identity.Claims{Labels: map[string]string{"app": "frontend"}}}
	ip := netip.MustParseAddr("10.0.0.2")

	a, b := dp.peerEndpointOf(peer, ip), dp.peerEndpointOf(peer, ip)
	if a != b {
		t.Fatal("two streams of one connection got two endpoints")
	}
	first := dp.subjectOf(snap.Index, a)
	if again := dp.subjectOf(snap.Index, b); again != first {
		t.Error("the peer was resolved again for its second stream")
	}
	if other := dp.peerEndpointOf(peer, netip.MustParseAddr("10.0.0.3")); other == a {
		t.Error("another source address shares the endpoint")
	}
	// Two certificates of one SPIFFE ID (a rotation, other labels) are
	// two endpoints: the key is the certificate, not the identity.
	old := &identity.Peer{ID: peer.ID, Claims: identity.Claims{Labels: map[string]string{"app": "frontend"}},
		Chain: []*x509.Certificate{{Signature: []byte("old leaf")}}}
	rotated := &identity.Peer{ID: peer.ID, Claims: identity.Claims{Labels: map[string]string{"app": "other"}},
		Chain: []*x509.Certificate{{Signature: []byte("new leaf")}}}
	if e1, e2 := dp.peerEndpointOf(old, ip), dp.peerEndpointOf(rotated, ip); e1 == e2 || e2.Labels["app"] != "other" {
		t.Error("a new certificate of the same identity got the old certificate's endpoint")
	}
	newer := compile("policies: []\n")
	if dp.subjectOf(newer.Index, a) == first {
		t.Error("a new policy version reused the old resolution")
	}
	out := dp.outsideEndpointOf(netip.MustParseAddr("203.0.113.9"))
	firstOut := dp.subjectOf(snap.Index, out)
	if again := dp.endpointAt(netip.MustParseAddr("203.0.113.9")); again != out || dp.subjectOf(snap.Index, again) != firstOut {
		t.Error("an outside address is resolved per connection")
	}
}
