package hbone

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ztcn/ztcn/internal/identity"
)

// Every benchmark runs a plain-TCP baseline ("tcp") and the HBONE path
// ("hbone") in the same run, and the hbone sub-benchmark reports its ratio
// to the baseline, because absolute figures move ±15–40 % from run to run
// (DESIGN §8). Run tcp before hbone (the default order).
//
// The hbone path is the one of two agents: application → outbound pump →
// pooled stream → TLS/HTTP/2 → server → inbound pump → application, all
// over loopback in one process.

// baseline remembers the last tcp sub-benchmark's ns/op.
type baseline struct{ nsPerOp float64 }

func (bl *baseline) record(b *testing.B) {
	bl.nsPerOp = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
}

// report adds the hbone/tcp time ratio and the added latency per op.
func (bl *baseline) report(b *testing.B) {
	if bl.nsPerOp == 0 {
		return
	}
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(ns/bl.nsPerOp, "x-tcp-time")
	b.ReportMetric((ns-bl.nsPerOp)/1e3, "µs-over-tcp")
}

// BenchmarkPump: the pump alone between two loopback TCP connections,
// 1 MiB per op, against writing to the sink directly. Steady state must
// not allocate.
func BenchmarkPump(b *testing.B) {
	const chunk = 1 << 20
	var bl baseline
	run := func(b *testing.B, pumped bool) {
		client, server := tcpPair(b)
		if pumped {
			agentIn := server
			agentOut, appSide := tcpPair(b)
			done := make(chan struct{})
			go func() {
				defer close(done)
				Pipe(context.Background(), agentIn, agentOut)
			}()
			b.Cleanup(func() { <-done })
			server = appSide
		}
		got := make(chan int64, 1)
		go func() {
			buf := make([]byte, 256<<10)
			var n int64
			for {
				m, err := server.Read(buf)
				n += int64(m)
				if err != nil {
					got <- n
					return
				}
			}
		}()
		buf := make([]byte, chunk)
		// Warm up (pooled buffers grown to their bulk size), then collect
		// what earlier benchmarks left, so the count below is the steady
		// state's.
		for range 8 {
			if _, err := client.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		b.SetBytes(chunk)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := client.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		client.(*net.TCPConn).CloseWrite()
		n := <-got - 8*chunk
		b.StopTimer()
		if n != int64(b.N)*chunk {
			b.Fatalf("sink got %d bytes, want %d", n, b.N*chunk)
		}
		client.Close()
		server.Close()
	}
	b.Run("tcp", func(b *testing.B) { run(b, false); bl.record(b) })
	b.Run("pump", func(b *testing.B) { run(b, true); bl.report(b) })
}

// reportThroughput adds the hbone/tcp throughput ratio.
func (bl *baseline) reportThroughput(b *testing.B) {
	if bl.nsPerOp > 0 {
		b.ReportMetric(bl.nsPerOp/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "x-tcp-throughput")
	}
}

// BenchmarkThroughput: 1 MiB writes through one connection to a sink that
// confirms the total at the end.
func BenchmarkThroughput(b *testing.B) {
	const chunk = 1 << 20
	e := newEnv(b, withApp(sink))
	out := startOutbound(b, e)
	var bl baseline
	run := func(b *testing.B, addr netip.AddrPort) {
		c := dialTCPConn(b, addr)
		buf := make([]byte, chunk)
		b.SetBytes(chunk)
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		var total [8]byte
		if _, err := io.ReadFull(c, total[:]); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c.Close()
		if n := binary.BigEndian.Uint64(total[:]); n != uint64(b.N)*chunk {
			b.Fatalf("sink got %d bytes, want %d", n, b.N*chunk)
		}
	}
	var pair baseline
	b.Run("tcp", func(b *testing.B) { run(b, e.app); bl.record(b) })
	b.Run("tlspair", func(b *testing.B) {
		run(b, startTLSPair(b, e))
		bl.reportThroughput(b)
		pair.record(b)
	})
	b.Run("hbone", func(b *testing.B) {
		run(b, out)
		bl.reportThroughput(b)
		if pair.nsPerOp > 0 {
			b.ReportMetric(pair.nsPerOp/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "x-tlspair-throughput")
		}
	})
}

// BenchmarkRequestResponse: 100-byte request, 100-byte echo, on one warm
// connection; reports p50 and p99.
func BenchmarkRequestResponse(b *testing.B) {
	e := newEnv(b)
	out := startOutbound(b, e)
	var bl baseline
	run := func(b *testing.B, addr netip.AddrPort) {
		c := dialTCPConn(b, addr)
		defer c.Close()
		req, resp := make([]byte, 100), make([]byte, 100)
		lat := make([]time.Duration, b.N)
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, resp); err != nil {
				b.Fatal(err)
			}
			lat[i] = time.Since(start)
		}
		b.StopTimer()
		reportPercentiles(b, lat)
	}
	b.Run("tcp", func(b *testing.B) { run(b, e.app); bl.record(b) })
	b.Run("tlspair", func(b *testing.B) { run(b, startTLSPair(b, e)); bl.report(b) })
	b.Run("hbone", func(b *testing.B) { run(b, out); bl.report(b) })
}

