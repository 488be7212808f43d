package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Peer is what a verified certificate chain proves about its holder.
type Peer struct {
	ID       spiffeid.ID
	Claims   Claims
	NotAfter time.Time
	// Chain is the verified chain, leaf first, ending at the trust anchor.
	Chain []*x509.Certificate
}

// Verifier checks peer certificate chains. It is safe for concurrent use and
// sees revocations and bundle changes the moment they are made.
type Verifier struct {
	bundles x509bundle.Source
	revoked *Revocations
	now     func() time.Time
}

// VerifierOption adjusts a Verifier.
type VerifierOption func(*Verifier)

// WithVerifyClock makes the verifier read time from now (tests).
func WithVerifyClock(now func() time.Time) VerifierOption {
	return func(v *Verifier) { v.now = now }
}

// NewVerifier returns a verifier over bundles and revocations (which may be nil).
func NewVerifier(bundles x509bundle.Source, revoked *Revocations, opts ...VerifierOption) *Verifier {
	v := &Verifier{bundles: bundles, revoked: revoked, now: time.Now}
	for _, o := range opts {
		o(v)
	}
	return v
}

// Verify checks rawCerts (leaf first, as sent in a TLS handshake) and
// returns the peer's verified identity. usage is the EKU the leaf must carry
// for the role it plays: ExtKeyUsageClientAuth for a client, ServerAuth for
// a server.
//
// It does more than go-spiffe's x509svid.Verify, which does not require
// digitalSignature, an EKU, or CA flags on intermediates: every X509-SVID
// rule is checked here, then the chain is verified against the bundle of the
// leaf's own trust domain only, then against the revocation set.
func (v *Verifier) Verify(rawCerts [][]byte, usage x509.ExtKeyUsage) (*Peer, error) {
	if len(rawCerts) == 0 {
		return nil, errors.New("identity: peer sent no certificate")
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return nil, fmt.Errorf("identity: parse peer certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	leaf := certs[0]
	id, err := checkLeaf(leaf, usage)
	if err != nil {
		return nil, err
	}
	for _, c := range certs[1:] {
		if err := checkSigningCert(c, id.TrustDomain()); err != nil {
			return nil, err
		}
	}
	// x509svid.Verify picks the bundle of the leaf's trust domain and fails
	// when this agent has none: a foreign domain is trusted only through
	// its own federated bundle.
	_, chains, err := x509svid.Verify(certs, v.bundles, x509svid.WithTime(v.now()))
	if err != nil {
		return nil, fmt.Errorf("identity: verify %s: %w", id, err)
	}
	chain := chains[0]
	for _, c := range chain[1:] {
		if err := checkSigningCert(c, id.TrustDomain()); err != nil {
			return nil, err
		}
	}
	if v.revoked != nil {
		for _, c := range chain {
			if v.revoked.IsRevoked(c) {
				return nil, fmt.Errorf("identity: verify %s: certificate serial %s is revoked", id, c.SerialNumber.Text(16))
			}
		}
	}
	claims, err := claimsFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("identity: verify %s: %w", id, err)
	}
	return &Peer{ID: id, Claims: claims, NotAfter: leaf.NotAfter, Chain: chain}, nil
}

// checkLeaf applies the X509-SVID leaf rules (spec §4, §5).
func checkLeaf(leaf *x509.Certificate, usage x509.ExtKeyUsage) (spiffeid.ID, error) {
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("identity: peer leaf: %w", err)
	}
	switch {
	case id.Path() == "":
		return id, fmt.Errorf("identity: peer leaf %s has no path: a trust domain ID names a CA, not a workload", id)
	case leaf.IsCA:
		return id, fmt.Errorf("identity: peer leaf %s is a CA certificate", id)
	case leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return id, fmt.Errorf("identity: peer leaf %s lacks the digitalSignature key usage", id)
	case leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return id, fmt.Errorf("identity: peer leaf %s may sign certificates or CRLs", id)
	}
	if usage != x509.ExtKeyUsageAny && !hasEKU(leaf, usage) {
		return id, fmt.Errorf("identity: peer leaf %s lacks the %s extended key usage", id, ekuName(usage))
	}
	return id, nil
}

// checkSigningCert requires CA:true with keyCertSign and, where the CA
// carries a SPIFFE ID, that it names the leaf's own trust domain.
func checkSigningCert(c *x509.Certificate, td spiffeid.TrustDomain) error {
	if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("identity: signing certificate %q is not a CA with keyCertSign", c.Subject)
	}
	for _, u := range c.URIs {
		caID, err := spiffeid.FromURI(u)
		if err != nil || caID.TrustDomain() != td || caID.Path() != "" {
			return fmt.Errorf("identity: signing certificate %q names %s, not trust domain %q", c.Subject, u, td.Name())
		}
	}
	return nil
}

func hasEKU(c *x509.Certificate, want x509.ExtKeyUsage) bool {
	for _, u := range c.ExtKeyUsage {
		if u == want || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func ekuName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	default:
		return fmt.Sprintf("EKU(%d)", u)
	}
}

// StillValid re-checks a peer verified earlier, for a connection that
// outlives its handshake (a pooled HBONE connection carries streams for
// minutes): every certificate of its chain must still be within its
// validity, none revoked since, and the chain's anchor still in the bundle
// of the peer's trust domain (a federation withdrawn, or a root rotated
// out, ends trust in connections made under it). It is cheap: no signature
// is checked again.
func (v *Verifier) StillValid(p *Peer) error {
	now := v.now()
	for _, c := range p.Chain {
		if now.After(c.NotAfter) {
			return fmt.Errorf("identity: %s: certificate serial %s expired at %s", p.ID, c.SerialNumber.Text(16), c.NotAfter.UTC().Format(time.RFC3339))
		}
		if v.revoked != nil && v.revoked.IsRevoked(c) {
			return fmt.Errorf("identity: %s: certificate serial %s is revoked", p.ID, c.SerialNumber.Text(16))
		}
	}
	if len(p.Chain) == 0 {
		return fmt.Errorf("identity: %s: no verified chain", p.ID)
	}
	anchor := p.Chain[len(p.Chain)-1]
	b, err := v.bundles.GetX509BundleForTrustDomain(p.ID.TrustDomain())
	if err != nil || !b.HasX509Authority(anchor) {
		return fmt.Errorf("identity: %s: its trust anchor is no longer in the bundle of %s", p.ID, p.ID.TrustDomain())
	}
	return nil
}
