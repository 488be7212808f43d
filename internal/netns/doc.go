// Package netns creates, enters and deletes network namespaces and wires
// them together with veth pairs, bridges, addresses and routes, all over
// netlink (it never runs the ip command).
//
// Named namespaces are bind-mounted under RunDir like `ip netns add`, so
// iproute2 and other tools see them. Node builds the usual test and
// `ztcn up` layout: a node namespace with a bridge and pod namespaces
// hanging off it, none of it visible in the host's namespace.
//
// # Threads
//
// A network namespace belongs to an OS thread, not to a goroutine or the
// process. Everything here that has to be inside a namespace (Do, Create,
// NewHandle) runs on a fresh goroutine locked to its thread, never on the
// caller's, and switches that thread back afterwards. If switching back
// fails, the goroutine exits still locked, and the Go runtime then
// terminates the thread rather than reusing it, so no other goroutine can
// ever run in a namespace it did not ask for. Code outside this package
// that calls setns must follow the same rule.
package netns
