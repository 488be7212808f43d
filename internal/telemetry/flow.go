// Package telemetry is what ztcn tells operators: Prometheus metrics, the
// tamper-evident audit log in Elastic Common Schema, and the table of
// recent flows. It turns data plane, identity and policy events into those
// three outputs and depends on no other layer's internals.
package telemetry

import (
	"net/netip"
	"time"
)

// Peer is one side of a flow, with what was known about it when the flow
// was decided: a workload (SPIFFE ID, namespace, name, labels) or only an
// address outside the mesh.
type Peer struct {
	IP             netip.Addr        `json:"ip"`
	Port           uint16            `json:"port,omitempty"`
	SPIFFEID       string            `json:"spiffe_id,omitempty"`
	Namespace      string            `json:"namespace,omitempty"`
	Name           string            `json:"name,omitempty"`
	ServiceAccount string            `json:"service_account,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
}

// Workload reports whether the peer is a workload of the mesh.
func (p Peer) Workload() bool { return p.SPIFFEID != "" || p.Name != "" }

// Verdicts of a flow.
const (
	VerdictAllow = "allow"
	VerdictDeny  = "deny"
)

// Flow is one connection (or refused attempt) as the flow table, `ztcn
// flows -o json` and `ztcn policy suggest` see it. One JSON object per
// line is the interchange format between them.
type Flow struct {
	ID    uint64    `json:"id"`
	Start time.Time `json:"start"`
	// End is zero while the flow is open.
	End time.Time `json:"end,omitempty"`
	// Node is the agent that saw the flow; Pod the attached pod
	// (namespace/name) on whose side it was seen.
	Node      string `json:"node,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Direction string `json:"direction"` // outbound | inbound
	Source    Peer   `json:"source"`
	Dest      Peer   `json:"destination"`
	Protocol  string `json:"protocol"` // TCP
	// Verdict is what policy in force decided; Enforced is false when the
	// flow went through anyway (mode = "audit").
	Verdict  string `json:"verdict"`
	Enforced bool   `json:"enforced"`
	// Reason and Rule explain the verdict: the deciding rule as
	// "file:line:col: text", or Reason alone ("no rule allows egress from
	// the source") when no rule decided.
	Reason string `json:"reason,omitempty"`
	Rule   string `json:"rule,omitempty"`
	// StagedVerdict is what the staged (mode: audit) policies would decide,
	// when they disagree with Verdict; StagedRule is their deciding rule.
	StagedVerdict string `json:"staged_verdict,omitempty"`
	StagedRule    string `json:"staged_rule,omitempty"`
	StagedReason  string `json:"staged_reason,omitempty"`
	// Kind is the data plane's event kind: flow_closed, denied,
	// plaintext_refused, handshake_failed, upstream_failed, flow_revoked.
	Kind     string        `json:"kind"`
	BytesIn  int64         `json:"bytes_in"`
	BytesOut int64         `json:"bytes_out"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
}
