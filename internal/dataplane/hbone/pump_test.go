package hbone

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Client-first and server-first half-close both cross the pump between
// two TCP connections, and the counts are right.
func TestPipeHalfClose(t *testing.T) {
	client, in := tcpPair(t)
	out, server := tcpPair(t)
	type result struct {
		up, down int64
		err      error
	}
	done := make(chan result, 1)
	go func() {
		up, down, err := Pipe(context.Background(), in, out)
		done <- result{up, down, err}
	}()

	io.WriteString(client, "request")
	client.(*net.TCPConn).CloseWrite()
	req, err := io.ReadAll(server) // EOF arrives: the half-close crossed
	if err != nil || string(req) != "request" {
		t.Fatalf("server read %q, %v", req, err)
	}
	io.WriteString(server, "response after EOF")
	server.(*net.TCPConn).CloseWrite()
	resp, err := io.ReadAll(client)
	if err != nil || string(resp) != "response after EOF" {
		t.Fatalf("client read %q, %v", resp, err)
	}
	r := <-done
	if r.err != nil || r.up != 7 || r.down != 18 {
		t.Fatalf("Pipe = %d, %d, %v", r.up, r.down, r.err)
	}
}

// A connection that cannot half-close (net.Pipe) is closed so its peer
// still sees the end, and that is not an error.
func TestPipeWithoutCloseWrite(t *testing.T) {
	client, in := net.Pipe()
	out, server := net.Pipe()
	done := make(chan error, 1)
	go func() {
		_, _, err := Pipe(context.Background(), in, out)
		done <- err
	}()
	go func() {
		io.WriteString(client, "bye")
		client.Close()
	}()
	got, _ := io.ReadAll(server)
	if string(got) != "bye" {
		t.Fatalf("server read %q", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("Pipe: %v", err)
	}
	server.Close()
}

func TestPipeIdleTimeout(t *testing.T) {
	client, in := tcpPair(t)
	out, server := tcpPair(t)
	const idle = 100 * time.Millisecond
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, _, err := Pump{IdleTimeout: idle}.Pipe(context.Background(), in, out)
		done <- err
	}()
	// Traffic every idle/4 keeps the pipe alive past several timeouts.
	for range 12 {
		io.WriteString(client, "tick")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(server, buf); err != nil {
			t.Fatalf("pipe closed while busy: %v", err)
		}
		time.Sleep(idle / 4)
	}
	if d := time.Since(start); d < 2*idle {
		t.Fatalf("test too fast (%s) to prove anything", d)
	}
	if err := <-done; !errors.Is(err, ErrIdleTimeout) {
		t.Fatalf("Pipe: %v, want ErrIdleTimeout", err)
	}
	if _, err := server.Read(make([]byte, 1)); err == nil {
		t.Fatal("server side still open after idle timeout")
	}
}

func TestPipeContextCancel(t *testing.T) {
	_, in := tcpPair(t)
	out, _ := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := Pipe(ctx, in, out)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Pipe: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe ignored its context")
	}
}

// A writer that does not drain stops the reader after one buffer: nothing
// piles up in the pump.
func TestPipeBackPressure(t *testing.T) {
	src := &endless{}
	dst := newStuck()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Pipe(ctx, &rwc{Reader: src, Writer: io.Discard, closer: dst}, &rwc{Reader: dst, Writer: dst, closer: dst})
		close(done)
	}()
	time.Sleep(100 * time.Millisecond)
	if n := src.read.Load(); n > largeBufSize {
		t.Fatalf("pump read %d bytes ahead of a stuck writer, want at most %d", n, largeBufSize)
	}
	cancel()
	<-done
}

// A write error ends its direction; when the other direction then makes
// no progress for the linger time, the pipe aborts with the write error.
func TestPipeWriteErrorStalls(t *testing.T) {
	boom := errors.New("boom")
	_, in := tcpPair(t) // nothing ever arrives on in
	src := &rwc{Reader: &endless{}, Writer: io.Discard, closer: in}
	dst := &rwc{Reader: in, Writer: failWriter{boom}, closer: in}
	start := time.Now()
	_, _, err := Pump{linger: 50 * time.Millisecond}.Pipe(context.Background(), src, dst)
	if !errors.Is(err, boom) {
		t.Fatalf("Pipe: %v, want %v", err, boom)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("aborted after %s", d)
	}
}

