package hbone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/ztcn/ztcn/internal/identity"
)

// Stream is one CONNECT tunnel of the pool, used as a connection to the
// target. Reads return what the application at the target sent; writes are
// handed to HTTP/2 synchronously (a write returns once the transport took
// the bytes, so nothing piles up behind a slow peer). Close must be called
// to free the stream's slot.
//
// A stream from Open may be written before, and while, Connect sends the
// CONNECT and waits for the answer: the bytes follow the request's
// HEADERS, and Read waits for the answer. The destination's agent keeps
// them in the stream's HTTP/2 window until its policy allowed the stream
// and the application was dialed, and drops them on a refusal; nothing
// reaches the application before that.
type Stream struct {
	pool   *Pool
	body   *tunnelBody // the request body: bytes to the target
	ctx    context.Context
	cancel context.CancelFunc // ends the stream
	src    Source
	dst    Destination
	target netip.AddrPort
	fwd    netip.AddrPort
	// conn carries the stream; a retry before the answer replaces it.
	conn atomic.Pointer[poolConn]

	connecting atomic.Bool
	// answered is closed once the CONNECT was answered or failed; resp
	// (the response body, bytes from the target) and err are set before.
	answered chan struct{}
	resp     io.ReadCloser
	err      error

	closeOnce sync.Once
}

// connectAttempts bounds how often a CONNECT is retried on another
// connection when a pooled one turns out dead (GOAWAY, lost PING) before
// any of the application's bytes left.
const connectAttempts = 3

// errNotConnected is the answer of a stream closed before Connect.
var errNotConnected = errors.New("hbone: stream closed before its CONNECT")

// Open reserves a stream to target (the destination application's
// ip:port) through the HBONE server dst, authenticated as src, telling the
// server that the original client is forwardedFor (skipped when invalid).
// It connects (and handshakes) when no pooled connection has room; a
// failed handshake is a *HandshakeError. The CONNECT itself is sent by
// Connect.
func (p *Pool) Open(ctx context.Context, src Source, dst Destination, target, forwardedFor netip.AddrPort) (*Stream, error) {
	c, err := p.reserve(ctx, src, dst)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Stream{pool: p, body: newTunnelBody(), ctx: sctx, cancel: cancel, src: src, dst: dst,
		target: target, fwd: forwardedFor, answered: make(chan struct{})}
	s.conn.Store(c)
	return s, nil
}

// Dial is Open then Connect: it returns a stream the destination accepted.
// A refusal is a *StatusError; a failed handshake a *HandshakeError.
func (p *Pool) Dial(ctx context.Context, src Source, dst Destination, target, forwardedFor netip.AddrPort) (*Stream, error) {
	s, err := p.Open(ctx, src, dst, target, forwardedFor)
	if err != nil {
		return nil, err
	}
	if err := s.Connect(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Connect sends the CONNECT and waits for the destination's answer: nil,
// a *StatusError for a refusal, or why the stream failed. ctx bounds the
// wait. A pooled connection found dead is replaced, and the CONNECT sent
// again, as long as the transport took no byte of the body yet. Only the
// first call sends; later ones return the same answer.
func (s *Stream) Connect(ctx context.Context) error {
	if !s.connecting.CompareAndSwap(false, true) {
		<-s.answered
		return s.err
	}
	stop := context.AfterFunc(ctx, s.cancel)
	c := s.conn.Load()
	var resp *http.Response
	var err error
	for attempt := 1; ; attempt++ {
		body := s.body.reader()
		resp, err = c.roundTrip(s.ctx, body, s.target, s.fwd)
		if err == nil || attempt == connectAttempts || !c.dead.Load() || body.taken() > 0 || s.ctx.Err() != nil {
			break
		}
		s.pool.release(c)
		// s.ctx ends with ctx too (stop above), so this is bounded.
		if c, err = s.pool.reserve(s.ctx, s.src, s.dst); err != nil {
			c = nil
			break
		}
		s.conn.Store(c)
	}
	switch {
	case !stop():
		// ctx ended first and cancelled the stream: its answer (if any)
		// is void.
		err = ctx.Err()
		if resp != nil {
			resp.Body.Close()
		}
	case err != nil:
		err = fmt.Errorf("hbone: CONNECT %s via %s: %w", s.target, s.dst.Addr, err)
	case resp.StatusCode != http.StatusOK:
		resp.Body.Close()
		err = &StatusError{Status: resp.StatusCode, Via: s.dst.Addr, Target: s.target}
	}
	if err != nil {
		s.body.abort(err)
		s.cancel()
		if c != nil {
			s.pool.release(c)
		}
		s.conn.Store(nil)
	} else {
		s.body.settle()
		s.resp = resp.Body
	}
	s.err = err
	close(s.answered)
	return err
}

// roundTrip sends CONNECT target with body on c and returns the answer.
func (c *poolConn) roundTrip(ctx context.Context, body io.ReadCloser, target, forwardedFor netip.AddrPort) (*http.Response, error) {
	authority := target.String()
	req := (&http.Request{
		Method:        http.MethodConnect,
		URL:           &url.URL{Host: authority},
		Host:          authority,
		Header:        make(http.Header, 1),
		Body:          body,
		ContentLength: -1, // a tunnel: the body ends when the client half-closes
	}).WithContext(ctx)
	if forwardedFor.IsValid() {
		req.Header["Forwarded"] = []string{formatForwarded(forwardedFor)}
	}
	resp, err := c.cc.RoundTrip(req)
	if err != nil {
		if st := c.cc.State(); st.Closed || st.Closing {
			c.dead.Store(true)
		}
	}
	return resp, err
}

// Read reads bytes the target sent; io.EOF once it half-closed. Before the
// answer it waits for it, and a refusal is its error.
func (s *Stream) Read(b []byte) (int, error) {
	<-s.answered
	if s.err != nil {
		return 0, s.err
	}
	return s.resp.Read(b)
}

// Write sends bytes to the target.
func (s *Stream) Write(b []byte) (int, error) { return s.body.Write(b) }

// CloseWrite ends the request stream (END_STREAM): the target reads EOF
// and may still answer.
func (s *Stream) CloseWrite() error {
	s.body.closeWrite()
	return nil
}

// Close ends the stream both ways (resetting it if unfinished) and frees
// its slot in the pool.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		s.body.abort(net.ErrClosed)
		s.cancel()
		if s.connecting.CompareAndSwap(false, true) {
			// Never sent: nobody else will answer.
			s.err = errNotConnected
			s.pool.release(s.conn.Load())
			s.conn.Store(nil)
			close(s.answered)
			return
		}
		<-s.answered // the cancel makes it prompt
		if s.err == nil {
			s.resp.Close()
			s.pool.release(s.conn.Load())
		}
	})
	return nil
}

// LocalAddr is the local end of the HBONE connection carrying the stream
// (nil once the stream failed).
func (s *Stream) LocalAddr() net.Addr {
	if c := s.conn.Load(); c != nil {
		return c.local
	}
	return nil
}

// RemoteAddr is the target the stream reaches.
func (s *Stream) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(s.target) }

// Peer is the verified identity of the HBONE server (nil once the stream
// failed).
func (s *Stream) Peer() *identity.Peer {
	if c := s.conn.Load(); c != nil {
		return c.peer
	}
	return nil
}

// Serial is the hex serial of the source SVID the stream's connection
// presented ("" once the stream failed).
func (s *Stream) Serial() string {
	if c := s.conn.Load(); c != nil {
		return c.svid.Serial().Text(16)
	}
	return ""
}
