package hbone

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ztcn/ztcn/internal/identity"
)

// roundTrip sends msg on s, reads the echo, half-closes and waits for EOF.
func roundTrip(t testing.TB, s *Stream, msg string) {
	t.Helper()
	if _, err := io.WriteString(s, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

// A new application connection costs a stream, not a handshake.
func TestPoolReusesConnection(t *testing.T) {
	e := newEnv(t)
	for i := range 50 {
		s := e.dial(t)
		roundTrip(t, s, "ping")
		s.CloseWrite()
		if _, err := io.ReadAll(s); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		s.Close()
	}
	if st := e.pool.Stats(); st.Handshakes != 1 || st.Conns != 1 || st.Streams != 0 {
		t.Errorf("pool stats %+v, want 1 handshake, 1 connection, 0 streams", st)
	}
	if n := e.handshake.Load(); n != 1 {
		t.Errorf("server saw %d handshakes, want 1", n)
	}
}

// 150 streams at once need two connections of at most 100 streams.
func TestPoolOpensConnectionPer100Streams(t *testing.T) {
	e := newEnv(t)
	const n = 150
	streams := make([]*Stream, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			s, err := e.pool.Dial(context.Background(), e.src, e.dst, e.app, netip.AddrPort{})
			if err != nil {
				errs <- err
				return
			}
			streams[i] = s
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := e.pool.Stats(); st.Conns != 2 || st.Handshakes != 2 || st.Streams != n {
		t.Errorf("pool stats %+v, want 2 connections, 2 handshakes, %d streams", st, n)
	}
	waitFor(t, "150 streams at the server", func() bool { return e.server.ActiveStreams() == n })
	conns := e.server.Conns()
	if len(conns) != 2 {
		t.Fatalf("server has %d connections, want 2", len(conns))
	}
	for _, c := range conns {
		if c.Streams > maxStreamsPerConn {
			t.Errorf("a connection carries %d streams", c.Streams)
		}
	}
	for _, s := range streams {
		wg.Go(func() {
			roundTrip(t, s, "x")
			s.Close()
		})
	}
	wg.Wait()
	waitFor(t, "streams released", func() bool { return e.pool.Stats().Streams == 0 })
}

// After Rotate the next stream uses a new connection with the new SVID,
// while the stream already open on the old one keeps working; the old
// connection closes with its last stream.
func TestPoolRotate(t *testing.T) {
	e := newEnv(t)
	old := e.dial(t)
	oldSerial := e.lastSerial()
	roundTrip(t, old, "before")

	e.srcSVID.set(e.pki.issue(t, "/ns/default/sa/client"))
	e.pool.Rotate(e.src.Key)
	fresh := e.dial(t)
	defer fresh.Close()
	roundTrip(t, fresh, "new")
	if got, want := e.lastSerial(), e.srcSVID.get().Serial().Text(16); got != want || got == oldSerial {
		t.Fatalf("server saw serial %s, want the new %s (old %s)", got, want, oldSerial)
	}
	if fresh.Serial() == old.Serial() {
		t.Fatal("new stream presented the old SVID")
	}
	if st := e.pool.Stats(); st.Handshakes != 2 || st.Conns != 2 {
		t.Errorf("pool stats %+v, want 2 handshakes and 2 connections", st)
	}

	roundTrip(t, old, "still works")
	old.Close()
	waitFor(t, "old connection closed", func() bool {
		return e.pool.Stats().Conns == 1 && len(e.server.Conns()) == 1
	})
	// The pool goes on using the new connection.
	again := e.dial(t)
	again.Close()
	if st := e.pool.Stats(); st.Handshakes != 2 {
		t.Errorf("%d handshakes after rotation settled, want 2", st.Handshakes)
	}
}

// Without Rotate, a changed SVID is noticed at the next Dial.
func TestPoolNoticesNewSVID(t *testing.T) {
	e := newEnv(t)
	old := e.dial(t)
	defer old.Close()
	e.srcSVID.set(e.pki.issue(t, "/ns/default/sa/client"))
	fresh := e.dial(t)
	defer fresh.Close()
	if got, want := e.lastSerial(), e.srcSVID.get().Serial().Text(16); got != want {
		t.Fatalf("server saw serial %s, want %s", got, want)
	}
	roundTrip(t, old, "old")
	roundTrip(t, fresh, "new")
	if st := e.pool.Stats(); st.Handshakes != 2 {
		t.Errorf("%d handshakes, want 2", st.Handshakes)
	}
}

// Connections are not shared between workloads: the destination reads the
// source's labels from its certificate.
func TestPoolSeparatesSources(t *testing.T) {
	e := newEnv(t)
	a := e.dial(t)
	defer a.Close()
	otherSVID := e.pki.issue(t, "/ns/default/sa/client")
	other := Source{Key: "other-pod", SVID: func() *identity.SVID { return otherSVID }}
	b, err := e.pool.Dial(context.Background(), other, e.dst, e.app, netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if st := e.pool.Stats(); st.Conns != 2 {
		t.Errorf("%d connections for two sources, want 2", st.Conns)
	}
}

func TestPoolClosesIdleConnections(t *testing.T) {
	e := newEnv(t, withPoolConfig(func(pc *PoolConfig) { pc.IdleTimeout = 50 * time.Millisecond }))
	s := e.dial(t)
	time.Sleep(100 * time.Millisecond) // busy, not idle: must survive
	roundTrip(t, s, "alive")
	s.Close()
	waitFor(t, "idle connection closed", func() bool {
		return e.pool.Stats().Conns == 0 && len(e.server.Conns()) == 0
	})
	s = e.dial(t) // a fresh connection after the idle one went away
	s.Close()
	if st := e.pool.Stats(); st.Handshakes != 2 {
		t.Errorf("%d handshakes, want 2", st.Handshakes)
	}
}

// A pooled connection that died is replaced without failing the Dial.
func TestPoolReplacesDeadConnection(t *testing.T) {
	e := newEnv(t)
	s := e.dial(t)
	s.Close()
	e.pool.mu.Lock()
	for _, list := range e.pool.conns {
		for _, c := range list {
			c.cc.Close()
		}
	}
	e.pool.mu.Unlock()
	s = e.dial(t)
	roundTrip(t, s, "revived")
	s.Close()
	if st := e.pool.Stats(); st.Handshakes != 2 || st.Conns != 1 {
		t.Errorf("pool stats %+v, want 2 handshakes, 1 connection", st)
	}
}

// A server that never answers the handshake: Dial gives up with its
// context, and Close stops the handshake still running.
func TestPoolDialHonoursContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the listener closes
		}
	}()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	dst := Destination{Addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	_, err = e.pool.Dial(ctx, e.src, dst, e.app, netip.AddrPort{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial error %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Dial took %s", d)
	}
	e.pool.Close()
	if _, err := e.pool.Dial(context.Background(), e.src, e.dst, e.app, netip.AddrPort{}); !errors.Is(err, ErrPoolClosed) {
		t.Errorf("Dial after Close: %v", err)
	}
}

// Close fails the streams still open.
func TestPoolCloseEndsStreams(t *testing.T) {
	e := newEnv(t)
	s := e.dial(t)
	defer s.Close()
	e.pool.Close()
	if _, err := io.ReadAll(s); err == nil {
		t.Fatal("stream read ended cleanly after pool Close")
	}
}
