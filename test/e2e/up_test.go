package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/runtime/local"
)

// upRun is one `ztcn up -d` run of the real binary, under a name of its
// own so that it never meets a run of the user's or of another test.
type upRun struct {
	t   *testing.T
	run string
	dir string
}

// startUp copies src (a run directory) to a temporary directory, so the
// test may edit its policy, and runs `ztcn up -d` on it.
func startUp(t *testing.T, src string, args ...string) *upRun {
	t.Helper()
	requireRoot(t, "curl", "go")
	ztcnBinary(t)
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	u := &upRun{t: t, run: "zu" + hex.EncodeToString(rnd[:]), dir: t.TempDir()}
	for _, name := range []string{local.PodsFile, local.PolicyFile, local.RuntimeFile} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			if name == local.RuntimeFile {
				continue
			}
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(u.dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hostLinks := linkNames(t)
	t.Cleanup(func() {
		// Whatever the test did, nothing of the run may survive `down`.
		if out, err := u.ztcn("down", "--run", u.run); err != nil {
			t.Errorf("ztcn down: %v\n%s", err, out)
		}
		u.assertGone(hostLinks)
	})
	out, err := u.ztcn(append([]string{"up", "-d", "--run", u.run, u.dir}, args...)...)
	if err != nil {
		log, _ := os.ReadFile(local.SupervisorLog(u.run))
		t.Fatalf("ztcn up -d: %v\n%s\nsupervisor log:\n%s", err, out, log)
	}
	return u
}

func (u *upRun) ztcn(args ...string) (string, error) {
	out, err := exec.Command(ztcnBin, args...).CombinedOutput()
	return string(out), err
}

// get runs `ztcn exec POD -- curl URL` and returns curl's output.
func (u *upRun) get(pod, url string) (string, error) {
	return u.ztcn("exec", "--run", u.run, pod, "--", "curl", "-sS", "--max-time", "5", url)
}

func (u *upRun) status() local.RunStatus {
	u.t.Helper()
	out, err := exec.Command(ztcnBin, "status", "--run", u.run, "-o", "json").Output()
	var rs local.RunStatus
	if jerr := json.Unmarshal(out, &rs); jerr != nil {
		u.t.Fatalf("ztcn status -o json: %v %v\n%s", err, jerr, out)
	}
	return rs
}

func (u *upRun) allowed(pod, url, want string) {
	u.t.Helper()
	out, err := u.get(pod, url)
	if err != nil || !strings.Contains(out, want) {
		u.t.Fatalf("%s -> %s: %v %q, want %q", pod, url, err, out, want)
	}
}

func (u *upRun) denied(pod, url string) {
	u.t.Helper()
	start := time.Now()
	if out, err := u.get(pod, url); err == nil {
		u.t.Fatalf("%s -> %s was allowed: %q", pod, url, out)
	}
	if took := time.Since(start); took > 3*time.Second {
		u.t.Fatalf("%s -> %s took %s to fail; denials must be immediate", pod, url, took)
	}
}

// assertGone checks that no namespace, host link, nftables table or
// process of the run is left.
func (u *upRun) assertGone(hostLinksBefore []string) {
	t := u.t
	if left, _ := netns.List(u.run + "-"); len(left) > 0 {
		t.Errorf("namespaces left after down: %v", left)
	}
	if after := linkNames(t); strings.Join(after, ",") != strings.Join(hostLinksBefore, ",") {
		t.Errorf("host links changed: before %v, after %v", hostLinksBefore, after)
	}
	if c, err := nftables.New(); err == nil {
		tables, _ := c.ListTables()
		for _, tb := range tables {
			if strings.HasPrefix(tb.Name, "ztcn") {
				t.Errorf("nftables table %s left in the host namespace", tb.Name)
			}
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), u.run) {
			t.Errorf("process %s left: %q", e.Name(), strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	for _, path := range []string{local.RunDir(u.run), local.SupervisorLog(u.run)} {
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s left", path)
		}
	}
}

func linkNames(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// TestUpQuickstart runs the quickstart as a newcomer would, checks every
// call of its README, changes the policy live, and takes it down.
func TestUpQuickstart(t *testing.T) {
	u := startUp(t, "../../examples/quickstart")

	rs := u.status()
	if !rs.Ready || len(rs.Nodes) != 1 || len(rs.Pods) != 3 || len(rs.Externals) != 1 || !rs.Nodes[0].Ready || rs.Nodes[0].AdminAddress == "" {
		t.Fatalf("status after up: %+v", rs)
	}
	ips := map[string]string{}
	for _, p := range rs.Pods {
		if p.SPIFFEID != "spiffe://cluster.local/ns/shop/sa/"+p.Name || p.Redirection.State != "healthy" || !p.Running || p.CertNotAfter.IsZero() {
			t.Fatalf("pod %s: %+v", p.Name, p)
		}
		ips[p.Name] = p.IPs[0].String()
	}

	t.Run("allowed: frontend to backend by name, with its true address", func(t *testing.T) {
		u.allowed("frontend", "http://backend/", "hello from backend; you are "+ips["frontend"]+":")
		u.allowed("frontend", "http://backend.shop.svc.cluster.local/", "hello from backend")
	})
	t.Run("allowed: frontend to the external metrics collector", func(t *testing.T) {
		u.allowed("frontend", "http://metrics:9100/", "hello from metrics; you are "+ips["frontend"]+":")
	})
	t.Run("denied: the pod without permissions, the wrong direction, the wrong port", func(t *testing.T) {
		u.denied("batch", "http://backend/")
		u.denied("backend", "http://frontend:8080/")
		u.denied("frontend", "http://backend:8080/")
		u.denied("backend", "http://metrics:9100/")
	})
	t.Run("verdicts are counted and shown with their reason", func(t *testing.T) {
		rs := u.status()
		if rs.Events["denied"] < 4 {
			t.Fatalf("events = %v, want at least 4 denials", rs.Events)
		}
		text, _ := u.ztcn("status", "--run", u.run)
		if !strings.Contains(text, "DENY") || !strings.Contains(text, "no rule allows egress from the source") {
			t.Fatalf("status text lacks the verdicts:\n%s", text)
		}
	})
	t.Run("ztcn flows says why each call was denied", func(t *testing.T) {
		out, err := u.ztcn("flows", "--run", u.run, "--verdict", "deny", "--pod", "batch")
		if err != nil || !strings.Contains(out, "DENY") || !strings.Contains(out, "shop/batch") || !strings.Contains(out, "no rule allows egress from the source") {
			t.Fatalf("ztcn flows --verdict deny --pod batch: %v\n%s", err, out)
		}
		if strings.Contains(out, "shop/frontend (") {
			t.Fatalf("--pod batch shows another pod's flows:\n%s", out)
		}
		allowed, _ := u.ztcn("flows", "--run", u.run, "--verdict", "allow", "--pod", "frontend")
		if !strings.Contains(allowed, "policy.yaml:7:9: app:frontend -> app:backend") {
			t.Fatalf("allowed flows do not name their rule:\n%s", allowed)
		}
		follow := exec.Command(ztcnBin, "flows", "--run", u.run, "--follow", "--verdict", "deny")
		var buf lockedBuffer
		follow.Stdout = &buf
		if err := follow.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = follow.Process.Kill(); _ = follow.Wait() }()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(buf.String(), "shop/backend (") {
			_, _ = u.get("backend", "http://frontend:8080/")
			if time.Now().After(deadline) {
				t.Fatalf("--follow printed no new denial:\n%s", buf.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	t.Run("status tells where each agent serves metrics", func(t *testing.T) {
		rs := u.status()
		if !strings.HasPrefix(rs.Nodes[0].MetricsURL, "http://127.0.0.1:") || !strings.HasSuffix(rs.Nodes[0].MetricsURL, "/metrics") {
			t.Fatalf("metrics_url = %q", rs.Nodes[0].MetricsURL)
		}
		out, err := exec.Command("curl", "-sS", rs.Nodes[0].MetricsURL).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `ztcn_pods_attached 3`) {
			t.Fatalf("scraping %s: %v\n%.400s", rs.Nodes[0].MetricsURL, err, out)
		}
	})
	t.Run("logs show the backend's own log", func(t *testing.T) {
		out, err := u.ztcn("logs", "--run", u.run, "backend")
		if err != nil || !strings.Contains(out, "GET / from "+ips["frontend"]) {
			t.Fatalf("ztcn logs backend: %v\n%s", err, out)
		}
	})
	t.Run("exec passes the command's exit code on", func(t *testing.T) {
		cmd := exec.Command(ztcnBin, "exec", "--run", u.run, "batch", "--", "sh", "-c", "exit 7")
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
			t.Fatalf("exit = %v, want 7", err)
		}
	})
	t.Run("a policy edit takes effect live", func(t *testing.T) {
		policy := `policies:
  - subject: "app:batch"
    allow:
      - destination: "app:backend"
        ports: [80]
`
		if err := os.WriteFile(filepath.Join(u.dir, local.PolicyFile), []byte(policy), 0o644); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for u.status().Policy.Version < 2 {
			if time.Now().After(deadline) {
				t.Fatal("policy not reloaded")
			}
			time.Sleep(100 * time.Millisecond)
		}
		u.allowed("batch", "http://backend/", "hello from backend; you are "+ips["batch"]+":")
		u.denied("frontend", "http://backend/")
	})
}

// TestUpThreeNodes spreads the quickstart over three nodes: calls cross
// nodes over HBONE between agents with different node CAs of one root,
// and policy holds across them.
func TestUpThreeNodes(t *testing.T) {
	u := startUp(t, "../../examples/quickstart", "--nodes", "3")
	rs := u.status()
	nodes := map[string]string{}
	ips := map[string]string{}
	for _, p := range rs.Pods {
		nodes[p.Name], ips[p.Name] = p.Node, p.IPs[0].String()
	}
	if len(rs.Nodes) != 3 || nodes["frontend"] == nodes["backend"] || nodes["batch"] == nodes["backend"] {
		t.Fatalf("pods not spread over 3 nodes: %v", nodes)
	}
	u.allowed("frontend", "http://backend/", "hello from backend; you are "+ips["frontend"]+":")
	u.allowed("frontend", "http://metrics:9100/", "hello from metrics")
	u.denied("batch", "http://backend/")
	u.denied("backend", "http://frontend:8080/")
	// Each node's agent has its own node CA: the backend's node saw an
	// mTLS peer from another node.
	var backendNode local.NodeStatus
	for _, n := range rs.Nodes {
		if n.Name == nodes["backend"] {
			backendNode = n
		}
	}
	if backendNode.AgentLog == "" {
		t.Fatalf("no node for the backend: %+v", rs.Nodes)
	}
	t.Run("a node whose CA chains to another root is refused", func(t *testing.T) {
		rogue(t, u, nodes["backend"])
		if out, err := u.get("frontend", "http://backend/"); err == nil {
			t.Fatalf("frontend reached a backend whose node CA is of another root: %q", out)
		}
		rs := u.status()
		for _, p := range rs.Pods {
			if p.Name == "backend" && (p.Redirection.State != "healthy" || p.SPIFFEID == "") {
				t.Fatalf("the rogue node did not re-attach the backend: %+v", p)
			}
		}
		refused := false
		for _, e := range rs.Recent {
			t.Logf("%s %s %s -> %s: %s %s", e.Kind, e.Direction, e.Source, e.Destination, e.Reason, e.Error)
			refused = refused || (e.Kind == "upstream_failed" && strings.Contains(e.Error, "certificate"))
		}
		if !refused {
			t.Fatal("no upstream failure naming the certificate")
		}
	})
}

// rogue replaces a node's agent with one whose node CA comes from another
// root: it re-attaches the node's pods from its state dir and issues them
// SVIDs the rest of the run must not trust.
func rogue(t *testing.T, u *upRun, node string) {
	t.Helper()
	st, err := local.LoadState(u.run)
	if err != nil {
		t.Fatal(err)
	}
	var ns local.NodeState
	for _, n := range st.Nodes {
		if n.Name == node {
			ns = n
		}
	}
	nodeDir := filepath.Dir(ns.ControlSocket)
	proc, _ := os.FindProcess(ns.AgentPID)
	_ = proc.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ns.AgentPID)); err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rootDir, caDir := filepath.Join(t.TempDir(), "root"), filepath.Join(nodeDir, "ca")
	for _, args := range [][]string{
		{"ca", "init", "--trust-domain", "cluster.local", "--out", rootDir},
		{"ca", "issue-node", "--ca", rootDir, "--node", node, "--out", caDir, "--force"},
	} {
		if out, err := u.ztcn(args...); err != nil {
			t.Fatalf("ztcn %v: %v\n%s", args, err, out)
		}
	}
	agent := exec.Command(ztcnBin, "agent", "--config", filepath.Join(nodeDir, "runtime.toml"))
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		rs := u.status()
		ok := false
		for _, n := range rs.Nodes {
			ok = ok || (n.Name == node && n.Ready)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("rogue agent not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUpRefusesBadInputAndCreatesNothing: every input error is reported
// with file:line before anything exists.
func TestUpRefusesBadInputAndCreatesNothing(t *testing.T) {
	requireRoot(t, "go")
	ztcnBinary(t)
	for _, tc := range []struct {
		name, pods, policy, want string
	}{
		{"unknown field", "pods:\n  - name: a\n    command: [ztcn, demo, idle]\n    colour: red\n", "policies: []\n", "pods.yaml:4:5: pods[0].colour: unknown field"},
		{"duplicate pod", "pods:\n  - name: a\n    command: [ztcn, demo, idle]\n  - name: a\n    command: [ztcn, demo, idle]\n", "policies: []\n", `pods.yaml:4:11: pods[1].name: duplicate name "a"`},
		{"bad label", "pods:\n  - name: a\n    labels: {\"bad key!\": x}\n    command: [ztcn, demo, idle]\n", "policies: []\n", "pods.yaml:3:14: pods[0].labels"},
		{"missing command", "pods:\n  - name: a\n", "policies: []\n", "pods.yaml:2:5: pods[0].command: required field is missing"},
		{"port clash", "pods:\n  - name: a\n    ports: [{name: http, port: 80}, {name: web, port: 80}]\n    command: [ztcn, demo, idle]\n", "policies: []\n", "pods.yaml:3:"},
		{"agent port", "pods:\n  - name: a\n    ports: {proxy: 15001}\n    command: [ztcn, demo, idle]\n", "policies: []\n", "reserved for the ztcn agent"},
		{"bad policy", "pods:\n  - name: a\n    command: [ztcn, demo, idle]\n", "policies:\n  - subject: \"app:a\"\n    allow:\n      - destination: \"app:b\"\n        ports: [99999]\n", "policy.yaml:5:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, local.PodsFile), []byte(tc.pods), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, local.PolicyFile), []byte(tc.policy), 0o644); err != nil {
				t.Fatal(err)
			}
			var rnd [2]byte
			_, _ = rand.Read(rnd[:])
			run := "zb" + hex.EncodeToString(rnd[:])
			out, err := exec.Command(ztcnBin, "up", "--run", run, dir).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("ztcn up: %v\n%s\nwant an error containing %q", err, out, tc.want)
			}
			if left, _ := netns.List(run + "-"); len(left) > 0 {
				t.Fatalf("bad input left namespaces: %v", left)
			}
			if _, err := os.Stat(local.RunDir(run)); err == nil {
				t.Fatal("bad input left a run directory")
			}
		})
	}
}

// TestUpForegroundCtrlCAndCrashedRunCleanup: Ctrl-C at a foreground run
// removes it; a supervisor killed with SIGKILL leaves pods and agents
// behind, which `ztcn down` then removes.
func TestUpForegroundCtrlCAndCrashedRunCleanup(t *testing.T) {
	requireRoot(t, "go")
	ztcnBinary(t)
	hostLinks := linkNames(t)
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	u := &upRun{t: t, run: "zf" + hex.EncodeToString(rnd[:])}
	t.Cleanup(func() { _, _ = u.ztcn("down", "--run", u.run) })

	t.Run("Ctrl-C tears a foreground run down", func(t *testing.T) {
		cmd := exec.Command(ztcnBin, "up", "--run", u.run, "../../examples/quickstart")
		var out lockedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(out.String(), "recent verdicts") && !strings.Contains(out.String(), "POD ") {
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("no live view:\n%s", out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("ztcn up after Ctrl-C: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "removed") {
			t.Fatalf("no teardown reported:\n%s", out.String())
		}
		u.assertGone(hostLinks)
	})
	t.Run("down cleans up after a killed supervisor", func(t *testing.T) {
		if out, err := u.ztcn("up", "-d", "--run", u.run, "--nodes", "2", "../../examples/quickstart"); err != nil {
			t.Fatalf("ztcn up -d: %v\n%s", err, out)
		}
		st, err := local.LoadState(u.run)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscallKill(st.Supervisor); err != nil {
			t.Fatal(err)
		}
		out, err := u.ztcn("down", "--run", u.run)
		if err != nil || !strings.Contains(out, "cleaned up") {
			t.Fatalf("ztcn down: %v\n%s", err, out)
		}
		u.assertGone(hostLinks)
		if out, err := u.ztcn("down", "--run", u.run); err != nil || !strings.Contains(out, "nothing to remove") {
			t.Fatalf("second ztcn down: %v\n%s", err, out)
		}
	})
}

func syscallKill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if err := p.Kill(); err != nil {
		return err
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return nil
		}
	}
	return nil
}
