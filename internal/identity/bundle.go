package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztcn/ztcn/internal/feed"
)

// Bundles holds the X.509 trust anchors of every trust domain this agent
// trusts, one bundle per domain. Bundles of different domains are never
// merged: a peer is verified only against the bundle of the trust domain in
// its own SPIFFE ID, so domain B's CA can never vouch for an ID in domain A.
type Bundles struct {
	mu      sync.RWMutex
	byTD    map[spiffeid.TrustDomain]*trustBundle
	changes feed.Feed[spiffeid.TrustDomain]
}

type trustBundle struct {
	authorities []*x509.Certificate
	sequence    uint64 // bumped on every change, published as spiffe_sequence
}

// NewBundles returns an empty set: nothing is trusted.
func NewBundles() *Bundles {
	return &Bundles{byTD: make(map[spiffeid.TrustDomain]*trustBundle)}
}

// Set replaces the authorities of td and reports whether anything changed.
// Subscribers learn of each change.
func (b *Bundles) Set(td spiffeid.TrustDomain, authorities []*x509.Certificate) bool {
	b.mu.Lock()
	cur := b.byTD[td]
	if cur != nil && sameCertificates(cur.authorities, authorities) {
		b.mu.Unlock()
		return false
	}
	next := &trustBundle{authorities: append([]*x509.Certificate(nil), authorities...), sequence: 1}
	if cur != nil {
		next.sequence = cur.sequence + 1
	}
	b.byTD[td] = next
	b.mu.Unlock()
	b.changes.Publish(td)
	return true
}

// Add appends authorities to td's bundle, keeping those already there.
func (b *Bundles) Add(td spiffeid.TrustDomain, authorities ...*x509.Certificate) {
	b.mu.Lock()
	var merged []*x509.Certificate
	seq := uint64(1)
	if cur := b.byTD[td]; cur != nil {
		merged = append(merged, cur.authorities...)
		seq = cur.sequence + 1
	}
	changed := false
	for _, a := range authorities {
		if !containsCertificate(merged, a) {
			merged = append(merged, a)
			changed = true
		}
	}
	if changed {
		b.byTD[td] = &trustBundle{authorities: merged, sequence: seq}
	}
	b.mu.Unlock()
	if changed {
		b.changes.Publish(td)
	}
}

// Remove stops trusting td.
func (b *Bundles) Remove(td spiffeid.TrustDomain) {
	b.mu.Lock()
	_, ok := b.byTD[td]
	delete(b.byTD, td)
	b.mu.Unlock()
	if ok {
		b.changes.Publish(td)
	}
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (b *Bundles) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	tb, ok := b.byTD[td]
	if !ok {
		return nil, fmt.Errorf("identity: no trust bundle for trust domain %q", td.Name())
	}
	return x509bundle.FromX509Authorities(td, tb.authorities), nil
}

// Authorities returns td's trust anchors, or nil.
func (b *Bundles) Authorities(td spiffeid.TrustDomain) []*x509.Certificate {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if tb, ok := b.byTD[td]; ok {
		return append([]*x509.Certificate(nil), tb.authorities...)
	}
	return nil
}

// TrustDomains lists the trusted domains in name order.
func (b *Bundles) TrustDomains() []spiffeid.TrustDomain {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]spiffeid.TrustDomain, 0, len(b.byTD))
	for td := range b.byTD {
		out = append(out, td)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// SPIFFEBundle returns td's bundle as go-spiffe's SPIFFE bundle, with its
// sequence number and refresh hint set.
func (b *Bundles) SPIFFEBundle(td spiffeid.TrustDomain, refreshHint time.Duration) (*spiffebundle.Bundle, error) {
	b.mu.RLock()
	tb, ok := b.byTD[td]
	b.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("identity: no trust bundle for trust domain %q", td.Name())
	}
	return NewSPIFFEBundle(td, tb.authorities, tb.sequence, refreshHint), nil
}

// Subscribe returns a feed of trust domains whose bundle changed.
func (b *Bundles) Subscribe(ctx context.Context) <-chan spiffeid.TrustDomain {
	return b.changes.Subscribe(ctx)
}

// NewSPIFFEBundle builds a bundle in the SPIFFE Trust Domain and Bundle
// format: one JWK per authority with use "x509-svid" and exactly one x5c,
// plus spiffe_sequence and spiffe_refresh_hint.
func NewSPIFFEBundle(td spiffeid.TrustDomain, authorities []*x509.Certificate, sequence uint64, refreshHint time.Duration) *spiffebundle.Bundle {
	sb := spiffebundle.FromX509Authorities(td, authorities)
	sb.SetSequenceNumber(sequence)
	if refreshHint > 0 {
		sb.SetRefreshHint(refreshHint)
	}
	return sb
}

// Federation names a foreign trust domain and the bundle file that is the
// only source of trust in it.
type Federation struct {
	TrustDomain spiffeid.TrustDomain
	BundlePath  string
}

// LoadBundleFile reads a bundle for td from a SPIFFE bundle JSON document or,
// for convenience, a PEM file of CA certificates.
func LoadBundleFile(td spiffeid.TrustDomain, path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: read bundle of %q: %w", td.Name(), err)
	}
	var authorities []*x509.Certificate
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		xb, err := x509bundle.Parse(td, data)
		if err != nil {
			return nil, fmt.Errorf("identity: %s: %w", path, err)
		}
		authorities = xb.X509Authorities()
	} else {
		sb, err := spiffebundle.Parse(td, data)
		if err != nil {
			return nil, fmt.Errorf("identity: %s: %w", path, err)
		}
		authorities = sb.X509Authorities()
	}
	if len(authorities) == 0 {
		return nil, fmt.Errorf("identity: %s: bundle of %q holds no X.509 authorities", path, td.Name())
	}
	for _, a := range authorities {
		if !a.IsCA {
			return nil, fmt.Errorf("identity: %s: authority %q is not a CA certificate", path, a.Subject)
		}
	}
	return authorities, nil
}

// WatchFederation loads every federated bundle, then re-reads the files
// every interval until ctx ends, replacing a domain's bundle when its file
// changes. Polling (rather than inotify) follows Kubernetes ConfigMap
// symlink swaps and network filesystems alike, and a bundle changes rarely.
// The first load must succeed for every file; later failures keep the last
// good bundle in force and are passed to onError.
func (b *Bundles) WatchFederation(ctx context.Context, feds []Federation, interval time.Duration, onError func(error)) error {
	digests := make(map[spiffeid.TrustDomain][32]byte, len(feds))
	load := func(f Federation) error {
		data, err := os.ReadFile(f.BundlePath)
		if err != nil {
			return fmt.Errorf("identity: read bundle of %q: %w", f.TrustDomain.Name(), err)
		}
		sum := sha256.Sum256(data)
		if d, ok := digests[f.TrustDomain]; ok && d == sum {
			return nil
		}
		authorities, err := LoadBundleFile(f.TrustDomain, f.BundlePath)
		if err != nil {
			return err
		}
		digests[f.TrustDomain] = sum
		b.Set(f.TrustDomain, authorities)
		return nil
	}
	for _, f := range feds {
		if err := load(f); err != nil {
			return err
		}
	}
	if len(feds) == 0 {
		return nil
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, f := range feds {
				if err := load(f); err != nil && onError != nil {
					onError(err)
				}
			}
		}
	}()
	return nil
}

func sameCertificates(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func containsCertificate(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if x.Equal(c) {
			return true
		}
	}
	return false
}
