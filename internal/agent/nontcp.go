package agent

import (
	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/dataplane/redirect"
	"github.com/ztcn/ztcn/internal/policy"
)

// UDP, SCTP and ICMP are filtered, not proxied: every attached pod carries
// an allowlist compiled from the policy and from the workloads it may
// exchange packets with. Both change, so the lists are recompiled when a
// pod comes or goes and when the policy changes.

// peerEndpointsLocked are the endpoints of the attached pods and of the
// remote workloads in the directory. The caller holds podsMu.
func (a *Agent) peerEndpointsLocked() []*policy.Endpoint {
	var remote []*policy.Endpoint
	if d := a.remote.Load(); d != nil {
		remote = d.list
	}
	peers := make([]*policy.Endpoint, 0, len(a.attached)+len(remote))
	for _, ap := range a.attached {
		peers = append(peers, ap.endpoint)
	}
	return append(peers, remote...)
}

// nonTCPFor compiles ep's allowlist against the policy in force and the
// attached pods (plus ep itself, which may not be attached yet).
func (a *Agent) nonTCPFor(snap *policy.Snapshot, ep *policy.Endpoint) []redirect.Allow {
	peers := append(a.peerEndpointsLocked(), ep)
	// ep is not attached yet (an attached pod at its address may be its
	// previous registration): resolved afresh.
	return a.dp.NonTCPAllowlist(snap.Index, snap.Index.Resolve(ep), peers)
}

// syncNonTCPLocked recompiles and applies every attached pod's allowlist.
// A pod whose list cannot be applied keeps its previous one and is marked
// failed for the next reconcile to repair. The caller holds podsMu.
func (a *Agent) syncNonTCPLocked() {
	snap := a.Policy()
	peers := a.peerEndpointsLocked()
	for uid, ap := range a.attached {
		allow := a.dp.NonTCPAllowlist(snap.Index, a.dp.Subject(snap.Index, ap.endpoint), peers)
		if err := a.dp.SetNonTCP(uid, allow); err != nil {
			ap.health.State, ap.health.Error = control.RedirectionFailed, err.Error()
			a.log.Error("non-TCP allowlist not updated; the previous one stays in force", "uid", uid, "error", err)
		}
	}
}
