package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// CertificateInfo is what an operator wants to know about a certificate at
// a glance (`ztcn ca show`).
type CertificateInfo struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	SPIFFEID    string    `json:"spiffe_id,omitempty"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	KeyType     string    `json:"key_type"`
	IsCA        bool      `json:"is_ca"`
	Fingerprint string    `json:"sha256_fingerprint"`
}

// Describe summarises a certificate.
func Describe(c *x509.Certificate) CertificateInfo {
	info := CertificateInfo{
		Subject:     c.Subject.String(),
		Issuer:      c.Issuer.String(),
		Serial:      c.SerialNumber.Text(16),
		NotBefore:   c.NotBefore.UTC(),
		NotAfter:    c.NotAfter.UTC(),
		KeyType:     describeKey(c.PublicKey),
		IsCA:        c.IsCA,
		Fingerprint: Fingerprint(c),
	}
	if len(c.URIs) == 1 && c.URIs[0].Scheme == "spiffe" {
		info.SPIFFEID = c.URIs[0].String()
	}
	return info
}

// Fingerprint is the SHA-256 of the DER certificate as colon-separated hex,
// the form `openssl x509 -fingerprint -sha256` prints.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}

// describeKey names a public key's algorithm for humans ("ECDSA P-256").
func describeKey(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", pub)
	}
}
