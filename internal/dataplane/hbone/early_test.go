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

// A stream opened early carries the application's first bytes before the
// destination answered, and they arrive once it agreed.
func TestDialEarlySendsBeforeTheAnswer(t *testing.T) {
	release := make(chan struct{})
	var wrote atomic.Bool
	e := newEnv(t)
	e.authz = func(_ context.Context, req *Request) (DialFunc, error) {
		<-release // the answer waits until the client has written
		return dialTCP(e.app), nil
	}
	answers := make(chan error, 1)
	s, err := e.pool.DialEarly(context.Background(), e.src, e.dst, e.app, netip.AddrPort{}, func(err error) {
		if !wrote.Load() {
			t.Error("answer before the early write returned")
		}
		answers <- err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The write returns once HTTP/2 took the bytes: the destination has
	// not answered yet.
	if _, err := s.Write([]byte("early bytes")); err != nil {
		t.Fatal(err)
	}
	wrote.Store(true)
	select {
	case <-s.Answered():
		t.Fatal("answered before the destination decided")
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
func TestDialEarlyRefusalDropsEarlyBytes(t *testing.T) {
	var appConns atomic.Int64
	e := newEnv(t, withApp(func(c net.Conn) { appConns.Add(1); echo(c) }))
	e.authz = func(context.Context, *Request) (DialFunc, error) {
		return nil, fmt.Errorf("not this one: %w", ErrDenied)
	}
	answers := make(chan error, 1)
	s, err := e.pool.DialEarly(context.Background(), e.src, e.dst, e.app, netip.AddrPort{}, func(err error) { answers <- err })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
func TestDialEarlyAnswerTimeout(t *testing.T) {
	e := newEnv(t)
	block := make(chan struct{})
	defer close(block)
	e.authz = func(context.Context, *Request) (DialFunc, error) { <-block; return nil, ErrDenied }
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	answers := make(chan error, 1)
	s, err := e.pool.DialEarly(ctx, e.src, e.dst, e.app, netip.AddrPort{}, func(err error) { answers <- err })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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

// Closing a stream before its answer returns promptly and frees the slot.
func TestDialEarlyCloseBeforeAnswer(t *testing.T) {
	e := newEnv(t)
	block := make(chan struct{})
	defer close(block)
	e.authz = func(context.Context, *Request) (DialFunc, error) { <-block; return nil, ErrDenied }
	s, err := e.pool.DialEarly(context.Background(), e.src, e.dst, e.app, netip.AddrPort{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a stream waiting for its answer")
	}
	if st := e.pool.Stats(); st.Streams != 0 {
		t.Errorf("closed stream holds a slot: %+v", st)
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
func TestDialEarlyRetriesOnDeadConnection(t *testing.T) {
	e := newEnv(t)
	e.dial(t).Close()
	e.pool.mu.Lock()
	for _, list := range e.pool.conns {
		for _, c := range list {
			c.cc.Close()
		}
	}
	e.pool.mu.Unlock()
	s, err := e.pool.DialEarly(context.Background(), e.src, e.dst, e.app, netip.AddrPort{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("survives")); err != nil {
		t.Fatal(err)
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
