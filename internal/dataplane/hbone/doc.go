// Package hbone is the transport of ztcn's data plane: HBONE (HTTP/2
// CONNECT inside TLS 1.3 mutual TLS, as in Istio ambient's ztunnel) and the
// byte pump that moves an application's bytes through it.
//
//   - Pipe copies between two connections in both directions with pooled
//     buffers, half-close, back-pressure and an idle timeout.
//   - Server serves HBONE on a listener the caller opened (inside a pod's
//     network namespace); a caller hook authorizes each CONNECT and dials
//     the application.
//   - Pool opens CONNECT streams to remote HBONE servers, reusing one
//     HTTP/2 connection per (source workload, destination identity,
//     destination address) so that a new application connection costs a
//     stream, not a TLS handshake.
//
// Everything here works over plain sockets; netns, SO_MARK and policy are
// the caller's (package dataplane) business, passed in as functions.
//
// Limitation inherited from golang.org/x/net/http2's server: a handler can
// end its response only by returning, and returning resets the request
// stream. So when the application half-closes first (EOF from the app while
// the client is still sending), the client reads the rest of the response
// and EOF, and whatever it sends afterwards is refused (its agent's pump
// drains and drops it, see Pump.Pipe). Client-first
// half-close (the common case: the client sends its request, shuts down its
// write side and reads the answer) is carried exactly.
package hbone
