package hbone

import (
	"context"
	"sync"
)

// In TLS 1.3 the client's handshake completes before the server has
// checked the client certificate: a refusal (unknown CA, expired, revoked,
// policy at handshake) arrives as an alert on the client's first read.
// confirmConn lets the pool wait for that first read, so a refused
// certificate surfaces as a HandshakeError of Dial (and is audited as a
// failed handshake) instead of a stream error later. The server sends its
// HTTP/2 SETTINGS as soon as it accepts the connection, so the wait costs
// about half a round trip per new connection, never per stream.
type confirmConn struct {
	*batchTLS
	once  sync.Once
	first chan error // receives the outcome of the first read
}

func newConfirmConn(tc *batchTLS) *confirmConn {
	return &confirmConn{batchTLS: tc, first: make(chan error, 1)}
}

func (c *confirmConn) Read(b []byte) (int, error) {
	n, err := c.batchTLS.Read(b)
	c.once.Do(func() {
		if n > 0 {
			c.first <- nil
		} else {
			c.first <- err
		}
	})
	return n, err
}

// wait returns nil once the server has sent data, or why it did not.
func (c *confirmConn) wait(ctx context.Context) error {
	select {
	case err := <-c.first:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
