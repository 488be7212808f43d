//lint:file-ignore SA1019 x/net/http2 is this package's HTTP/2 (DESIGN §2): Server.ServeConn on a conn we handshook and Transport.NewClientConn on a conn we dialed. Its successors in net/http change the API, not the protocol.

package hbone

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"

	"github.com/ztcn/ztcn/internal/identity"
)

// Request is one CONNECT a client asks the server to open.
type Request struct {
	// Peer is the client's verified identity: the source workload's SVID,
	// checked against the trust bundles and revocations at handshake.
	Peer *identity.Peer
	// Target is the CONNECT authority (IPv4-mapped addresses unmapped).
	Target netip.AddrPort
	// ForwardedFor is the original client address its agent reported in
	// the Forwarded header; invalid when absent or malformed. It is a claim
	// of the (authenticated) remote agent, not something verified here.
	ForwardedFor netip.AddrPort
	// Remote is the address the HBONE connection came from.
	Remote netip.AddrPort
}

// DialFunc connects to the application for one accepted CONNECT.
type DialFunc func(ctx context.Context) (net.Conn, error)

// Authorize decides a CONNECT and says how to reach the application. Its
// error chooses the answer: one wrapping ErrForeignTarget → 400 (the target
// is not this pod), ErrDenied → 401 (ingress policy refuses req.Peer), any
// other → 503. A DialFunc error also answers 503.
type Authorize func(ctx context.Context, req *Request) (DialFunc, error)

// ServerConfig configures a Server. SVID, Verifier and Authorize are
// required.
type ServerConfig struct {
	// SVID returns the pod's current SVID at each handshake, so a rotated
	// certificate is served without a restart.
	SVID func() *identity.SVID
	// Verifier checks client SVIDs (bundles and revocations).
	Verifier *identity.Verifier
	// AuthorizePeer, if set, may refuse a verified client during the
	// handshake (before any stream).
	AuthorizePeer identity.Authorizer
	// Authorize decides each CONNECT.
	Authorize Authorize

	// HandshakeTimeout bounds the time from accept to the end of the
	// client's HTTP/2 preface, TLS handshake included (default 10 s): a
	// client sends the preface with its last handshake message, so a peer
	// that is slower holds a goroutine and a socket for nothing
	// (slowloris).
	HandshakeTimeout time.Duration
	// ConnectTimeout bounds the DialFunc (default 10 s): the application
	// is in the pod, so connect succeeds or is refused at once unless the
	// pod is wedged.
	ConnectTimeout time.Duration
	// IdleTimeout closes a stream that moves no byte either way for this
	// long (zero: never).
	IdleTimeout time.Duration
	// ConnIdleTimeout closes (GOAWAY) a connection that has carried no
	// stream for this long (default 10 min). PINGs only prove the peer is
	// alive; without this, a live peer could hold connections it never
	// uses for ever. The default is twice the pool's idle release (5 min),
	// so an agent's pool always lets go first and never races a GOAWAY.
	ConnIdleTimeout time.Duration

	// OnHandshake, if set, is called after every handshake attempt (for
	// ztcn_tls_handshakes_total and the audit of failed handshakes).
	OnHandshake func(HandshakeEvent)
	// OnStream, if set, is called when a CONNECT is refused or its stream
	// ends (for metrics, flows and the audit).
	OnStream func(StreamEvent)
}

// HandshakeEvent reports one server-side TLS handshake.
type HandshakeEvent struct {
	Remote   netip.AddrPort
	Peer     *identity.Peer // nil when Err != nil
	Err      error
	Duration time.Duration
}

// StreamEvent reports one CONNECT.
type StreamEvent struct {
	Request Request
	Status  int   // the answer sent: 200, 400, 401 or 503
	Err     error // why a refusal, or how a stream broke (nil: both sides ended cleanly)
	// ToApp and FromApp count the bytes moved each way.
	ToApp, FromApp int64
	Duration       time.Duration
}

// ConnInfo describes one HBONE connection being served.
type ConnInfo struct {
	Peer    *identity.Peer
	Remote  netip.AddrPort
	Since   time.Time
	Streams int
}

// Server serves HBONE: mutual TLS 1.3, then HTTP/2 CONNECT streams that it
// pumps to the application.
type Server struct {
	cfg     ServerConfig
	h2      *http2.Server
	pump    Pump
	streams atomic.Int64

	mu    sync.Mutex
	conns map[*serverConn]struct{}
}

// serverConn is one accepted, handshaken connection.
type serverConn struct {
	peer    *identity.Peer
	remote  netip.AddrPort
	since   time.Time
	streams atomic.Int64
	// raw is the TCP connection, closed at once when the client abuses
	// resets (see maxEarlyResets).
	raw net.Conn
	// earlyResets counts streams the client reset before they were
	// answered, less one for each stream answered since, never below 0.
	earlyResets atomic.Int64
}

