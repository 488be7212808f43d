//lint:file-ignore SA1019 x/net/http2 is this package's HTTP/2 (DESIGN §2): Server.ServeConn on a conn we handshook and Transport.NewClientConn on a conn we dialed. Its successors in net/http change the API, not the protocol.

package hbone

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/ztcn/ztcn/internal/identity"
)

// Certificates the server must refuse at the handshake: Dial fails with a
// HandshakeError and the server reports a failed handshake.
func TestServerRefusesCertificates(t *testing.T) {
	e := newEnv(t)
	sameDomainOtherCA := newPKI(t, "cluster.local")
	otherDomain := newPKI(t, "other.example")
	revoked := e.pki.issue(t, "/ns/default/sa/revoked")
	e.pki.revoked.Revoke(revoked.Leaf())
	cases := []struct {
		name   string
		svid   *identity.SVID
		reason string // in the server's error
	}{
		{"foreign CA, same trust domain", sameDomainOtherCA.issue(t, "/ns/default/sa/client"), "unknown authority"},
		{"foreign trust domain", otherDomain.issue(t, "/ns/default/sa/client"), "no trust bundle"},
		{"expired", e.pki.issueExpired(t, "/ns/default/sa/client"), "expired"},
		{"revoked", revoked, "revoked"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := Source{Key: tc.name, SVID: func() *identity.SVID { return tc.svid }}
			s, err := e.pool.Dial(context.Background(), src, e.dst, e.app, netip.AddrPort{})
			if err == nil {
				s.Close()
				t.Fatal("Dial succeeded")
			}
			var he *HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("Dial error %v (%T), want a HandshakeError", err, err)
			}
			waitFor(t, "server handshake failure", func() bool { return e.hsFailed.Load() == int64(i+1) })
			e.mu.Lock()
			serverErr := e.hsErrs[i]
			e.mu.Unlock()
			if !strings.Contains(serverErr.Error(), tc.reason) {
				t.Errorf("server error %q does not say %q", serverErr, tc.reason)
			}
		})
	}
	if st := e.pool.Stats(); st.Conns != 0 || st.Streams != 0 {
		t.Errorf("failed handshakes left %+v in the pool", st)
	}
}

// A client with no certificate at all, and clients that do not speak
// TLS 1.3 or h2.
func TestServerRefusesRawClients(t *testing.T) {
	e := newEnv(t)
	client := e.srcSVID.get().TLSCertificate()
	cases := []struct {
		name string
		cfg  *tls.Config
	}{
		{"no certificate", &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}},
		{"TLS 1.2", &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}, MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*client}}},
		{"no ALPN", &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{*client}}},
		{"ALPN http/1.1", &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}, Certificates: []tls.Certificate{*client}}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", e.hbone.String(), tc.cfg)
			if err == nil {
				// TLS 1.3: the client finishes first; the refusal
				// arrives on the first read.
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if err == nil {
				t.Fatal("server accepted the client")
			}
			waitFor(t, "server handshake failure", func() bool { return e.hsFailed.Load() == int64(i+1) })
		})
	}
	if n := len(e.server.Conns()); n != 0 {
		t.Errorf("server holds %d connections", n)
	}
}

