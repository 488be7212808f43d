//lint:file-ignore SA1019 x/net/http2 is this package's HTTP/2 (DESIGN §2): Server.ServeConn on a conn we handshook and Transport.NewClientConn on a conn we dialed. Its successors in net/http change the API, not the protocol.

package hbone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"

	"github.com/ztcn/ztcn/internal/identity"
)

// DialNetFunc opens the TCP connection to an HBONE server. The data
// plane's sets SO_MARK 0x539, so the pod's own redirection rules let the
// agent's connection out (and may dial from the source pod's namespace).
type DialNetFunc func(ctx context.Context, addr netip.AddrPort) (net.Conn, error)

// Source is the workload a stream is opened for: its SVID authenticates
// the connection, so connections are never shared between workloads
// (policy at the destination reads the labels in this very certificate).
type Source struct {
	// Key identifies the workload (its UID): the pool's key, and what
	// Rotate takes.
	Key string
	// SVID returns the workload's current SVID. When it returns another
	// certificate than the one a connection was made with, that connection
	// drains and new streams use a new connection.
	SVID func() *identity.SVID
	// Dial, if set, replaces PoolConfig.Dial for this workload.
	Dial DialNetFunc
}

// Destination is an HBONE server to tunnel through.
type Destination struct {
	// Addr is the server, the destination pod's IP and port 15008.
	Addr netip.AddrPort
	// ID is the identity the server must prove; the zero ID accepts any
	// identity the trust bundles verify (destination not known).
	ID spiffeid.ID
}

// PoolConfig configures a Pool. Verifier is required.
type PoolConfig struct {
	// Verifier checks server SVIDs.
	Verifier *identity.Verifier
	// Dial opens TCP connections (default: net.Dialer).
	Dial DialNetFunc
	// MaxStreamsPerConn caps the streams of one connection (default and
	// maximum 100, DESIGN §5); the pool opens another connection beyond.
	MaxStreamsPerConn int
	// IdleTimeout closes a connection that carried no stream for this long
	// (default 5 min, DESIGN §5: long enough that bursty clients keep
	// their connection, short enough that a scaled-down peer's does not
	// linger).
	IdleTimeout time.Duration
	// HandshakeTimeout bounds TCP connect plus TLS handshake (default
	// 10 s).
	HandshakeTimeout time.Duration
	// OnHandshake, if set, is called after every handshake attempt.
	OnHandshake func(ClientHandshakeEvent)
}

// ClientHandshakeEvent reports one client-side handshake.
type ClientHandshakeEvent struct {
	Source      string // Source.Key
	Destination Destination
	Serial      string         // hex serial of the SVID presented
	Peer        *identity.Peer // the server, nil when Err != nil
	Err         error
	Duration    time.Duration
}

// defaultIdleConnTimeout: see PoolConfig.IdleTimeout.
const defaultIdleConnTimeout = 5 * time.Minute

// ErrPoolClosed is returned by Dial after Close.
var ErrPoolClosed = errors.New("hbone: pool closed")

// Pool holds HTTP/2 connections to HBONE servers, keyed by (source
// workload, destination identity, destination address), and opens CONNECT
// streams on them.
type Pool struct {
	cfg    PoolConfig
	t      *http2.Transport
	ctx    context.Context // ends at Close: aborts handshakes in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup // handshakes in flight

	handshakes atomic.Uint64

	mu     sync.Mutex
	closed bool
	// conns are the connections new streams may use, per key.
	conns map[poolKey][]*poolConn
	// draining are retired connections (older SVID, dead, idle) that
	// still carry streams; each is closed when its last stream ends.
	draining map[*poolConn]struct{}
}

type poolKey struct {
	src   string
	dstID spiffeid.ID
	addr  netip.AddrPort
}

// PoolStats is a snapshot for metrics and tests.
type PoolStats struct {
	Conns      int    // open or opening connections, draining ones included
	Streams    int    // streams open
	Handshakes uint64 // TLS handshakes attempted since NewPool
}

// NewPool checks cfg and fills in defaults.
func NewPool(cfg PoolConfig) (*Pool, error) {
	if cfg.Verifier == nil {
		return nil, errors.New("hbone: pool needs a Verifier")
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = func(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr.String())
		}
	}
	if cfg.MaxStreamsPerConn <= 0 || cfg.MaxStreamsPerConn > maxStreamsPerConn {
		cfg.MaxStreamsPerConn = maxStreamsPerConn
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultIdleConnTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	t, err := newH2Transport()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{
		cfg: cfg, t: t, ctx: ctx, cancel: cancel,
		conns:    make(map[poolKey][]*poolConn),
		draining: make(map[*poolConn]struct{}),
	}, nil
}