// A write error does not cut the other direction short: what its source
// still sends is delivered, and the pipe ends cleanly.
func TestPipeWriteErrorLetsOtherDirectionFinish(t *testing.T) {
	boom := errors.New("boom")
	client, in := tcpPair(t)
	answer := bytes.Repeat([]byte("a"), 1<<20)
	// out refuses writes but still has a whole answer to deliver.
	out := &rwc{Reader: bytes.NewReader(answer), Writer: failWriter{boom}, closer: io.NopCloser(nil)}
	done := make(chan error, 1)
	go func() {
		_, _, err := Pipe(context.Background(), in, out)
		done <- err
	}()
	io.WriteString(client, "request the pipe cannot deliver")
	got, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(got, answer) {
		t.Fatalf("client read %d bytes, %v", len(got), err)
	}
	client.Close() // ends the drain of what out refused
	if err := <-done; err != nil {
		t.Fatalf("Pipe: %v", err)
	}
}

// CloseWrite reaches a TCP connection through a wrapper that only exposes
// it with NetConn.
func TestCloseWriteThroughWrapper(t *testing.T) {
	a, b := tcpPair(t)
	if err := closeWrite(observer{a}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read %v, want EOF", err)
	}
	if err := closeWrite(struct{ io.ReadWriteCloser }{a}); err != errNoCloseWrite {
		t.Fatalf("opaque wrapper: %v", err)
	}
}

func TestCopyBufAdapts(t *testing.T) {
	b := newCopyBuf()
	defer b.release()
	if len(b.bytes()) != smallBufSize {
		t.Fatalf("starts with %d bytes", len(b.bytes()))
	}
	b.adapt(smallBufSize) // a full read: bulk flow
	if len(b.bytes()) != largeBufSize {
		t.Fatalf("full read kept %d bytes", len(b.bytes()))
	}
	for range shrinkAfter - 1 {
		b.adapt(100)
	}
	b.adapt(largeBufSize) // a large read resets the count
	for range shrinkAfter - 1 {
		b.adapt(100)
	}
	if len(b.bytes()) != largeBufSize {
		t.Fatal("shrank before shrinkAfter consecutive small reads")
	}
	b.adapt(100)
	if len(b.bytes()) != smallBufSize {
		t.Fatalf("trickling flow kept %d bytes", len(b.bytes()))
	}
}

// observer wraps a connection without adding CloseWrite, exposing it with
// NetConn like *tls.Conn does.
type observer struct{ net.Conn }

func (o observer) NetConn() net.Conn { return o.Conn }

type endless struct{ read atomic.Int64 }

func (e *endless) Read(p []byte) (int, error) {
	e.read.Add(int64(len(p)))
	return len(p), nil
}

// stuck blocks every read and write until closed.
type stuck struct {
	once   sync.Once
	closed chan struct{}
}

func newStuck() *stuck { return &stuck{closed: make(chan struct{})} }

func (s *stuck) Read([]byte) (int, error)  { <-s.closed; return 0, net.ErrClosed }
func (s *stuck) Write([]byte) (int, error) { <-s.closed; return 0, net.ErrClosed }
func (s *stuck) Close() error              { s.once.Do(func() { close(s.closed) }); return nil }

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

type rwc struct {
	io.Reader
	io.Writer
	closer io.Closer
}

func (r *rwc) Close() error { return r.closer.Close() }

// PipeAfter moves a→b while first runs, b→a only after it, and a failing
// first aborts the pipe with its error.
func TestPipeAfter(t *testing.T) {
	t.Run("first succeeds", func(t *testing.T) {
		client, in := tcpPair(t)
		out, server := tcpPair(t)
		io.WriteString(server, "answer")
		release := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			up, down, err := Pump{}.PipeAfter(context.Background(), in, out, func() error {
				<-release
				return nil
			})
			if err == nil && (up != 5 || down != 6) {
				err = errors.New("wrong counts")
			}
			done <- err
		}()
		io.WriteString(client, "early")
		got := make([]byte, 5)
		if _, err := io.ReadFull(server, got); err != nil || string(got) != "early" {
			t.Fatalf("server read %q, %v before first returned", got, err)
		}
		client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, _ := client.Read(make([]byte, 6)); n > 0 {
			t.Fatal("b→a copied before first returned")
		}
		client.SetReadDeadline(time.Time{})
		close(release)
		resp := make([]byte, 6)
		if _, err := io.ReadFull(client, resp); err != nil || string(resp) != "answer" {
			t.Fatalf("client read %q, %v", resp, err)
		}
		client.(*net.TCPConn).CloseWrite()
		server.(*net.TCPConn).CloseWrite()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("first fails", func(t *testing.T) {
		client, in := tcpPair(t)
		out, _ := tcpPair(t)
		refused := errors.New("refused")
		_, _, err := Pump{}.PipeAfter(context.Background(), in, out, func() error { return refused })
		if !errors.Is(err, refused) {
			t.Fatalf("PipeAfter = %v, want first's error", err)
		}
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := client.Read(make([]byte, 1)); err == nil {
			t.Error("the client's connection is still open after the abort")
		}
	})
}
