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
package redirect

// Spec is the desired redirection of one pod, which Install programs and
// Verify compares against.
type Spec struct {
	// NonTCP lists the non-TCP flows the pod may take part in. Every other
	// UDP, SCTP or ICMP packet is dropped; nil allows none.
	NonTCP []Allow
}
