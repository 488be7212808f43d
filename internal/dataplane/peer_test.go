package dataplane

import (
	"net/netip"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztcn/ztcn/internal/identity"
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
