// Package workloadapi serves the SPIFFE Workload API to the workloads on this
// node, over gRPC on a Unix socket, handing each workload its own X.509-SVID
// and the trust bundles it needs to verify peers.
//
// # Attestation
//
// A workload proves nothing by itself: the agent decides who is calling from
// facts the kernel vouches for. When a client connects, the server reads the
// socket's peer credentials (SO_PEERCRED: the pid, uid and gid of the process
// that called connect) and that process's start time from /proc/<pid>/stat.
// On every call it then resolves
//
//	pid → network namespace (dev, ino of /proc/<pid>/ns/net) → workload UID
//
// through a Resolver (the workload registry), and hands out only that
// workload's identity. The socket file is therefore world-writable (0777):
// file permissions play no part in who gets which identity.
//
// A pid names a process only while it lives; once it exits the kernel may give
// the number to another process, perhaps in another pod. So the start time is
// read again before and after the namespace lookup and must equal the one
// read at connect time: if the process exited, or its pid now belongs to
// someone else, the call is refused rather than answered for the newcomer.
// Attestation runs per call, not once per connection: a connection may live
// for hours, and the workload registered for a network namespace may change
// in that time.
//
// The agent must share the host's pid namespace (a peer in an invisible pid
// namespace arrives as pid 0 and is refused) and see the host's /proc.
//
// # Requests
//
// As the Workload API specification requires, every call must carry the gRPC
// metadata "workload.spiffe.io: true"; a call without it fails with
// InvalidArgument before anything else is looked at. A confused deputy, such
// as a proxy that can be made to forward a request to the socket (SSRF),
// does not add the header, and so cannot fetch an SVID for whoever steers it. A caller that attests to no workload, or whose workload has no
// identity, gets PermissionDenied.
//
// # Streams
//
// FetchX509SVID sends the caller's full X.509 state at once: its SVID (chain
// and PKCS#8 key), the bundle of its own trust domain, and the bundle of every
// other trusted domain as federated_bundles. It sends the full state again
// whenever the workload's SVID rotates or any bundle changes, and ends with
// PermissionDenied when the workload's identity is revoked (the workload
// stopped). FetchX509Bundles sends every trust domain's bundle at once and
// again on every change, and ends the same way on revocation. Both
// subscribe to changes before reading the current state, so a change that
// lands between the two is sent rather than lost; a message identical to the
// previous one is not sent twice. When the server shuts down, open streams
// end with Unavailable so that clients reconnect to the next agent.
//
// JWT-SVIDs are not supported yet: FetchJWTSVID, FetchJWTBundles and
// ValidateJWTSVID (and the experimental WIT-SVID methods) answer
// Unimplemented.
package workloadapi
