package identity

import (
	"crypto/x509"
	"encoding/hex"
	"sync"
	"time"
)

// Revocations is the set of certificates this agent refuses although they
// still verify: SVIDs of stopped workloads, replaced SVIDs of rotated ones.
// An entry lives until its certificate expires, after which expiry alone
// refuses it, so the set stays as small as the number of live revoked leaves.
type Revocations struct {
	mu      sync.RWMutex
	entries map[revocationKey]time.Time // → NotAfter of the revoked certificate
	now     func() time.Time
}

// revocationKey names a certificate by issuer and serial, as RFC 5280 does;
// serials are unique per issuer only.
type revocationKey struct {
	issuer string // hex of the issuer's raw subject
	serial string
}

// NewRevocations returns an empty set.
func NewRevocations() *Revocations {
	return &Revocations{entries: make(map[revocationKey]time.Time), now: time.Now}
}

func keyOf(c *x509.Certificate) revocationKey {
	return revocationKey{issuer: hex.EncodeToString(c.RawIssuer), serial: c.SerialNumber.Text(16)}
}

// Revoke adds cert to the set. From the moment Revoke returns, every
// Verifier sharing this set refuses it.
func (r *Revocations) Revoke(cert *x509.Certificate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for k, notAfter := range r.entries {
		if now.After(notAfter) {
			delete(r.entries, k)
		}
	}
	r.entries[keyOf(cert)] = cert.NotAfter
}

// IsRevoked reports whether cert is in the set.
func (r *Revocations) IsRevoked(cert *x509.Certificate) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.entries[keyOf(cert)]
	return ok
}

// Len is the number of entries, for metrics and tests.
func (r *Revocations) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.entries)
}
