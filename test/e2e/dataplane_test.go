// Package e2e holds tests that need several layers and real network
// namespaces: pods as namespaces on a bridge, the real data plane between
// them, and real clients (curl).
package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztcn/ztcn/internal/dataplane"
	"github.com/ztcn/ztcn/internal/dataplane/redirect"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/policy"
)

func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("needs root for network namespaces")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			fail("needs %s", tool)
		}
	}
}

// mesh is a node namespace with pods on its bridge, each attached to one
// data plane, with identities from one CA and a policy that can be swapped.
type mesh struct {
	t       *testing.T
	prefix  string
	subnet  [3]byte
	node    *netns.Node
	dp      *dataplane.DataPlane
	ca      *identity.CA
	td      spiffeid.TrustDomain
	revoked *identity.Revocations
	bundles *identity.Bundles
	snap    atomic.Pointer[policy.Snapshot]
	pods    map[string]*meshPod

	mu     sync.Mutex
	events []dataplane.Event
}

type meshPod struct {
	name string
	ip   netip.Addr
	ns   *netns.NS
	// svid is what the agent reads for the pod; a test swaps it, as the
	// identity manager's rotation does, while the agent reads.
	svid atomic.Pointer[identity.SVID]
	// nodeVeth is the pod's veth end in the node namespace: a capture
	// there sees everything the pod sends and receives.
	nodeVeth string
}

func newMesh(t *testing.T, policyYAML string) *mesh {
	return newMeshMode(t, policyYAML, dataplane.Strict)
}

func newMeshMode(t *testing.T, policyYAML string, mode dataplane.Mode) *mesh {
	t.Helper()
	return newMeshWith(t, policyYAML, mode, false)
}