// BenchmarkNewConnection: a new application connection and one 100-byte
// round trip. tcp connects straight to the application; hbone connects to
// the outbound agent, which opens a stream on its warm pool and sends the
// application's bytes behind the CONNECT; hbone-wait sends them only after
// the answer (before optimistic opening); hbone-nopool pays a full
// mutual-TLS handshake per connection (a fresh pool each time), the cost
// pooling avoids.
func BenchmarkNewConnection(b *testing.B) {
	e := newEnv(b)
	out := startOutbound(b, e)
	waiting := startOutboundWith(b, e, false)
	warm := dialTCPConn(b, out) // the pool's connection exists before timing
	pingPong(b, warm)
	warm.Close()
	var bl, pooled baseline
	b.Run("tcp", func(b *testing.B) { newConnections(b, e.app); bl.record(b) })
	b.Run("hbone", func(b *testing.B) {
		before := e.pool.Stats().Handshakes
		newConnections(b, out)
		bl.report(b)
		pooled.record(b)
		if n := e.pool.Stats().Handshakes - before; n != 0 {
			b.Fatalf("%d handshakes on a warm pool", n)
		}
	})
	b.Run("hbone-wait", func(b *testing.B) {
		newConnections(b, waiting)
		bl.report(b)
		if pooled.nsPerOp > 0 {
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(ns/pooled.nsPerOp, "x-pooled-time")
		}
	})
	b.Run("hbone-nopool", func(b *testing.B) {
		conns := len(e.server.Conns()) // the warm pool's
		lat := make([]time.Duration, b.N)
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			p, err := NewPool(PoolConfig{Verifier: e.pki.verifier})
			if err != nil {
				b.Fatal(err)
			}
			s, err := p.Dial(context.Background(), e.src, e.dst, e.app, netip.AddrPort{})
			if err != nil {
				b.Fatal(err)
			}
			pingPong(b, s)
			s.Close()
			p.Close()
			lat[i] = time.Since(start)
		}
		b.StopTimer()
		// Let the server finish with the connections before the next
		// benchmark measures anything.
		waitFor(b, "server connections closed", func() bool { return len(e.server.Conns()) == conns })
		reportPercentiles(b, lat)
		bl.report(b)
		if pooled.nsPerOp > 0 {
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(ns/pooled.nsPerOp, "x-pooled-time")
		}
	})
}

// BenchmarkNewConnectionAcrossNodes is BenchmarkNewConnection with 1 ms of
// one-way latency on the HBONE connection, as between two zones
// (loopback makes the agents' round trip nearly free, which hides what
// optimistic opening saves; Go's timers make the delay 1–1.2 ms). hbone
// sends the application's bytes behind the CONNECT, hbone-wait after its
// answer: two round trips between the nodes against one.
func BenchmarkNewConnectionAcrossNodes(b *testing.B) {
	const oneWay = time.Millisecond
	e := newEnv(b, withLinkLatency(oneWay))
	early, waiting := startOutbound(b, e), startOutboundWith(b, e, false)
	for _, addr := range []netip.AddrPort{early, waiting} {
		c := dialTCPConn(b, addr) // the pool's connection exists before timing
		pingPong(b, c)
		c.Close()
	}
	var wait baseline
	b.Run("hbone-wait", func(b *testing.B) { newConnections(b, waiting); wait.record(b) })
	b.Run("hbone", func(b *testing.B) {
		newConnections(b, early)
		if wait.nsPerOp > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/wait.nsPerOp, "x-wait-time")
		}
	})
}

