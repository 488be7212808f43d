package identity

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestSPIFFEBundleFormat(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	data, err := NewSPIFFEBundle(pki.td, pki.root.Roots(), 7, 5*time.Minute).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
		Seq  *uint64          `json:"spiffe_sequence"`
		Hint *int64           `json:"spiffe_refresh_hint"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Seq == nil || *doc.Seq != 7 || doc.Hint == nil || *doc.Hint != 300 {
		t.Fatalf("sequence/refresh hint = %v/%v in %s", doc.Seq, doc.Hint, data)
	}
	if len(doc.Keys) != 1 {
		t.Fatalf("%d keys", len(doc.Keys))
	}
	k := doc.Keys[0]
	if k["use"] != "x509-svid" {
		t.Errorf("use = %v", k["use"])
	}
	if x5c, _ := k["x5c"].([]any); len(x5c) != 1 {
		t.Errorf("x5c has %d entries, want exactly 1", len(x5c))
	}
	if _, ok := k["kid"]; ok {
		t.Error("an x509-svid JWK must not have a kid")
	}
}

func TestBundlesAreNeverMerged(t *testing.T) {
	a, b := newTestPKI(t, "a.example"), newTestPKI(t, "b.example")
	bundles := NewBundles()
	bundles.Set(a.td, a.root.Roots())
	bundles.Set(b.td, b.root.Roots())
	xb, err := bundles.GetX509BundleForTrustDomain(a.td)
	if err != nil {
		t.Fatal(err)
	}
	if len(xb.X509Authorities()) != 1 || !xb.X509Authorities()[0].Equal(a.root.Certificate()) {
		t.Fatal("bundle of a.example holds other authorities")
	}
}

func TestFaultFederatedBundleFile(t *testing.T) {
	local, foreign := newTestPKI(t, "cluster.local"), newTestPKI(t, "partner.example")
	path := filepath.Join(t.TempDir(), "partner.json")
	writeBundle := func(p *testPKI) {
		t.Helper()
		data, err := NewSPIFFEBundle(p.td, p.root.Roots(), 1, 0).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		// Replace through a rename, as a ConfigMap update does.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	writeBundle(foreign)

	var mu sync.Mutex
	var reloadErrs []error
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := local.bundles.Subscribe(ctx)
	err := local.bundles.WatchFederation(ctx, []Federation{{TrustDomain: foreign.td, BundlePath: path}}, 20*time.Millisecond, func(err error) {
		mu.Lock()
		reloadErrs = append(reloadErrs, err)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	<-changes
	v := local.verifier()
	partnerSVID := foreign.issue(t, "/ns/x/sa/y", nil)
	if _, err := v.Verify(rawChain(partnerSVID.Certificates), x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatalf("federated peer refused: %v", err)
	}

	// The partner rotates its root: old leaves stop verifying, new ones do.
	rotated := newTestPKI(t, "partner.example")
	writeBundle(rotated)
	select {
	case td := <-changes:
		if td != foreign.td {
			t.Fatalf("change for %s", td)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("bundle change not noticed")
	}
	if _, err := v.Verify(rawChain(partnerSVID.Certificates), x509.ExtKeyUsageClientAuth); err == nil {
		t.Fatal("leaf of the replaced partner root still verifies")
	}
	if _, err := v.Verify(rawChain(rotated.issue(t, "/ns/x/sa/y", nil).Certificates), x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatalf("leaf of the new partner root refused: %v", err)
	}

	// A corrupt file keeps the last good bundle and reports the error.
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(reloadErrs)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("corrupt bundle file not reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err = v.Verify(rawChain(rotated.issue(t, "/ns/x/sa/z", nil).Certificates), x509.ExtKeyUsageClientAuth)
	t.Logf("SECURITY\tfederated bundle file corrupted\terror reported, last good bundle stays in force\treported, verify: %v\t%v", err, err == nil)
	if err != nil {
		t.Fatalf("corrupt file dropped the last good bundle: %v", err)
	}
}

func TestFederatedBundleMustLoadAtStart(t *testing.T) {
	b := NewBundles()
	td := spiffeid.RequireTrustDomainFromString("partner.example")
	err := b.WatchFederation(context.Background(), []Federation{{TrustDomain: td, BundlePath: "/nonexistent/partner.json"}}, time.Second, nil)
	if err == nil || !strings.Contains(err.Error(), "partner.example") {
		t.Fatalf("err = %v", err)
	}
}

func TestPEMBundleFilesAreAccepted(t *testing.T) {
	p := newTestPKI(t, "partner.example")
	path := filepath.Join(t.TempDir(), "partner.pem")
	if err := os.WriteFile(path, EncodeCertificates(p.root.Roots()), 0o644); err != nil {
		t.Fatal(err)
	}
	certs, err := LoadBundleFile(p.td, path)
	if err != nil || len(certs) != 1 {
		t.Fatalf("%v, %d certs", err, len(certs))
	}
}