// newMeshWith is newMeshMode; with probes the agent lets the node's own
// TCP (kubelet probes) through, the node's namespace playing the node.
func newMeshWith(t *testing.T, policyYAML string, mode dataplane.Mode, probes bool) *mesh {
	t.Helper()
	requireRoot(t, "curl")
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	m := &mesh{t: t, prefix: "zte" + hex.EncodeToString(rnd[:2]), subnet: [3]byte{10, 252, rnd[2]}, pods: map[string]*meshPod{}}
	gw := netip.PrefixFrom(netip.AddrFrom4([4]byte{m.subnet[0], m.subnet[1], m.subnet[2], 1}), 24)
	node, err := netns.NewNode(m.prefix+"-node", gw)
	if err != nil {
		t.Fatal(err)
	}
	m.node = node
	t.Cleanup(func() { _ = node.Teardown() })

	m.td = spiffeid.RequireTrustDomainFromString("cluster.local")
	root, err := identity.NewRootCA(m.td, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if m.ca, err = root.NewNodeCA("e2e", time.Hour); err != nil {
		t.Fatal(err)
	}
	m.bundles, m.revoked = identity.NewBundles(), identity.NewRevocations()
	m.bundles.Set(m.td, root.Roots())
	if policyYAML == "" {
		policyYAML = "policies: []\n"
	}
	m.setPolicy(policyYAML)

	var pr dataplane.Probes
	if probes {
		pr = dataplane.Probes{Source: redirect.DefaultProbeSource, NodeNS: node.NS()}
	}
	dp, err := dataplane.New(dataplane.Config{
		Probes:   pr,
		Mode:     mode,
		Policy:   m.snap.Load,
		Verifier: identity.NewVerifier(m.bundles, m.revoked),
		OnEvent: func(e dataplane.Event) {
			m.mu.Lock()
			m.events = append(m.events, e)
			m.mu.Unlock()
		},
		ConnectTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.dp = dp
	t.Cleanup(func() { _ = dp.Close() })
	return m
}

var policyVersion atomic.Uint64

func (m *mesh) setPolicy(src string) {
	m.t.Helper()
	path := filepath.Join(m.t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		m.t.Fatal(err)
	}
	ix, diags, err := policy.Build(policy.IsolateAll, path)
	if err != nil {
		m.t.Fatalf("policy: %v %v", err, diags)
	}
	m.snap.Store(&policy.Snapshot{Index: ix, Version: policyVersion.Add(1), LoadedAt: time.Now()})
}

// addPod creates a pod namespace on the bridge, issues its SVID and
// attaches it to the data plane, in that order, as the runtime will.
func (m *mesh) addPod(name string, host byte, labels map[string]string) *meshPod {
	m.t.Helper()
	ip := netip.AddrFrom4([4]byte{m.subnet[0], m.subnet[1], m.subnet[2], host})
	np, err := m.node.AddPod(m.prefix+"-"+name, netip.PrefixFrom(ip, 24))
	if err != nil {
		m.t.Fatal(err)
	}
	id := spiffeid.RequireFromPath(m.td, "/ns/shop/sa/"+name)
	svid, err := m.ca.IssueSVID(identity.SVIDRequest{ID: id, TTL: time.Hour, Claims: identity.Claims{WorkloadUID: name, Labels: labels}})
	if err != nil {
		m.t.Fatal(err)
	}
	ep := &policy.Endpoint{Workload: true, Namespace: "shop", Name: name, ServiceAccount: name, Labels: labels,
		NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "shop"}, SPIFFEID: id.String(), IP: ip}
	p := &meshPod{name: name, ip: ip, ns: np.NS, nodeVeth: np.NodeVeth}
	p.svid.Store(svid)
	if err := m.dp.Attach(dataplane.Pod{UID: name, IP: ip, NS: np.NS, Endpoint: ep, SVID: p.svid.Load}); err != nil {
		m.t.Fatal(err)
	}
	m.pods[name] = p
	return p
}

// serveHTTP runs an HTTP server inside the pod that answers with the
// client address it sees.
func (p *meshPod) serveHTTP(t *testing.T, port int) { serveHTTPIn(t, p.ns, p.name, port) }

// serveHTTPIn runs, in ns, an HTTP server on port that answers "hello from
// NAME; you are CLIENT" and returns how many requests it has answered.
func serveHTTPIn(t *testing.T, ns *netns.NS, name string, port int) *atomic.Int64 {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	served := new(atomic.Int64)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fmt.Fprintf(w, "hello from %s; you are %s\n", name, r.RemoteAddr)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return served
}

// curl runs the real curl inside a pod's namespace.
func (p *meshPod) curl(t *testing.T, url string) (string, error) { return curlIn(p.ns, url) }

// curlIn runs the real curl inside ns, which must be a named namespace.
func curlIn(ns *netns.NS, url string) (string, error) {
	out, err := exec.Command("ip", "netns", "exec", ns.Name(), "curl", "-sS", "--max-time", "5", url).CombinedOutput()
	return string(out), err
}

func (m *mesh) eventsOf(kind dataplane.EventKind) []dataplane.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []dataplane.Event
	for _, e := range m.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

const shopPolicy = `policies:
  - subject: "app:frontend"
    allow:
      - destination: "app:backend"
        ports: [8080, 7000]
`

func TestPodToPodTrafficIsMutualTLSAndPolicyEnforced(t *testing.T) {
	m := newMesh(t, shopPolicy)
	frontend := m.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := m.addPod("backend", 3, map[string]string{"app": "backend"})
	other := m.addPod("other", 4, map[string]string{"app": "other"})
	backend.serveHTTP(t, 8080)
	backend.serveHTTP(t, 9090)
	frontend.serveHTTP(t, 8080)

	t.Run("frontend reaches backend and backend sees the real client IP", func(t *testing.T) {
		out, err := frontend.curl(t, fmt.Sprintf("http://%s:8080/", backend.ip))
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		want := fmt.Sprintf("hello from backend; you are %s:", frontend.ip)
		if !strings.Contains(out, want) {
			t.Fatalf("answer %q, want it to contain %q", out, want)
		}
	})
	deniedFast := func(t *testing.T, from *meshPod, url string) {
		t.Helper()
		start := time.Now()
		out, err := from.curl(t, url)
		if err == nil {
			t.Fatalf("denied flow got an answer: %s", out)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("denied flow took %s to fail; it must be refused at once", took)
		}
	}
	t.Run("a pod without permission is refused at once and audited", func(t *testing.T) {
		before := len(m.eventsOf(dataplane.EventDenied))
		deniedFast(t, other, fmt.Sprintf("http://%s:8080/", backend.ip))
		denied := m.eventsOf(dataplane.EventDenied)
		if len(denied) <= before {
			t.Fatal("no denial event")
		}
		e := denied[len(denied)-1]
		if e.Source.Addr() != other.ip || e.Dest.Addr() != backend.ip || e.Reason == "" {
			t.Fatalf("denial event %+v", e)
		}
	})
	t.Run("frontend may not reach backend on a port policy does not name", func(t *testing.T) {
		deniedFast(t, frontend, fmt.Sprintf("http://%s:9090/", backend.ip))
	})
	t.Run("backend may not call frontend", func(t *testing.T) {
		deniedFast(t, backend, fmt.Sprintf("http://%s:8080/", frontend.ip))
	})
	t.Run("plaintext from outside the mesh is refused in strict mode", func(t *testing.T) {
		_, err := m.httpFromNode(t, netip.AddrPortFrom(backend.ip, 8080))
		if err == nil {
			t.Fatal("plaintext from the node namespace reached the backend")
		}
		if len(m.eventsOf(dataplane.EventPlaintextRefused)) == 0 {
			t.Fatal("no plaintext refusal event")
		}
	})
}

func TestPolicyReloadClosesANowDeniedConnection(t *testing.T) {
	m := newMesh(t, shopPolicy)
	frontend := m.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := m.addPod("backend", 3, map[string]string{"app": "backend"})

	echoTCPIn(t, backend.ns, 7000)
	conn := dialEcho(t, frontend.ns, netip.AddrPortFrom(backend.ip, 7000))

	m.setPolicy("policies:\n  - subject: \"app:frontend\"\n    allow:\n      - destination: \"app:backend\"\n        ports: [8080]\n")
	if n := m.dp.Recheck(m.snap.Load()); n != 1 {
		t.Fatalf("Recheck closed %d flows, want 1", n)
	}
	if conn.roundTrip("still there?") {
		t.Fatal("connection survived a policy that denies it")
	}
	// The event is emitted when the pump has finished closing both sides,
	// which may be just after the client saw its end.
	deadline := time.Now().Add(5 * time.Second)
	for len(m.eventsOf(dataplane.EventFlowRevoked)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no flow_revoked event")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAttackRevokedSource: a stopped workload's SVID is
// refused by the destination's HBONE server at once. The source's agent
// opens streams optimistically (the request follows the CONNECT before the
// answer), so this also proves that bytes sent ahead of a refusal never
// reach the application and that the refused connection is not reported
// as a flow.
func TestAttackRevokedSource(t *testing.T) {
	m := newMesh(t, shopPolicy)
	frontend := m.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := m.addPod("backend", 3, map[string]string{"app": "backend"})
	served := serveHTTPIn(t, backend.ns, backend.name, 8080)
	url := fmt.Sprintf("http://%s:8080/", backend.ip)
	// A first request leaves a pooled HBONE connection from frontend to
	// backend, authenticated with the SVID about to be revoked.
	if out, err := frontend.curl(t, url); err != nil {
		t.Fatalf("before revocation: %v %s", err, out)
	}
	m.revoked.Revoke(frontend.svid.Load().Leaf())
	servedBefore, openedBefore := served.Load(), len(m.eventsOf(dataplane.EventFlowOpened))
	out, err := frontend.curl(t, url)
	secRow(t, "revoked SVID reusing its pooled HBONE connection", "new stream refused", fmt.Sprintf("curl error %v", err != nil), err != nil)
	if err == nil {
		t.Fatalf("revoked source got an answer over its pooled connection: %s", out)
	}
	found := false
	for _, e := range m.eventsOf(dataplane.EventDenied) {
		found = found || (e.Direction == dataplane.Inbound && strings.Contains(e.Err, "revoked"))
	}
	if !found {
		t.Fatal("no inbound denial naming the revocation")
	}
	outbound := false
	for _, e := range m.eventsOf(dataplane.EventDenied) {
		outbound = outbound || (e.Direction == dataplane.Outbound && e.Reason == "denied by the destination's ingress policy")
	}
	if !outbound {
		t.Error("the source's agent did not report the destination's refusal")
	}
	if n := served.Load() - servedBefore; n != 0 {
		t.Errorf("the application answered %d requests sent ahead of the refusal", n)
	}
	if n := len(m.eventsOf(dataplane.EventFlowOpened)) - openedBefore; n != 0 {
		t.Errorf("%d flows reported opened for the refused connection", n)
	}
}

// httpFromNode sends a plaintext HTTP request from the node namespace
// (outside the mesh) and returns the first line of the answer.
func (m *mesh) httpFromNode(t *testing.T, dst netip.AddrPort) (string, error) {
	t.Helper()
	return plaintextHTTP(m.node.NS(), dst)
}

// plaintextHTTP sends a plaintext GET to dst from ns, as a client outside
// the mesh would, and returns the server's "hello" line if it answers.
func plaintextHTTP(ns *netns.NS, dst netip.AddrPort) (string, error) {
	return helloLine(httpGetIn(ns, dst))
}

// helloLine is the "hello" line of a test server's answer resp, if it
// answered, whatever went wrong after; else err (or an unexpected EOF).
func helloLine(resp string, err error) (string, error) {
	for _, line := range strings.SplitAfter(resp, "\n") {
		if strings.HasPrefix(line, "hello") {
			return line, nil
		}
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return "", err
}

// httpGetIn sends GET / over HTTP/1.0 from inside ns, as a process there
// would (through the namespace's redirection, if any), and returns the
// whole response.
func httpGetIn(ns *netns.NS, dst netip.AddrPort) (string, error) {
	var resp []byte
	var err error
	_ = netns.Do(ns, func() error {
		var c net.Conn
		if c, err = net.DialTimeout("tcp4", dst.String(), 2*time.Second); err != nil {
			return nil
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
		resp, err = io.ReadAll(c)
		return nil
	})
	return string(resp), err
}

func TestPermissiveModeAdmitsPlaintextThatPolicyAllows(t *testing.T) {
	m := newMeshMode(t, "", dataplane.Permissive)
	gateway := netip.AddrFrom4([4]byte{m.subnet[0], m.subnet[1], m.subnet[2], 1})
	m.setPolicy(fmt.Sprintf(`policies:
  - subject: "cidr:%s/32"
    allow:
      - destination: "app:backend"
        ports: [8080]
`, gateway))
	backend := m.addPod("backend", 3, map[string]string{"app": "backend"})
	backend.serveHTTP(t, 8080)
	backend.serveHTTP(t, 9090)

	line, err := m.httpFromNode(t, netip.AddrPortFrom(backend.ip, 8080))
	if err != nil || !strings.Contains(line, "you are "+gateway.String()+":") {
		t.Fatalf("allowed plaintext: %q %v", line, err)
	}
	if line, err := m.httpFromNode(t, netip.AddrPortFrom(backend.ip, 9090)); err == nil {
		t.Fatalf("plaintext to a port policy does not allow got %q", line)
	}
	if len(m.eventsOf(dataplane.EventDenied)) == 0 {
		t.Fatal("the refused plaintext flow was not reported")
	}
}

// TestRotationIsSeamless: when a pod's SVID is replaced, a connection
// already open goes on undisturbed, and the next connection is carried
// with the new SVID. Revoking the old leaf right after the rotation proves
// the second point: a stream on a pooled connection made with the old
// leaf would now be refused.
func TestRotationIsSeamless(t *testing.T) {
	m := newMesh(t, shopPolicy)
	frontend := m.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := m.addPod("backend", 3, map[string]string{"app": "backend"})
	backend.serveHTTP(t, 8080)
	echoTCPIn(t, backend.ns, 7000)
	url := fmt.Sprintf("http://%s:8080/", backend.ip)
	if out, err := frontend.curl(t, url); err != nil {
		t.Fatalf("before rotation: %v %s", err, out)
	}
	open := dialEcho(t, frontend.ns, netip.AddrPortFrom(backend.ip, 7000))

	old := frontend.svid.Load()
	fresh, err := m.ca.IssueSVID(identity.SVIDRequest{ID: old.ID, TTL: time.Hour,
		Claims: identity.Claims{WorkloadUID: "frontend", Labels: map[string]string{"app": "frontend"}}})
	if err != nil {
		t.Fatal(err)
	}
	frontend.svid.Store(fresh) // what the identity manager's rotation does
	m.revoked.Revoke(old.Leaf())

	if out, err := frontend.curl(t, url); err != nil || !strings.Contains(out, "hello from backend") {
		t.Fatalf("new connection after rotation: %v %s", err, out)
	}
	if !open.roundTrip("still flowing") {
		t.Fatal("a connection open across the rotation was cut")
	}
}

// TestAuditModeLetsDeniedFlowsThroughAndReportsThem: in audit mode nothing
// is blocked, and every flow strict policy would deny is reported as a
// would-be denial (Enforced false), so a policy can be tried on live
// traffic before it is enforced.
func TestAuditModeLetsDeniedFlowsThroughAndReportsThem(t *testing.T) {
	m := newMeshMode(t, shopPolicy, dataplane.Audit)
	other := m.addPod("other", 4, map[string]string{"app": "other"})
	backend := m.addPod("backend", 3, map[string]string{"app": "backend"})
	backend.serveHTTP(t, 8080)

	out, err := other.curl(t, fmt.Sprintf("http://%s:8080/", backend.ip))
	if err != nil || !strings.Contains(out, fmt.Sprintf("you are %s:", other.ip)) {
		t.Fatalf("audit mode blocked a flow: %v %s", err, out)
	}
	if line, err := m.httpFromNode(t, netip.AddrPortFrom(backend.ip, 8080)); err != nil || !strings.HasPrefix(line, "hello from backend") {
		t.Fatalf("audit mode blocked plaintext: %v %q", err, line)
	}
	var outbound, inbound, plaintext bool
	for _, e := range m.eventsOf(dataplane.EventDenied) {
		if e.Enforced || e.Allowed {
			t.Errorf("audit event claims enforcement: %+v", e)
		}
		switch {
		case e.Direction == dataplane.Outbound && e.Source.Addr() == other.ip:
			outbound = true
		case e.Direction == dataplane.Inbound && e.SourceID != "":
			inbound = true
		case e.Direction == dataplane.Inbound && e.SourceID == "":
			plaintext = true
		}
	}
	if !outbound || !inbound || !plaintext {
		t.Fatalf("would-be denials reported: outbound %v, inbound (HBONE) %v, plaintext %v", outbound, inbound, plaintext)
	}
}
