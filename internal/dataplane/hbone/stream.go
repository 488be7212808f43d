package hbone

import (
	"context"
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
// A stream from DialEarly may be written before the destination answered
// the CONNECT: the bytes follow the request's HEADERS, and Read waits for
// the answer. The destination's agent keeps them in the stream's HTTP/2
// window until its policy allowed the stream and the application was
// dialed, and drops them on a refusal; nothing reaches the application
// before that.
type Stream struct {
	pool   *Pool
	body   *tunnelBody // the request body: bytes to the target
	cancel context.CancelFunc
	target netip.AddrPort
	// conn carries the stream; a retry before the answer replaces it.
	conn atomic.Pointer[poolConn]

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

// DialEarly opens a CONNECT stream like Dial, but returns as soon as a
// connection is ready and the request is on its way, without waiting for
// the destination's answer: the caller can forward the application's
// first bytes at once instead of a round trip later. A failed handshake is
// still returned here (a *HandshakeError); the answer goes to onAnswer
// (nil, a *StatusError for a refusal, or why the stream failed), called
// once from the stream's own goroutine before Read returns anything. ctx
// bounds the wait for the answer too: it must live until then.
func (p *Pool) DialEarly(ctx context.Context, src Source, dst Destination, target, forwardedFor netip.AddrPort, onAnswer func(error)) (*Stream, error) {
	c, err := p.reserve(ctx, src, dst)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Stream{pool: p, body: newTunnelBody(), cancel: cancel, target: target, answered: make(chan struct{})}
	s.conn.Store(c)
	go s.connect(ctx, sctx, c, src, dst, forwardedFor, onAnswer)
	return s, nil
}

// Dial opens a CONNECT stream to target (the destination application's
// ip:port) through the HBONE server dst, authenticated as src, telling the
// server that the original client is forwardedFor (skipped when invalid),
// and waits for the answer. A refusal is a *StatusError; a failed
// handshake a *HandshakeError.
func (p *Pool) Dial(ctx context.Context, src Source, dst Destination, target, forwardedFor netip.AddrPort) (*Stream, error) {
	s, err := p.DialEarly(ctx, src, dst, target, forwardedFor, nil)
	if err != nil {
		return nil, err
	}
	<-s.answered
	if s.err != nil {
		return nil, s.err
	}
	return s, nil
}

// connect sends the CONNECT on c and waits for the answer, retrying on
// another connection when c turns out dead before the transport took any
// byte of the body. sctx is the stream's lifetime, ctx bounds the answer;
// either ending ends sctx until the answer.
func (s *Stream) connect(ctx, sctx context.Context, c *poolConn, src Source, dst Destination, forwardedFor netip.AddrPort, onAnswer func(error)) {
	stop := context.AfterFunc(ctx, s.cancel)
	var resp *http.Response
	var err error
	for attempt := 1; ; attempt++ {
		body := s.body.reader()
		resp, err = c.roundTrip(sctx, body, s.target, forwardedFor)
		if err == nil || attempt == connectAttempts || !c.dead.Load() || body.taken() > 0 || ctx.Err() != nil || sctx.Err() != nil {
			break
		}
		s.pool.release(c)
		if c, err = s.pool.reserve(sctx, src, dst); err != nil {
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
		err = fmt.Errorf("hbone: CONNECT %s via %s: %w", s.target, dst.Addr, err)
	case resp.StatusCode != http.StatusOK:
		resp.Body.Close()
		err = &StatusError{Status: resp.StatusCode, Via: dst.Addr, Target: s.target}
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
	if onAnswer != nil {
		onAnswer(err)
	}
	close(s.answered)
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

// Answered is closed once the destination answered the CONNECT (or the
// stream failed before it did).
func (s *Stream) Answered() <-chan struct{} { return s.answered }

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
