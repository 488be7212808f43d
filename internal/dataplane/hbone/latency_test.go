package hbone

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"
)

// delayConn adds a one-way latency to what it writes, as a link between
// two nodes would: each write is queued and reaches the socket d later, in
// order, while the writer goes on (writes pipeline as on a real link).
type delayConn struct {
	net.Conn
	d     time.Duration
	queue chan delayed
	done  chan struct{}
	once  sync.Once

	mu  sync.Mutex
	err error // the first failed delayed write, returned by later writes
}

type delayed struct {
	at   time.Time
	data []byte
}

func newDelayConn(c net.Conn, d time.Duration) *delayConn {
	dc := &delayConn{Conn: c, d: d, queue: make(chan delayed, 1024), done: make(chan struct{})}
	go dc.deliver()
	return dc
}

func (c *delayConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	select {
	case c.queue <- delayed{at: time.Now().Add(c.d), data: append([]byte(nil), p...)}:
		return len(p), nil
	case <-c.done:
		return 0, net.ErrClosed
	}
}

func (c *delayConn) deliver() {
	for {
		select {
		case w := <-c.queue:
			time.Sleep(time.Until(w.at))
			if _, err := c.Conn.Write(w.data); err != nil {
				c.mu.Lock()
				c.err = err
				c.mu.Unlock()
			}
		case <-c.done:
			return
		}
	}
}

func (c *delayConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// CloseWrite is not passed on: a delayed conn carries HBONE, which never
// half-closes its TCP connection.

// delayListener accepts connections whose writes are delayed by d.
type delayListener struct {
	net.Listener
	d time.Duration
}

func (l delayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newDelayConn(c, l.d), nil
}

// withLinkLatency puts a one-way latency of d on the HBONE connections in
// both directions: the pool's writes and the server's.
func withLinkLatency(d time.Duration) envOption {
	return func(e *env, sc *ServerConfig, pc *PoolConfig) {
		withListener(func(ln net.Listener) net.Listener { return delayListener{ln, d} })(e, sc, pc)
		var dialer net.Dialer
		pc.Dial = func(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, "tcp", addr.String())
			if err != nil {
				return nil, err
			}
			return newDelayConn(c, d), nil
		}
	}
}
