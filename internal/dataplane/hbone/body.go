package hbone

import (
	"errors"
	"io"
	"sync"
)

// tunnelBody carries the application's bytes into a CONNECT's request
// body. Like io.Pipe, a Write returns only once the HTTP/2 transport has
// taken the bytes, so nothing piles up behind a slow peer. Unlike io.Pipe
// only one reader at a time may take bytes: when a stream sent
// optimistically must be retried on another connection, the failed
// request's transport may still sit in Read, and it must not swallow the
// next Write, which belongs to the retry's reader.
type tunnelBody struct {
	mu      sync.Mutex
	cond    sync.Cond
	pending []byte      // offered by Write, not yet taken
	current *bodyReader // the reader allowed to take
	// settled: the stream was answered, no retry will replace the
	// current reader, so its transport closing it ends the body.
	settled bool
	closed  bool
	rerr    error // what readers get once closed and drained: io.EOF or the cause
	werr    error // what writers get once closed
}

func newTunnelBody() *tunnelBody {
	t := &tunnelBody{}
	t.cond.L = &t.mu
	return t
}

// errBodyDetached is what a reader replaced by a retry's reader gets.
var errBodyDetached = errors.New("hbone: request body moved to another stream")

// Write hands b to the current reader, blocking until all of it is taken
// or the body is closed.
func (t *tunnelBody) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, t.werr
	}
	t.pending = b
	t.cond.Broadcast()
	for len(t.pending) > 0 && !t.closed {
		t.cond.Wait()
	}
	n := len(b) - len(t.pending)
	t.pending = nil
	if n < len(b) {
		return n, t.werr
	}
	return n, nil
}

// closeWrite ends the body cleanly: the reader gets io.EOF.
func (t *tunnelBody) closeWrite() { t.close(io.EOF, io.ErrClosedPipe) }

// abort ends the body with err for readers and writers alike.
func (t *tunnelBody) abort(err error) { t.close(err, err) }

func (t *tunnelBody) close(rerr, werr error) {
	t.mu.Lock()
	t.closeLocked(rerr, werr)
	t.mu.Unlock()
}

func (t *tunnelBody) closeLocked(rerr, werr error) {
	if !t.closed {
		t.closed, t.rerr, t.werr = true, rerr, werr
		t.cond.Broadcast()
	}
}

// settle says the current reader is the last: the stream was answered.
// From then on its transport being done with it (the server ended the
// request stream) refuses further writes, as io.Pipe would.
func (t *tunnelBody) settle() {
	t.mu.Lock()
	t.settled = true
	if t.current != nil && t.current.closed {
		t.closeLocked(io.EOF, io.ErrClosedPipe)
	}
	t.mu.Unlock()
}

// reader makes a new reader the only one allowed to take bytes.
func (t *tunnelBody) reader() *bodyReader {
	r := &bodyReader{t: t}
	t.mu.Lock()
	t.current = r
	t.cond.Broadcast() // a replaced reader waiting in Read gives up
	t.mu.Unlock()
	return r
}

// bodyReader is the request body of one HTTP/2 request.
type bodyReader struct {
	t      *tunnelBody
	took   int64 // bytes taken; guarded by t.mu
	closed bool  // by its transport; guarded by t.mu
}

func (r *bodyReader) Read(b []byte) (int, error) {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		switch {
		case t.current != r:
			return 0, errBodyDetached
		case len(t.pending) > 0:
			n := copy(b, t.pending)
			t.pending = t.pending[n:]
			r.took += int64(n)
			if len(t.pending) == 0 {
				t.cond.Broadcast()
			}
			return n, nil
		case t.closed:
			return 0, t.rerr
		}
		t.cond.Wait()
	}
}

// Close is the transport saying it is done with this request's body.
// Before the answer the body lives on for a retry (writes wait for the
// retry's reader, or for the stream's failure); after it, writes are
// refused.
func (r *bodyReader) Close() error {
	t := r.t
	t.mu.Lock()
	r.closed = true
	if t.current == r && t.settled {
		t.closeLocked(io.EOF, io.ErrClosedPipe)
	}
	t.mu.Unlock()
	return nil
}

// taken reports how many bytes this reader took.
func (r *bodyReader) taken() int64 {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	return r.took
}
