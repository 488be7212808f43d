package identity

import (
	"fmt"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Authorities hands out the signing CA of each trust domain. With one trust
// domain per namespace, tenants' CAs come into being on first use, and each
// new CA's roots are published to the bundle set before it signs anything,
// so a peer can verify the first leaf it sees.
type Authorities struct {
	mu      sync.Mutex
	byTD    map[spiffeid.TrustDomain]*CA
	create  func(spiffeid.TrustDomain) (*CA, error)
	bundles *Bundles
}

// NewAuthorities serves the given CAs and, for any other trust domain, what
// create returns (create may be nil: then other domains have no CA).
func NewAuthorities(bundles *Bundles, create func(spiffeid.TrustDomain) (*CA, error), cas ...*CA) *Authorities {
	a := &Authorities{byTD: make(map[spiffeid.TrustDomain]*CA), create: create, bundles: bundles}
	for _, ca := range cas {
		a.byTD[ca.TrustDomain()] = ca
		bundles.Add(ca.TrustDomain(), ca.Roots()...)
	}
	return a
}

// For returns the CA that signs leaves of td. A CA past half its lifetime
// is replaced by a fresh one from create (a new node intermediate, or the
// files an operator rotated on disk) so that leaves are never cut short by
// their CA; if that fails, the current CA serves on until it expires.
func (a *Authorities) For(td spiffeid.TrustDomain) (*CA, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur, ok := a.byTD[td]
	if ok && !cur.pastHalfLife() {
		return cur, nil
	}
	if a.create == nil {
		if ok {
			return cur, nil
		}
		return nil, fmt.Errorf("identity: no CA for trust domain %q", td.Name())
	}
	ca, err := a.create(td)
	if err != nil {
		if ok && !cur.expired() {
			return cur, nil
		}
		return nil, fmt.Errorf("identity: CA for trust domain %q: %w", td.Name(), err)
	}
	if ca.TrustDomain() != td {
		return nil, fmt.Errorf("identity: CA for trust domain %q is of %q", td.Name(), ca.TrustDomain().Name())
	}
	a.bundles.Add(td, ca.Roots()...)
	a.byTD[td] = ca
	return ca, nil
}
