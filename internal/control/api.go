// Package control is the agent's local control API: how runtime adapters
// (the local runtime, the OCI hook, the NRI plugin) register and remove pods,
// and how `ztcn status` reads the agent's state. It is JSON over HTTP on a
// Unix socket that only root can open: whoever can register a pod can have
// an identity issued for it.
//
// Routes:
//
//	PUT    /v1/pods/{uid}  register a pod (body: workload.Pod); answers once
//	                       its identity is issued and its redirection is in
//	                       place, so a runtime can hold the pod until then
//	DELETE /v1/pods/{uid}  revoke the pod's identity and detach it
//	GET    /v1/pods        the attached pods
//	PUT    /v1/directory   the workloads of other nodes (body: Directory),
//	                       replacing the previous list
//	GET    /v1/status      the agent: node, policy, pods, counters
package control

import (
	"net/netip"
	"time"

	"github.com/ztcn/ztcn/internal/workload"
)

// Status is the agent as `ztcn status` shows it.
type Status struct {
	Node        string    `json:"node"`
	TrustDomain string    `json:"trust_domain"`
	Ready       bool      `json:"ready"`
	StartedAt   time.Time `json:"started_at"`
	// Mode is policy.mode: strict, permissive or audit.
	Mode string `json:"mode"`
	// DataPlane is false when the agent only issues identities (no traffic
	// is intercepted).
	DataPlane    bool   `json:"dataplane"`
	AdminAddress string `json:"admin_address,omitempty"`
	// MetricsURL is where the agent serves Prometheus metrics.
	MetricsURL string `json:"metrics_url,omitempty"`
	// AuditLog is the audit log and its counters.
	AuditLog AuditLogStatus `json:"audit_log"`
	Policy   PolicyStatus   `json:"policy"`
	Pods     []PodStatus    `json:"pods"`
	// Directory counts the remote workloads the agent knows.
	Directory int `json:"directory"`
	// Recent are the latest data plane events (denials, refusals, closed
	// flows), newest last, at most a few dozen.
	Recent []Event `json:"recent,omitempty"`
	// Events counts data plane events by kind since the agent started
	// (denied, plaintext_refused, handshake_failed, ...).
	Events map[string]uint64 `json:"events"`
}

// AuditLogStatus is the state of the audit log: Errors and Dropped count
// events that were lost (a full disk, a writer falling behind).
type AuditLogStatus struct {
	Path      string `json:"path"`
	Written   uint64 `json:"written"`
	Dropped   uint64 `json:"dropped"`
	Errors    uint64 `json:"errors"`
	LastError string `json:"last_error,omitempty"`
}

// PolicyStatus is the policy in force.
type PolicyStatus struct {
	Paths    []string  `json:"paths"`
	Version  uint64    `json:"version"`
	Rules    int       `json:"rules"`
	LoadedAt time.Time `json:"loaded_at"`
	// LastError is the last failed reload, if the policy in force is not
	// the files' current content.
	LastError string `json:"last_error,omitempty"`
}

// PodStatus is one registered pod.
type PodStatus struct {
	UID            string            `json:"uid"`
	Name           string            `json:"name"`
	Namespace      string            `json:"namespace"`
	ServiceAccount string            `json:"service_account"`
	Labels         map[string]string `json:"labels,omitempty"`
	IPs            []netip.Addr      `json:"ips,omitempty"`
	NetnsPath      string            `json:"netns_path"`
	// Runtime is the adapter that registered the pod (workload.Pod.Runtime).
	Runtime      string    `json:"runtime,omitempty"`
	SPIFFEID     string    `json:"spiffe_id"`
	CertNotAfter time.Time `json:"cert_not_after"`
	// Redirection is the health of the pod's in-pod redirection.
	Redirection Redirection `json:"redirection"`
}

// Redirection reports whether a pod's traffic is intercepted as it must be.
type Redirection struct {
	// State is "healthy", "drifted" (found wrong, being repaired),
	// "absent", "failed" (repair did not help) or "not-attached" (the
	// agent runs without a data plane).
	State string `json:"state"`
	// Drift lists what the last check found wrong, if anything.
	Drift []string `json:"drift,omitempty"`
	// Repairs counts how often the agent had to repair the pod's rules.
	Repairs   uint64    `json:"repairs"`
	CheckedAt time.Time `json:"checked_at"`
	Error     string    `json:"error,omitempty"`
}

// Redirection states.
const (
	RedirectionHealthy     = "healthy"
	RedirectionDrifted     = "drifted"
	RedirectionAbsent      = "absent"
	RedirectionFailed      = "failed"
	RedirectionNotAttached = "not-attached"
)

// Event is one data plane event as the control API reports it.
type Event struct {
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"`
	Direction   string    `json:"direction"`
	Pod         string    `json:"pod"`
	Source      string    `json:"source"`
	Destination string    `json:"destination"`
	SourceID    string    `json:"source_id,omitempty"`
	DestID      string    `json:"destination_id,omitempty"`
	Allowed     bool      `json:"allowed"`
	Enforced    bool      `json:"enforced"`
	Reason      string    `json:"reason,omitempty"`
	Rule        string    `json:"rule,omitempty"`
	Error       string    `json:"error,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// podRequest is the PUT body; the UID comes from the path.
type podRequest = workload.Pod

// RemotePod is a workload on another node, as the node's runtime or
// control plane knows it: the agent needs it to decide flows to that pod
// (its identity and labels), to carry them over HBONE to the right SPIFFE
// ID, and to compile non-TCP allowlists. It carries no secret: the
// destination proves its identity in the TLS handshake.
type RemotePod struct {
	workload.Pod
	// Node names the node the pod runs on (informational).
	Node string `json:"node,omitempty"`
}

// Directory is the body of PUT /v1/directory: every remote workload,
// replacing the previous list.
type Directory struct {
	Pods []RemotePod `json:"pods"`
}
