package identity

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// clockSkew is how far NotBefore is backdated, so that a peer whose clock
// runs slightly behind ours does not reject a certificate issued a moment ago.
const clockSkew = 30 * time.Second

// Default lifetimes of CA certificates. A node intermediate outlives every
// leaf it signs by far, and the root outlives its intermediates.
const (
	DefaultRootTTL = 365 * 24 * time.Hour
	DefaultNodeTTL = 30 * 24 * time.Hour
)

// CA is a certificate authority of one trust domain: a root, or a node
// intermediate under a root. Its key is a crypto.Signer so that a hardware
// signer (PKCS#11, TPM) can stand in for the in-memory key.
type CA struct {
	td      spiffeid.TrustDomain
	cert    *x509.Certificate
	signer  crypto.Signer
	parents []*x509.Certificate // issuers of cert up to, not including, the root
	roots   []*x509.Certificate // the trust anchors of td: the bundle
	keyType KeyType
	now     func() time.Time
}

// CAOption adjusts a CA.
type CAOption func(*CA)

// WithClock makes the CA read time from now instead of time.Now. Tests use it
// to mint certificates that are already expired or not yet valid.
func WithClock(now func() time.Time) CAOption { return func(ca *CA) { ca.now = now } }

// WithKeyType sets the algorithm of keys the CA generates for what it signs.
func WithKeyType(kt KeyType) CAOption { return func(ca *CA) { ca.keyType = kt } }

func newCA(td spiffeid.TrustDomain, opts []CAOption) *CA {
	ca := &CA{td: td, keyType: KeyECDSAP256, now: time.Now}
	for _, o := range opts {
		o(ca)
	}
	return ca
}

// NewRootCA creates a self-signed root for td, valid for ttl.
func NewRootCA(td spiffeid.TrustDomain, ttl time.Duration, opts ...CAOption) (*CA, error) {
	ca := newCA(td, opts)
	key, err := generateKey(ca.keyType)
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl, err := caTemplate(td, "ztcn root CA "+td.Name(), now, now.Add(ttl), key.Public())
	if err != nil {
		return nil, err
	}
	tmpl.MaxPathLen = 1 // root → node intermediate → leaf: nothing deeper
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("identity: create root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("identity: parse root certificate: %w", err)
	}
	ca.cert, ca.signer, ca.roots = cert, key, []*x509.Certificate{cert}
	return ca, nil
}

