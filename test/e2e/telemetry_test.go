package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/telemetry"
)

// ecsLine is the part of an audit line the tests read.
type ecsLine struct {
	Timestamp time.Time `json:"@timestamp"`
	Event     struct {
		Kind     string   `json:"kind"`
		Category []string `json:"category"`
		Type     []string `json:"type"`
		Action   string   `json:"action"`
		Outcome  string   `json:"outcome"`
		Reason   string   `json:"reason"`
	} `json:"event"`
	Source struct {
		IP   string
		Port int
	} `json:"source"`
	Destination struct {
		IP   string
		Port int
	} `json:"destination"`
	Rule struct{ Name, Description string } `json:"rule"`
	X509 struct {
		SerialNumber     string   `json:"serial_number"`
		AlternativeNames []string `json:"alternative_names"`
	} `json:"x509"`
	Ztcn struct {
		Source struct {
			SPIFFEID string `json:"spiffe_id"`
		} `json:"source"`
		Destination struct {
			SPIFFEID string `json:"spiffe_id"`
		} `json:"destination"`
		Enforced   *bool                    `json:"enforced"`
		StagedRule string                   `json:"staged_rule"`
		Policy     struct{ Version uint64 } `json:"policy"`
	} `json:"ztcn"`
}

func readAudit(t *testing.T, path string) []ecsLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []ecsLine
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		var l ecsLine
		if err := json.Unmarshal(s.Bytes(), &l); err != nil {
			t.Fatalf("audit line is not JSON: %v\n%s", err, s.Text())
		}
		if l.Timestamp.IsZero() || l.Event.Kind == "" || l.Event.Action == "" || l.Event.Outcome == "" || len(l.Event.Category) == 0 {
			t.Fatalf("audit line lacks ECS fields: %s", s.Text())
		}
		out = append(out, l)
	}
	return out
}

func byAction(lines []ecsLine, action string) []ecsLine {
	var out []ecsLine
	for _, l := range lines {
		if l.Event.Action == action {
			out = append(out, l)
		}
	}
	return out
}

// TestAuditLogRecordsEveryKindInECS makes the real agent produce each kind
// of audit event and reads them back from its audit log.
func TestAuditLogRecordsEveryKindInECS(t *testing.T) {
	n := newAgentNode(t, shopPolicy)
	n.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := n.addPod("backend", 3, map[string]string{"app": "backend"})
	other := n.addPod("other", 4, map[string]string{"app": "other"})
	serveHTTPIn(t, backend.NS, "backend", 8080)
	backendIP := backend.Addr.Addr()

	if _, err := curlIn(other.NS, fmt.Sprintf("http://%s:8080/", backendIP)); err == nil {
		t.Fatal("denied call went through")
	}
	if _, err := plaintextHTTP(n.node.NS(), netip.AddrPortFrom(backendIP, 8080)); err == nil {
		t.Fatal("plaintext went through")
	}
	// A TLS client without a certificate at the backend's HBONE port.
	_ = netns.Do(n.node.NS(), func() error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", netip.AddrPortFrom(backendIP, 15008).String(),
			&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err == nil {
			_, _ = c.Read(make([]byte, 1))
			c.Close()
		}
		return nil
	})
	if err := os.WriteFile(filepath.Join(n.dir, "policy.yaml"), []byte(shopPolicy+"  - subject: \"app:other\"\n    allow:\n      - destination: \"app:backend\"\n        ports: [8080]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n.waitFor("policy version 2", func(st control.Status) bool { return st.Policy.Version == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := control.NewClient(n.socket).StopPod(ctx, "uid-frontend"); err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(n.dir, "audit.log")
	var lines []ecsLine
	n.waitFor("every kind audited", func(control.Status) bool {
		lines = readAudit(t, auditPath)
		for _, a := range []string{telemetry.ActionCertIssued, telemetry.ActionPolicyViolation, telemetry.ActionPlaintextRefused,
			telemetry.ActionHandshakeFailed, telemetry.ActionPolicyReload, telemetry.ActionCertRevoked} {
			if len(byAction(lines, a)) == 0 {
				return false
			}
		}
		return true
	})

	issued := byAction(lines, telemetry.ActionCertIssued)
	if len(issued) != 3 || issued[0].X509.SerialNumber == "" || len(issued[0].X509.AlternativeNames) != 1 || issued[0].Event.Outcome != "success" {
		t.Errorf("certificate-issued: %+v", issued)
	}
	v := byAction(lines, telemetry.ActionPolicyViolation)[0]
	if v.Event.Kind != "alert" || v.Event.Outcome != "failure" || v.Source.IP != other.Addr.Addr().String() || v.Source.Port == 0 ||
		v.Destination.IP != backendIP.String() || v.Destination.Port != 8080 || v.Event.Reason == "" ||
		v.Ztcn.Source.SPIFFEID != "spiffe://cluster.local/ns/shop/sa/other" || v.Ztcn.Destination.SPIFFEID != "spiffe://cluster.local/ns/shop/sa/backend" ||
		v.Ztcn.Enforced == nil || !*v.Ztcn.Enforced {
		t.Errorf("policy-violation: %+v", v)
	}
	if p := byAction(lines, telemetry.ActionPlaintextRefused)[0]; p.Destination.IP != backendIP.String() || p.Destination.Port != 8080 {
		t.Errorf("plaintext-refused: %+v", p)
	}
	if h := byAction(lines, telemetry.ActionHandshakeFailed)[0]; h.Event.Outcome != "failure" || h.Source.IP == "" {
		t.Errorf("tls-handshake-failed: %+v", h)
	}
	if r := byAction(lines, telemetry.ActionPolicyReload); r[len(r)-1].Event.Outcome != "success" || r[len(r)-1].Ztcn.Policy.Version != 2 {
		t.Errorf("policy-reload: %+v", r)
	}
	if r := byAction(lines, telemetry.ActionCertRevoked)[0]; r.X509.AlternativeNames[0] != "spiffe://cluster.local/ns/shop/sa/frontend" {
		t.Errorf("certificate-revoked: %+v", r)
	}
	out, err := exec.Command(ztcnBin, "audit", "verify", auditPath).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "OK:") {
		t.Fatalf("ztcn audit verify: %v\n%s", err, out)
	}
}

