package hbone

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/ztcn/ztcn/internal/identity"
)

// alpnH2 is the only application protocol HBONE speaks.
const alpnH2 = "h2"

// defaultHandshakeTimeout bounds a TLS handshake on either side: a full
// mTLS handshake takes ~2 ms here, so 10 s only trips on a peer that
// stalls, and frees its goroutine and socket.
const defaultHandshakeTimeout = 10 * time.Second

// serverTLS is the per-connection server configuration. identity builds it
// (mutual TLS 1.3, verification against bundles and revocations); the
// callback records the verified peer in *peer, which is why each
// connection gets its own configuration.
func serverTLS(svid func() *identity.SVID, v *identity.Verifier, authorize identity.Authorizer, peer **identity.Peer) *tls.Config {
	return tuneTLS(identity.ServerTLSConfig(svid, v, capture(authorize, peer)))
}

// clientTLS is serverTLS's client side, presenting the source workload's
// SVID.
func clientTLS(svid func() *identity.SVID, v *identity.Verifier, authorize identity.Authorizer, peer **identity.Peer) *tls.Config {
	return tuneTLS(identity.ClientTLSConfig(svid, v, capture(authorize, peer)))
}

func capture(authorize identity.Authorizer, peer **identity.Peer) identity.Authorizer {
	return func(p *identity.Peer) error {
		if authorize != nil {
			if err := authorize(p); err != nil {
				return err
			}
		}
		*peer = p
		return nil
	}
}

// tuneTLS applies what HBONE needs on top of identity's configuration.
func tuneTLS(c *tls.Config) *tls.Config {
	c.MinVersion, c.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	c.NextProtos = []string{alpnH2}
	// Full 16 KiB records from the first byte. Dynamic sizing starts each
	// burst with ~1 KB records to help browsers render early; between two
	// agents it only multiplies records and syscalls (DESIGN §8).
	c.DynamicRecordSizingDisabled = true
	// No resumption: a resumed handshake skips VerifyPeerCertificate, so a
	// peer revoked or expired since could come back on its ticket. The
	// pool keeps connections, so full handshakes are rare anyway.
	c.SessionTicketsDisabled = true
	return c
}

// handshake runs the handshake within timeout and checks what it
// negotiated.
func handshake(ctx context.Context, tc *tls.Conn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	return checkNegotiated(tc.ConnectionState())
}

// checkNegotiated refuses anything but TLS 1.3 with ALPN h2 and an AES-GCM
// suite. Go fixes the TLS 1.3 suites (it may pick ChaCha20-Poly1305 when a
// peer lacks AES hardware), so the suite is checked after the fact: HBONE
// peers are agents on servers with AES instructions, where AES-GCM is
// several times faster, and ztunnel offers nothing else.
func checkNegotiated(cs tls.ConnectionState) error {
	if cs.Version != tls.VersionTLS13 {
		return fmt.Errorf("negotiated %s, need TLS 1.3", tls.VersionName(cs.Version))
	}
	if cs.NegotiatedProtocol != alpnH2 {
		return errors.New("peer did not negotiate ALPN h2")
	}
	switch cs.CipherSuite {
	case tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384:
		return nil
	default:
		return fmt.Errorf("negotiated %s, need an AES-GCM suite", tls.CipherSuiteName(cs.CipherSuite))
	}
}
