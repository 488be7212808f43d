package dataplane

import (
	"net/netip"
	"strings"

	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/policy"
)

// peerEndpoint is what policy knows about an authenticated peer: only what
// its verified certificate says (SPIFFE ID, and labels and workload UID
// from the claims extension), plus the source address its agent reported.
// Nothing is taken from a directory the peer could have lied to.
func peerEndpoint(peer *identity.Peer, src netip.Addr) *policy.Endpoint {
	ep := &policy.Endpoint{
		Workload: true,
		Name:     peer.Claims.WorkloadUID,
		Labels:   peer.Claims.Labels,
		SPIFFEID: peer.ID.String(),
		IP:       src,
	}
	// spiffe://<td>/ns/<namespace>/sa/<serviceaccount>: the Kubernetes
	// layout of the default ID. Other IDs match only spiffe:// selectors.
	segs := strings.Split(strings.TrimPrefix(peer.ID.Path(), "/"), "/")
	if len(segs) == 4 && segs[0] == "ns" && segs[2] == "sa" {
		ep.Namespace, ep.ServiceAccount = segs[1], segs[3]
		ep.NamespaceLabels = map[string]string{"kubernetes.io/metadata.name": segs[1]}
	}
	return ep
}

// outsideEndpoint is an address that is no workload ztcn knows: an
// unauthenticated peer or an external destination.
func outsideEndpoint(ip netip.Addr) *policy.Endpoint {
	return &policy.Endpoint{IP: ip}
}

// describe is what to report about an authenticated peer: the workload
// this node knows at that address (its pod name, namespace labels) when it
// carries the very identity the peer proved, else the verified facts
// alone. It is for records only; decisions use peerEndpoint.
func (dp *DataPlane) describe(verified *policy.Endpoint) *policy.Endpoint {
	if known := dp.endpointAt(verified.IP); known.Workload && known.SPIFFEID == verified.SPIFFEID {
		return known
	}
	return verified
}
