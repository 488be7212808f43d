package agent

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/ztcn/ztcn/internal/dataplane"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/policy"
	"github.com/ztcn/ztcn/internal/telemetry"
)

// This file turns what the layers report into telemetry: metrics, the flow
// table and (see audit.go) the audit log. It is called on the data plane's
// goroutines, so it only counts, copies and hands off.

// flowOf is a data plane event as a flow record.
func (a *Agent) flowOf(e dataplane.Event) telemetry.Flow {
	f := telemetry.Flow{
		ID: e.Flow, Start: e.Time, Node: a.cfg.Agent.NodeName, Pod: e.Pod, Direction: string(e.Direction),
		Source:   peerOf(e.Source, e.SourceID, e.SourceEP),
		Dest:     peerOf(e.Dest, e.DestID, e.DestEP),
		Protocol: "TCP", Verdict: telemetry.VerdictAllow, Enforced: e.Enforced, Reason: e.Reason, Rule: e.Rule,
		Kind: string(e.Kind), BytesIn: e.BytesIn, BytesOut: e.BytesOut, Duration: e.Duration, Error: e.Err,
		StagedVerdict: e.StagedVerdict, StagedRule: e.StagedRule, StagedReason: e.StagedReason,
	}
	switch e.Kind {
	case dataplane.EventDenied, dataplane.EventPlaintextRefused, dataplane.EventHandshakeFailed:
		f.Verdict = telemetry.VerdictDeny
	case dataplane.EventFlowClosed, dataplane.EventFlowRevoked, dataplane.EventFlowOpened:
		if !e.Allowed {
			// Let through in audit mode although policy denies it.
			f.Verdict = telemetry.VerdictDeny
		}
	}
	if e.Kind == dataplane.EventPlaintextRefused || e.Kind == dataplane.EventHandshakeFailed {
		f.Enforced = true
	}
	if e.Kind == dataplane.EventFlowRevoked {
		f.Verdict = telemetry.VerdictDeny
	}
	if e.Duration > 0 {
		f.Start = e.Time.Add(-e.Duration)
	}
	if e.Kind != dataplane.EventFlowOpened {
		f.End = e.Time
	}
	return f
}

// peerOf is one side of a flow: its address as seen on the wire, its
// identity when authenticated, and what policy knew of it.
func peerOf(addr netip.AddrPort, id string, ep *policy.Endpoint) telemetry.Peer {
	p := telemetry.Peer{IP: addr.Addr(), Port: addr.Port(), SPIFFEID: id}
	if ep != nil {
		p.Namespace, p.Name, p.ServiceAccount, p.Labels = ep.Namespace, ep.Name, ep.ServiceAccount, ep.Labels
		if p.SPIFFEID == "" {
			p.SPIFFEID = ep.SPIFFEID
		}
		if !p.IP.IsValid() {
			p.IP = ep.IP
		}
	}
	return p
}

// record feeds one data plane event to the metrics and the flow table.
func (a *Agent) record(e dataplane.Event) {
	dir := string(e.Direction)
	f := a.flowOf(e)
	switch e.Kind {
	case dataplane.EventFlowOpened:
		a.metrics.Connection(dir, telemetry.ConnAllowed, e.Connect)
		a.flows.Opened(f)
		return
	case dataplane.EventStaged:
		// Not a flow of its own: the flow's records carry the staged
		// verdict; a would-be denial is a violation the audit must show.
		if e.StagedVerdict == telemetry.VerdictDeny {
			a.metrics.Violation(dir, false)
			a.audit(auditOfFlow(e, f))
		}
		return
	case dataplane.EventFlowClosed, dataplane.EventFlowRevoked:
		a.metrics.Bytes(dir, e.BytesIn+e.BytesOut)
		if e.Flow == 0 {
			// An inbound HBONE stream: decided and counted by the
			// server when it ended.
			a.metrics.Connection(dir, telemetry.ConnAllowed, 0)
		}
	case dataplane.EventDenied:
		a.metrics.Violation(dir, e.Enforced)
		if e.Enforced {
			a.metrics.Connection(dir, telemetry.ConnDenied, 0)
		}
	case dataplane.EventPlaintextRefused:
		a.metrics.Violation(dir, true)
		a.metrics.Connection(dir, telemetry.ConnDenied, 0)
	case dataplane.EventHandshakeFailed, dataplane.EventUpstreamFailed:
		a.metrics.Connection(dir, telemetry.ConnFailed, 0)
	}
	a.flows.Finished(f)
	a.audit(auditOfFlow(e, f))
}

// watchIdentities counts issued certificates and audits every issue,
// rotation and revocation.
func (a *Agent) watchIdentities(ctx context.Context) {
	for e := range a.identities.Subscribe(ctx) {
		switch e.Kind {
		case identity.EventIssued:
			a.metrics.CertificateIssued("start")
		case identity.EventRotated:
			a.metrics.CertificateIssued("rotation")
			if a.dp != nil {
				// Pooled connections made with the old SVID drain;
				// new streams handshake with the new one.
				a.dp.Rotated(e.UID)
			}
		}
		a.audit(auditOfIdentity(e, a.cfg.Agent.NodeName))
	}
}

// nearestExpiry is the earliest NotAfter among the SVIDs in use.
func (a *Agent) nearestExpiry() (time.Time, bool) {
	var earliest time.Time
	for _, st := range a.identities.Statuses() {
		if earliest.IsZero() || st.NotAfter.Before(earliest) {
			earliest = st.NotAfter
		}
	}
	return earliest, !earliest.IsZero()
}

// metricsURL is where the admin endpoint serves /metrics, as a URL a
// scraper on this host can use.
func metricsURL(admin string) string {
	if admin == "" {
		return ""
	}
	host := admin
	if strings.HasPrefix(host, "0.0.0.0:") || strings.HasPrefix(host, "[::]:") {
		host = "127.0.0.1" + host[strings.LastIndex(host, ":"):]
	}
	return "http://" + host + "/metrics"
}
