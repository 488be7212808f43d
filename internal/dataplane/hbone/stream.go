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

	"github.com/ztcn/ztcn/internal/identity"
)

// Stream is one CONNECT tunnel of the pool, used as a connection to the
// target. Reads return what the application at the target sent; writes are
// handed to HTTP/2 synchronously (a write returns once the transport took
// the bytes, so nothing piles up behind a slow peer). Close must be called
// to free the stream's slot.
type Stream struct {
	pool   *Pool
	conn   *poolConn
	body   io.ReadCloser  // the response body: bytes from the target
	pw     *io.PipeWriter // the request body: bytes to the target
	cancel context.CancelFunc
	local  net.Addr
	target netip.AddrPort

	closeOnce sync.Once
}

// open sends CONNECT target on c and waits for the answer. ctx bounds only
// the wait; the stream lives until Close.
func (c *poolConn) open(ctx context.Context, p *Pool, dst Destination, target, forwardedFor netip.AddrPort) (*Stream, error) {
	pr, pw := io.Pipe()
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	authority := target.String()
	req := (&http.Request{
		Method:        http.MethodConnect,
		URL:           &url.URL{Host: authority},
		Host:          authority,
		Header:        make(http.Header, 1),
		Body:          pr,
		ContentLength: -1, // a tunnel: the body ends when the client half-closes
	}).WithContext(sctx)
	if forwardedFor.IsValid() {
		req.Header["Forwarded"] = []string{formatForwarded(forwardedFor)}
	}
	resp, err := c.cc.RoundTrip(req)
	if !stop() {
		// ctx ended first and cancelled the stream: its answer (if any)
		// is void.
		err = ctx.Err()
		if resp != nil {
			resp.Body.Close()
		}
	} else if err != nil {
		if st := c.cc.State(); st.Closed || st.Closing {
			c.dead.Store(true)
		}
		err = fmt.Errorf("hbone: CONNECT %s via %s: %w", target, dst.Addr, err)
	} else if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err = &StatusError{Status: resp.StatusCode, Via: dst.Addr, Target: target}
	}
	if err != nil {
		pw.CloseWithError(err)
		cancel()
		return nil, err
	}
	return &Stream{
		pool: p, conn: c, body: resp.Body, pw: pw, cancel: cancel,
		local: c.local, target: target,
	}, nil
}

// Read reads bytes the target sent; io.EOF once it half-closed.
func (s *Stream) Read(b []byte) (int, error) { return s.body.Read(b) }

// Write sends bytes to the target.
func (s *Stream) Write(b []byte) (int, error) { return s.pw.Write(b) }

// CloseWrite ends the request stream (END_STREAM): the target reads EOF
// and may still answer.
func (s *Stream) CloseWrite() error { return s.pw.Close() }

// Close ends the stream both ways (resetting it if unfinished) and frees
// its slot in the pool.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		s.pw.CloseWithError(net.ErrClosed)
		s.body.Close()
		s.cancel()
		s.pool.release(s.conn)
	})
	return nil
}

// LocalAddr is the local end of the HBONE connection carrying the stream.
func (s *Stream) LocalAddr() net.Addr { return s.local }

// RemoteAddr is the target the stream reaches.
func (s *Stream) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(s.target) }

// Peer is the verified identity of the HBONE server.
func (s *Stream) Peer() *identity.Peer { return s.conn.peer }

// Serial is the hex serial of the source SVID the stream's connection
// presented.
func (s *Stream) Serial() string { return s.conn.svid.Serial().Text(16) }
