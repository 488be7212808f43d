package hbone

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/ztcn/ztcn/internal/identity"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// One Write of 1 MiB (64 TLS records) reaches the socket as one write.
func TestBatchTLSOneSyscallPerWrite(t *testing.T) {
	p := newPKI(t, "cluster.local")
	serverSVID, clientSVID := p.issue(t, "/ns/a/sa/server"), p.issue(t, "/ns/a/sa/client")
	a, b := tcpPair(t)
	counted := &countingConn{Conn: a}
	var cpeer, speer *identity.Peer
	client := newBatchTLS(counted, true, clientTLS(func() *identity.SVID { return clientSVID }, p.verifier, nil, &cpeer))
	server := newBatchTLS(b, false, serverTLS(func() *identity.SVID { return serverSVID }, p.verifier, nil, &speer))
	errc := make(chan error, 1)
	go func() { errc <- handshake(context.Background(), server.Conn, defaultHandshakeTimeout) }()
	if err := handshake(context.Background(), client.Conn, defaultHandshakeTimeout); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if speer == nil || speer.ID != clientSVID.ID || cpeer == nil || cpeer.ID != serverSVID.ID {
		t.Fatalf("peers not captured: server saw %v, client saw %v", speer, cpeer)
	}

	payload := make([]byte, 1<<20)
	got := make(chan int64, 1)
	go func() {
		n, _ := io.CopyN(io.Discard, server, int64(len(payload)))
		got <- n
	}()
	before := counted.writes.Load()
	if _, err := client.Write(payload); err != nil {
		t.Fatal(err)
	}
	if n := counted.writes.Load() - before; n != 1 {
		t.Errorf("1 MiB went out in %d socket writes, want 1", n)
	}
	if n := <-got; n != int64(len(payload)) {
		t.Fatalf("server read %d bytes", n)
	}
	client.Close()
	server.Close()
}