// The pool refuses a server that is not the expected destination.
func TestPoolRefusesWrongServerIdentity(t *testing.T) {
	e := newEnv(t)
	dst := Destination{Addr: e.hbone, ID: e.pki.id("/ns/default/sa/someone-else")}
	_, err := e.pool.Dial(context.Background(), e.src, dst, e.app, netip.AddrPort{})
	var he *HandshakeError
	if !errors.As(err, &he) {
		t.Fatalf("Dial error %v, want a HandshakeError", err)
	}
	// Unknown destination identity: any verified server will do.
	s, err := e.pool.Dial(context.Background(), e.src, Destination{Addr: e.hbone}, e.app, netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// Each refusal of the Authorize hook reaches the client as a StatusError
// with the right status.
func TestServerAnswers(t *testing.T) {
	var decide func(*Request) (DialFunc, error)
	e := newEnv(t, withAuthorize(func(_ context.Context, req *Request) (DialFunc, error) { return decide(req) }))
	cases := []struct {
		name   string
		decide func(*Request) (DialFunc, error)
		status int
	}{
		{"foreign target", func(*Request) (DialFunc, error) { return nil, fmt.Errorf("10.1.1.1 is not me: %w", ErrForeignTarget) }, 400},
		{"policy denied", func(*Request) (DialFunc, error) { return nil, fmt.Errorf("no rule allows it: %w", ErrDenied) }, 401},
		{"dial fails", func(*Request) (DialFunc, error) { return dialTCP(closedPort(t)), nil }, 503},
		{"hook fails", func(*Request) (DialFunc, error) { return nil, errors.New("pod not ready") }, 503},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			decide = tc.decide
			s, err := e.pool.Dial(context.Background(), e.src, e.dst, e.app, netip.AddrPort{})
			if err == nil {
				s.Close()
				t.Fatal("Dial succeeded")
			}
			if !isStatus(err, tc.status) {
				t.Fatalf("Dial error %v, want status %d", err, tc.status)
			}
			var se *StatusError
			errors.As(err, &se)
			if !strings.Contains(se.Error(), fmt.Sprint(tc.status)) {
				t.Errorf("error text %q lacks the status", se)
			}
			if se.Denied() != (tc.status == 401) {
				t.Errorf("Denied() = %v", se.Denied())
			}
		})
	}
	// Refusals cost streams, not connections.
	if st := e.pool.Stats(); st.Handshakes != 1 || st.Streams != 0 {
		t.Errorf("pool stats %+v, want 1 handshake, 0 streams", st)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, ev := range e.events {
		if ev.Status != cases[i].status || ev.Err == nil {
			t.Errorf("event %d = status %d err %v, want %d", i, ev.Status, ev.Err, cases[i].status)
		}
	}
}

// Requests the pool never sends: not CONNECT, or an authority that is not
// ip:port.
func TestServerRejectsMalformedRequests(t *testing.T) {
	e := newEnv(t)
	cc := rawH2Client(t, e)
	cases := []struct {
		name   string
		method string
		host   string
	}{
		{"GET", http.MethodGet, e.app.String()},
		{"host name", http.MethodConnect, "example.com:80"},
		{"no port", http.MethodConnect, "127.0.0.1"},
		{"port 0", http.MethodConnect, "127.0.0.1:0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := &http.Request{Method: tc.method, URL: &url.URL{Scheme: "https", Host: tc.host, Path: "/"}, Host: tc.host, Header: http.Header{}}
			if tc.method == http.MethodConnect {
				req.URL = &url.URL{Host: tc.host}
			}
			resp, err := cc.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
		})
	}
}

// rawH2Client is an HTTP/2 client with the env's client SVID, without the
// pool's rules.
func rawH2Client(t *testing.T, e *env) *http2.ClientConn {
	t.Helper()
	var peer *identity.Peer
	tc, err := tls.Dial("tcp", e.hbone.String(), clientTLS(e.srcSVID.get, e.pki.verifier, nil, &peer))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := (&http2.Transport{}).NewClientConn(tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// closedPort is a loopback address nobody listens on.
func closedPort(t *testing.T) netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return addr
}

// A client that connects and never completes the handshake is dropped
// after HandshakeTimeout.
func TestServerHandshakeTimeout(t *testing.T) {
	e := newEnv(t, withServerConfig(func(sc *ServerConfig) { sc.HandshakeTimeout = 100 * time.Millisecond }))
	c, err := net.Dial("tcp", e.hbone.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %v: the server kept a silent client", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
		t.Errorf("dropped after %s, want about 100ms", d)
	}
	waitFor(t, "handshake failure reported", func() bool { return e.hsFailed.Load() == 1 })
}
