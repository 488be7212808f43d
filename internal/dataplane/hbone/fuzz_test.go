package hbone

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/ztcn/ztcn/internal/identity"
)

// FuzzServeConnect sends one request, as the HTTP/2 server hands it over
// (method, :authority, Forwarded header), to the server's stream handler.
// Authorize must see only CONNECT to an IP literal with a port (1–65535,
// no zone, IPv6 in brackets and IPv4 not) and get exactly that target,
// IPv4-mapped addresses unmapped; everything else is answered 400 without
// asking. A ForwardedFor it gets is a valid address without a zone that
// formats and parses back to itself. Seeds run in the normal suite; fuzz
// with
//
//	go test -run '^$' -fuzz '^FuzzServeConnect$' -fuzztime 60s ./internal/dataplane/hbone/
func FuzzServeConnect(f *testing.F) {
	for _, s := range [][3]string{
		{http.MethodConnect, "10.0.0.1:8080", `for="10.0.0.2:40000"`},
		{http.MethodConnect, "[2001:db8::1]:443", `for="[2001:db8::2]:1"`},
		{http.MethodConnect, "[::ffff:10.0.0.5]:80", `proto=https; For=10.0.0.9; by=x, for="10.0.0.10:2"`},
		{http.MethodConnect, "10.0.0.1:0", ""},
		{http.MethodConnect, "10.0.0.1", ""},
		{http.MethodConnect, "10.0.0.1:65536", ""},
		{http.MethodConnect, "10.0.0.1:080", ""},
		{http.MethodConnect, "[10.0.0.1]:80", ""},
		{http.MethodConnect, "2001:db8::1:443", ""},
		{http.MethodConnect, "[fe80::1%eth0]:80", `for="[fe80::1%eth0]:80"`},
		{http.MethodConnect, "localhost:80", `for=unknown`},
		{http.MethodConnect, "example.com:443", `for="_hidden"`},
		{http.MethodConnect, "010.0.0.1:80", ""},
		{http.MethodConnect, "10.0.0.1:+80", ""},
		{http.MethodConnect, " 10.0.0.1:80", ""},
		{http.MethodGet, "10.0.0.1:80", ""},
		{"connect", "10.0.0.1:80", ""},
		{http.MethodConnect, "", `,,;;==""`},
		{http.MethodConnect, "10.0.0.1:80", `for="` + strings.Repeat("1", 600) + `"`},
	} {
		f.Add(s[0], s[1], s[2])
	}

	var seen *Request
	calls := 0
	s, err := NewServer(ServerConfig{
		SVID:     func() *identity.SVID { return nil },
		Verifier: identity.NewVerifier(identity.NewBundles(), nil),
		Authorize: func(_ context.Context, req *Request) (DialFunc, error) {
			calls++
			r := *req
			seen = &r
			return nil, ErrDenied
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	var events []StreamEvent
	s.cfg.OnStream = func(ev StreamEvent) { events = append(events, ev) }

	f.Fuzz(func(t *testing.T, method, authority, forwarded string) {
		seen, calls, events = nil, 0, nil
		r := &http.Request{Method: method, Host: authority, Header: http.Header{}, Body: http.NoBody}
		if forwarded != "" {
			r.Header.Set("Forwarded", forwarded)
		}
		w := httptest.NewRecorder()
		s.serveStream(&serverConn{}, w, r)

		want, ok := fuzzIPLiteralAuthority(authority)
		ok = ok && method == http.MethodConnect
		if len(events) != 1 || events[0].Status != w.Code {
			t.Fatalf("%d stream events for one request (answer %d): %+v", len(events), w.Code, events)
		}
		if !ok {
			if calls != 0 || w.Code != http.StatusBadRequest {
				t.Fatalf("%s %q: Authorize called %d times with %+v, answer %d; want 400 without asking", method, authority, calls, seen, w.Code)
			}
			return
		}
		if calls != 1 || w.Code != http.StatusUnauthorized {
			t.Fatalf("%s %q: Authorize called %d times, answer %d; want once, then 401", method, authority, calls, w.Code)
		}
		if seen.Target != want || events[0].Request.Target != want {
			t.Fatalf("%q: target %v (event %v), want %v", authority, seen.Target, events[0].Request.Target, want)
		}
		ff := seen.ForwardedFor
		if forwarded == "" && ff.IsValid() {
			t.Fatalf("ForwardedFor %v without a Forwarded header", ff)
		}
		if ff.IsValid() {
			if ff.Addr().Zone() != "" || ff.Addr().Is4In6() || len(forwarded) > maxForwardedLen {
				t.Fatalf("Forwarded %q gave %v", forwarded, ff)
			}
			if back, ok := parseForwardedFor(formatForwarded(ff)); !ok || back != ff {
				t.Fatalf("Forwarded %q gave %v, which does not format and parse back (%v)", forwarded, ff, back)
			}
		}
	})
}

// fuzzIPLiteralAuthority is the specification of a CONNECT authority,
// written without netip.ParseAddrPort: host:port where host is an IPv4
// literal or a bracketed IPv6 literal without a zone, and port a decimal
// number 1–65535.
func fuzzIPLiteralAuthority(s string) (netip.AddrPort, bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" || strings.HasPrefix(s, "[") != ip.Is6() {
		return netip.AddrPort{}, false
	}
	if port == "" || strings.Trim(port, "0123456789") != "" {
		return netip.AddrPort{}, false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(n)), true
}
