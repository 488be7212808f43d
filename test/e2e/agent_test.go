package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/dataplane/redirect"
	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/workload"
)

var (
	buildOnce sync.Once
	ztcnBin   string
	buildErr  error
)

// TestMain removes the binary ztcnBinary built. Run with ZTCN_E2E_ROLE
// set, the test binary plays a process inside a pod instead (see
// podProcessRole).
func TestMain(m *testing.M) {
	if role := os.Getenv("ZTCN_E2E_ROLE"); role != "" {
		os.Exit(podProcessRole(role))
	}
	code := m.Run()
	if ztcnBin != "" {
		os.RemoveAll(filepath.Dir(ztcnBin))
	}
	os.Exit(code)
}

// ztcnBinary builds cmd/ztcn once per test run: the agent must run as its
// own process so that it can be killed.
func ztcnBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ztcn-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		ztcnBin = filepath.Join(dir, "ztcn")
		out, err := exec.Command("go", "build", "-o", ztcnBin, "../../cmd/ztcn").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return ztcnBin
}

// agentNode is a node namespace with pods on its bridge, secured by a real
// `ztcn agent` process that the test can kill and restart.
type agentNode struct {
	t       *testing.T
	prefix  string
	subnet  [3]byte
	node    *netns.Node
	dir     string
	config  string
	socket  string
	proc    *exec.Cmd
	logs    *lockedBuffer
	pods    map[string]*netns.Pod
	stopped chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newAgentNode(t *testing.T, policyYAML string) *agentNode {
	t.Helper()
	requireRoot(t, "curl", "go")
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	n := &agentNode{t: t, prefix: "zta" + hex.EncodeToString(rnd[:2]), subnet: [3]byte{10, 253, rnd[2]},
		dir: t.TempDir(), pods: map[string]*netns.Pod{}, logs: &lockedBuffer{}}
	gw := netip.PrefixFrom(netip.AddrFrom4([4]byte{n.subnet[0], n.subnet[1], n.subnet[2], 1}), 24)
	node, err := netns.NewNode(n.prefix+"-node", gw)
	if err != nil {
		t.Fatal(err)
	}
	n.node = node
	t.Cleanup(func() { _ = node.Teardown() })
	n.startWithConfig(policyYAML, "")
	return n
}

// newHostAgent runs an agent in the host's network namespace, as a node
// agent runs, with extraTOML appended to its runtime.toml; runtime
// adapters (the OCI hook, the NRI plugin) bring the pods.
func newHostAgent(t *testing.T, policyYAML, extraTOML string) *agentNode {
	t.Helper()
	n := &agentNode{t: t, dir: t.TempDir(), pods: map[string]*netns.Pod{}, logs: &lockedBuffer{}}
	n.startWithConfig(policyYAML, extraTOML)
	return n
}

// startWithConfig writes the policy and a runtime.toml under the test's
// directory, then starts the agent (killed at cleanup).
func (n *agentNode) startWithConfig(policyYAML, extraTOML string) {
	t := n.t
	t.Helper()
	ztcnBinary(t)
	policyPath := filepath.Join(n.dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(policyYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	n.socket = filepath.Join(n.dir, "control.sock")
	n.config = filepath.Join(n.dir, "runtime.toml")
	cfg := fmt.Sprintf(`[agent]
node_name = "e2e"
control_socket = %q
state_dir = %q
reconcile_interval = "500ms"
[identity]
workload_api_socket = %q
[policy]
config_path = %q
[telemetry]
admin_address = "127.0.0.1:0"
audit_log = %q
`, n.socket, filepath.Join(n.dir, "state"), filepath.Join(n.dir, "workload.sock"), policyPath, filepath.Join(n.dir, "audit.log"))
	if err := os.WriteFile(n.config, []byte(cfg+extraTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	n.start()
	t.Cleanup(func() {
		n.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("agent log:\n%s", n.logs.String())
		}
	})
}

// start runs the agent and waits until its control API says it is ready.
func (n *agentNode) start() {
	n.t.Helper()
	cmd := exec.Command(ztcnBin, "agent", "--dev", "--config", n.config)
	cmd.Stdout, cmd.Stderr = n.logs, n.logs
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.proc = cmd
	n.stopped = make(chan struct{})
	go func() { _ = cmd.Wait(); close(n.stopped) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := n.status()
		if err == nil && st.Ready {
			return
		}
		select {
		case <-n.stopped:
			n.t.Fatalf("agent exited at start:\n%s", n.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("agent not ready: %v\n%s", err, n.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *agentNode) kill(sig syscall.Signal) {
	if n.proc == nil {
		return
	}
	_ = n.proc.Process.Signal(sig)
	select {
	case <-n.stopped:
	case <-time.After(10 * time.Second):
		n.t.Errorf("agent did not exit on %v", sig)
		_ = n.proc.Process.Kill()
		<-n.stopped
	}
	n.proc = nil
}

func (n *agentNode) status() (control.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return control.NewClient(n.socket).Status(ctx)
}

// addPod creates a pod namespace and registers it with the agent, as a
// runtime adapter does before the pod's process starts.
func (n *agentNode) addPod(name string, host byte, labels map[string]string) *netns.Pod {
	n.t.Helper()
	ip := netip.AddrFrom4([4]byte{n.subnet[0], n.subnet[1], n.subnet[2], host})
	p, err := n.node.AddPod(n.prefix+"-"+name, netip.PrefixFrom(ip, 24))
	if err != nil {
		n.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := control.NewClient(n.socket).RunPod(ctx, workload.Pod{
		UID: "uid-" + name, Name: name, Namespace: "shop", ServiceAccount: name, Labels: labels,
		NetnsPath: p.NS.Path(), IPs: []netip.Addr{ip},
	})
	if err != nil {
		n.t.Fatalf("register %s: %v\n%s", name, err, n.logs.String())
	}
	if st.SPIFFEID != "spiffe://cluster.local/ns/shop/sa/"+name || st.Redirection.State != control.RedirectionHealthy {
		n.t.Fatalf("registered %s: %+v", name, st)
	}
	n.pods[name] = p
	return p
}

func (n *agentNode) waitFor(what string, cond func(control.Status) bool) control.Status {
	n.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := n.status()
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("timed out waiting for %s: last status %+v (%v)\n%s", what, st, err, n.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFaultAgentKilled runs the real agent
// binary: pods registered over its control socket talk through it; when it
// is SIGKILLed their traffic is refused, not let through in plaintext; a
// new agent re-attaches them from the state dir without touching the pods.
func TestFaultAgentKilled(t *testing.T) {
	n := newAgentNode(t, shopPolicy)
	frontend := n.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := n.addPod("backend", 3, map[string]string{"app": "backend"})
	other := n.addPod("other", 4, map[string]string{"app": "other"})
	served := serveHTTPIn(t, backend.NS, "backend", 8080)
	backendURL := fmt.Sprintf("http://%s:8080/", backend.Addr.Addr())

	reachable := func(t *testing.T) {
		t.Helper()
		out, err := curlIn(frontend.NS, backendURL)
		if err != nil || !strings.Contains(out, fmt.Sprintf("you are %s:", frontend.Addr.Addr())) {
			t.Fatalf("frontend -> backend: %v %q\n%s", err, out, n.logs.String())
		}
	}
	blocked := func(t *testing.T, why string) {
		t.Helper()
		before := served.Load()
		start := time.Now()
		if out, err := curlIn(frontend.NS, backendURL); err == nil {
			t.Fatalf("%s: frontend still reached the backend: %q", why, out)
		}
		if line, err := plaintextHTTP(n.node.NS(), netip.AddrPortFrom(backend.Addr.Addr(), 8080)); err == nil {
			t.Fatalf("%s: plaintext from the node reached the backend: %q", why, line)
		}
		if served.Load() != before {
			t.Fatalf("%s: the backend application answered a request", why)
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Fatalf("%s: refusal took %s; it must be immediate", why, took)
		}
	}

	t.Run("allowed and denied through the agent", func(t *testing.T) {
		reachable(t)
		if out, err := curlIn(other.NS, backendURL); err == nil {
			t.Fatalf("other -> backend was allowed: %q", out)
		}
		st := n.waitFor("a denial counted", func(st control.Status) bool { return st.Events["denied"] > 0 })
		if len(st.Pods) != 3 {
			t.Fatalf("status lists %d pods, want 3", len(st.Pods))
		}
	})
	t.Run("SIGKILL blocks the pods' traffic", func(t *testing.T) {
		n.kill(syscall.SIGKILL)
		blocked(t, "agent killed")
		secRow(t, "agent SIGKILLed while pods run", "pods' traffic refused, nothing in plaintext", "curl and plaintext refused, app saw nothing", !t.Failed())
	})
	t.Run("a restarted agent re-attaches the pods from its state dir", func(t *testing.T) {
		n.start()
		n.waitFor("three pods re-attached", func(st control.Status) bool {
			if len(st.Pods) != 3 {
				return false
			}
			for _, p := range st.Pods {
				if p.Redirection.State != control.RedirectionHealthy || p.SPIFFEID == "" {
					return false
				}
			}
			return true
		})
		reachable(t)
		reattached := strings.Contains(n.logs.String(), "pod re-attached from the state dir")
		secRow(t, "agent restarted after SIGKILL", "pods re-attached from the state dir, traffic resumes", fmt.Sprintf("reachable, re-attached %v", reattached), reattached)
	})
	t.Run("a hand-deleted rule table is detected, never fails open, and is repaired", func(t *testing.T) {
		conn, err := nftables.New(nftables.WithNetNSFd(backend.NS.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		conn.DelTable(&nftables.Table{Name: redirect.TableName, Family: nftables.TableFamilyIPv4})
		if err := conn.Flush(); err != nil {
			t.Fatal(err)
		}
		// Until the agent notices, the guard table refuses what the main
		// table no longer redirects: nothing reaches the application.
		if line, err := plaintextHTTP(n.node.NS(), netip.AddrPortFrom(backend.Addr.Addr(), 8080)); err == nil {
			t.Fatalf("plaintext reached the backend without its main table: %q", line)
		}
		n.waitFor("the backend's rules repaired", func(st control.Status) bool {
			for _, p := range st.Pods {
				if p.Name == "backend" {
					return p.Redirection.Repairs > 0 && p.Redirection.State == control.RedirectionHealthy
				}
			}
			return false
		})
		reachable(t)
	})
	t.Run("ztcn status shows every pod healthy", func(t *testing.T) {
		out, err := exec.Command(ztcnBin, "status", "--config", n.config, "-o", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("ztcn status: %v\n%s", err, out)
		}
		var st control.Status
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("ztcn status -o json: %v\n%s", err, out)
		}
		if !st.Ready || !st.DataPlane || len(st.Pods) != 3 || st.Policy.Version == 0 {
			t.Fatalf("status = %+v", st)
		}
		text, err := exec.Command(ztcnBin, "status", "--socket", n.socket).CombinedOutput()
		if err != nil || !strings.Contains(string(text), "backend") || !strings.Contains(string(text), "healthy (1 repairs)") {
			t.Fatalf("ztcn status: %v\n%s", err, text)
		}
	})
	t.Run("a stopped agent (SIGTERM) also leaves the pods blocked", func(t *testing.T) {
		n.kill(syscall.SIGTERM)
		blocked(t, "agent stopped")
	})
}

// agentPolicy allows frontend → backend on TCP 8080 and 7000, UDP 5353.
const agentPolicy = `policies:
  - subject: "app:frontend"
    allow:
      - destination: "app:backend"
        ports: [8080, 7000]
      - destination: "app:backend"
        ports: [5353]
        protocols: [udp]
`

// agentPolicyNarrowed withdraws TCP 7000 and UDP 5353.
const agentPolicyNarrowed = `policies:
  - subject: "app:frontend"
    allow:
      - destination: "app:backend"
        ports: [8080]
`

// TestAgentAppliesPolicyFileChangesToRunningPods: the agent compiles each
// pod's UDP allowlist from the policy file and the pods it knows, and
// editing the file reaches the running pods: new and open flows the new
// policy withdraws (TCP and UDP) end, and what it still allows goes on.
func TestAgentAppliesPolicyFileChangesToRunningPods(t *testing.T) {
	n := newAgentNode(t, agentPolicy)
	frontend := n.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := n.addPod("backend", 3, map[string]string{"app": "backend"})
	other := n.addPod("other", 4, map[string]string{"app": "other"})
	at5353 := udpEchoIn(t, backend.NS, 5353)
	udpDst := netip.AddrPortFrom(backend.Addr.Addr(), 5353)
	echoTCPIn(t, backend.NS, 7000)
	echoTCPIn(t, backend.NS, 8080)

	if !udpAllowed(t, frontend.NS, udpDst, at5353, "frontend->backend:5353") {
		t.Fatal("UDP that policy allows did not arrive")
	}
	if udpAllowed(t, other.NS, udpDst, at5353, "other->backend:5353") {
		t.Fatal("UDP from a pod without permission arrived")
	}
	openUDP := udpConn(t, frontend.NS, udpDst)
	if !echoed(t, openUDP, "open flow, before") {
		t.Fatal("UDP flow did not start")
	}
	withdrawn := dialEcho(t, frontend.NS, netip.AddrPortFrom(backend.Addr.Addr(), 7000))
	kept := dialEcho(t, frontend.NS, netip.AddrPortFrom(backend.Addr.Addr(), 8080))

	if err := os.WriteFile(filepath.Join(n.dir, "policy.yaml"), []byte(agentPolicyNarrowed), 0o644); err != nil {
		t.Fatal(err)
	}
	n.waitFor("policy version 2", func(st control.Status) bool { return st.Policy.Version == 2 })
	deadline := time.Now().Add(5 * time.Second)
	for udpAllowed(t, frontend.NS, udpDst, at5353, fmt.Sprintf("after reload %d", time.Now().UnixNano())) {
		if time.Now().After(deadline) {
			t.Fatal("new UDP flows still allowed after the policy withdrew them")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if echoed(t, openUDP, "open flow, after") {
		t.Fatal("a UDP flow opened under the old policy survived the new one")
	}
	if withdrawn.roundTrip("after") {
		t.Fatal("a TCP connection the new policy denies stayed open")
	}
	if !kept.roundTrip("after") {
		t.Fatal("a TCP connection both policies allow was closed")
	}
	n.waitFor("the revoked flow counted", func(st control.Status) bool { return st.Events["flow_revoked"] > 0 })
}

// echoTCPIn runs a line echo server on port inside ns.
func echoTCPIn(t *testing.T, ns *netns.NS, port int) {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					fmt.Fprintln(c, s.Text())
				}
			}()
		}
	}()
}

// echoClient is an open connection to a line echo server.
type echoClient struct {
	c net.Conn
	r *bufio.Reader
}

// dialEcho connects from inside ns to dst and checks one round trip.
func dialEcho(t *testing.T, ns *netns.NS, dst netip.AddrPort) *echoClient {
	t.Helper()
	var c net.Conn
	if err := netns.Do(ns, func() (err error) {
		c, err = net.DialTimeout("tcp4", dst.String(), 3*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e := &echoClient{c: c, r: bufio.NewReader(c)}
	if !e.roundTrip("hello") {
		t.Fatalf("no echo from %s", dst)
	}
	return e
}

// roundTrip sends line and reports whether it came back.
func (e *echoClient) roundTrip(line string) bool {
	_ = e.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintln(e.c, line); err != nil {
		return false
	}
	got, err := e.r.ReadString('\n')
	return err == nil && got == line+"\n"
}

// requireRevocationAudited fails t unless the audit log at path holds a
// certificate-revoked event for the SPIFFE ID id.
func requireRevocationAudited(t *testing.T, path, id string) {
	t.Helper()
	audit, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(audit, []byte("\n")) {
		if bytes.Contains(line, []byte(`"certificate-revoked"`)) && bytes.Contains(line, []byte(id)) {
			return
		}
	}
	t.Fatalf("no certificate-revoked audit event for %s in %s:\n%s", id, path, audit)
}
