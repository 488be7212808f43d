package identity

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// SVID is an X.509-SVID with its private key. The key exists only in this
// value's memory: nothing in the agent serialises it.
type SVID struct {
	ID spiffeid.ID
	// Certificates is the leaf followed by its intermediates, not the root.
	Certificates []*x509.Certificate
	PrivateKey   crypto.Signer
	// Claims are what the leaf's claims extension says.
	Claims Claims
}

// Leaf is the workload's own certificate.
func (s *SVID) Leaf() *x509.Certificate { return s.Certificates[0] }

// NotAfter is when the leaf expires.
func (s *SVID) NotAfter() time.Time { return s.Leaf().NotAfter }

// Serial is the leaf's serial number, the key of revocation.
func (s *SVID) Serial() *big.Int { return s.Leaf().SerialNumber }

// TLSCertificate presents the SVID in a TLS handshake.
func (s *SVID) TLSCertificate() *tls.Certificate {
	chain := make([][]byte, len(s.Certificates))
	for i, c := range s.Certificates {
		chain[i] = c.Raw
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: s.PrivateKey, Leaf: s.Leaf()}
}

// X509SVID converts to go-spiffe's type, for the Workload API.
func (s *SVID) X509SVID() *x509svid.SVID {
	return &x509svid.SVID{ID: s.ID, Certificates: s.Certificates, PrivateKey: s.PrivateKey}
}

// MarshalPEM encodes the chain and the PKCS#8 key. Only operator commands
// (`ztcn svid issue`) call it; the agent never writes workload keys.
func (s *SVID) MarshalPEM() (certPEM, keyPEM []byte, err error) {
	certPEM = EncodeCertificates(s.Certificates)
	keyDER, err := x509.MarshalPKCS8PrivateKey(s.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: marshal key of %s: %w", s.ID, err)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// EncodeCertificates PEM-encodes certificates in order.
func EncodeCertificates(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func cloneClaims(c Claims) Claims {
	out := Claims{WorkloadUID: c.WorkloadUID, Labels: maps.Clone(c.Labels)}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	return out
}
