// Package redirect installs, verifies and repairs the in-pod redirection
// of a pod's network namespace: the nftables rules that send its TCP to the
// node agent's listeners (outbound to 127.0.0.1:15001, inbound plaintext to
// :15006, HBONE on :15008 untouched), the policy route that brings the
// application's replies back to the agent's transparent sockets, and the
// filter that drops every non-TCP flow not on an allowlist compiled from
// policy.
//
// The rule set lives in two tables: "ip ztcn", the proven rule set of
// Istio ambient's in-pod mode plus the non-TCP filter, and "inet
// ztcn-guard", a backstop that refuses the TCP the first table should have
// redirected and did not, so that losing either table alone never lets
// plaintext through. README.md lists every rule and why it exists.
//
// Install, Verify, Repair, SetNonTCPAllowlist and Remove take the pod's
// namespace as an open handle; the agent itself stays in its own
// namespace. OriginalDst reads where a redirected connection was going.
//
// InstallNodeProbes programs the node's side of kubelet probes: the node's
// own TCP to meshed pods leaves with ProbeSource as its source, which the
// pods' rules let through to the application in plaintext, and nothing
// from a pod may carry that source.
package redirect

import "net/netip"

// Spec is the desired redirection of one pod, which Install programs and
// Verify compares against.
type Spec struct {
	// NonTCP lists the non-TCP flows the pod may take part in. Every other
	// UDP, SCTP or ICMP packet is dropped; nil allows none.
	NonTCP []Allow
	// ProbeSource, if valid, is the address the node's agent gives the
	// node's own TCP to pods (InstallNodeProbes): kubelet probes. Inbound
	// TCP from it goes to the application directly, in plaintext, in every
	// mode. The zero Addr: none (probes from the node are plaintext from
	// outside the mesh, refused in strict mode).
	ProbeSource netip.Addr
}

// DefaultProbeSource is the link-local address Istio ambient uses for the
// same purpose: never a pod's, never routed off the node.
var DefaultProbeSource = netip.MustParseAddr("169.254.7.127")
