package hbone

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ztcn/ztcn/internal/identity"
)

// HTTP/2 abuse of the HBONE server (the pod's :15008). Each attack comes
// from a raw client that writes frames by hand over TLS, authenticated
// with a valid SVID where the attack needs a verified peer, while a
// well-behaved pool client on its own connection must keep getting
// answers. Every test ends with the server's goroutines back where they
// were before the attack.

// rawH2 is an HTTP/2 client that writes frames by hand.
type rawH2 struct {
	conn net.Conn
	bw   *bufio.Writer
	fr   *http2.Framer

	wmu  sync.Mutex // bw, fr's writes, enc, hbuf
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	next uint32 // the next client stream ID

	mu       sync.Mutex
	status   map[int]int           // answers by :status
	resets   map[http2.ErrCode]int // RST_STREAM received, by code
	goAway   []http2.ErrCode
	settings map[http2.SettingID]uint32
	readErr  error
	done     chan struct{} // closed when the server closed the connection
}

// dialRawH2 handshakes with an SVID of the env's trust domain, sends the
// client preface and SETTINGS and, if read, reads every frame the server
// sends (acknowledging SETTINGS and PING, granting back DATA). Without
// read, the server's first SETTINGS and WINDOW_UPDATE are read, so the
// client knows the windows, and nothing after.
func dialRawH2(t *testing.T, e *env, read bool) *rawH2 {
	t.Helper()
	c := &rawH2{
		conn:     dialAttacker(t, e),
		next:     1,
		status:   map[int]int{},
		resets:   map[http2.ErrCode]int{},
		settings: map[http2.SettingID]uint32{},
		done:     make(chan struct{}),
	}
	c.bw = bufio.NewWriterSize(c.conn, 64<<10)
	c.fr = http2.NewFramer(c.bw, c.conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	t.Cleanup(func() {
		c.conn.Close()
		<-c.done
	})
	if err := c.send(func(fr *http2.Framer) error {
		if _, err := io.WriteString(c.bw, http2.ClientPreface); err != nil {
			return err
		}
		return fr.WriteSettings()
	}); err != nil {
		t.Fatal(err)
	}
	if read {
		go c.readLoop()
		return c
	}
	defer close(c.done)
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for sawWindow := false; !sawWindow; {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			c.noteSettings(f)
		case *http2.WindowUpdateFrame:
			sawWindow = f.StreamID == 0
		}
	}
	if err := c.send(func(fr *http2.Framer) error { return fr.WriteSettingsAck() }); err != nil {
		t.Fatal(err)
	}
	return c
}

// dialAttacker is a mutual TLS connection to the server with a valid SVID
// of its own.
func dialAttacker(t *testing.T, e *env) *tls.Conn {
	t.Helper()
	svid := e.pki.issue(t, "/ns/default/sa/attacker")
	var peer *identity.Peer
	d := &tls.Dialer{Config: clientTLS(func() *identity.SVID { return svid }, e.pki.verifier, nil, &peer)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", e.hbone.String())
	if err != nil {
		t.Fatal(err)
	}
	return c.(*tls.Conn)
}

// send writes what f frames and flushes, with a deadline so that a server
// that stopped reading fails the write instead of hanging the test.
func (c *rawH2) send(f func(*http2.Framer) error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := f(c.fr); err != nil {
		return err
	}
	return c.bw.Flush()
}

// newStream is the next stream ID. Call it inside send.
func (c *rawH2) newStream() uint32 {
	id := c.next
	c.next += 2
	return id
}

// writeHeaders writes a header block for stream id as HEADERS and as many
// CONTINUATION frames of at most 16 KiB (the frame size every peer
// accepts) as it needs. Call it inside send.
func (c *rawH2) writeHeaders(id uint32, endStream bool, fields ...hpack.HeaderField) error {
	c.hbuf.Reset()
	for _, f := range fields {
		if err := c.enc.WriteField(f); err != nil {
			return err
		}
	}
	const frag = 16 << 10
	block := c.hbuf.Bytes()
	first := block[:min(frag, len(block))]
	block = block[len(first):]
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(block) == 0,
	}); err != nil {
		return err
	}
	for len(block) > 0 {
		n := min(frag, len(block))
		if err := c.fr.WriteContinuation(id, n == len(block), block[:n]); err != nil {
			return err
		}
		block = block[n:]
	}
	return nil
}

