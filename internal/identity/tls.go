package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
)

// Authorizer decides whether a verified peer may proceed. Returning an error
// aborts the handshake.
type Authorizer func(*Peer) error

// AuthorizeAny accepts every peer that verifies.
func AuthorizeAny(*Peer) error { return nil }

// ServerTLSConfig is a TLS 1.3 mutual-TLS server configuration presenting
// the SVID that current returns at each handshake (so rotation needs no
// restart) and accepting only clients whose SVID v verifies for clientAuth
// and authorize accepts.
func ServerTLSConfig(current func() *SVID, v *Verifier, authorize Authorizer) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return currentCertificate(current)
		},
		VerifyPeerCertificate: verifyPeer(v, x509.ExtKeyUsageClientAuth, authorize),
	}
}

// ClientTLSConfig is the client side of ServerTLSConfig: it presents
// current's SVID and accepts only a server whose SVID verifies for
// serverAuth and authorize accepts.
func ClientTLSConfig(current func() *SVID, v *Verifier, authorize Authorizer) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// SPIFFE authenticates by URI SAN, not DNS name: the standard host
		// name check is replaced by VerifyPeerCertificate, never skipped.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return currentCertificate(current)
		},
		VerifyPeerCertificate: verifyPeer(v, x509.ExtKeyUsageServerAuth, authorize),
	}
}

func currentCertificate(current func() *SVID) (*tls.Certificate, error) {
	svid := current()
	if svid == nil {
		return nil, errors.New("identity: no SVID to present")
	}
	return svid.TLSCertificate(), nil
}

func verifyPeer(v *Verifier, usage x509.ExtKeyUsage, authorize Authorizer) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		peer, err := v.Verify(raw, usage)
		if err != nil {
			return err
		}
		if authorize == nil {
			return nil
		}
		return authorize(peer)
	}
}
