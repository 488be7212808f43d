package agent

import (
	"strings"
	"time"

	"github.com/ztcn/ztcn/internal/dataplane"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/policy"
	"github.com/ztcn/ztcn/internal/telemetry"
)

// audit hands an event to the audit log; nil events (flows that are not
// audit-worthy) are skipped. Write never blocks for long: the log counts
// what it cannot write, and the agent keeps enforcing.
func (a *Agent) audit(e *telemetry.AuditEvent) {
	if e == nil {
		return
	}
	if e.Node == "" {
		e.Node = a.cfg.Agent.NodeName
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	a.auditMu.Lock()
	defer a.auditMu.Unlock()
	switch {
	case a.auditLog != nil:
		a.auditLog.Write(*e)
	case !a.auditTried:
		// Before Run opens the log (the first policy load happens in
		// New): keep the event for it.
		a.auditPending = append(a.auditPending, *e)
	default:
		a.auditUnwritten.Add(1)
	}
}

// auditOfFlow is the audit event of a data plane event: every violation
// (also would-be ones), refused plaintext and failed handshake. Allowed
// flows are in the flow table and the metrics, not the audit log.
func auditOfFlow(e dataplane.Event, f telemetry.Flow) *telemetry.AuditEvent {
	ae := &telemetry.AuditEvent{Time: e.Time, Outcome: "failure", Flow: &f}
	switch e.Kind {
	case dataplane.EventDenied:
		ae.Action = telemetry.ActionPolicyViolation
		if !e.Enforced {
			ae.Action, ae.Outcome = telemetry.ActionWouldBeViolation, "success"
		}
	case dataplane.EventFlowRevoked:
		ae.Action = telemetry.ActionPolicyViolation
	case dataplane.EventPlaintextRefused:
		ae.Action = telemetry.ActionPlaintextRefused
	case dataplane.EventHandshakeFailed:
		ae.Action = telemetry.ActionHandshakeFailed
	case dataplane.EventUpstreamFailed:
		if f.Error == "" {
			return nil
		}
		// A destination that did not authenticate is a failed handshake
		// seen from the client's side.
		ae.Action = telemetry.ActionHandshakeFailed
		if !containsAny(f.Error, "TLS handshake", "certificate", "x509") {
			return nil
		}
	default:
		if f.StagedVerdict == telemetry.VerdictDeny {
			ae.Action, ae.Outcome = telemetry.ActionWouldBeViolation, "success"
			return ae
		}
		return nil
	}
	return ae
}

func auditOfIdentity(e identity.Event, node string) *telemetry.AuditEvent {
	if e.SVID == nil {
		return nil
	}
	ae := &telemetry.AuditEvent{Outcome: "success", Node: node,
		SPIFFEID: e.SVID.ID.String(), Serial: e.SVID.Serial().Text(16), NotAfter: e.SVID.NotAfter(), Reason: e.Reason}
	switch e.Kind {
	case identity.EventIssued:
		ae.Action, ae.Reason = telemetry.ActionCertIssued, "start"
	case identity.EventRotated:
		ae.Action = telemetry.ActionCertRotated
	case identity.EventRevoked:
		ae.Action = telemetry.ActionCertRevoked
		if ae.Reason == "" {
			ae.Reason = "stop"
		}
	default:
		return nil
	}
	return ae
}

func auditOfReload(r policy.ReloadResult, snap *policy.Snapshot) *telemetry.AuditEvent {
	ae := &telemetry.AuditEvent{Action: telemetry.ActionPolicyReload, Outcome: "success", PolicyVersion: r.Version}
	if snap != nil {
		ae.PolicyDigest = snap.Digest
	}
	if !r.OK {
		ae.Outcome = "failure"
		if r.Err != nil {
			ae.Error = r.Err.Error()
		}
	}
	return ae
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// openAuditLog opens telemetry.audit_log. An agent that cannot open it
// still enforces (refusing to would turn a logging problem into an
// outage); every event it cannot write is counted, shown by `ztcn status`
// and ztcn_audit_events_total{result="error"}, and the error is logged.
func (a *Agent) openAuditLog() {
	a.auditMu.Lock()
	defer a.auditMu.Unlock()
	a.auditTried = true
	pending := a.auditPending
	a.auditPending = nil
	l, err := telemetry.OpenAuditLog(a.cfg.Telemetry.AuditLog, telemetry.AuditOptions{OnError: func(err error) {
		a.log.Error("audit events lost (counted in ztcn_audit_events_total)", "path", a.cfg.Telemetry.AuditLog, "error", err)
	}})
	if err != nil {
		msg := err.Error()
		a.auditOpenErr.Store(&msg)
		a.log.Error("audit log not opened; audit events will be counted as lost", "path", a.cfg.Telemetry.AuditLog, "error", err)
		a.auditUnwritten.Add(uint64(len(pending)))
		return
	}
	a.auditLog = l
	for _, e := range pending {
		l.Write(e)
	}
}

func (a *Agent) closeAuditLog() {
	a.auditMu.Lock()
	defer a.auditMu.Unlock()
	if a.auditLog != nil {
		if err := a.auditLog.Close(); err != nil {
			a.log.Error("audit log close", "error", err)
		}
	}
}
