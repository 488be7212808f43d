package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	ztcnBinary(t)
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
`, n.socket, filepath.Join(n.dir, "state"), filepath.Join(n.dir, "workload.sock"), policyPath)
	if err := os.WriteFile(n.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	n.start()
	t.Cleanup(func() {
		n.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("agent log:\n%s", n.logs.String())
		}
	})
	return n
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

// TestAgentFailsClosedWhenKilledAndReattachesOnRestart runs the real agent
// binary: pods registered over its control socket talk through it; when it
// is SIGKILLed their traffic is refused, not let through in plaintext; a
// new agent re-attaches them from the state dir without touching the pods.
func TestAgentFailsClosedWhenKilledAndReattachesOnRestart(t *testing.T) {
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
		if !strings.Contains(n.logs.String(), "pod re-attached from the state dir") {
			t.Error("agent log does not say the pods were re-attached")
		}
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
