package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ztcn/ztcn/internal/telemetry"
)

// suggestFlows is the traffic of three workloads and a metrics collector:
// the frontend calls the backend on 8080 and 8081 and pushes metrics, the
// backend calls the database; the database's one call was refused.
func suggestFlows() []telemetry.Flow {
	peer := func(name, ip string) telemetry.Peer {
		return telemetry.Peer{IP: netip.MustParseAddr(ip), Namespace: "shop", Name: name, ServiceAccount: name,
			SPIFFEID: "spiffe://cluster.local/ns/shop/sa/" + name, Labels: map[string]string{"app": name}}
	}
	frontend, backend, db := peer("frontend", "10.77.1.10"), peer("backend", "10.77.1.20"), peer("db", "10.77.1.30")
	metrics := telemetry.Peer{IP: netip.MustParseAddr("203.0.113.7")}
	t0 := time.Date(2026, 11, 23, 14, 2, 0, 0, time.UTC)
	var flows []telemetry.Flow
	add := func(src, dst telemetry.Peer, port uint16, minute int, verdict string, enforced bool) {
		src.Port, dst.Port = uint16(40000+len(flows)), port
		start := t0.Add(time.Duration(minute) * time.Minute)
		flows = append(flows, telemetry.Flow{ID: uint64(len(flows) + 1), Start: start, End: start.Add(time.Second), Direction: "outbound",
			Source: src, Dest: dst, Protocol: "TCP", Verdict: verdict, Enforced: enforced, Kind: "flow_closed"})
	}
	add(frontend, backend, 8080, 0, telemetry.VerdictAllow, true)
	add(frontend, backend, 8081, 4, telemetry.VerdictAllow, true)
	add(frontend, backend, 8080, 9, telemetry.VerdictAllow, true)
	add(frontend, metrics, 9100, 10, telemetry.VerdictAllow, true)
	add(backend, db, 5432, 12, telemetry.VerdictDeny, false) // audit mode: let through
	add(db, frontend, 80, 18, telemetry.VerdictDeny, true)   // strict: refused
	return flows
}

func writeFlowLines(t *testing.T, flows []telemetry.Flow) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, f := range flows {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return writeTemp(t, "flows.jsonl", b.String())
}

const suggestTests = `workloads:
  - {name: shop/frontend, serviceAccount: frontend, labels: {app: frontend}}
  - {name: shop/backend, serviceAccount: backend, labels: {app: backend}}
  - {name: shop/db, serviceAccount: db, labels: {app: db}}
tests:
  - {from: shop/frontend, to: shop/backend, port: 8080, expect: allow}
  - {from: shop/frontend, to: shop/backend, port: 8081, expect: allow}
  - {from: shop/frontend, to: 203.0.113.7, port: 9100, expect: allow}
  - {name: audit-mode denial is allowed, from: shop/backend, to: shop/db, port: 5432, expect: allow}
  - {name: other direction, from: shop/backend, to: shop/frontend, port: 8080, expect: deny}
  - {name: unobserved port, from: shop/frontend, to: shop/backend, port: 8082, expect: deny}
  - {name: enforced denial, from: shop/db, to: shop/frontend, port: 80, expect: deny}
  - {name: other outside address, from: shop/frontend, to: 198.51.100.1, port: 9100, expect: deny}
  - {name: frontend skips the backend, from: shop/frontend, to: shop/db, port: 5432, expect: deny}
`

