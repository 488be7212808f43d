package hbone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"
)

// serveStream answers one HTTP/2 request on connection c.
func (s *Server) serveStream(c *serverConn, w http.ResponseWriter, r *http.Request) {
	s.streams.Add(1)
	c.streams.Add(1)
	ev := StreamEvent{Request: Request{Peer: c.peer, Remote: c.remote}}
	start := time.Now()
	answered := false // the 200 reached the client
	defer func() {
		s.streams.Add(-1)
		c.streams.Add(-1)
		// Reset by the client (or the connection ended) before the answer
		// went out: see maxEarlyResets.
		c.streamEnded(!answered && r.Context().Err() != nil)
		if s.cfg.OnStream != nil {
			ev.Duration = time.Since(start)
			s.cfg.OnStream(ev)
		}
	}()
	refuse := func(status int, err error) {
		ev.Status, ev.Err = status, err
		w.WriteHeader(status)
	}

	target, err := parseConnect(r)
	if err != nil {
		refuse(http.StatusBadRequest, err)
		return
	}
	ev.Request.Target = target
	if f := r.Header.Get("Forwarded"); f != "" {
		ev.Request.ForwardedFor, _ = parseForwardedFor(f)
	}
	req := ev.Request // the hook gets a copy: it cannot rewrite the event
	dial, err := s.cfg.Authorize(r.Context(), &req)
	if err != nil {
		refuse(statusOf(err), err)
		return
	}
	if err := r.Context().Err(); err != nil {
		// Reset by the client already: no connection to the application
		// for it, or rapid reset would turn into a flood of them.
		refuse(http.StatusServiceUnavailable, fmt.Errorf("hbone: CONNECT %s: %w", target, err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ConnectTimeout)
	app, err := dial(ctx)
	cancel()
	if err != nil {
		refuse(http.StatusServiceUnavailable, fmt.Errorf("hbone: dial %s: %w", target, err))
		return
	}

	ev.Status = http.StatusOK
	st := newServerStream(w, r.Body)
	w.WriteHeader(http.StatusOK)
	if err := st.flush(); err != nil {
		app.Close()
		ev.Err = err
		return
	}
	answered = true
	ev.ToApp, ev.FromApp, ev.Err = s.pump.Pipe(r.Context(), st, app)
	if ev.Err != nil {
		// Reset the stream (RST_STREAM) instead of ending it cleanly, so
		// the client's agent resets its application connection too.
		panic(http.ErrAbortHandler)
	}
}

// parseConnect checks the request is CONNECT ip:port and returns the
// target.
func parseConnect(r *http.Request) (netip.AddrPort, error) {
	if r.Method != http.MethodConnect {
		return netip.AddrPort{}, fmt.Errorf("hbone: method %s, want CONNECT", r.Method)
	}
	ap, err := netip.ParseAddrPort(r.Host)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" || !ap.Addr().IsValid() {
		return netip.AddrPort{}, fmt.Errorf("hbone: CONNECT authority %q is not ip:port", r.Host)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// serverStream is the server end of a CONNECT stream as a connection:
// reads take the request body, writes go to the response and are flushed
// at once (the pump already batches up to 256 KiB per write).
type serverStream struct {
	body    io.ReadCloser
	w       io.Writer
	flusher interface{ FlushError() error }
	flushF  http.Flusher
	// ended is set by CloseWrite: the handler must return to end the
	// response, and returning cuts the request body, so CloseWrite cuts it
	// first and reads report the cut as EOF.
	ended atomic.Bool
}

func newServerStream(w http.ResponseWriter, body io.ReadCloser) *serverStream {
	st := &serverStream{body: body, w: w}
	st.flusher, _ = w.(interface{ FlushError() error })
	st.flushF, _ = w.(http.Flusher)
	return st
}

func (s *serverStream) flush() error {
	if s.flusher != nil {
		return s.flusher.FlushError()
	}
	if s.flushF != nil {
		s.flushF.Flush()
		return nil
	}
	return errors.New("hbone: response writer cannot flush")
}

func (s *serverStream) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if err != nil && err != io.EOF && s.ended.Load() {
		err = io.EOF
	}
	return n, err
}

func (s *serverStream) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err == nil {
		err = s.flush()
	}
	return n, err
}

// CloseWrite ends the response (END_STREAM once the handler returns).
func (s *serverStream) CloseWrite() error {
	s.ended.Store(true)
	return s.body.Close()
}

func (s *serverStream) Close() error { return s.body.Close() }
