package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ztcn/ztcn/internal/telemetry"
	"github.com/ztcn/ztcn/internal/workload"
)

// recorder is a Backend that keeps what it was asked, so the tests check
// the wire format end to end over a real Unix socket.
type recorder struct {
	mu    sync.Mutex
	pods  map[string]workload.Pod
	dir   Directory
	table *telemetry.FlowTable
}

func (r *recorder) RunPod(_ context.Context, p workload.Pod) (PodStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.Name == "" {
		return PodStatus{}, fmt.Errorf("%w: missing name", ErrInvalid)
	}
	if _, ok := r.pods[p.UID]; ok {
		return PodStatus{}, fmt.Errorf("%w: %s exists", ErrConflict, p.UID)
	}
	r.pods[p.UID] = p
	return PodStatus{UID: p.UID, Name: p.Name, Namespace: p.Namespace, IPs: p.IPs, SPIFFEID: "spiffe://td/ns/" + p.Namespace + "/sa/" + p.ServiceAccount,
		Redirection: Redirection{State: RedirectionHealthy}}, nil
}

func (r *recorder) StopPod(uid string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pods[uid]; !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, uid)
	}
	delete(r.pods, uid)
	return nil
}

func (r *recorder) Pod(uid string) (PodStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pods[uid]
	if !ok {
		return PodStatus{}, fmt.Errorf("%w: %s", ErrNotFound, uid)
	}
	return PodStatus{UID: p.UID, Name: p.Name, Namespace: p.Namespace}, nil
}

func (r *recorder) SetDirectory(d Directory) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range d.Pods {
		if p.UID == "" {
			return fmt.Errorf("%w: directory entry without uid", ErrInvalid)
		}
	}
	r.dir = d
	return nil
}

func (r *recorder) Flows(f telemetry.FlowFilter) []telemetry.Flow { return r.table.List(f) }

func (r *recorder) SubscribeFlows(ctx context.Context) <-chan telemetry.Flow {
	return r.table.Subscribe(ctx)
}

func (r *recorder) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Node: "n1", Ready: true, Mode: "strict", Events: map[string]uint64{"denied": 2}}
	for _, p := range r.pods {
		st.Pods = append(st.Pods, PodStatus{UID: p.UID, Name: p.Name})
	}
	return st
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func serve(t *testing.T) (*Client, *recorder, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "control.sock")
	rec := &recorder{pods: map[string]workload.Pod{}, table: telemetry.NewFlowTable(16)}
	srv := NewServer(path, rec, quiet)
	ln, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return NewClient(path), rec, path
}