// maxEarlyResets is the second half of the rapid-reset defence
// (CVE-2023-44487). x/net runs at most MaxConcurrentStreams handlers per
// connection and closes it when 4× that wait to start, but a client whose
// resets are handled about as fast as it sends them never fills that
// queue and goes on (measured on loopback: 20,000–30,000 streams/s for
// 5–13 s or without end, and 10,000–38,000 connections to the application,
// before x/net's queue limit tripped, when it did). A pool resets a stream
// before its answer only when its caller gives up, at most once per open
// stream (100 per connection); so 400 early resets not offset by answered
// streams are abuse, and the connection is closed. Counted when a stream
// ends, never per frame.
const maxEarlyResets = 4 * maxStreamsPerConn

// streamEnded does the early-reset accounting of one stream of c.
func (c *serverConn) streamEnded(earlyReset bool) {
	if earlyReset {
		if c.earlyResets.Add(1) > maxEarlyResets {
			c.raw.Close()
		}
		return
	}
	for n := c.earlyResets.Load(); n > 0 && !c.earlyResets.CompareAndSwap(n, n-1); n = c.earlyResets.Load() {
	}
}

// NewServer checks cfg and fills in defaults.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.SVID == nil || cfg.Verifier == nil || cfg.Authorize == nil {
		return nil, errors.New("hbone: server needs SVID, Verifier and Authorize")
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	if cfg.ConnIdleTimeout <= 0 {
		cfg.ConnIdleTimeout = defaultConnIdleTimeout
	}
	h2 := newH2Server()
	h2.IdleTimeout = cfg.ConnIdleTimeout
	return &Server{
		cfg:   cfg,
		h2:    h2,
		pump:  Pump{IdleTimeout: cfg.IdleTimeout},
		conns: make(map[*serverConn]struct{}),
	}, nil
}

// defaultConnectTimeout: see ServerConfig.ConnectTimeout.
const defaultConnectTimeout = 10 * time.Second

// defaultConnIdleTimeout: see ServerConfig.ConnIdleTimeout.
const defaultConnIdleTimeout = 2 * defaultIdleConnTimeout

// ActiveStreams is the number of CONNECT streams being handled.
func (s *Server) ActiveStreams() int { return int(s.streams.Load()) }

// Conns lists the connections being served with their verified peers.
func (s *Server) Conns() []ConnInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ConnInfo, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, ConnInfo{Peer: c.peer, Remote: c.remote, Since: c.since, Streams: int(c.streams.Load())})
	}
	return out
}

// Serve accepts connections on ln until ctx ends or ln fails. The caller
// opened ln (inside the pod's network namespace); Serve closes it. When
// ctx ends, every connection accepted here is closed and Serve returns nil
// once their goroutines are gone.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	var backoff time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = nextBackoff(backoff)
				if sleep(ctx, backoff) {
					continue
				}
				return nil
			}
			return err
		}
		backoff = 0
		wg.Go(func() { s.serveConn(ctx, raw) })
	}
}

// Accept backoff after a failure that passes when connections close (out
// of file descriptors): from
// 5 ms doubling to 1 s, as net/http does, so a full fd table does not spin
// a core.
func nextBackoff(d time.Duration) time.Duration {
	const first, limit = 5 * time.Millisecond, time.Second
	if d == 0 {
		return first
	}
	return min(2*d, limit)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// serveConn handshakes and serves HTTP/2 on one connection.
func (s *Server) serveConn(ctx context.Context, raw net.Conn) {
	defer raw.Close()
	start := time.Now()
	remote := addrPortOf(raw.RemoteAddr())
	var peer *identity.Peer
	tc := newBatchTLS(raw, false, serverTLS(s.cfg.SVID, s.cfg.Verifier, s.cfg.AuthorizePeer, &peer))
	err := handshake(ctx, tc.Conn, s.cfg.HandshakeTimeout)
	if err != nil {
		err = &HandshakeError{Addr: raw.RemoteAddr().String(), Err: err}
		peer = nil
	}
	if s.cfg.OnHandshake != nil {
		s.cfg.OnHandshake(HandshakeEvent{Remote: remote, Peer: peer, Err: err, Duration: time.Since(start)})
	}
	if err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	if readPreface(tc, start.Add(s.cfg.HandshakeTimeout)) != nil {
		return
	}
	c := &serverConn{peer: peer, remote: remote, since: time.Now(), raw: raw}
	s.track(c, true)
	defer s.track(c, false)
	s.h2.ServeConn(tc, &http2.ServeConnOpts{
		Context:          ctx,
		BaseConfig:       &http.Server{ErrorLog: discardLog, MaxHeaderBytes: maxHeaderBytes},
		Handler:          http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveStream(c, w, r) }),
		SawClientPreface: true,
	})
}

// readPreface reads the client's HTTP/2 preface by deadline. x/net would
// wait 10 s for it, whatever HandshakeTimeout says, and that is not
// configurable: a peer that handshakes and then stays silent (slowloris)
// would hold its goroutines and socket that long.
func readPreface(c net.Conn, deadline time.Time) error {
	c.SetReadDeadline(deadline)
	var buf [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return err
	}
	if string(buf[:]) != http2.ClientPreface {
		return errors.New("hbone: no HTTP/2 preface")
	}
	return c.SetReadDeadline(time.Time{})
}

func (s *Server) track(c *serverConn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
