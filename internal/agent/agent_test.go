package agent

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/ztcn/ztcn/internal/config"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/workload"
)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Agent.NodeName = "test-node"
	cfg.Agent.ControlSocket = filepath.Join(dir, "control.sock")
	cfg.Agent.StateDir = filepath.Join(dir, "state")
	cfg.Telemetry.AuditLog = filepath.Join(dir, "audit.log")
	cfg.Identity.WorkloadAPISocket = filepath.Join(dir, "workload.sock")
	cfg.Identity.CAPath = filepath.Join(dir, "ca")
	cfg.Telemetry.AdminAddress = "127.0.0.1:0"
	cfg.Policy.ConfigPath = filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(cfg.Policy.ConfigPath, []byte("policies: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startAgent runs a and returns once its admin endpoint answers.
func startAgent(t *testing.T, a *Agent) (base string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for a.AdminAddr() == nil {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("agent stopped at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("agent did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("agent did not stop")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return "http://" + a.AdminAddr().String(), stop
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestDevAgentIssuesAndRevokesPodIdentities(t *testing.T) {
	a, err := New(Options{Config: testConfig(t), Dev: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	base, stop := startAgent(t, a)
	waitReady(t, base)
	if got := status(t, base+"/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz = %d", got)
	}

	svid, err := a.RunPod(workload.Pod{UID: "uid-1", Name: "web-0", Namespace: "shop", ServiceAccount: "web", Labels: map[string]string{"app": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://cluster.local/ns/shop/sa/web" {
		t.Fatalf("ID = %s", svid.ID)
	}
	raw := [][]byte{svid.Certificates[0].Raw, svid.Certificates[1].Raw}
	if _, err := a.Verifier().Verify(raw, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatal(err)
	}
	if err := a.StopPod("uid-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verifier().Verify(raw, x509.ExtKeyUsageClientAuth); err == nil {
		t.Fatal("SVID of a stopped pod still verifies")
	}
	if _, ok := a.Registry().Get("uid-1"); ok {
		t.Fatal("stopped pod still registered")
	}

	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
}

func TestPodWithoutIdentityIsNotRegistered(t *testing.T) {
	a, err := New(Options{Config: testConfig(t), Dev: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.RunPod(workload.Pod{UID: "uid-1", Name: "x", Namespace: "shop"}); err == nil {
		t.Fatal("pod without service account got an identity")
	}
	if _, ok := a.Registry().Get("uid-1"); ok {
		t.Fatal("pod whose identity failed stays registered")
	}
}

func TestAgentWithOnlyARootMakesItsOwnNodeCA(t *testing.T) {
	cfg := testConfig(t)
	root, err := identity.NewRootCA(spiffeid.RequireTrustDomainFromString("cluster.local"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteRootCA(cfg.Identity.CAPath, root, false); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Config: cfg, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	svid, err := a.RunPod(workload.Pod{UID: "u", Name: "p", Namespace: "a", ServiceAccount: "b"})
	if err != nil {
		t.Fatal(err)
	}
	node := svid.Certificates[1]
	if !strings.Contains(node.Subject.CommonName, "test-node") || node.CheckSignatureFrom(root.Certificate()) != nil {
		t.Fatalf("leaf not issued through a node CA of this root: chain %v", node.Subject)
	}
}

func TestFaultAgentWithoutCA(t *testing.T) {
	_, err := New(Options{Config: testConfig(t), Logger: quietLogger()})
	t.Logf("SECURITY\tCA files missing at start\tagent refuses to start, naming the file\t%v\t%v", err, err != nil && strings.Contains(err.Error(), "root.crt"))
	if err == nil || !strings.Contains(err.Error(), "root.crt") {
		t.Fatalf("err = %v, want it to name the missing root.crt", err)
	}
}

func TestAgentRefusesToStartWithAMissingFederatedBundle(t *testing.T) {
	cfg := testConfig(t)
	cfg.Identity.Federation = []config.Federation{{TrustDomain: "partner.example", BundlePath: "/nonexistent/partner.json"}}
	a, err := New(Options{Config: cfg, Dev: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "partner.example") {
		t.Fatalf("Run = %v", err)
	}
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for status(t, base+"/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz never became 200")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWorkloadFetchesItsSVIDFromTheAgent: a workload (here the test process,
// registered with its own network namespace) gets its SVID from the agent's
// Workload API with go-spiffe's client, and the SVID the agent revokes at
// stop is the one it fetched.
func TestWorkloadFetchesItsSVIDFromTheAgent(t *testing.T) {
	cfg := testConfig(t)
	a, err := New(Options{Config: cfg, Dev: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := startAgent(t, a)
	waitReady(t, base)
	svid, err := a.RunPod(workload.Pod{UID: "self", Name: "self", Namespace: "dev", ServiceAccount: "tester", NetnsPath: "/proc/self/ns/net"})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fetched, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+cfg.Identity.WorkloadAPISocket))
	if err != nil {
		t.Fatal(err)
	}
	if fetched.ID != svid.ID || !fetched.Certificates[0].Equal(svid.Leaf()) {
		t.Fatalf("fetched %s, agent issued %s", fetched.ID, svid.ID)
	}
}

func TestFaultBadPolicyKeepsTheLastGoodOne(t *testing.T) {
	cfg := testConfig(t)
	cfg.Policy.ConfigPath = filepath.Join(t.TempDir(), "policy.yaml")
	write := func(content string) {
		t.Helper()
		tmp := cfg.Policy.ConfigPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfg.Policy.ConfigPath); err != nil {
			t.Fatal(err)
		}
	}
	write("policies:\n  - subject: \"app:a\"\n    allow:\n      - destination: \"app:b\"\n        ports: [80]\n")
	a, err := New(Options{Config: cfg, Logger: quietLogger(), Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, a)
	if v := a.Policy().Version; v != 1 {
		t.Fatalf("version %d", v)
	}
	write("policies:\n  - subject: \"app:a\"\n    allow:\n      - destination: \"app:b\"\n        ports: [443]\n")
	waitFor(t, func() bool { return a.Policy().Version == 2 })
	write("policies: [ broken")
	time.Sleep(500 * time.Millisecond)
	v := a.Policy().Version
	t.Logf("SECURITY\thalf-written policy file\tlast good policy stays in force\tversion %d in force\t%v", v, v == 2)
	if v != 2 {
		t.Fatalf("a broken file replaced the policy: version %d", v)
	}
}

func TestDevAgentWithoutPolicyDeniesEverything(t *testing.T) {
	cfg := testConfig(t)
	cfg.Policy.ConfigPath = filepath.Join(t.TempDir(), "missing.yaml")
	a, err := New(Options{Config: cfg, Logger: quietLogger(), Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	if a.Policy().Index.Stats().Rules != 0 {
		t.Fatal("dev agent without a policy file has rules")
	}
	if _, err := New(Options{Config: cfg, Logger: quietLogger()}); err == nil {
		t.Fatal("a production agent started without its policy file")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFaultCAFilesUnreadable: a CA key that cannot be read (a truncated
// file, a directory in its place) stops the agent at start with the file
// named, instead of running without identities.
func TestFaultCAFilesUnreadable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakCA func(dir string) error
	}{
		{"truncated root.key", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "root.key"), []byte("-----BEGIN EC PRIVATE KEY-----\nMHcC"), 0o600)
		}},
		{"root.key is a directory", func(dir string) error {
			if err := os.Remove(filepath.Join(dir, "root.key")); err != nil {
				return err
			}
			return os.Mkdir(filepath.Join(dir, "root.key"), 0o700)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			root, err := identity.NewRootCA(spiffeid.RequireTrustDomainFromString("cluster.local"), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if err := identity.WriteRootCA(cfg.Identity.CAPath, root, false); err != nil {
				t.Fatal(err)
			}
			if err := tc.breakCA(cfg.Identity.CAPath); err != nil {
				t.Fatal(err)
			}
			_, err = New(Options{Config: cfg, Logger: quietLogger()})
			ok := err != nil && strings.Contains(err.Error(), "root.key")
			t.Logf("SECURITY\tCA file unreadable (%s)\tagent refuses to start, naming the file\t%v\t%v", tc.name, err, ok)
			if !ok {
				t.Fatalf("New = %v, want an error naming root.key", err)
			}
		})
	}
}