// TestStagedPolicyRecordsWouldBeDenialsThenEnforces stages a policy that
// would cut a running flow: the flow keeps working while would-be denials
// name the staged rule; switching the policy to enforce blocks it.
func TestStagedPolicyRecordsWouldBeDenialsThenEnforces(t *testing.T) {
	u := startUp(t, "../../examples/quickstart")
	staged := func(mode string) string {
		data, err := os.ReadFile("../../examples/quickstart/policy.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return string(data) + "---\n" + mode + "policies:\n  - subject: \"app:frontend\"\n    deny:\n      - destination: \"app:backend\"\n        ports: [80]\n"
	}
	write := func(src string, version uint64) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(u.dir, "policy.yaml"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for u.status().Policy.Version < version {
			if time.Now().After(deadline) {
				t.Fatalf("policy version %d not loaded", version)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	write(staged("mode: audit\n"), 2)
	u.allowed("frontend", "http://backend/", "hello from backend")

	out, err := u.ztcn("flows", "--run", u.run, "-o", "json")
	if err != nil {
		t.Fatalf("ztcn flows: %v\n%s", err, out)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var f telemetry.Flow
		if json.Unmarshal([]byte(line), &f) == nil && f.Source.Name == "frontend" && f.Direction == "outbound" && f.Verdict == "allow" &&
			f.StagedVerdict == "deny" && strings.Contains(f.StagedRule, "policy.yaml:18:9: [audit] deny app:frontend -> app:backend") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no flow with the staged rule's would-be denial:\n%s", out)
	}
	audit := readAudit(t, filepath.Join(filepath.Dir(u.status().Nodes[0].AgentLog), "audit.log"))
	wouldBe := byAction(audit, telemetry.ActionWouldBeViolation)
	if len(wouldBe) == 0 || !strings.Contains(wouldBe[0].Ztcn.StagedRule+wouldBe[0].Rule.Name, "policy.yaml:18:9") || wouldBe[0].Ztcn.Enforced == nil || *wouldBe[0].Ztcn.Enforced {
		t.Fatalf("would-be violation not audited with the staged rule: %+v", wouldBe)
	}
	if rs := u.status(); rs.Events["staged_verdict"] == 0 {
		t.Fatalf("staged verdicts not counted: %v", rs.Events)
	}

	write(staged(""), 3)
	u.denied("frontend", "http://backend/")
}

// TestFaultAuditDiskFull puts the agent's audit log on a tiny
// tmpfs: when it fills, enforcement goes on and the loss is counted.
func TestFaultAuditDiskFull(t *testing.T) {
	requireRoot(t, "curl")
	n := newAgentNode(t, shopPolicy)
	frontend := n.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := n.addPod("backend", 3, map[string]string{"app": "backend"})
	other := n.addPod("other", 4, map[string]string{"app": "other"})
	serveHTTPIn(t, backend.NS, "backend", 8080)
	// Restart the agent with its audit log on a 16 KiB tmpfs.
	n.kill(syscall.SIGTERM)
	small := filepath.Join(n.dir, "small")
	if err := os.Mkdir(small, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size=16k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(small, syscall.MNT_DETACH) })
	cfg, _ := os.ReadFile(n.config)
	cfg = []byte(strings.Replace(string(cfg), filepath.Join(n.dir, "audit.log"), filepath.Join(small, "audit.log"), 1))
	if err := os.WriteFile(n.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	n.start()
	url := fmt.Sprintf("http://%s:8080/", backend.Addr.Addr())
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := curlIn(other.NS, url); err == nil {
			t.Fatal("a denied call went through")
		}
		st, err := n.status()
		if err == nil && st.AuditLog.Errors > 0 {
			if !strings.Contains(st.AuditLog.LastError, "no space") {
				t.Errorf("last audit error %q does not say the disk is full", st.AuditLog.LastError)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log never filled: %+v", st.AuditLog)
		}
	}
	if out, err := curlIn(frontend.NS, url); err != nil || !strings.Contains(out, "hello from backend") {
		t.Fatalf("allowed call after the disk filled: %v %s", err, out)
	}
	if _, err := curlIn(other.NS, url); err == nil {
		t.Fatal("denied call went through after the disk filled")
	}
	st, _ := n.status()
	secRow(t, "audit log disk full", "enforcement continues, loss counted and logged",
		fmt.Sprintf("%d events lost (%s), allowed and denied calls unchanged", st.AuditLog.Errors, st.AuditLog.LastError),
		strings.Contains(n.logs.String(), "audit events lost") && st.AuditLog.Errors > 0)
}

// TestAuditModeThenSuggestThenEnforce is the path to least privilege: run
// in audit mode with no policy (everything flows, everything is recorded),
// ask `ztcn policy suggest` for a policy from the recorded flows, enforce
// it: the observed traffic still flows and nothing else does.
func TestAuditModeThenSuggestThenEnforce(t *testing.T) {
	requireRoot(t, "curl", "go")
	ztcnBinary(t)
	src := t.TempDir()
	pods, err := os.ReadFile("../../examples/quickstart/pods.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"pods.yaml":    string(pods),
		"policy.yaml":  "policies: []\n",
		"runtime.toml": "[policy]\nmode = \"audit\"\n",
	} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u := startUp(t, src)
	// Everything flows in audit mode, even with an empty policy.
	u.allowed("frontend", "http://backend/", "hello from backend")
	u.allowed("frontend", "http://metrics:9100/", "hello from metrics")
	u.allowed("frontend", "http://backend/", "hello from backend")
	if rs := u.status(); rs.Mode != "audit" {
		t.Fatalf("mode = %q", rs.Mode)
	}
	flows, err := u.ztcn("flows", "--run", u.run, "-o", "json")
	if err != nil {
		t.Fatalf("ztcn flows: %v\n%s", err, flows)
	}
	flowsFile := filepath.Join(t.TempDir(), "flows.jsonl")
	if err := os.WriteFile(flowsFile, []byte(flows), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ztcnBin, "policy", "suggest", "--from", flowsFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	suggested, err := cmd.Output()
	if err != nil {
		t.Fatalf("ztcn policy suggest: %v\n%s", err, stderr.String())
	}
	t.Logf("suggested policy:\n%s\n%s", suggested, stderr.String())
	if _, err := u.ztcn("down", "--run", u.run); err != nil {
		t.Fatal(err)
	}

	enforce := t.TempDir()
	for name, data := range map[string]string{"pods.yaml": string(pods), "policy.yaml": string(suggested)} {
		if err := os.WriteFile(filepath.Join(enforce, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v := startUp(t, enforce)
	if rs := v.status(); rs.Mode != "strict" {
		t.Fatalf("mode = %q", rs.Mode)
	}
	v.allowed("frontend", "http://backend/", "hello from backend")
	v.allowed("frontend", "http://metrics:9100/", "hello from metrics")
	v.denied("batch", "http://backend/")
	v.denied("backend", "http://frontend:8080/")
	v.denied("frontend", "http://backend:8080/")
	v.denied("backend", "http://metrics:9100/")
}