// NewCA assembles a CA from existing material, checking that it is usable:
// the key matches the certificate, the certificate is a SPIFFE CA of a trust
// domain, it chains to one of roots, and nothing in the chain has expired.
// parents are the issuers of cert up to, not including, the root.
func NewCA(cert *x509.Certificate, signer crypto.Signer, parents, roots []*x509.Certificate, opts ...CAOption) (*CA, error) {
	if !publicKeysEqual(cert.PublicKey, signer.Public()) {
		return nil, errors.New("identity: the private key does not match the CA certificate")
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("identity: certificate %q is not a CA (needs CA:true and keyCertSign)", cert.Subject)
	}
	if len(cert.URIs) != 1 {
		return nil, fmt.Errorf("identity: CA certificate %q must carry exactly one URI SAN (the trust domain ID), has %d", cert.Subject, len(cert.URIs))
	}
	tdID, err := spiffeid.FromURI(cert.URIs[0])
	if err != nil {
		return nil, fmt.Errorf("identity: CA certificate %q: %w", cert.Subject, err)
	}
	if tdID.Path() != "" {
		return nil, fmt.Errorf("identity: CA certificate %q: SPIFFE ID %s must not have a path", cert.Subject, tdID)
	}
	ca := newCA(tdID.TrustDomain(), opts)
	ca.cert, ca.signer, ca.parents, ca.roots = cert, signer, parents, roots
	now := ca.now()
	for _, c := range append(append([]*x509.Certificate{cert}, parents...), roots...) {
		if now.After(c.NotAfter) {
			return nil, fmt.Errorf("identity: CA certificate %q expired at %s", c.Subject, c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         certPool(roots),
		Intermediates: certPool(parents),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime:   now,
	}); err != nil {
		return nil, fmt.Errorf("identity: CA certificate %q does not chain to the trust bundle: %w", cert.Subject, err)
	}
	return ca, nil
}

// TrustDomain is the trust domain this CA issues for.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Certificate is the CA's own certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Signer is the CA's signing key.
func (ca *CA) Signer() crypto.Signer { return ca.signer }

// Chain is the CA certificate followed by its issuers, excluding the root:
// what a leaf presents after itself.
func (ca *CA) Chain() []*x509.Certificate {
	if ca.IsRoot() {
		return nil
	}
	return append([]*x509.Certificate{ca.cert}, ca.parents...)
}

// Roots are the trust anchors of the CA's trust domain.
func (ca *CA) Roots() []*x509.Certificate { return ca.roots }

// IsRoot reports whether the CA is self-signed.
func (ca *CA) IsRoot() bool {
	return bytes.Equal(ca.cert.RawSubject, ca.cert.RawIssuer) && ca.cert.CheckSignatureFrom(ca.cert) == nil
}

// NewNodeCA issues an intermediate for one node, valid for ttl (capped at
// this CA's own expiry), with a fresh key.
func (ca *CA) NewNodeCA(node string, ttl time.Duration) (*CA, error) {
	if node == "" {
		return nil, errors.New("identity: node name is empty")
	}
	key, err := generateKey(ca.keyType)
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl, err := caTemplate(ca.td, "ztcn node CA "+node, now, ca.capExpiry(now.Add(ttl)), key.Public())
	if err != nil {
		return nil, err
	}
	tmpl.MaxPathLenZero = true // a node CA signs leaves only
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.signer)
	if err != nil {
		return nil, fmt.Errorf("identity: create node certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("identity: parse node certificate: %w", err)
	}
	nodeCA := newCA(ca.td, nil)
	nodeCA.cert, nodeCA.signer, nodeCA.roots, nodeCA.keyType, nodeCA.now = cert, key, ca.roots, ca.keyType, ca.now
	nodeCA.parents = ca.Chain()
	return nodeCA, nil
}

// SVIDRequest describes a leaf to issue.
type SVIDRequest struct {
	ID     spiffeid.ID
	TTL    time.Duration
	Claims Claims
}

// IssueSVID creates a key pair and signs an X.509-SVID for it. The key never
// leaves the returned value.
func (ca *CA) IssueSVID(req SVIDRequest) (*SVID, error) {
	if req.ID.TrustDomain() != ca.td {
		return nil, fmt.Errorf("identity: CA of trust domain %q cannot issue %s", ca.td.Name(), req.ID)
	}
	if req.ID.Path() == "" {
		return nil, fmt.Errorf("identity: %s has no path; only CAs carry a bare trust domain ID", req.ID)
	}
	if req.TTL <= 0 {
		return nil, fmt.Errorf("identity: TTL %s must be positive", req.TTL)
	}
	if ca.expired() {
		// Fail closed: a leaf capped at an expired CA's NotAfter would be
		// born expired, and nobody would accept it anyway.
		return nil, fmt.Errorf("identity: CA %q expired at %s", ca.cert.Subject, ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	ext, err := req.Claims.extension()
	if err != nil {
		return nil, err
	}
	key, err := generateKey(ca.keyType)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// Subject stays empty: the SPIFFE ID is the identity, and x509 then
		// marks the SAN extension critical as RFC 5280 §4.2.1.6 requires.
		URIs:                  []*url.URL{req.ID.URL()},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              ca.capExpiry(now.Add(req.TTL)),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		ExtraExtensions:       []pkix.Extension{ext},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.signer)
	if err != nil {
		return nil, fmt.Errorf("identity: sign SVID for %s: %w", req.ID, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("identity: parse SVID for %s: %w", req.ID, err)
	}
	return &SVID{
		ID:           req.ID,
		Certificates: append([]*x509.Certificate{leaf}, ca.Chain()...),
		PrivateKey:   key,
		Claims:       cloneClaims(req.Claims),
	}, nil
}

func (ca *CA) expired() bool { return !ca.now().Before(ca.cert.NotAfter) }

func (ca *CA) pastHalfLife() bool {
	c := ca.cert
	return ca.now().After(c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2))
}

// capExpiry keeps what the CA signs from outliving the CA itself: a chain is
// only as valid as its shortest-lived member.
func (ca *CA) capExpiry(t time.Time) time.Time {
	if t.After(ca.cert.NotAfter) {
		return ca.cert.NotAfter
	}
	return t
}

func caTemplate(td spiffeid.TrustDomain, cn string, notBefore, notAfter time.Time, pub crypto.PublicKey) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"ztcn"}, CommonName: cn},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             notBefore.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski,
	}, nil
}

// newSerial returns a random positive 127-bit serial: unique without
// coordination between nodes, as revocation by serial requires.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("identity: generate serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("identity: marshal public key: %w", err)
	}
	sum := sha1.Sum(der) // RFC 5280 §4.2.1.2 method 1; not a security function
	return sum[:], nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

func certPool(certs []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}