// connectFields is a CONNECT to target as the pool sends it, plus extra.
func connectFields(target string, extra ...hpack.HeaderField) []hpack.HeaderField {
	return append([]hpack.HeaderField{
		{Name: ":method", Value: "CONNECT"},
		{Name: ":authority", Value: target},
	}, extra...)
}

func (c *rawH2) readLoop() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			status, _ := strconv.Atoi(f.PseudoValue("status"))
			c.mu.Lock()
			c.status[status]++
			c.mu.Unlock()
		case *http2.RSTStreamFrame:
			c.mu.Lock()
			c.resets[f.ErrCode]++
			c.mu.Unlock()
		case *http2.GoAwayFrame:
			c.mu.Lock()
			c.goAway = append(c.goAway, f.ErrCode)
			c.mu.Unlock()
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.noteSettings(f)
				c.send(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.send(func(fr *http2.Framer) error { return fr.WritePing(true, f.Data) })
			}
		case *http2.DataFrame:
			if n := uint32(len(f.Data())); n > 0 {
				c.send(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, n) })
			}
		}
	}
}

func (c *rawH2) noteSettings(f *http2.SettingsFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f.ForeachSetting(func(s http2.Setting) error {
		c.settings[s.ID] = s.Val
		return nil
	})
}

// closed reports whether the server closed the connection.
func (c *rawH2) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// counts returns the answers with status, the resets with code, and the
// GOAWAY codes received.
func (c *rawH2) counts(status int, code http2.ErrCode) (answers, resets int, goAway []http2.ErrCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status[status], c.resets[code], slices.Clone(c.goAway)
}

// legitClient is a well-behaved client: round trips through the env's
// pool, one stream each, until stop.
type legitClient struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	lat  []time.Duration
	errs []error
}

func startLegit(e *env) *legitClient {
	l := &legitClient{stop: make(chan struct{})}
	l.wg.Go(func() {
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			start := time.Now()
			err := l.roundTrip(e)
			l.mu.Lock()
			if err != nil {
				l.errs = append(l.errs, err)
			} else {
				l.lat = append(l.lat, time.Since(start))
			}
			l.mu.Unlock()
		}
	})
	return l
}

func (l *legitClient) roundTrip(e *env) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.pool.Dial(ctx, e.src, e.dst, e.app, e.app)
	if err != nil {
		return err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	if _, err := io.WriteString(s, "ping"); err != nil {
		return err
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(s, got); err != nil {
		return err
	}
	if string(got) != "ping" {
		return errors.New("bad echo " + strconv.Quote(string(got)))
	}
	return nil
}

// finish stops the client and checks that every round trip succeeded, at
// least a few happened, and none took long: the attack did not starve the
// other connections.
func (l *legitClient) finish(t *testing.T) {
	t.Helper()
	// A few round trips at least, should the attack have ended early.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		n := len(l.lat) + len(l.errs)
		l.mu.Unlock()
		if n >= 3 {
			break
		}
	}
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		t.Errorf("well-behaved client: %d of %d round trips failed, first: %v", len(l.errs), len(l.errs)+len(l.lat), l.errs[0])
	}
	if len(l.lat) < 3 {
		t.Fatalf("well-behaved client made only %d round trips", len(l.lat))
	}
	slices.Sort(l.lat)
	p50, worst := l.lat[len(l.lat)/2], l.lat[len(l.lat)-1]
	t.Logf("well-behaved client: %d round trips, p50 %s, max %s", len(l.lat), p50.Round(time.Microsecond), worst.Round(time.Microsecond))
	// Generous: a loaded 2-core machine under -race, and an attacker
	// on the same cores. Starvation would show as seconds.
	if worst > 2*time.Second {
		t.Errorf("well-behaved client waited %s for a round trip", worst)
	}
}