func TestPodLifecycleOverTheSocket(t *testing.T) {
	c, rec, _ := serve(t)
	ctx := context.Background()
	pod := workload.Pod{UID: "u1", Name: "web", Namespace: "shop", ServiceAccount: "web", NetnsPath: "/run/netns/x",
		IPs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, Labels: map[string]string{"app": "web"}, Ports: map[string]uint16{"http": 80}}
	st, err := c.RunPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if st.SPIFFEID != "spiffe://td/ns/shop/sa/web" || st.Redirection.State != RedirectionHealthy || st.IPs[0] != pod.IPs[0] {
		t.Errorf("status = %+v", st)
	}
	if got := rec.pods["u1"]; got.Labels["app"] != "web" || got.Ports["http"] != 80 || got.NetnsPath != pod.NetnsPath {
		t.Errorf("backend got %+v", got)
	}
	_, err = c.RunPod(ctx, pod)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Code != http.StatusConflict || !strings.Contains(apiErr.Message, "u1 exists") {
		t.Errorf("second registration: %v, want 409 naming the pod", err)
	}
	full, err := c.Status(ctx)
	if err != nil || len(full.Pods) != 1 || full.Events["denied"] != 2 {
		t.Errorf("status = %+v, %v", full, err)
	}
	if one, err := c.Pod(ctx, "u1"); err != nil || one.UID != "u1" || one.Name != "web" {
		t.Errorf("Pod(u1) = %+v, %v", one, err)
	}
	if err := c.StopPod(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pod(ctx, "u1"); !IsNotFound(err) {
		t.Errorf("Pod of a stopped pod: %v, want 404", err)
	}
	err = c.StopPod(ctx, "u1")
	if !errors.As(err, &apiErr) || apiErr.Code != http.StatusNotFound {
		t.Errorf("stopping an unknown pod: %v, want 404", err)
	}
}

func TestBadRequestsAreRefusedWithAReason(t *testing.T) {
	_, _, path := serve(t)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	for _, tc := range []struct {
		name, body, path string
		code             int
		want             string
	}{
		{"uid mismatch", `{"uid":"other","name":"a"}`, "/v1/pods/u1", 400, `does not match the path`},
		{"unknown field", `{"name":"a","color":"red"}`, "/v1/pods/u1", 400, `unknown field "color"`},
		{"bad address", `{"name":"a","ips":["300.1.1.1"]}`, "/v1/pods/u1", 400, `pod record`},
		{"backend refusal", `{"namespace":"x"}`, "/v1/pods/u1", 400, `missing name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPut, "http://x"+tc.path, strings.NewReader(tc.body))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e Error
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tc.code || !strings.Contains(e.Error, tc.want) {
				t.Errorf("got %d %q, want %d containing %q", resp.StatusCode, e.Error, tc.code, tc.want)
			}
		})
	}
}

func TestSocketIsRootOnlyAndNotStolen(t *testing.T) {
	_, _, path := serve(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want 0600: whoever can register a pod gets an identity for it", fi.Mode().Perm())
	}
	if _, err := NewServer(path, &recorder{}, nil).Listen(); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second agent on a live socket: %v, want refusal", err)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	// A socket file nobody listens on, as a killed agent leaves it.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	srv := NewServer(path, &recorder{pods: map[string]workload.Pod{}}, nil)
	ln2, err := srv.Listen()
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = srv.Serve(ctx, ln2) }()
	if _, err := NewClient(path).Status(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDirectoryIsReplacedWhole(t *testing.T) {
	c, rec, _ := serve(t)
	ctx := context.Background()
	d := Directory{Pods: []RemotePod{{Pod: workload.Pod{UID: "r1", Name: "db", Namespace: "shop", ServiceAccount: "db",
		IPs: []netip.Addr{netip.MustParseAddr("10.77.2.2")}, Labels: map[string]string{"app": "db"}}, Node: "node-2"}}}
	if err := c.SetDirectory(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got := rec.dir.Pods; len(got) != 1 || got[0].Node != "node-2" || got[0].Labels["app"] != "db" || got[0].IPs[0] != d.Pods[0].IPs[0] {
		t.Fatalf("backend got %+v", got)
	}
	var apiErr *APIError
	if err := c.SetDirectory(ctx, Directory{Pods: []RemotePod{{}}}); !errors.As(err, &apiErr) || apiErr.Code != http.StatusBadRequest {
		t.Fatalf("bad directory: %v, want 400", err)
	}
}

func TestFlowsAreListedFilteredAndFollowed(t *testing.T) {
	c, rec, _ := serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	peer := func(ns, name string) telemetry.Peer {
		return telemetry.Peer{Namespace: ns, Name: name, IP: netip.MustParseAddr("10.0.0.1")}
	}
	rec.table.Finished(telemetry.Flow{Start: time.Now(), Source: peer("shop", "web"), Dest: peer("shop", "db"), Verdict: telemetry.VerdictAllow})
	rec.table.Finished(telemetry.Flow{Start: time.Now(), Source: peer("batch", "job"), Dest: peer("shop", "db"), Verdict: telemetry.VerdictDeny, Reason: "no rule"})
	all, err := c.Flows(ctx, telemetry.FlowFilter{})
	if err != nil || len(all) != 2 {
		t.Fatalf("flows = %v, %v", all, err)
	}
	denied, err := c.Flows(ctx, telemetry.FlowFilter{Verdict: "deny"})
	if err != nil || len(denied) != 1 || denied[0].Source.Name != "job" || denied[0].Reason != "no rule" {
		t.Fatalf("denied = %+v, %v", denied, err)
	}
	byPod, _ := c.Flows(ctx, telemetry.FlowFilter{Pod: "shop/web"})
	byNS, _ := c.Flows(ctx, telemetry.FlowFilter{Namespace: "batch"})
	if len(byPod) != 1 || len(byNS) != 1 {
		t.Fatalf("by pod %d, by namespace %d", len(byPod), len(byNS))
	}
	var apiErr *APIError
	if _, err := c.Flows(ctx, telemetry.FlowFilter{Verdict: "maybe"}); !errors.As(err, &apiErr) || apiErr.Code != http.StatusBadRequest {
		t.Fatalf("bad verdict: %v", err)
	}

	got := make(chan telemetry.Flow, 4)
	fctx, fcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.FollowFlows(fctx, telemetry.FlowFilter{Verdict: "deny"}, func(f telemetry.Flow) { got <- f })
	}()
	// The subscription starts with the request; publish until it is seen.
	for i := 0; ; i++ {
		rec.table.Finished(telemetry.Flow{ID: uint64(100 + i), Verdict: telemetry.VerdictAllow})
		rec.table.Finished(telemetry.Flow{ID: uint64(200 + i), Verdict: telemetry.VerdictDeny})
		select {
		case f := <-got:
			if f.Verdict != telemetry.VerdictDeny {
				t.Fatalf("followed a flow the filter excludes: %+v", f)
			}
			fcancel()
			if err := <-done; err != nil {
				t.Fatalf("FollowFlows: %v", err)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if i > 100 {
			t.Fatal("no followed flow")
		}
	}
}
