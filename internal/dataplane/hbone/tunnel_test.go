package hbone

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestRoundTripEcho(t *testing.T) {
	e := newEnv(t)
	s := e.dial(t)
	defer s.Close()
	msg := []byte("hello through the tunnel")
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(s); err != nil || len(rest) != 0 {
		t.Fatalf("after CloseWrite: %q, %v; want EOF", rest, err)
	}
	if s.RemoteAddr().String() != e.app.String() || s.LocalAddr() == nil {
		t.Errorf("stream addresses %v → %v", s.LocalAddr(), s.RemoteAddr())
	}
	if s.Peer().ID != e.serverID.ID {
		t.Errorf("stream peer = %s, want %s", s.Peer().ID, e.serverID.ID)
	}
	s.Close()
	waitFor(t, "stream event", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.events) == 1
	})
	ev := e.events[0]
	if ev.Status != 200 || ev.Err != nil || ev.ToApp != int64(len(msg)) || ev.FromApp != int64(len(msg)) {
		t.Errorf("stream event = %+v", ev)
	}
	if ev.Request.ForwardedFor != netip.MustParseAddrPort("10.0.0.1:40000") {
		t.Errorf("ForwardedFor = %s", ev.Request.ForwardedFor)
	}
	if ev.Request.Peer.ID != e.srcSVID.get().ID || ev.Request.Peer.Claims.Labels["app"] != "test" {
		t.Errorf("server saw peer %s %v", ev.Request.Peer.ID, ev.Request.Peer.Claims)
	}
}

// The client half-closes; the application reads EOF, still answers, and
// the client reads the answer, then EOF.
func TestHalfCloseClientFirst(t *testing.T) {
	e := newEnv(t, withApp(func(c net.Conn) {
		h := sha256.New()
		n, err := io.Copy(h, c) // until the client's CloseWrite arrives as EOF
		if err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond) // answer well after the EOF
		fmt.Fprintf(c, "got %d bytes %x", n, h.Sum(nil))
	}))
	s := e.dial(t)
	defer s.Close()
	payload := bytes.Repeat([]byte("x"), 100_000)
	if _, err := s.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("got %d bytes %x", len(payload), sha256.Sum256(payload))
	if string(answer) != want {
		t.Fatalf("answer %q, want %q", answer, want)
	}
}

// The application half-closes first: the client reads everything it sent,
// then EOF.
func TestHalfCloseAppFirst(t *testing.T) {
	e := newEnv(t, withApp(func(c net.Conn) {
		io.WriteString(c, "banner")
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	}))
	s := e.dial(t)
	defer s.Close()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "banner" {
		t.Fatalf("read %q, %v; want banner, EOF", got, err)
	}
}

// An application that resets its connection resets the stream: the client
// sees an error, not a clean EOF.
func TestAppResetResetsStream(t *testing.T) {
	e := newEnv(t, withApp(func(c net.Conn) {
		// Reset only once the stream is up: a reset racing the agent's
		// connect fails the dial itself (a 503, also correct, but not
		// what this test is about).
		var b [1]byte
		_, _ = io.ReadFull(c, b[:])
		io.WriteString(c, "partial")
		c.(*net.TCPConn).SetLinger(0) // close sends RST
	}))
	s := e.dial(t)
	defer s.Close()
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(s); err == nil {
		t.Fatal("read ended cleanly after the application reset")
	}
}

// The data plane's outbound path: an application connection pumped into a
// stream, through the server, to the application. Half-close and bytes
// cross both pumps.
func TestPipeThroughTunnel(t *testing.T) {
	e := newEnv(t, withApp(func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "%d", n)
	}))
	clientApp, agentSide := tcpPair(t)
	s := e.dial(t)
	done := make(chan [2]int64, 1)
	go func() {
		up, down, err := Pipe(context.Background(), agentSide, s)
		if err != nil {
			t.Errorf("Pipe: %v", err)
		}
		done <- [2]int64{up, down}
	}()
	payload := make([]byte, 3<<20)
	if _, err := clientApp.Write(payload); err != nil {
		t.Fatal(err)
	}
	clientApp.(*net.TCPConn).CloseWrite()
	answer, err := io.ReadAll(clientApp)
	if err != nil || string(answer) != fmt.Sprint(len(payload)) {
		t.Fatalf("answer %q, %v", answer, err)
	}
	counts := <-done
	if counts[0] != int64(len(payload)) || counts[1] != int64(len(answer)) {
		t.Errorf("Pipe counted %v, want [%d %d]", counts, len(payload), len(answer))
	}
	clientApp.Close()
}

