package dataplane

import (
	"net/netip"
	"time"

	"github.com/ztcn/ztcn/internal/policy"
)

// Direction says which side of a pod a flow crossed.
type Direction string

// Directions of a flow, seen from the attached pod.
const (
	Outbound Direction = "outbound"
	Inbound  Direction = "inbound"
)

// Event is what the data plane reports about a flow: every denial, every
// failed handshake, and every completed flow (for the flow table).
type Event struct {
	// Flow identifies a carried connection across its flow_opened and
	// flow_closed (or flow_revoked) events; 0 for events of one moment.
	Flow      uint64         `json:"flow,omitempty"`
	Time      time.Time      `json:"time"`
	Kind      EventKind      `json:"kind"`
	Direction Direction      `json:"direction"`
	Pod       string         `json:"pod"` // namespace/name of the attached pod
	Source    netip.AddrPort `json:"source"`
	Dest      netip.AddrPort `json:"destination"`
	SourceID  string         `json:"source_id,omitempty"` // SPIFFE ID, when authenticated
	DestID    string         `json:"destination_id,omitempty"`
	Allowed   bool           `json:"allowed"`
	// Enforced is false in audit mode: the flow was let through although
	// Allowed says strict policy would deny it.
	Enforced bool   `json:"enforced"`
	Reason   string `json:"reason"`
	// Rule is the deciding rule ("file:line:col: text"), or empty.
	Rule string `json:"rule,omitempty"`
	// StagedVerdict is set when the staged (mode: audit) policies would
	// decide the flow otherwise: "allow" or "deny", with their rule.
	StagedVerdict string `json:"staged_verdict,omitempty"`
	StagedRule    string `json:"staged_rule,omitempty"`
	StagedReason  string `json:"staged_reason,omitempty"`
	// SourceEP and DestEP are what policy knew of each side (labels,
	// names), for the flow table and the audit log; nil when unknown.
	SourceEP *policy.Endpoint `json:"-"`
	DestEP   *policy.Endpoint `json:"-"`
	// Connect is how long reaching the destination took (outbound: the
	// HBONE stream or direct connect; inbound: the dial to the app).
	Connect  time.Duration `json:"connect,omitempty"`
	BytesOut int64         `json:"bytes_out,omitempty"`
	BytesIn  int64         `json:"bytes_in,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Err      string        `json:"error,omitempty"`
}

// EventKind classifies events.
type EventKind string

// Event kinds.
const (
	// EventDenied: policy refused the flow (or would have, in audit mode).
	EventDenied EventKind = "denied"
	// EventPlaintextRefused: an unauthenticated inbound connection was
	// refused in strict mode.
	EventPlaintextRefused EventKind = "plaintext_refused"
	// EventHandshakeFailed: an HBONE peer did not authenticate.
	EventHandshakeFailed EventKind = "handshake_failed"
	// EventFlowOpened: a flow was allowed and its bytes start to move.
	EventFlowOpened EventKind = "flow_opened"
	// EventFlowClosed: a flow ended (with byte counts); Allowed is true.
	EventFlowClosed EventKind = "flow_closed"
	// EventFlowRevoked: an open flow was closed because a new policy
	// denies it.
	EventFlowRevoked EventKind = "flow_revoked"
	// EventStaged: the staged policies would decide a flow otherwise than
	// the policy in force (a would-be denial or allow); traffic follows
	// the policy in force.
	EventStaged EventKind = "staged_verdict"
	// EventUpstreamFailed: the destination could not be reached.
	EventUpstreamFailed EventKind = "upstream_failed"
)

// HandshakeSide says which end of a TLS handshake the agent was.
type HandshakeSide string

// Handshake sides.
const (
	HandshakeClient HandshakeSide = "client"
	HandshakeServer HandshakeSide = "server"
)
