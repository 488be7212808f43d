package hbone

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ztcn/ztcn/internal/identity"
)

// env is one HBONE server in front of one application, and a pool whose
// source workload is trusted by the server.
type env struct {
	pki       *testPKI
	server    *Server
	hbone     netip.AddrPort // the server's listener
	app       netip.AddrPort // the application behind it
	pool      *Pool
	src       Source
	srcSVID   *svidBox
	dst       Destination
	serverID  *identity.SVID
	handshake atomic.Int64 // server-side handshakes, successful or not
	hsFailed  atomic.Int64

	mu      sync.Mutex
	serials []string       // client SVID serials seen by Authorize
	events  []StreamEvent  // from OnStream
	hsErrs  []error        // server handshake failures
	authz   Authorize      // overrides the default Authorize when set
	appConn func(net.Conn) // the application; echo by default
	// wrapListener, if set, wraps the HBONE server's listener.
	wrapListener func(net.Listener) net.Listener
}

type envOption func(*env, *ServerConfig, *PoolConfig)

func withAuthorize(a Authorize) envOption {
	return func(e *env, _ *ServerConfig, _ *PoolConfig) { e.authz = a }
}

func withApp(f func(net.Conn)) envOption {
	return func(e *env, _ *ServerConfig, _ *PoolConfig) { e.appConn = f }
}

func withPoolConfig(f func(*PoolConfig)) envOption {
	return func(_ *env, _ *ServerConfig, pc *PoolConfig) { f(pc) }
}

func withListener(wrap func(net.Listener) net.Listener) envOption {
	return func(e *env, _ *ServerConfig, _ *PoolConfig) { e.wrapListener = wrap }
}

func withServerConfig(f func(*ServerConfig)) envOption {
	return func(_ *env, sc *ServerConfig, _ *PoolConfig) { f(sc) }
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	e := &env{pki: newPKI(t, "cluster.local"), appConn: echo}
	e.serverID = e.pki.issue(t, "/ns/default/sa/server")
	e.srcSVID = newSVIDBox(e.pki.issue(t, "/ns/default/sa/client"))
	e.src = Source{Key: "client-pod", SVID: e.srcSVID.get}

	sc := ServerConfig{
		SVID:      func() *identity.SVID { return e.serverID },
		Verifier:  e.pki.verifier,
		Authorize: e.authorize,
		OnHandshake: func(ev HandshakeEvent) {
			e.handshake.Add(1)
			if ev.Err != nil {
				e.hsFailed.Add(1)
				e.mu.Lock()
				e.hsErrs = append(e.hsErrs, ev.Err)
				e.mu.Unlock()
			}
		},
		OnStream: func(ev StreamEvent) {
			e.mu.Lock()
			e.events = append(e.events, ev)
			e.mu.Unlock()
		},
	}
	pc := PoolConfig{Verifier: e.pki.verifier}
	for _, o := range opts {
		o(e, &sc, &pc)
	}

	e.app = serveApp(t, func(c net.Conn) { e.appConn(c) })
	srv, err := NewServer(sc)
	if err != nil {
		t.Fatal(err)
	}
	e.server = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.hbone = ln.Addr().(*net.TCPAddr).AddrPort()
	if e.wrapListener != nil {
		ln = e.wrapListener(ln)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	pool, err := NewPool(pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	e.pool = pool
	e.dst = Destination{Addr: e.hbone, ID: e.serverID.ID}
	return e
}

// authorize is the test data plane: only the application's address is
// served, and the client's serial is recorded.
func (e *env) authorize(ctx context.Context, req *Request) (DialFunc, error) {
	e.mu.Lock()
	e.serials = append(e.serials, req.Peer.Chain[0].SerialNumber.Text(16))
	authz := e.authz
	e.mu.Unlock()
	if authz != nil {
		return authz(ctx, req)
	}
	if req.Target != e.app {
		return nil, ErrForeignTarget
	}
	return dialTCP(req.Target), nil
}

func dialTCP(addr netip.AddrPort) DialFunc {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr.String())
	}
}

func (e *env) dial(t testing.TB) *Stream {
	t.Helper()
	s, err := e.pool.Dial(context.Background(), e.src, e.dst, e.app, netip.MustParseAddrPort("10.0.0.1:40000"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *env) lastSerial() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.serials) == 0 {
		return ""
	}
	return e.serials[len(e.serials)-1]
}

// serveApp runs an application on a loopback listener until the test
// ends.
func serveApp(t testing.TB, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// echo sends back what it reads, then half-closes. Its 32 KiB buffer is
// what a typical application (io.Copy) uses.
func echo(c net.Conn) {
	buf := make([]byte, 32<<10)
	io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf)
	c.(*net.TCPConn).CloseWrite()
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isStatus(err error, status int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == status
}
