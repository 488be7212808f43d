package hbone

import (
	"crypto/tls"
	"net"
	"sync"
)

// TLS writes every record (at most 16 KiB of plaintext) with its own
// syscall, so one 1 MiB HTTP/2 frame costs 64 writes. batchConn, under the
// tls.Conn, collects the records of one tls.Conn.Write and sends them with
// one syscall; batchTLS, over it, marks where each Write begins and ends.
// The extra copy is cheap next to the 63 syscalls it saves (DESIGN §8:
// "writing a frame's records in one syscall").

// batchConn is the TCP connection under TLS.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      *[]byte
}

// batchBufs holds batch buffers between writes, so an idle connection does
// not keep a megabyte of them.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxFrameSize+maxFrameSize/16); return &b }}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.batching {
		*c.buf = append(*c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *batchConn) begin() {
	c.mu.Lock()
	c.batching = true
	c.buf = batchBufs.Get().(*[]byte)
	c.mu.Unlock()
}

// flush sends what the batch collected. It holds the lock while writing:
// a record TLS writes meanwhile (an alert) must follow the batch, not
// overtake it.
func (c *batchConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	var err error
	if len(*c.buf) > 0 {
		_, err = c.Conn.Write(*c.buf)
	}
	*c.buf = (*c.buf)[:0]
	batchBufs.Put(c.buf)
	c.buf = nil
	return err
}

// batchTLS is the tls.Conn HTTP/2 uses: each Write's records leave in one
// syscall. Everything else (Read, ConnectionState, CloseWrite...) is the
// tls.Conn's.
type batchTLS struct {
	*tls.Conn
	raw *batchConn
	wmu sync.Mutex // one batch at a time
}

// newBatchTLS wraps raw for TLS; handshake with the returned tls.Conn,
// then use the batchTLS for data.
func newBatchTLS(raw net.Conn, client bool, cfg *tls.Config) *batchTLS {
	bc := &batchConn{Conn: raw}
	var tc *tls.Conn
	if client {
		tc = tls.Client(bc, cfg)
	} else {
		tc = tls.Server(bc, cfg)
	}
	return &batchTLS{Conn: tc, raw: bc}
}

func (b *batchTLS) Write(p []byte) (int, error) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.raw.begin()
	n, err := b.Conn.Write(p)
	if ferr := b.raw.flush(); err == nil {
		err = ferr
	}
	return n, err
}
