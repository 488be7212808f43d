package identity

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func rawChain(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
}

func TestVerifierReturnsVerifiedIdentityAndClaims(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	svid := pki.issue(t, "/ns/shop/sa/cart", map[string]string{"app": "cart", "env": "prod"})
	peer, err := pki.verifier().Verify(rawChain(svid.Certificates), x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	if peer.ID.String() != "spiffe://cluster.local/ns/shop/sa/cart" {
		t.Fatalf("ID = %s", peer.ID)
	}
	if peer.Claims.WorkloadUID != "pod-cart" || peer.Claims.Labels["app"] != "cart" || peer.Claims.Labels["env"] != "prod" || len(peer.Claims.Labels) != 2 {
		t.Fatalf("claims = %+v", peer.Claims)
	}
	if len(peer.Chain) != 3 || !peer.Chain[2].Equal(pki.root.Certificate()) {
		t.Fatalf("verified chain has %d certificates", len(peer.Chain))
	}
}

// TestAttackVerifier lists every way a peer might try to pass with
// a certificate it should not be trusted for.
func TestAttackVerifier(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	foreignRoot := newTestPKI(t, "cluster.local") // same name, different root
	otherTD := newTestPKI(t, "other.org")

	revoked := pki.issue(t, "/ns/a/sa/revoked", nil)
	pki.revoked.Revoke(revoked.Leaf())

	// A CA of other.org that mints an ID in cluster.local: the attacker
	// controls a federated domain and tries to impersonate a local workload.
	spoofed := signLeaf(t, otherTD.node, "spiffe://cluster.local/ns/a/sa/admin", x509.KeyUsageDigitalSignature, false)
	pki.bundles.Set(otherTD.td, otherTD.root.Roots()) // other.org is federated

	cases := []struct {
		name  string
		chain []*x509.Certificate
		usage x509.ExtKeyUsage
		want  string
	}{
		{"revoked SVID is refused", revoked.Certificates, x509.ExtKeyUsageClientAuth, "revoked"},
		{"expired SVID is refused", pki.expiredLeaf(t, "/ns/a/sa/old").Certificates, x509.ExtKeyUsageClientAuth, "expired"},
		{"SVID of a foreign root is refused", foreignRoot.issue(t, "/ns/a/sa/b", nil).Certificates, x509.ExtKeyUsageClientAuth, "unknown authority"},
		{"SVID of an untrusted trust domain is refused", newTestPKI(t, "evil.example").issue(t, "/x", nil).Certificates, x509.ExtKeyUsageClientAuth, "no trust bundle"},
		{"federated CA cannot mint a local ID", append([]*x509.Certificate{spoofed}, otherTD.node.Chain()...), x509.ExtKeyUsageClientAuth, "not trust domain"},
		{"missing intermediate is refused", pki.issue(t, "/ns/a/sa/b", nil).Certificates[:1], x509.ExtKeyUsageClientAuth, "unknown authority"},
		{"leaf that is a CA is refused", []*x509.Certificate{signLeaf(t, pki.node, "spiffe://cluster.local/x", x509.KeyUsageDigitalSignature, true), pki.node.Certificate()}, x509.ExtKeyUsageClientAuth, "CA"},
		{"leaf without digitalSignature is refused", []*x509.Certificate{signLeaf(t, pki.node, "spiffe://cluster.local/x", x509.KeyUsageKeyEncipherment, false), pki.node.Certificate()}, x509.ExtKeyUsageClientAuth, "digitalSignature"},
		{"leaf with a trust-domain-only ID is refused", []*x509.Certificate{signLeaf(t, pki.node, "spiffe://cluster.local", x509.KeyUsageDigitalSignature, false), pki.node.Certificate()}, x509.ExtKeyUsageClientAuth, "no path"},
		{"empty chain is refused", nil, x509.ExtKeyUsageClientAuth, "no certificate"},
		{"SVID with two URI SANs is refused", signTemplate(t, pki.node, "spiffe://cluster.local/ns/a/sa/b", func(c *x509.Certificate) {
			c.URIs = append(c.URIs, &url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/kube-system/sa/admin"})
		}).Certificates, x509.ExtKeyUsageClientAuth, "URI"},
		{"SVID whose URI SAN has another scheme is refused", signTemplate(t, pki.node, "spiffe://cluster.local/ns/a/sa/b", func(c *x509.Certificate) {
			c.URIs = []*url.URL{{Scheme: "https", Host: "cluster.local", Path: "/ns/a/sa/b"}}
		}).Certificates, x509.ExtKeyUsageClientAuth, "scheme"},
		{"SVID whose path tries dot segments is refused", signTemplate(t, pki.node, "spiffe://cluster.local/ns/a/sa/b", func(c *x509.Certificate) {
			c.URIs = []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/a/sa/../../../ns/kube-system/sa/admin"}}
		}).Certificates, x509.ExtKeyUsageClientAuth, "segment"},
		{"leaf used as a CA (signing another leaf) is refused", leafSignedByLeaf(t, pki), x509.ExtKeyUsageClientAuth, ""},
	}
	v := pki.verifier()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			peer, err := v.Verify(rawChain(tc.chain), tc.usage)
			t.Logf("SECURITY\tpeer certificate: %s\trefused by the verifier\t%v\t%v", strings.TrimSuffix(tc.name, " is refused"), err, err != nil && strings.Contains(err.Error(), tc.want))
			if err == nil {
				t.Fatalf("verified as %s", peer.ID)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestLeafWithoutClientAuthCannotActAsClient(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	leaf := signLeafEKU(t, pki.node, "spiffe://cluster.local/srv", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	chain := rawChain([]*x509.Certificate{leaf, pki.node.Certificate()})
	if _, err := pki.verifier().Verify(chain, x509.ExtKeyUsageClientAuth); err == nil || !strings.Contains(err.Error(), "clientAuth") {
		t.Fatalf("err = %v", err)
	}
	if _, err := pki.verifier().Verify(chain, x509.ExtKeyUsageServerAuth); err != nil {
		t.Fatalf("as server: %v", err)
	}
}

func TestRevocationTakesEffectImmediately(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	v := pki.verifier()
	svid := pki.issue(t, "/ns/a/sa/b", nil)
	if _, err := v.Verify(rawChain(svid.Certificates), x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatal(err)
	}
	pki.revoked.Revoke(svid.Leaf())
	if _, err := v.Verify(rawChain(svid.Certificates), x509.ExtKeyUsageClientAuth); err == nil {
		t.Fatal("revoked SVID still verifies")
	}
	// Revoking the node CA refuses every leaf it signed.
	other := pki.issue(t, "/ns/a/sa/c", nil)
	pki.revoked.Revoke(pki.node.Certificate())
	if _, err := v.Verify(rawChain(other.Certificates), x509.ExtKeyUsageClientAuth); err == nil {
		t.Fatal("leaf of a revoked node CA still verifies")
	}
}

func TestRevocationsForgetExpiredEntries(t *testing.T) {
	r := NewRevocations()
	pki := newTestPKI(t, "td")
	r.Revoke(pki.expiredLeaf(t, "/old").Leaf())
	r.Revoke(pki.issue(t, "/new", nil).Leaf()) // prunes the expired one
	if r.Len() != 1 {
		t.Fatalf("Len = %d, want 1", r.Len())
	}
}

func TestMutualTLSBetweenGoPeers(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	server, client := pki.issue(t, "/ns/a/sa/server", nil), pki.issue(t, "/ns/a/sa/client", nil)
	v := pki.verifier()
	var seen *Peer
	srvCfg := ServerTLSConfig(func() *SVID { return server }, v, func(p *Peer) error { seen = p; return nil })
	cliCfg := ClientTLSConfig(func() *SVID { return client }, v, AuthorizeAny)
	if err := handshake(t, srvCfg, cliCfg); err != nil {
		t.Fatal(err)
	}
	if seen == nil || seen.ID.String() != "spiffe://cluster.local/ns/a/sa/client" {
		t.Fatalf("server saw %+v", seen)
	}
	pki.revoked.Revoke(client.Leaf())
	if err := handshake(t, srvCfg, cliCfg); err == nil {
		t.Fatal("handshake with a revoked client succeeded")
	}
}

func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	errc := make(chan error, 1)
	go func() {
		s := tls.Server(a, srvCfg)
		err := s.Handshake()
		if err == nil {
			// TLS 1.3 client certificates are checked after the client's
			// handshake returns; a read surfaces the server's verdict.
			_, err = s.Write([]byte{1})
		}
		errc <- err
		a.Close()
	}()
	c := tls.Client(b, cliCfg)
	err := c.Handshake()
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	if serr := <-errc; serr != nil {
		return serr
	}
	return err
}

// signLeaf signs a hand-made leaf, for certificates IssueSVID refuses to make.
func signLeaf(t *testing.T, ca *CA, uri string, ku x509.KeyUsage, isCA bool) *x509.Certificate {
	t.Helper()
	return signTemplate(t, ca, uri, func(c *x509.Certificate) { c.KeyUsage, c.IsCA = ku, isCA }).Leaf()
}

func signLeafEKU(t *testing.T, ca *CA, uri string, ekus []x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	return signTemplate(t, ca, uri, func(c *x509.Certificate) { c.ExtKeyUsage = ekus }).Leaf()
}

// signTemplate signs an SVID-like leaf after edit changes its template.
func signTemplate(t testing.TB, ca *CA, uri string, edit func(*x509.Certificate)) *SVID {
	t.Helper()
	id, err := spiffeid.FromString(uri)
	if err != nil {
		t.Fatal(err)
	}
	key, err := generateKey(KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{},
		URIs:                  nil,
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	tmpl.URIs = append(tmpl.URIs, id.URL())
	edit(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Certificate(), key.Public(), ca.Signer())
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &SVID{ID: id, Certificates: append([]*x509.Certificate{c}, ca.Chain()...), PrivateKey: key}
}

// TestStillValidEndsTrustInLongLivedConnections: a peer verified at a
// handshake stops being trusted when its leaf or node CA is revoked, when
// its certificate expires, and when its root leaves the bundle.
func TestStillValidEndsTrustInLongLivedConnections(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	now := time.Now()
	v := NewVerifier(pki.bundles, pki.revoked, WithVerifyClock(func() time.Time { return now }))
	verified := func(t *testing.T) *Peer {
		t.Helper()
		p, err := v.Verify(rawChain(pki.issue(t, "/ns/a/sa/b", nil).Certificates), x509.ExtKeyUsageClientAuth)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.StillValid(p); err != nil {
			t.Fatalf("fresh peer: %v", err)
		}
		return p
	}
	t.Run("leaf revoked", func(t *testing.T) {
		p := verified(t)
		pki.revoked.Revoke(p.Chain[0])
		if err := v.StillValid(p); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("StillValid = %v", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		p := verified(t)
		defer func(saved time.Time) { now = saved }(now)
		now = p.NotAfter.Add(time.Second)
		if err := v.StillValid(p); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("StillValid = %v", err)
		}
	})
	t.Run("root removed from the bundle", func(t *testing.T) {
		p := verified(t)
		other := newTestPKI(t, "cluster.local")
		pki.bundles.Set(pki.td, other.root.Roots())
		defer pki.bundles.Set(pki.td, pki.root.Roots())
		if err := v.StillValid(p); err == nil || !strings.Contains(err.Error(), "no longer in the bundle") {
			t.Fatalf("StillValid = %v", err)
		}
	})
	t.Run("node CA revoked", func(t *testing.T) {
		p := verified(t)
		pki.revoked.Revoke(pki.node.Certificate())
		if err := v.StillValid(p); err == nil {
			t.Fatal("peer under a revoked node CA still valid")
		}
	})
}

// leafSignedByLeaf is a chain in which a valid workload leaf signed another
// leaf with its own key, as an attacker holding one workload's key would
// try, to mint any identity.
func leafSignedByLeaf(t *testing.T, pki *testPKI) []*x509.Certificate {
	t.Helper()
	victim := pki.issue(t, "/ns/a/sa/b", nil)
	key, err := generateKey(KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		URIs:         []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/kube-system/sa/admin"}},
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, victim.Leaf(), key.Public(), victim.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return append([]*x509.Certificate{forged}, victim.Certificates...)
}
