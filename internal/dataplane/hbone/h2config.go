//lint:file-ignore SA1019 x/net/http2 is this package's HTTP/2 (DESIGN §2): Server.ServeConn on a conn we handshook and Transport.NewClientConn on a conn we dialed. Its successors in net/http change the API, not the protocol.

package hbone

import (
	"io"
	"log"
	"net/http"
	"time"

	"golang.org/x/net/http2"
)

// HTTP/2 settings of both ends (DESIGN §5, §8). x/net's defaults (64 KiB
// stream windows on the wire at first, 16 KiB frames) cost about half the
// throughput of the prototype.
const (
	// streamWindow is each stream's receive window: 4 MiB, ztunnel's
	// value. It must cover bandwidth × RTT of one flow; 64 KiB windows cut
	// throughput by 47 % on the prototype.
	streamWindow = 4 << 20
	// connWindow is the connection's receive window: 16 MiB, room for
	// four streams at full speed, and the bound on what one connection can
	// make this agent buffer.
	connWindow = 16 << 20
	// maxFrameSize is the largest DATA frame either end accepts: 1 MiB.
	// With 16 KiB frames every frame plus its header straddles two TLS
	// records and two syscalls (−28 % on the prototype); large frames let
	// one 256 KiB pump write become one frame.
	maxFrameSize = 1 << 20
	// maxStreamsPerConn is the streams one connection carries: 100, the
	// HTTP/2 spec's recommended minimum and ztunnel's pool limit. Beyond it
	// the pool opens another connection.
	maxStreamsPerConn = 100
	// pingInterval / pingTimeout: a connection with no frame for 10 s is
	// probed with PING and closed when no answer comes within 20 s, so a
	// peer that vanished without a FIN (node crash, partition) is dropped
	// within 30 s instead of when TCP gives up (~15 min).
	pingInterval = 10 * time.Second
	pingTimeout  = 20 * time.Second
	// writeByteTimeout closes a connection whose socket accepts no byte
	// for 20 s. HTTP/2 flow control stops writes long before the socket
	// fills, so a stuck socket means a dead or wedged peer.
	writeByteTimeout = 20 * time.Second
	// maxHeaderBytes bounds a request's header list (SETTINGS_MAX_HEADER_
	// LIST_SIZE, plus x/net's allowance of 32 bytes for 10 fields): 16 KiB.
	// A CONNECT needs a few hundred bytes. x/net's default, net/http's
	// 1 MiB, let one client make the server hold 100 MiB per connection:
	// 100 streams, each a 1 MiB header the handler keeps while it pumps.
	// It is also the budget of the CONTINUATION flood (CVE-2024-27316):
	// x/net closes the connection once a header block overruns it.
	maxHeaderBytes = 16 << 10
)

// newH2Server is the HTTP/2 server of every HBONE connection. Against
// abuse (abuse_test.go) the limits are: MaxConcurrentStreams (100 streams
// and as many handlers per connection; x/net refuses more and closes a
// connection that queues over 4× that, the first half of its rapid-reset
// defence), the windows (what a client that sends and never reads can
// make the server buffer: 16 MiB per connection), maxHeaderBytes (header
// lists, the CONTINUATION flood), the PING timeouts and writeByteTimeout
// (dead or wedged peers). The server adds the connection idle timeout, the
// preface deadline and the early-reset limit (server.go).
func newH2Server() *http2.Server {
	return &http2.Server{
		MaxConcurrentStreams:         maxStreamsPerConn,
		MaxReadFrameSize:             maxFrameSize,
		MaxUploadBufferPerConnection: connWindow,
		MaxUploadBufferPerStream:     streamWindow,
		ReadIdleTimeout:              pingInterval,
		PingTimeout:                  pingTimeout,
		WriteByteTimeout:             writeByteTimeout,
	}
}

// newH2Transport is the HTTP/2 client of the pool. Only a net/http
// Transport's HTTP2 settings carry the receive windows to x/net's client,
// so one is configured for that and never used to dial.
func newH2Transport() (*http2.Transport, error) {
	t1 := &http.Transport{HTTP2: &http.HTTP2Config{
		MaxReceiveBufferPerConnection: connWindow,
		MaxReceiveBufferPerStream:     streamWindow,
		MaxReadFrameSize:              maxFrameSize,
		SendPingTimeout:               pingInterval,
		PingTimeout:                   pingTimeout,
		WriteByteTimeout:              writeByteTimeout,
	}}
	t2, err := http2.ConfigureTransports(t1)
	if err != nil {
		return nil, err
	}
	// The pool decides when a connection is idle; x/net's own idle
	// timer would close connections behind its back.
	t2.IdleConnTimeout = 0
	t2.MaxReadFrameSize = maxFrameSize
	t2.ReadIdleTimeout, t2.PingTimeout = pingInterval, pingTimeout
	t2.WriteByteTimeout = writeByteTimeout
	return t2, nil
}

// discardLog silences x/net's server log lines (a client that hung up
// mid-frame, and the like): the data plane reports through its hooks, and
// a remote peer must not be able to flood the agent's log.
var discardLog = log.New(io.Discard, "", 0)
