package agent

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/workload"
)

// selfPod is registered with the test process's own namespace, which the
// identity-only agent accepts (it redirects nothing).
func selfPod(uid, name string) workload.Pod {
	return workload.Pod{UID: uid, Name: name, Namespace: "shop", ServiceAccount: name, NetnsPath: "/proc/self/ns/net",
		Labels: map[string]string{"app": name}}
}

func TestControlAPIRegistersAndRevokesPods(t *testing.T) {
	cfg := testConfig(t)
	a, err := New(Options{Config: cfg, Dev: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := startAgent(t, a)
	waitReady(t, base)
	c := control.NewClient(cfg.Agent.ControlSocket)
	ctx := context.Background()

	st, err := c.RunPod(ctx, selfPod("uid-1", "web"))
	if err != nil {
		t.Fatal(err)
	}
	if st.SPIFFEID != "spiffe://cluster.local/ns/shop/sa/web" || st.CertNotAfter.IsZero() || st.Redirection.State != control.RedirectionNotAttached {
		t.Fatalf("registered pod status = %+v", st)
	}
	// A runtime that retries gets the same answer, not an error.
	if again, err := c.RunPod(ctx, selfPod("uid-1", "web")); err != nil || again.SPIFFEID != st.SPIFFEID {
		t.Fatalf("repeated registration: %+v %v", again, err)
	}
	// Another pod under the same UID is refused.
	var apiErr *control.APIError
	if _, err := c.RunPod(ctx, selfPod("uid-1", "db")); !errors.As(err, &apiErr) || apiErr.Code != http.StatusConflict {
		t.Fatalf("conflicting registration: %v, want 409", err)
	}
	bad := selfPod("uid-2", "x")
	bad.NetnsPath = ""
	if _, err := c.RunPod(ctx, bad); !errors.As(err, &apiErr) || apiErr.Code != http.StatusBadRequest || !strings.Contains(apiErr.Message, "netns_path") {
		t.Fatalf("pod without namespace: %v, want 400 naming netns_path", err)
	}

	full, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !full.Ready || full.DataPlane || full.Node != "test-node" || len(full.Pods) != 1 || full.Policy.Version != 1 {
		t.Fatalf("status = %+v", full)
	}
	if err := c.StopPod(ctx, "uid-1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Identities().SVID("uid-1"); ok {
		t.Fatal("a stopped pod keeps its SVID")
	}
	if err := c.StopPod(ctx, "uid-1"); !errors.As(err, &apiErr) || apiErr.Code != http.StatusNotFound {
		t.Fatalf("stopping twice: %v, want 404", err)
	}
}

func TestRestartedAgentReattachesPodsFromTheStateDir(t *testing.T) {
	cfg := testConfig(t)
	first, err := New(Options{Config: cfg, Dev: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	base, stop := startAgent(t, first)
	waitReady(t, base)
	if _, err := control.NewClient(cfg.Agent.ControlSocket).RunPod(context.Background(), selfPod("uid-1", "web")); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	pods := filepath.Join(cfg.Agent.StateDir, "pods")
	// A record whose namespace is now another one (inode reuse) and an
	// unreadable record must both be dropped, not attached.
	if err := os.WriteFile(filepath.Join(pods, "stale.json"),
		[]byte(`{"pod":{"uid":"stale","name":"old","namespace":"shop","service_account":"old","netns_path":"/proc/self/ns/net"},"netns_dev":1,"netns_ino":2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pods, "torn.json"), []byte(`{"pod":{"uid":`), 0o600); err != nil {
		t.Fatal(err)
	}

	second, err := New(Options{Config: cfg, Dev: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	base, _ = startAgent(t, second)
	waitReady(t, base)
	st := second.Status()
	if len(st.Pods) != 1 || st.Pods[0].UID != "uid-1" || st.Pods[0].SPIFFEID != "spiffe://cluster.local/ns/shop/sa/web" {
		t.Fatalf("after restart: %+v", st.Pods)
	}
	for _, name := range []string{"stale.json", "torn.json"} {
		if _, err := os.Stat(filepath.Join(pods, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was kept: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(pods, "uid-1.json")); err != nil {
		t.Errorf("the re-attached pod's record is gone: %v", err)
	}
}

// TestDataPlaneRefusesTheNodesOwnNamespace: redirecting the agent's own
// namespace would capture every process of the node; a hostNetwork pod is
// refused before anything is installed.
func TestDataPlaneRefusesTheNodesOwnNamespace(t *testing.T) {
	a, err := New(Options{Config: testConfig(t), Dev: true, Logger: quietLogger(), DataPlane: true})
	if err != nil {
		t.Fatal(err)
	}
	p := selfPod("uid-1", "host")
	p.IPs = append(p.IPs, netip.MustParseAddr("10.9.9.9"))
	_, err = a.RunPod(p)
	if !errors.Is(err, control.ErrInvalid) || !strings.Contains(err.Error(), "node's network namespace") {
		t.Fatalf("RunPod in the node's namespace: %v", err)
	}
	if _, ok := a.Registry().Get("uid-1"); ok {
		t.Fatal("refused pod stays registered")
	}
	if _, ok := a.Identities().SVID("uid-1"); ok {
		t.Fatal("refused pod keeps an identity")
	}
}
