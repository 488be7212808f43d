package hbone

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// CloseWriter is a connection that can end its write side (send EOF / FIN)
// while it goes on reading: *net.TCPConn, *tls.Conn, *net.UnixConn, and this
// package's streams.
type CloseWriter interface {
	CloseWrite() error
}

// ErrIdleTimeout is what Pipe returns when no byte moved in either
// direction for the Pump's IdleTimeout.
var ErrIdleTimeout = errors.New("hbone: connection idle for too long")

// errNoCloseWrite says a connection cannot half-close.
var errNoCloseWrite = errors.New("hbone: connection cannot half-close")

// Pump copies bytes between two connections. The zero value has no idle
// timeout.
type Pump struct {
	// IdleTimeout closes both connections when no byte has moved in either
	// direction for this long. Zero or negative: never.
	IdleTimeout time.Duration

	// linger overrides defaultLinger (tests).
	linger time.Duration
}

// defaultLinger is how long a pipe whose one direction failed to write
// waits, without progress, for the other direction to finish. The usual
// case is an HBONE server ending the request stream with
// RST_STREAM(NO_ERROR) after a complete response: those bytes are already
// in memory, so they finish as fast as the application reads them; 10 s
// of silence means the other side is stuck, not finishing.
const defaultLinger = 10 * time.Second

// Pipe is Pump{}.Pipe: no idle timeout.
func Pipe(ctx context.Context, a, b io.ReadWriteCloser) (aToB, bToA int64, err error) {
	return Pump{}.Pipe(ctx, a, b)
}

// Pipe copies a→b and b→a until both directions have ended, then closes
// both connections and returns the bytes moved each way.
//
// When a read ends with EOF, the EOF is passed on with CloseWrite on the
// other connection (found through wrappers that have a NetConn method, as
// *tls.Conn does); a connection that cannot half-close is closed instead,
// so its peer still learns of the end. Each direction reads only after the
// previous chunk was written in full, so a slow reader slows its writer
// down instead of piling up memory.
//
// A read error other than EOF, the idle timeout and ctx's end close both
// connections at once. A write error ends only its own direction: the
// destination refuses more bytes, but what it sends back may still be
// whole (an HBONE stream refused with RST_STREAM(NO_ERROR) after a
// complete response). That direction's source is then drained, read and
// dropped, until it ends: closing a socket with unread input resets it and
// loses what the other direction still has queued for it. Should the
// other direction stall for 10 s meanwhile, the pipe aborts. err is the
// first cause, nil when every direction ended with EOF or a refused write
// and nothing else went wrong.
func (p Pump) Pipe(ctx context.Context, a, b io.ReadWriteCloser) (aToB, bToA int64, err error) {
	return p.run(ctx, a, b, nil)
}

// PipeAfter is Pipe for a b that must be set up while a's first bytes
// already flow into it: it copies a→b at once on another goroutine, runs
// first on the calling goroutine, and copies b→a there once first returned
// nil. An error of first aborts the pipe and is its result. The data plane
// sends an HBONE CONNECT this way: the CONNECT goes out from this
// goroutine without a hand-off, and the application's first bytes follow
// it.
func (p Pump) PipeAfter(ctx context.Context, a, b io.ReadWriteCloser, first func() error) (aToB, bToA int64, err error) {
	bToA, aToB, err = p.run(ctx, b, a, first)
	return aToB, bToA, err
}

// run copies y→x on a new goroutine and, after first (if any), x→y on this
// one.
func (p Pump) run(ctx context.Context, x, y io.ReadWriteCloser, first func() error) (xToY, yToX int64, err error) {
	s := &pipe{a: x, b: y, linger: p.linger}
	if s.linger <= 0 {
		s.linger = defaultLinger
	}
	s.idle = newWatchdog(p.IdleTimeout, func() { s.abort(ErrIdleTimeout) })
	stop := context.AfterFunc(ctx, func() { s.abort(context.Cause(ctx)) })
	done := make(chan struct{})
	go func() {
		defer close(done)
		yToX = s.half(x, y)
	}()
	started := true
	if first != nil {
		if ferr := first(); ferr != nil {
			s.abort(ferr)
			started = false
		}
	}
	if started {
		xToY = s.half(y, x)
	}
	<-done
	stop()
	s.idle.stop()
	s.lingering.Load().stop()
	s.closeAll()
	return xToY, yToX, s.result()
}

// pipe is the state two directions share.
type pipe struct {
	a, b io.ReadWriteCloser
	// idle is the IdleTimeout watchdog (nil: none); lingering the one a
	// write error starts (see defaultLinger). Copying reads touch both.
	idle      *watchdog
	lingering atomic.Pointer[watchdog]
	linger    time.Duration

	mu  sync.Mutex
	err error // first read failure or abort cause
	// writeErr is the first write failure; it is the result only when
	// both directions ended on one (nothing else went wrong to report).
	writeErr      error
	writeFailures int
	aborted       bool // both connections were closed because of err
	closedA       bool // a was closed by the pump (abort, or half-close fallback)
	closedB       bool
}