func TestPolicySuggestFromFlowFile(t *testing.T) {
	flows := writeFlowLines(t, suggestFlows())
	r := ztcn(t, "policy", "suggest", "--from", flows)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"5 flows from 3 workloads → 3 rules\n", "not evidence: 1 denied and enforced"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	for _, want := range []string{`subject: "app:frontend"`, `destination: "app:backend"`, `ports: ["8080-8081"]`, `observed-1: ["203.0.113.7/32"]`,
		"# 3 flows, 2026-11-23 14:02–14:11, from shop/frontend (10.77.1.10) to shop/backend, ports 8080-8081"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("policy lacks %q:\n%s", want, r.stdout)
		}
	}
	out := writeTemp(t, "suggested.yaml", r.stdout)
	if r := ztcn(t, "policy", "lint", out); r.code != 0 || r.stdout != "" {
		t.Fatalf("the suggestion does not lint clean: exit %d\n%s", r.code, r.stdout)
	}
	tests := writeTemp(t, "tests.yaml", suggestTests)
	if r := ztcn(t, "policy", "test", "--policy", out, tests); r.code != 0 || !strings.HasSuffix(r.stdout, "9 passed, 0 failed\n") {
		t.Fatalf("exit %d\n%s\npolicy:\n%s", r.code, r.stdout, readFile(t, out))
	}

	// Denials enforced in strict mode count when asked for.
	r = ztcn(t, "policy", "suggest", "--from", flows, "--include-denied")
	if r.code != 0 || !strings.Contains(r.stdout, `subject: "app:db"`) || !strings.Contains(r.stderr, "6 flows from 3 workloads → 4 rules") {
		t.Fatalf("--include-denied: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// JSON is the same policy, and loads too.
	r = ztcn(t, "policy", "suggest", "--from", flows, "-o", "json")
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); r.code != 0 || err != nil {
		t.Fatalf("-o json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	out = writeTemp(t, "suggested.json", r.stdout)
	if r := ztcn(t, "policy", "test", "--policy", out, tests); r.code != 0 {
		t.Fatalf("JSON policy: %s", r.stdout)
	}
}

func TestPolicySuggestRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no input", nil, "no flows given"},
		{"missing file", []string{"--from", filepath.Join(t.TempDir(), "nope.jsonl")}, "no such file"},
		{"bad line", []string{"--from", writeTemp(t, "bad.jsonl", "{\"source\":{}}\n{oops\n")}, "bad.jsonl:2: "},
		{"nothing to suggest from", []string{"--from", writeTemp(t, "denied.jsonl", "")}, "no flow to suggest a policy from"},
		{"unknown format", []string{"--from", "x", "-o", "toml"}, "unknown output format"},
	} {
		r := ztcn(t, append([]string{"policy", "suggest"}, c.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q (want %q)", c.name, r.code, r.stdout, r.stderr, c.want)
		}
	}
}

func TestPolicySuggestFromStdinAndSeveralFiles(t *testing.T) {
	flows := suggestFlows()
	var lines bytes.Buffer
	enc := json.NewEncoder(&lines)
	for _, f := range flows[:3] {
		_ = enc.Encode(f)
	}
	rest := writeFlowLines(t, flows[3:])
	cmd := newPolicySuggestCommand()
	var out, errOut bytes.Buffer
	cmd.SetIn(&lines)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"--from", "-", "--from", rest})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	want := mustZtcn(t, "policy", "suggest", "--from", writeFlowLines(t, flows))
	if out.String() != want {
		t.Errorf("stdin + file:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestPolicySuggestAsksTheAgent(t *testing.T) {
	// A short directory: a Unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "ztcn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "control.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v1/flows" {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(suggestFlows())
	}))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)

	r := ztcn(t, "policy", "suggest", "--agent", "--socket", socket)
	want := mustZtcn(t, "policy", "suggest", "--from", writeFlowLines(t, suggestFlows()))
	if r.code != 0 || r.stdout != want || !strings.Contains(r.stderr, "5 flows from 3 workloads → 3 rules") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s\nwant:\n%s", r.code, r.stdout, r.stderr, want)
	}
	if r := ztcn(t, "policy", "suggest", "--agent", "--socket", filepath.Join(dir, "none.sock")); r.code != 1 || !strings.Contains(r.stderr, "agent control socket") {
		t.Fatalf("no agent: exit %d\n%s", r.code, r.stderr)
	}
}
