package hbone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// connectAsync runs s.Connect on its own goroutine, as the data plane's
// pump does while the other direction writes.
func connectAsync(ctx context.Context, s *Stream) <-chan error {
	answers := make(chan error, 1)
	go func() { answers <- s.Connect(ctx) }()
	return answers
}

// A stream's first bytes leave before the destination answered, and
// arrive once it agreed.
func TestEarlyBytesBeforeTheAnswer(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t)
	e.authz = func(_ context.Context, req *Request) (DialFunc, error) {
		<-release // the answer waits until the client has written
		return dialTCP(e.app), nil
	}
	s, err := e.pool.Open(context.Background(), e.src, e.dst, e.app, netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	answers := connectAsync(context.Background(), s)
	// The write returns once HTTP/2 took the bytes: the destination has
	// not answered yet.
	if _, err := s.Write([]byte("early bytes")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-answers:
		t.Fatalf("answered (%v) before the destination decided", err)
	default:
	}
	close(release)
	if err := <-answers; err != nil {
		t.Fatalf("answer: %v", err)
	}
	s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "early bytes" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

// A refusal reaches onAnswer and Read; bytes sent ahead of it never reach
// any application, and later writes fail instead of blocking.
func TestEarlyBytesDroppedOnRefusal(t *testing.T) {
	var appConns atomic.Int64
	e := newEnv(t, withApp(func(c net.Conn) { appConns.Add(1); echo(c) }))
	e.authz = func(context.Context, *Request) (DialFunc, error) {
		return nil, fmt.Errorf("not this one: %w", ErrDenied)
	}
	s, err := e.pool.Open(context.Background(), e.src, e.dst, e.app, netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	answers := connectAsync(context.Background(), s)
	wrote := make(chan error, 1)
	go func() {
		// More than the first write, to be still writing at the refusal.
		var err error
		for i := 0; err == nil && i < 1000; i++ {
			_, err = s.Write(make([]byte, 64<<10))
		}
		wrote <- err
	}()
	if err := <-answers; !isStatus(err, 401) {
		t.Fatalf("answer %v, want 401", err)
	}
	if _, err := s.Read(make([]byte, 1)); !isStatus(err, 401) {
		t.Errorf("Read after refusal: %v, want the 401", err)
	}
	select {
	case err := <-wrote:
		if err == nil {
			t.Error("64 MB written through a refused stream")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writer still blocked 5 s after the refusal")
	}
	if n := appConns.Load(); n != 0 {
		t.Errorf("the application saw %d connections", n)
	}
	if st := e.pool.Stats(); st.Streams != 0 {
		t.Errorf("refused stream still holds a slot: %+v", st)
	}
}

// ctx bounds the wait for the answer: a destination that never answers
// fails the stream when ctx ends, and frees its slot.
func TestConnectAnswerTimeout(t *testing.T) {
	e := newEnv(t)
	block := make(chan struct{})
	defer close(block)
	e.authz = func(context.Context, *Request) (DialFunc, error) { <-block; return nil, ErrDenied }
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	s, err := e.pool.Open(ctx, e.src, e.dst, e.app, netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	answers := connectAsync(ctx, s)
	select {
	case err := <-answers:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("answer %v, want deadline exceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer 5 s after the deadline")
	}
	waitFor(t, "the slot to be freed", func() bool { return e.pool.Stats().Streams == 0 })
}

// Closing a stream while it waits for its answer, or before its CONNECT
// was sent, returns promptly and frees the slot.
func TestCloseBeforeAnswer(t *testing.T) {
	e := newEnv(t)
	block := make(chan struct{})
	defer close(block)
	e.authz = func(context.Context, *Request) (DialFunc, error) { <-block; return nil, ErrDenied }
	for _, sent := range []bool{true, false} {
		s, err := e.pool.Open(context.Background(), e.src, e.dst, e.app, netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		var answers <-chan error
		if sent {
			answers = connectAsync(context.Background(), s)
			waitFor(t, "the CONNECT to arrive", func() bool { return e.server.ActiveStreams() > 0 })
		}
		done := make(chan struct{})
		go func() { s.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("sent %v: Close blocked", sent)
		}
		if answers != nil {
			if err := <-answers; err == nil {
				t.Error("Connect succeeded on a closed stream")
			}
		} else if err := s.Connect(context.Background()); !errors.Is(err, errNotConnected) {
			t.Errorf("Connect after Close: %v, want errNotConnected", err)
		}
		if st := e.pool.Stats(); st.Streams != 0 {
			t.Errorf("sent %v: closed stream holds a slot: %+v", sent, st)
		}
	}
}

// A reader replaced by a retry's reader never takes bytes, even one that
// was already waiting when the write came.
func TestTunnelBodyDetachedReaderTakesNothing(t *testing.T) {
	b := newTunnelBody()
	old := b.reader()
	oldErr := make(chan error, 1)
	go func() {
		_, err := old.Read(make([]byte, 10))
		oldErr <- err
	}()
	time.Sleep(10 * time.Millisecond) // let it wait
	cur := b.reader()
	if err := <-oldErr; !errors.Is(err, errBodyDetached) {
		t.Fatalf("replaced reader: %v, want errBodyDetached", err)
	}
	go b.Write([]byte("hello"))
	got := make([]byte, 10)
	n, err := cur.Read(got)
	if err != nil || string(got[:n]) != "hello" {
		t.Fatalf("current reader got %q, %v", got[:n], err)
	}
	if old.taken() != 0 || cur.taken() != 5 {
		t.Errorf("taken: old %d, current %d", old.taken(), cur.taken())
	}
	b.closeWrite()
	if _, err := cur.Read(got); err != io.EOF {
		t.Errorf("after closeWrite: %v, want EOF", err)
	}
	if _, err := b.Write([]byte("x")); err != io.ErrClosedPipe {
		t.Errorf("Write after closeWrite: %v, want ErrClosedPipe", err)
	}
}

// Before the answer the transport closing its body does not end it (a
// retry takes over); after the answer it refuses further writes.
func TestTunnelBodyCloseAfterSettle(t *testing.T) {
	b := newTunnelBody()
	r := b.reader()
	r.Close()
	wrote := make(chan error, 1)
	go func() { _, err := b.Write([]byte("x")); wrote <- err }()
	select {
	case err := <-wrote:
		t.Fatalf("write returned %v before a retry or the answer", err)
	case <-time.After(20 * time.Millisecond):
	}
	b.settle()
	if err := <-wrote; err != io.ErrClosedPipe {
		t.Fatalf("write after the settled reader closed: %v, want ErrClosedPipe", err)
	}
}

// An early stream reserved on a pooled connection that turns out dead is
// retried on a new one, and the bytes written meanwhile go to the retry.
func TestEarlyBytesSurviveARetry(t *testing.T) {
	e := newEnv(t)
	e.dial(t).Close()
	e.pool.mu.Lock()
	for _, list := range e.pool.conns {
		for _, c := range list {
			c.cc.Close()
		}
	}
	e.pool.mu.Unlock()
	s, err := e.pool.Open(context.Background(), e.src, e.dst, e.app, netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	answers := connectAsync(context.Background(), s)
	if _, err := s.Write([]byte("survives")); err != nil {
		t.Fatal(err)
	}
	if err := <-answers; err != nil {
		t.Fatalf("answer: %v", err)
	}
	s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "survives" {
		t.Fatalf("echo %q, %v", got, err)
	}
	if st := e.pool.Stats(); st.Handshakes != 2 {
		t.Errorf("pool stats %+v, want 2 handshakes", st)
	}
}