// newConnections times b.N times: connect to addr, one 100-byte round
// trip, close; and reports the percentiles.
func newConnections(b *testing.B, addr netip.AddrPort) {
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		c := dialTCPConn(b, addr)
		pingPong(b, c)
		c.Close()
		lat[i] = time.Since(start)
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

// sink reads until EOF and answers the byte count (8 bytes, big endian).
func sink(c net.Conn) {
	buf := make([]byte, 256<<10)
	var n uint64
	for {
		m, err := c.Read(buf)
		n += uint64(m)
		if err != nil {
			break
		}
	}
	var total [8]byte
	binary.BigEndian.PutUint64(total[:], n)
	c.Write(total[:])
}

// startTLSPair is the "plain Go TLS proxy pair" of DESIGN §8: one mutual
// TLS 1.3 connection per application connection, pumped at both ends, with
// the same certificates and TLS settings as HBONE but no HTTP/2 and no
// record batching. It returns the address applications connect to.
func startTLSPair(tb testing.TB, e *env) netip.AddrPort {
	tb.Helper()
	var wg sync.WaitGroup
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	outer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	serve := func(ln net.Listener, handle func(net.Conn)) {
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() { handle(c) })
			}
		})
	}
	serve(inner, func(c net.Conn) { // the destination's agent
		var peer *identity.Peer
		tc := tls.Server(c, serverTLS(func() *identity.SVID { return e.serverID }, e.pki.verifier, nil, &peer))
		app, err := net.Dial("tcp", e.app.String())
		if err != nil {
			c.Close()
			return
		}
		Pipe(context.Background(), tc, app)
	})
	serve(outer, func(c net.Conn) { // the source's agent
		var peer *identity.Peer
		tc, err := tls.Dial("tcp", inner.Addr().String(), clientTLS(e.srcSVID.get, e.pki.verifier, nil, &peer))
		if err != nil {
			c.Close()
			return
		}
		Pipe(context.Background(), c, tc)
	})
	tb.Cleanup(func() {
		outer.Close()
		inner.Close()
		wg.Wait()
	})
	return outer.Addr().(*net.TCPAddr).AddrPort()
}

// startOutbound emulates the data plane's outbound listener: each accepted
// application connection gets a stream from the pool and a pump, the
// application's first bytes following the CONNECT (as package dataplane
// does).
func startOutbound(tb testing.TB, e *env) netip.AddrPort { return startOutboundWith(tb, e, true) }

// startOutboundWith is startOutbound; with early false the pump starts
// only once the destination answered the CONNECT (the baseline of
// optimistic opening).
func startOutboundWith(tb testing.TB, e *env, early bool) netip.AddrPort {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				from := c.RemoteAddr().(*net.TCPAddr).AddrPort()
				if !early {
					s, err := e.pool.Dial(context.Background(), e.src, e.dst, e.app, from)
					if err != nil {
						c.Close()
						return
					}
					Pipe(context.Background(), c, s)
					return
				}
				s, err := e.pool.Open(context.Background(), e.src, e.dst, e.app, from)
				if err != nil {
					c.Close()
					return
				}
				Pump{}.PipeAfter(context.Background(), c, s, func() error { return s.Connect(context.Background()) })
			})
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func dialTCPConn(tb testing.TB, addr netip.AddrPort) net.Conn {
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// pingPong sends 100 bytes to an echo application and reads them back.
func pingPong(tb testing.TB, c io.ReadWriter) {
	var buf [100]byte
	if _, err := c.Write(buf[:]); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		tb.Fatal(err)
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