// half copies src → dst and passes on src's end to dst.
func (s *pipe) half(dst, src io.ReadWriteCloser) int64 {
	n, rerr, werr := s.copyHalf(dst, src)
	switch {
	case werr != nil:
		// The destination refuses more bytes, but what it still sends the
		// other way may be whole: an application that answered and
		// closed, or an HBONE server ending the request stream with
		// RST_STREAM(NO_ERROR) after a complete response. The other
		// direction goes on; this one drains src, because closing a
		// socket with unread input makes the kernel send RST and drop
		// whatever the other direction still has queued for that peer
		// (the tail of the answer). A real failure also breaks the other
		// direction's read and aborts there.
		if s.closedByPump(src) {
			return n // aborted: the write failed because of it
		}
		s.noteWriteError(werr)
		s.drain(src)
	case rerr == io.EOF:
		if err := closeWrite(dst); err == errNoCloseWrite {
			s.closeOne(dst)
		} else if err != nil {
			s.abort(err)
		}
	default:
		// A read error on a connection the pump closed itself is the
		// expected end of this direction, not a failure.
		if !s.closedByPump(src) {
			s.abort(rerr)
		}
	}
	return n
}

// copyHalf is the hot loop: read into the direction's buffer, write all of
// it, repeat. No allocation per read.
func (s *pipe) copyHalf(dst io.Writer, src io.Reader) (n int64, rerr, werr error) {
	buf := newCopyBuf()
	defer buf.release()
	for {
		nr, er := src.Read(buf.bytes())
		if nr > 0 {
			s.touch()
			nw, ew := dst.Write(buf.bytes()[:nr])
			n += int64(nw)
			if ew == nil && nw != nr {
				ew = io.ErrShortWrite
			}
			if ew != nil {
				return n, nil, ew
			}
			buf.adapt(nr)
		}
		if er != nil {
			return n, er, nil
		}
	}
}

// drain reads src to its end and drops the bytes. It does not count as
// activity: the linger watchdog measures the other direction's progress.
func (s *pipe) drain(src io.ReadWriteCloser) {
	buf := smallBufs.Get().(*[]byte)
	defer smallBufs.Put(buf)
	for !s.closedByPump(src) {
		if _, err := src.Read(*buf); err != nil {
			return
		}
	}
}

// touch records that data moved.
func (s *pipe) touch() {
	s.idle.touch()
	if l := s.lingering.Load(); l != nil {
		l.touch()
	}
}

// noteWriteError ends a direction whose destination refused a write. The
// pipe goes on while the other direction makes progress; if it stalls for
// the linger time, the pipe aborts with err. Otherwise err is not
// returned: the pipe delivered everything its destinations accepted.
func (s *pipe) noteWriteError(err error) {
	s.mu.Lock()
	s.writeFailures++
	if s.writeErr == nil {
		s.writeErr = err
	}
	s.mu.Unlock()
	wd := newWatchdog(s.linger, func() { s.abort(err) })
	if !s.lingering.CompareAndSwap(nil, wd) {
		wd.stop() // both directions failed to write: one watchdog will do
	}
}

// abort closes both connections, remembering the first cause; an error
// that arrives after an abort is a consequence of it and is dropped.
func (s *pipe) abort(cause error) {
	s.mu.Lock()
	if s.aborted {
		s.mu.Unlock()
		return
	}
	s.aborted = true
	if s.err == nil {
		s.err = cause
	}
	closeA, closeB := !s.closedA, !s.closedB
	s.closedA, s.closedB = true, true
	s.mu.Unlock()
	if closeA {
		s.a.Close()
	}
	if closeB {
		s.b.Close()
	}
}

// closeOne closes c entirely: the half-close fallback.
func (s *pipe) closeOne(c io.ReadWriteCloser) {
	s.mu.Lock()
	flag := &s.closedB
	if c == s.a {
		flag = &s.closedA
	}
	already := *flag
	*flag = true
	s.mu.Unlock()
	if !already {
		c.Close()
	}
}

func (s *pipe) closedByPump(c io.ReadWriteCloser) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c == s.a {
		return s.closedA
	}
	return s.closedB
}

func (s *pipe) closeAll() {
	s.closeOne(s.a)
	s.closeOne(s.b)
}

func (s *pipe) result() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil && s.writeFailures == 2 {
		return s.writeErr
	}
	return s.err
}

// maxUnwrap bounds the NetConn chain closeWrite follows, against a wrapper
// that (wrongly) returns itself.
const maxUnwrap = 8

// closeWrite half-closes c, looking through wrappers that expose the
// connection they wrap with NetConn (the convention of *tls.Conn). A
// wrapper that buffers or transforms writes must implement CloseWriter
// itself; one that only observes (byte counters, metadata) need not.
func closeWrite(c any) error {
	for range maxUnwrap {
		if cw, ok := c.(CloseWriter); ok {
			return cw.CloseWrite()
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return errNoCloseWrite
		}
		c = w.NetConn()
	}
	return errNoCloseWrite
}