// Rotate makes every connection of the source workload drain: no new
// streams, closed when its last stream ends. Call it when the workload's
// SVID is replaced or revoked; the next Dial connects with the new one.
func (p *Pool) Rotate(srcKey string) {
	p.mu.Lock()
	var idle []*poolConn
	for k, list := range p.conns {
		if k.src != srcKey {
			continue
		}
		for _, c := range list {
			if p.retireLocked(c) {
				idle = append(idle, c)
			}
		}
		p.pruneLocked(k)
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// Stats returns the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PoolStats{Handshakes: p.handshakes.Load()}
	for _, list := range p.conns {
		for _, c := range list {
			st.Conns++
			st.Streams += c.streams
		}
	}
	for c := range p.draining {
		st.Conns++
		st.Streams += c.streams
	}
	return st
}

// Close closes every connection (open streams fail) and waits for
// handshakes in flight to give up.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var all []*poolConn
	for k, list := range p.conns {
		all = append(all, list...)
		delete(p.conns, k)
	}
	for _, c := range all {
		c.stopIdleLocked()
	}
	for c := range p.draining {
		all = append(all, c)
		delete(p.draining, c)
	}
	p.mu.Unlock()
	p.cancel()
	for _, c := range all {
		c.close()
	}
	p.wg.Wait()
	return nil
}

// reserve returns a connection of (src, dst) with a stream slot taken for
// the caller, opening a connection when none has room. Concurrent callers
// share a connection that is still handshaking, so a burst of N dials
// costs ⌈N/100⌉ handshakes, not N.
func (p *Pool) reserve(ctx context.Context, src Source, dst Destination) (*poolConn, error) {
	svid := src.SVID()
	if svid == nil {
		return nil, fmt.Errorf("hbone: source %s has no SVID", src.Key)
	}
	key := poolKey{src: src.Key, dstID: dst.ID, addr: dst.Addr}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	c, idle := p.pickLocked(key, svid)
	if c == nil {
		c = &poolConn{key: key, svid: svid, ready: make(chan struct{}), streams: 1}
		p.conns[key] = append(p.conns[key], c)
		p.wg.Add(1)
		go p.connect(c, src, dst)
	}
	p.mu.Unlock()
	for _, d := range idle {
		d.close()
	}

	select {
	case <-c.ready:
	case <-ctx.Done():
		p.release(c)
		return nil, ctx.Err()
	}
	if c.err != nil {
		p.release(c)
		return nil, c.err
	}
	return c, nil
}

// pickLocked finds a connection of key with a free slot and takes it. On
// the way it retires connections made with an older SVID of the source
// (rotation) and dead ones; those already idle are returned for closing.
func (p *Pool) pickLocked(key poolKey, svid *identity.SVID) (picked *poolConn, idle []*poolConn) {
	for _, c := range p.conns[key] {
		if !sameSVID(c.svid, svid) || c.dead.Load() {
			if p.retireLocked(c) {
				idle = append(idle, c)
			}
			continue
		}
		if picked == nil && c.streams < p.cfg.MaxStreamsPerConn {
			picked = c
		}
	}
	p.pruneLocked(key)
	if picked != nil {
		picked.streams++
		picked.stopIdleLocked()
	}
	return picked, idle
}

// release gives back a stream slot of c.
func (p *Pool) release(c *poolConn) {
	p.mu.Lock()
	c.streams--
	closeNow := false
	if c.streams == 0 {
		if c.retired || p.closed {
			closeNow = true
			delete(p.draining, c)
		} else {
			p.startIdleLocked(c)
		}
	}
	p.mu.Unlock()
	if closeNow {
		c.close()
	}
}

// retireLocked stops new streams on c. It reports whether c carries no
// stream and must be closed by the caller (outside the lock); otherwise c
// drains and release closes it after its last stream. The caller prunes
// c's key.
func (p *Pool) retireLocked(c *poolConn) (closeNow bool) {
	if c.retired {
		return false
	}
	c.retired = true
	c.stopIdleLocked()
	if c.streams == 0 {
		return true
	}
	p.draining[c] = struct{}{}
	return false
}

// pruneLocked drops retired connections from key's list.
func (p *Pool) pruneLocked(key poolKey) {
	list := p.conns[key]
	kept := list[:0]
	for _, c := range list {
		if !c.retired {
			kept = append(kept, c)
		}
	}
	clear(list[len(kept):])
	if len(kept) == 0 {
		delete(p.conns, key)
	} else {
		p.conns[key] = kept
	}
}

// startIdleLocked arms c's idle timer: its last stream just ended.
func (p *Pool) startIdleLocked(c *poolConn) {
	c.idleSince = time.Now()
	if c.idleTimer == nil {
		c.idleTimer = time.AfterFunc(p.cfg.IdleTimeout, func() { p.reapIdle(c) })
		return
	}
	c.idleTimer.Reset(p.cfg.IdleTimeout)
}

// reapIdle closes c if it is still idle when its timer fires. A timer that
// raced with a new stream finds streams > 0, or a newer idleSince whose
// own Reset is pending, and does nothing.
func (p *Pool) reapIdle(c *poolConn) {
	p.mu.Lock()
	if c.streams > 0 || c.retired || time.Since(c.idleSince) < p.cfg.IdleTimeout {
		p.mu.Unlock()
		return
	}
	p.retireLocked(c)
	p.pruneLocked(c.key)
	p.mu.Unlock()
	c.close()
}

// sameSVID compares by certificate, so a source whose SVID function hands
// out copies does not retire its connections on every dial.
func sameSVID(a, b *identity.SVID) bool {
	return a == b || bytes.Equal(a.Leaf().Raw, b.Leaf().Raw)
}
