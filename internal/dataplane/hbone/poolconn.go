//lint:file-ignore SA1019 x/net/http2 is this package's HTTP/2 (DESIGN §2): Server.ServeConn on a conn we handshook and Transport.NewClientConn on a conn we dialed. Its successors in net/http change the API, not the protocol.

package hbone

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"

	"github.com/ztcn/ztcn/internal/identity"
)

// poolConn is one HTTP/2 connection of the pool.
type poolConn struct {
	key  poolKey
	svid *identity.SVID // the SVID this connection presented

	// ready is closed when the handshake has ended; cc and peer (or err)
	// are set before and never change after.
	ready chan struct{}
	err   error
	cc    *http2.ClientConn
	peer  *identity.Peer
	local net.Addr
	// dead is set when a stream found the connection unusable (closed,
	// GOAWAY, lost PING).
	dead atomic.Bool

	// Guarded by Pool.mu.
	streams   int  // slots taken: streams open or being opened
	retired   bool // takes no new stream; closed after the last one
	idleSince time.Time
	idleTimer *time.Timer

	closeOnce sync.Once
}

// connect dials, handshakes and starts HTTP/2 for c, then wakes the
// callers waiting on c.ready. It runs on its own goroutine with the pool's
// context, so a caller that gives up does not fail the others waiting.
func (p *Pool) connect(c *poolConn, src Source, dst Destination) {
	defer p.wg.Done()
	start := time.Now()
	p.handshakes.Add(1)
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.HandshakeTimeout)
	cc, local, peer, err := p.dialConn(ctx, src, dst, c.svid)
	cancel()
	if p.cfg.OnHandshake != nil {
		p.cfg.OnHandshake(ClientHandshakeEvent{
			Source: src.Key, Destination: dst, Serial: c.svid.Serial().Text(16),
			Peer: peer, Err: err, Duration: time.Since(start),
		})
	}
	p.mu.Lock()
	if err == nil && p.closed {
		cc.Close()
		err = ErrPoolClosed
	}
	if err != nil {
		// Nobody may pick c any more; the callers waiting release their
		// slots and the last one "closes" it (nothing to close).
		c.retired = true
		p.pruneLocked(c.key)
		c.err = err
	} else {
		c.cc, c.local, c.peer = cc, local, peer
	}
	p.mu.Unlock()
	close(c.ready)
}

// dialConn opens the TCP connection, runs mutual TLS presenting svid and
// starts an HTTP/2 client on it.
func (p *Pool) dialConn(ctx context.Context, src Source, dst Destination, svid *identity.SVID) (*http2.ClientConn, net.Addr, *identity.Peer, error) {
	dial := src.Dial
	if dial == nil {
		dial = p.cfg.Dial
	}
	raw, err := dial(ctx, dst.Addr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("hbone: connect to %s: %w", dst.Addr, err)
	}
	var peer *identity.Peer
	// The configuration presents exactly svid (not whatever src.SVID says
	// by the time of the handshake): the pool compares that pointer to
	// detect rotation.
	cfg := clientTLS(func() *identity.SVID { return svid }, p.cfg.Verifier, expectPeer(dst.ID), &peer)
	tc := newBatchTLS(raw, true, cfg)
	if err := handshake(ctx, tc.Conn, p.cfg.HandshakeTimeout); err != nil {
		raw.Close()
		return nil, nil, nil, &HandshakeError{Addr: dst.Addr.String(), Err: err}
	}
	conn := newConfirmConn(tc)
	cc, err := p.t.NewClientConn(conn)
	if err != nil {
		tc.Close()
		return nil, nil, nil, fmt.Errorf("hbone: start HTTP/2 with %s: %w", dst.Addr, err)
	}
	if err := conn.wait(ctx); err != nil {
		cc.Close()
		return nil, nil, nil, &HandshakeError{Addr: dst.Addr.String(), Err: err}
	}
	return cc, raw.LocalAddr(), peer, nil
}

// expectPeer requires the server to be id, unless id is zero (destination
// identity unknown: any identity the bundles verify).
func expectPeer(id spiffeid.ID) identity.Authorizer {
	if id.IsZero() {
		return nil
	}
	return func(p *identity.Peer) error {
		if p.ID != id {
			return fmt.Errorf("hbone: server is %s, want %s", p.ID, id)
		}
		return nil
	}
}

// stopIdleLocked disarms the idle timer: a stream is starting.
func (c *poolConn) stopIdleLocked() {
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
}

// close closes the HTTP/2 connection once it exists. A connection still
// handshaking is closed when its handshake ends.
func (c *poolConn) close() {
	c.closeOnce.Do(func() {
		select {
		case <-c.ready:
			if c.cc != nil {
				c.cc.Close()
			}
		default:
			go func() {
				<-c.ready
				if c.cc != nil {
					c.cc.Close()
				}
			}()
		}
	})
}