// sampler records the most goroutines and handler (stream) goroutines
// seen while an attack runs.
type sampler struct {
	stop, done chan struct{}
	maxG       int
	maxStreams int
}

func startSampler(s *Server) *sampler {
	sm := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(sm.done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			sm.maxG = max(sm.maxG, runtime.NumGoroutine())
			sm.maxStreams = max(sm.maxStreams, s.ActiveStreams())
			select {
			case <-sm.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return sm
}

func (sm *sampler) finish() (maxG, maxStreams int) {
	close(sm.stop)
	<-sm.done
	return sm.maxG, sm.maxStreams
}

// warmUp opens the pool's connection (and the server's goroutines for it)
// and returns the goroutine count with it idle: the baseline.
func warmUp(t *testing.T, e *env) int {
	t.Helper()
	l := &legitClient{}
	if err := l.roundTrip(e); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "warm-up stream to end", func() bool { return e.server.ActiveStreams() == 0 })
	time.Sleep(20 * time.Millisecond)
	return runtime.NumGoroutine()
}

// backToBaseline waits until the goroutines the attack started are gone.
func backToBaseline(t *testing.T, base int) {
	t.Helper()
	const slack = 3 // timers firing, the runtime's own
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+slack {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines 5 s after the attack, %d before", runtime.NumGoroutine(), base)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// heapInuse is the heap in use after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

const mib = 1 << 20

// Rapid reset (CVE-2023-44487): HEADERS(CONNECT) and RST_STREAM at once,
// as fast as one connection carries them. The server runs at most a few
// handlers at a time, closes the connection, and the well-behaved client
// keeps its latency.
func TestAttackHTTP2RapidReset(t *testing.T) {
	defer func() {
		t.Logf("SECURITY\tHTTP/2 rapid reset (CVE-2023-44487) on :15008\tconnection closed, bounded goroutines, others unaffected\t%s\t%v", map[bool]string{true: "as expected (see the test log)", false: "FAILED"}[!t.Failed()], !t.Failed())
	}()
	var appConns atomic.Int64
	e := newEnv(t, withApp(func(c net.Conn) { appConns.Add(1); echo(c) }))
	base := warmUp(t, e)
	appBefore := appConns.Load()
	legit := startLegit(e)
	smp := startSampler(e.server)

	a := dialRawH2(t, e, true)
	const batch = 100
	sent := 0
	start := time.Now()
	closedAfter := make(chan time.Duration, 1)
	go func() { <-a.done; closedAfter <- time.Since(start) }()
	for time.Since(start) < 5*time.Second && !a.closed() {
		err := a.send(func(fr *http2.Framer) error {
			for range batch {
				id := a.newStream()
				if err := a.writeHeaders(id, false, connectFields(e.app.String())...); err != nil {
					return err
				}
				if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			break // the server closed the connection
		}
		sent += batch
	}
	elapsed := time.Since(start)
	var closed time.Duration
	select {
	case closed = <-closedAfter:
	case <-time.After(5 * time.Second):
		t.Errorf("the server still serves the connection after %d reset streams in %s", sent, elapsed.Round(time.Millisecond))
		a.conn.Close()
		<-a.done
	}
	maxG, maxStreams := smp.finish()
	legit.finish(t)
	_, _, goAway := a.counts(0, 0)
	t.Logf("attacker: %d streams opened and reset in %s (%.0f/s); server closed the connection after %s (GOAWAY %v, %v); %d connections to the application; at most %d handlers and %d goroutines over the baseline at once",
		sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(), closed.Round(time.Millisecond), goAway, a.readErr, appConns.Load()-appBefore, maxStreams, maxG-base)
	if closed > 5*time.Second {
		t.Errorf("the server closed the connection only after %s", closed.Round(time.Millisecond))
	}
	if maxStreams > 2*maxStreamsPerConn {
		t.Errorf("%d handlers at once, want at most %d", maxStreams, 2*maxStreamsPerConn)
	}
	// A handler is one goroutine, two while it pumps; the well-behaved
	// client and the application add a few.
	if maxG-base > 4*maxStreamsPerConn {
		t.Errorf("%d goroutines over the baseline during the attack", maxG-base)
	}
	a.conn.Close()
	backToBaseline(t, base)
}

// A stream flood: 100 streams held open (the limit the server
// advertises), then many more. The excess is refused at once, not queued,
// and memory stays bounded.
func TestAttackHTTP2StreamFlood(t *testing.T) {
	defer func() {
		t.Logf("SECURITY\tHTTP/2 stream flood on :15008\texcess streams refused, memory bounded\t%s\t%v", map[bool]string{true: "as expected (see the test log)", false: "FAILED"}[!t.Failed()], !t.Failed())
	}()
	e := newEnv(t)
	base := warmUp(t, e)
	heapBefore := heapInuse()
	legit := startLegit(e)
	smp := startSampler(e.server)

	a := dialRawH2(t, e, true)
	open := func(n int) {
		t.Helper()
		for sentN := 0; sentN < n; sentN += 100 {
			if err := a.send(func(*http2.Framer) error {
				for range min(100, n-sentN) {
					if err := a.writeHeaders(a.newStream(), false, connectFields(e.app.String())...); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	open(maxStreamsPerConn)
	waitFor(t, "100 streams answered 200", func() bool { n, _, _ := a.counts(200, 0); return n == maxStreamsPerConn })
	const excess = 2000
	open(excess)
	refused := func() int {
		_, refused, _ := a.counts(0, http2.ErrCodeRefusedStream)
		_, protocol, _ := a.counts(0, http2.ErrCodeProtocol)
		return refused + protocol
	}
	waitFor(t, "excess streams refused", func() bool { return refused() == excess })
	heapDuring := heapInuse()
	maxG, maxStreams := smp.finish()
	legit.finish(t)

	a.mu.Lock()
	advertised := a.settings[http2.SettingMaxConcurrentStreams]
	resets := resetCodes(a.resets)
	a.mu.Unlock()
	answered, _, _ := a.counts(200, 0)
	t.Logf("server advertises %d streams; %d answered 200, %d more reset %v; at most %d handlers, %d goroutines over the baseline; heap +%.1f MiB",
		advertised, answered, excess, resets, maxStreams, maxG-base, float64(int64(heapDuring)-int64(heapBefore))/mib)
	if advertised != maxStreamsPerConn {
		t.Errorf("server advertises SETTINGS_MAX_CONCURRENT_STREAMS %d, want %d", advertised, maxStreamsPerConn)
	}
	if answered != maxStreamsPerConn {
		t.Errorf("%d streams answered, want %d", answered, maxStreamsPerConn)
	}
	if maxStreams > maxStreamsPerConn+1 { // +1: the well-behaved client's
		t.Errorf("%d handlers at once, want at most %d", maxStreams, maxStreamsPerConn+1)
	}
	if d := int64(heapDuring) - int64(heapBefore); d > 64*mib {
		t.Errorf("heap grew %.1f MiB during the flood", float64(d)/mib)
	}
	if maxG-base > 4*maxStreamsPerConn {
		t.Errorf("%d goroutines over the baseline during the flood", maxG-base)
	}
	a.conn.Close()
	backToBaseline(t, base)
}

// resetCodes formats RST_STREAM counts by code, e.g. "PROTOCOL_ERROR×2000".
func resetCodes(m map[http2.ErrCode]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k.String()+"×"+strconv.Itoa(v))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// Header lists no CONNECT needs (it needs a few hundred bytes): refused,
// and the bytes they carry are not held by the server.
func TestAttackHTTP2OversizedHeaders(t *testing.T) {
	defer func() {
		t.Logf("SECURITY\toversized headers / CONTINUATION flood on :15008\tconnection closed, memory bounded\t%s\t%v", map[bool]string{true: "as expected (see the test log)", false: "FAILED"}[!t.Failed()], !t.Failed())
	}()
	t.Run("a 64 KiB header is refused", func(t *testing.T) {
		e := newEnv(t)
		base := warmUp(t, e)
		a := dialRawH2(t, e, true)
		pad := hpack.HeaderField{Name: "x-pad", Value: strings.Repeat("p", 64<<10)}
		if err := a.send(func(*http2.Framer) error {
			return a.writeHeaders(a.newStream(), false, connectFields(e.app.String(), pad)...)
		}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "an answer", func() bool {
			n431, _, _ := a.counts(431, 0)
			n200, _, _ := a.counts(200, 0)
			return a.closed() || n431+n200 > 0
		})
		ok, _, goAway := a.counts(200, 0)
		t.Logf("GOAWAY %v, closed %v, 200s %d", goAway, a.closed(), ok)
		if ok != 0 {
			t.Error("the server answered 200 to a CONNECT with a 64 KiB header")
		}
		a.conn.Close()
		backToBaseline(t, base)
	})

	// The 2024 CONTINUATION flood (CVE-2024-27316 and kin): a header block
	// that never ends, one CONTINUATION after another.
	t.Run("CONTINUATION flood closes the connection", func(t *testing.T) {
		e := newEnv(t)
		base := warmUp(t, e)
		legit := startLegit(e)
		heapBefore := heapInuse()
		a := dialRawH2(t, e, true)
		// Small fields, so that each fragment decodes within the budget
		// and the server has to count them.
		a.hbuf.Reset()
		for i := 0; a.hbuf.Len() < 16<<10-64; i++ {
			a.enc.WriteField(hpack.HeaderField{Name: "x-f" + strconv.Itoa(i%1000), Value: "v", Sensitive: true})
		}
		frag := slices.Clone(a.hbuf.Bytes())
		const limit = 64 * mib
		sent := 0
		id := uint32(1)
		err := a.send(func(fr *http2.Framer) error {
			a.next = 3
			a.hbuf.Reset()
			a.enc.WriteField(hpack.HeaderField{Name: ":method", Value: "CONNECT"})
			a.enc.WriteField(hpack.HeaderField{Name: ":authority", Value: e.app.String()})
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: a.hbuf.Bytes()})
		})
		for err == nil && sent < limit && !a.closed() {
			err = a.send(func(fr *http2.Framer) error { return fr.WriteContinuation(id, false, frag) })
			sent += len(frag)
		}
		select {
		case <-a.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("the server still reads a header block after %d MiB", sent/mib)
		}
		heapAfter := heapInuse()
		legit.finish(t)
		_, _, goAway := a.counts(0, 0)
		t.Logf("connection closed (GOAWAY %v) once the client had written %d KiB of header block (most of it into socket buffers); heap +%.1f MiB",
			goAway, sent>>10, float64(int64(heapAfter)-int64(heapBefore))/mib)
		if sent >= limit {
			t.Errorf("the server read a %d MiB header block", sent/mib)
		}
		a.conn.Close()
		backToBaseline(t, base)
	})

	// Header lists each under x/net's default limit (1 MiB), on streams
	// the server keeps open: the server must not hold them.
	t.Run("big header lists on many streams are not held", func(t *testing.T) {
		e := newEnv(t)
		base := warmUp(t, e)
		legit := startLegit(e)
		heapBefore := heapInuse()
		a := dialRawH2(t, e, true)
		pad := hpack.HeaderField{Name: "x-pad", Value: strings.Repeat("p", 900<<10)}
		streams := 0
		for ; streams < maxStreamsPerConn && !a.closed(); streams++ {
			if err := a.send(func(*http2.Framer) error {
				return a.writeHeaders(a.newStream(), false, connectFields(e.app.String(), pad)...)
			}); err != nil {
				break
			}
		}
		waitFor(t, "every stream answered, or the connection closed", func() bool {
			ok, _, _ := a.counts(200, 0)
			n431, _, _ := a.counts(431, 0)
			return a.closed() || ok+n431 == streams
		})
		heapDuring := heapInuse()
		legit.finish(t)
		ok, _, goAway := a.counts(200, 0)
		grew := int64(heapDuring) - int64(heapBefore)
		t.Logf("%d streams with a 900 KiB header sent: %d answered 200, GOAWAY %v, closed %v; heap +%.1f MiB",
			streams, ok, goAway, a.closed(), float64(grew)/mib)
		if ok > 0 {
			t.Errorf("%d CONNECTs with a 900 KiB header answered 200", ok)
		}
		if grew > 32*mib {
			t.Errorf("heap grew %.1f MiB while the streams were open", float64(grew)/mib)
		}
		a.conn.Close()
		backToBaseline(t, base)
	})
}

// Slowloris: connections that never finish the TLS handshake, or finish
// it and never speak HTTP/2, or speak it and never open a stream. Each is
// closed after a timeout, goroutines and file descriptors stay bounded,
// and a valid client connects meanwhile.
func TestAttackHTTP2SlowConnections(t *testing.T) {
	defer func() {
		t.Logf("SECURITY\tslow handshakes and silent connections (slowloris) on :15008\tclosed at the handshake deadline, resources return\t%s\t%v", map[bool]string{true: "as expected (see the test log)", false: "FAILED"}[!t.Failed()], !t.Failed())
	}()
	// Short, but not so short that a loaded machine under -race fails
	// honest handshakes.
	const timeout = time.Second
	e := newEnv(t, withServerConfig(func(sc *ServerConfig) {
		sc.HandshakeTimeout = timeout
		sc.ConnIdleTimeout = timeout
	}))
	// The env's pool connects during the attack, not before.
	time.Sleep(20 * time.Millisecond)
	base, fdBase := runtime.NumGoroutine(), openFDs()

	type group struct {
		name  string
		n     int
		open  func() (net.Conn, error) // connects and does the group's part
		alive atomic.Int64             // connections the server has not closed
		worst atomic.Int64             // longest time to close, ns
	}
	tlsConn := func(afterHandshake func(net.Conn) error) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			c := net.Conn(dialAttacker(t, e))
			if err := afterHandshake(c); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
	}
	tcpConn := func(first []byte) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			c, err := net.Dial("tcp", e.hbone.String())
			if err == nil && len(first) > 0 {
				_, err = c.Write(first)
			}
			return c, err
		}
	}
	groups := []*group{
		{name: "TCP, no byte", n: 64, open: tcpConn(nil)},
		// A TLS record header announcing a 512-byte handshake message
		// that never comes.
		{name: "TLS record begun", n: 64, open: tcpConn([]byte{0x16, 0x03, 0x01, 0x02, 0x00})},
		{name: "TLS done, no preface", n: 16, open: tlsConn(func(net.Conn) error { return nil })},
		{name: "half a preface", n: 16, open: tlsConn(func(c net.Conn) error {
			_, err := io.WriteString(c, http2.ClientPreface[:10])
			return err
		})},
		{name: "preface, no SETTINGS", n: 16, open: tlsConn(func(c net.Conn) error {
			_, err := io.WriteString(c, http2.ClientPreface)
			return err
		})},
		// A client that speaks HTTP/2 and answers PINGs is alive; one that
		// never opens a stream is still not kept for ever.
		{name: "HTTP/2, no stream", n: 16, open: tlsConn(func(c net.Conn) error {
			if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
				return err
			}
			return http2.NewFramer(c, nil).WriteSettings()
		})},
	}
	var wg sync.WaitGroup
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	for _, g := range groups {
		for range g.n {
			c, err := g.open()
			if err != nil {
				t.Fatalf("%s: %v", g.name, err)
			}
			conns = append(conns, c)
			g.alive.Add(1)
			start := time.Now()
			wg.Go(func() {
				// Returns when the server closes the connection, or when
				// the test gives up and closes it.
				io.Copy(io.Discard, c)
				d := int64(time.Since(start))
				for w := g.worst.Load(); d > w && !g.worst.CompareAndSwap(w, d); w = g.worst.Load() {
				}
				g.alive.Add(-1)
			})
		}
	}
	maxG, maxFD := runtime.NumGoroutine(), openFDs()
	// A valid client connects (a full handshake) and gets answers while
	// all of them wait.
	l := &legitClient{}
	start := time.Now()
	if err := l.roundTrip(e); err != nil {
		t.Fatalf("valid client during the attack: %v", err)
	}
	t.Logf("valid client connected and got its echo in %s", time.Since(start).Round(time.Microsecond))

	deadline := time.Now().Add(5 * time.Second)
	for _, g := range groups {
		for g.alive.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	total := 0
	for _, g := range groups {
		total += g.n
		t.Logf("%-22s %3d connections, %d still open after 5 s, slowest closed after %s",
			g.name, g.n, g.alive.Load(), time.Duration(g.worst.Load()).Round(time.Millisecond))
		if g.alive.Load() > 0 {
			t.Errorf("%s: %d of %d connections still open after 5 s", g.name, g.alive.Load(), g.n)
		}
	}
	t.Logf("%d slow connections: at most %d goroutines and %d fds over the baseline", total, maxG-base, maxFD-fdBase)
	// Per connection: the client's reader and socket here, the server's
	// goroutine(s) and socket there.
	if maxG-base > 4*total {
		t.Errorf("%d goroutines for %d connections", maxG-base, total)
	}
	if maxFD-fdBase > 2*total+16 {
		t.Errorf("%d fds for %d connections", maxFD-fdBase, total)
	}
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	e.pool.Close()
	backToBaseline(t, base)
	waitFor(t, "fds back to the baseline", func() bool { return openFDs() <= fdBase+4 })
}

// Flow-control pinning: streams whose client sends as much as the windows
// allow and never reads what comes back. The server holds at most the
// windows' worth of it, and other connections are unaffected.
func TestAttackHTTP2NeverReads(t *testing.T) {
	defer func() {
		t.Logf("SECURITY\tclient that opens streams and never reads\tbounded by windows, others unaffected\t%s\t%v", map[bool]string{true: "as expected (see the test log)", false: "FAILED"}[!t.Failed()], !t.Failed())
	}()
	e := newEnv(t)
	base := warmUp(t, e)
	heapBefore := heapInuse()
	legit := startLegit(e)

	a := dialRawH2(t, e, false)
	var ids []uint32
	if err := a.send(func(*http2.Framer) error {
		for range maxStreamsPerConn {
			id := a.newStream()
			ids = append(ids, id)
			if err := a.writeHeaders(id, false, connectFields(e.app.String())...); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// All the connection window grants (16 MiB): 160 KiB per stream, in
	// 16 KiB frames. The echo application sends it all back, which the
	// client never reads.
	chunk := make([]byte, 16<<10)
	perStream := connWindow / maxStreamsPerConn / len(chunk) * len(chunk)
	sent := 0
	for off := 0; off < perStream; off += len(chunk) {
		if err := a.send(func(fr *http2.Framer) error {
			for _, id := range ids {
				if err := fr.WriteData(id, false, chunk); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("after %d KiB: %v", sent>>10, err)
		}
		sent += len(chunk) * len(ids)
	}
	waitFor(t, "the server to serve every stream", func() bool { return e.server.ActiveStreams() >= maxStreamsPerConn })
	time.Sleep(200 * time.Millisecond) // the data settle where it stalls
	heapDuring := heapInuse()
	legit.finish(t)
	grew := int64(heapDuring) - int64(heapBefore)
	t.Logf("%d streams, %d MiB sent, nothing read back: heap +%.1f MiB", len(ids), sent/mib, float64(grew)/mib)
	if grew > 64*mib {
		t.Errorf("heap grew %.1f MiB for one connection that does not read", float64(grew)/mib)
	}
	a.conn.Close()
	waitFor(t, "the streams to end", func() bool { return e.server.ActiveStreams() == 0 })
	backToBaseline(t, base)
}