// 64 MiB each way at once, compared by SHA-256.
func TestLargeTransfer(t *testing.T) {
	size := 64 << 20
	if testing.Short() {
		size = 8 << 20
	}
	e := newEnv(t)
	s := e.dial(t)
	defer s.Close()

	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 1<<20)
		for left := size; left > 0; left -= len(buf) {
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
			sent.Write(buf)
			if _, err := s.Write(buf); err != nil {
				werr <- err
				return
			}
		}
		werr <- s.CloseWrite()
	}()
	received := sha256.New()
	n, err := io.Copy(received, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if n != int64(size) {
		t.Fatalf("received %d bytes, want %d", n, size)
	}
	if !bytes.Equal(sent.Sum(nil), received.Sum(nil)) {
		t.Fatal("checksum mismatch")
	}
}

func TestServerExposesConnsAndStreams(t *testing.T) {
	e := newEnv(t)
	s := e.dial(t)
	waitFor(t, "one active stream", func() bool { return e.server.ActiveStreams() == 1 })
	conns := e.server.Conns()
	if len(conns) != 1 || conns[0].Peer.ID != e.srcSVID.get().ID || conns[0].Streams != 1 {
		t.Fatalf("Conns() = %+v", conns)
	}
	s.Close()
	waitFor(t, "no active stream", func() bool { return e.server.ActiveStreams() == 0 })
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// A stream that moves no byte for the server's IdleTimeout is reset.
func TestServerIdleTimeout(t *testing.T) {
	e := newEnv(t, withServerConfig(func(sc *ServerConfig) { sc.IdleTimeout = 50 * time.Millisecond }))
	s := e.dial(t)
	defer s.Close()
	roundTrip(t, s, "busy")
	start := time.Now()
	if _, err := io.ReadAll(s); err == nil {
		t.Fatal("idle stream ended cleanly, want a reset")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("idle stream reset after %s", d)
	}
	waitFor(t, "stream event", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.events) == 1 && errors.Is(e.events[0].Err, ErrIdleTimeout)
	})
}

// The application answers and closes while the client is still sending.
// The client application gets the whole answer and EOF: the server ends
// the request stream with RST_STREAM(NO_ERROR) after the response (RFC
// 9113 §8.1), which ends the client's upload but not its download, and the
// client's agent drains what its application still sends instead of
// resetting it (a reset would drop the answer's tail from the socket).
func TestAppClosesWhileClientSends(t *testing.T) {
	answer := bytes.Repeat([]byte("answer "), 10_000)
	e := newEnv(t, withApp(func(c net.Conn) {
		c.Read(make([]byte, 1))
		c.Write(answer)
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	}))
	for i := range 20 {
		got, err, perr := sendWhileReading(t, e)
		if err != nil || !bytes.Equal(got, answer) {
			t.Fatalf("round %d: read %d bytes, %v; want the %d-byte answer and EOF", i, len(got), err, len(answer))
		}
		if perr != nil {
			t.Fatalf("round %d: Pipe: %v", i, perr)
		}
	}
}

// Same, but the application closes with unread input, so its kernel resets
// the connection. Plain TCP may then lose the answer's tail (on this
// kernel, 11 runs in 200 read 64 KiB of 70,000 bytes and a clean EOF), so
// only the end matters here: both pumps finish promptly, nothing hangs.
func TestAppResetsWhileClientSends(t *testing.T) {
	e := newEnv(t, withApp(func(c net.Conn) {
		c.Read(make([]byte, 1))
		c.Write(make([]byte, 70_000))
	}))
	for range 20 {
		start := time.Now()
		sendWhileReading(t, e)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %s", d)
		}
	}
	waitFor(t, "streams to end", func() bool { return e.server.ActiveStreams() == 0 && e.pool.Stats().Streams == 0 })
}

// sendWhileReading connects a client application through an outbound pump
// and a stream; the application sends without pause until it has read the
// answer to its end. It returns what it read, how the read ended, and the
// pump's result.
func sendWhileReading(t *testing.T, e *env) (got []byte, err, pipeErr error) {
	clientApp, agentSide := tcpPair(t)
	s := e.dial(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := Pipe(context.Background(), agentSide, s)
		done <- err
	}()
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := clientApp.Write(buf); err != nil {
				return
			}
		}
	}()
	got, err = io.ReadAll(clientApp)
	close(stop)
	<-sent
	clientApp.Close()
	return got, err, <-done
}
