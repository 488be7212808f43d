package hbone

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
)

// Errors an Authorize hook wraps to choose the answer to a CONNECT. Any
// other error answers 503.
var (
	// ErrForeignTarget refuses a CONNECT whose authority is not served
	// here (not this pod's address): 400, so the tunnel cannot be used to
	// reach anything else (SSRF).
	ErrForeignTarget = errors.New("hbone: target is not served here")
	// ErrDenied refuses a CONNECT that ingress policy does not allow for
	// the verified peer: 401.
	ErrDenied = errors.New("hbone: denied by policy")
)

// statusOf maps an Authorize or dial error to the HBONE answer.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrForeignTarget):
		return http.StatusBadRequest
	case errors.Is(err, ErrDenied):
		return http.StatusUnauthorized
	default:
		return http.StatusServiceUnavailable
	}
}

// StatusError is a CONNECT the destination refused: 400 (bad or foreign
// target), 401 (destination policy denied the source) or 503 (application
// unreachable). The caller resets the application's connection and audits
// the refusal.
type StatusError struct {
	Status int
	Via    netip.AddrPort // HBONE server that answered
	Target netip.AddrPort // the CONNECT authority
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("hbone: %s refused CONNECT %s: %d %s", e.Via, e.Target, e.Status, http.StatusText(e.Status))
}

// Denied reports whether the destination's policy refused the source.
func (e *StatusError) Denied() bool { return e.Status == http.StatusUnauthorized }

// HandshakeError is a failed TLS handshake or a connection whose
// negotiated parameters (TLS 1.3, ALPN h2, AES-GCM) were refused.
type HandshakeError struct {
	Addr string // the peer's address
	Err  error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("hbone: TLS handshake with %s: %v", e.Addr, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }
