package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	examplePolicy = "../../examples/policy/policy.yaml"
	exampleTests  = "../../examples/policy-tests.yaml"
)

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyLintReportsFileLineColumn(t *testing.T) {
	bad := writeTemp(t, "bad.yaml", "policies:\n  - subject: \"app:a\"\n    allow:\n      - destinaton: \"app:b\"\n        ports: [70000]\n")
	r := ztcn(t, "policy", "lint", bad)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", r.code, r.stdout)
	}
	if !strings.Contains(r.stdout, bad+":4:9: error: unknown key \"destinaton\"") {
		t.Fatalf("lint output:\n%s", r.stdout)
	}

	open := writeTemp(t, "open.yaml", "policies:\n  - subject: \"*\"\n    allow:\n      - destination: \"*\"\n")
	if r := ztcn(t, "policy", "lint", open); r.code != 0 || !strings.Contains(r.stdout, ": warning: over-broad") {
		t.Fatalf("warnings alone must not fail without --strict: exit %d\n%s", r.code, r.stdout)
	}
	if r := ztcn(t, "policy", "lint", "--strict", open); r.code != 1 {
		t.Fatalf("--strict with warnings: exit %d", r.code)
	}

	var doc struct {
		Diagnostics []struct {
			Position struct {
				File string `json:"file"`
				Line int    `json:"line"`
			} `json:"position"`
			Severity string `json:"severity"`
			Message  string `json:"message"`
		} `json:"diagnostics"`
		Errors int `json:"errors"`
	}
	r = ztcn(t, "policy", "lint", "-o", "json", bad)
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.Errors == 0 || doc.Diagnostics[0].Position.Line == 0 {
		t.Fatalf("lint -o json: %v\n%s", err, r.stdout)
	}
	if r := ztcn(t, "policy", "lint", examplePolicy); r.code != 0 || r.stdout != "" {
		t.Fatalf("the mission example must lint clean: exit %d\n%s", r.code, r.stdout)
	}
}

func TestPolicyTestPassesAndFails(t *testing.T) {
	out := mustZtcn(t, "policy", "test", "--policy", examplePolicy, exampleTests)
	if !strings.HasSuffix(out, "10 passed, 0 failed\n") {
		t.Fatalf("output:\n%s", out)
	}
	wrong := writeTemp(t, "wrong.yaml", `workloads:
  - {name: shop/frontend, labels: {app: frontend}}
  - {name: shop/backend, labels: {app: backend}}
tests:
  - {name: backend may call frontend, from: shop/backend, to: shop/frontend, port: 80, expect: allow}
  - {from: shop/frontend, to: shop/backend, port: 80, expect: allow}
`)
	r := ztcn(t, "policy", "test", "--policy", examplePolicy, wrong)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	for _, want := range []string{"FAIL backend may call frontend (" + wrong + ":5:5): expected allow, got deny", "no rule allows", "1 passed, 1 failed"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestIsolationPrecedenceFlagOverTestFileOverConfig(t *testing.T) {
	// A Kubernetes-style situation: nothing selects frontend for egress, so
	// under "selected" frontend -> other is allowed; under "all" denied.
	tests := writeTemp(t, "t.yaml", `isolation: selected
workloads:
  - {name: shop/frontend, labels: {app: frontend}}
  - {name: shop/other, labels: {app: other}}
tests:
  - {from: shop/other, to: shop/frontend, port: 80, expect: allow}
`)
	if r := ztcn(t, "policy", "test", "--policy", examplePolicy, tests); r.code != 0 {
		t.Fatalf("test file's isolation: selected not used:\n%s", r.stdout)
	}
	if r := ztcn(t, "policy", "test", "--policy", examplePolicy, "--isolation", "all", tests); r.code != 1 {
		t.Fatalf("--isolation all did not override the test file:\n%s", r.stdout)
	}
	cfg := writeTemp(t, "runtime.toml", "[policy]\nisolation = \"selected\"\nconfig_path = \""+examplePolicy+"\"\n")
	noIso := writeTemp(t, "t2.yaml", strings.Replace(readFile(t, tests), "isolation: selected\n", "", 1))
	if r := ztcn(t, "policy", "test", "--config", cfg, noIso); r.code != 0 {
		t.Fatalf("runtime.toml policy.isolation and config_path not used: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPolicyExplainAndMatrix(t *testing.T) {
	out := mustZtcn(t, "policy", "explain", "--policy", examplePolicy, "--workloads", exampleTests, "shop/frontend", "shop/backend", "443/TCP")
	if !strings.HasPrefix(out, "ALLOW shop/frontend -> shop/backend 443/TCP") || !strings.Contains(out, "policy.yaml:6:9") {
		t.Fatalf("explain:\n%s", out)
	}
	out = mustZtcn(t, "policy", "explain", "--policy", examplePolicy, "--workloads", exampleTests, "shop/backend", "shop/frontend", "80")
	if !strings.HasPrefix(out, "DENY shop/backend -> shop/frontend 80/TCP") {
		t.Fatalf("explain:\n%s", out)
	}
	out = mustZtcn(t, "policy", "matrix", "--policy", examplePolicy, "--workloads", exampleTests, "--port", "443/TCP")
	if !strings.Contains(out, "2 shop/frontend 1 . .") {
		t.Fatalf("matrix:\n%s", out)
	}
}

func TestCheckIsTheCIGate(t *testing.T) {
	cfg := writeTemp(t, "runtime.toml", "[policy]\nconfig_path = \""+examplePolicy+"\"\n")
	out := mustZtcn(t, "check", "--config", cfg, "--skip-ca", "--tests", exampleTests)
	for _, want := range []string{"ok   configuration", "ok   policy lint (strict)", "skip certificates", "ok   policy tests (10 passed, 0 failed)"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	t.Run("an insecure policy fails the gate", func(t *testing.T) {
		open := writeTemp(t, "open.yaml", "policies:\n  - subject: \"*\"\n    allow:\n      - destination: \"*\"\n")
		r := ztcn(t, "check", "--config", cfg, "--policy", open, "--skip-ca")
		if r.code != 1 || !strings.Contains(r.stdout, "FAIL policy lint (strict)") || !strings.Contains(r.stdout, "over-broad") {
			t.Fatalf("exit %d\n%s", r.code, r.stdout)
		}
	})
	t.Run("a CA that expires within --min-validity fails the gate", func(t *testing.T) {
		ca := filepath.Join(t.TempDir(), "ca")
		mustZtcn(t, "ca", "init", "--trust-domain", "cluster.local", "--out", ca, "--ttl", "240h")
		cfg := writeTemp(t, "runtime.toml", "[identity]\nca_path = \""+ca+"\"\n[policy]\nconfig_path = \""+examplePolicy+"\"\n")
		r := ztcn(t, "check", "--config", cfg)
		if r.code != 1 || !strings.Contains(r.stdout, "FAIL certificates") || !strings.Contains(r.stdout, "expires") {
			t.Fatalf("exit %d\n%s", r.code, r.stdout)
		}
		if r := ztcn(t, "check", "--config", cfg, "--min-validity", (24 * time.Hour).String()); r.code != 0 {
			t.Fatalf("with --min-validity 24h: exit %d\n%s", r.code, r.stdout)
		}
	})
	t.Run("a failing policy test fails the gate", func(t *testing.T) {
		wrong := writeTemp(t, "wrong.yaml", "workloads:\n  - {name: a/b, labels: {app: backend}}\n  - {name: a/f, labels: {app: frontend}}\ntests:\n  - {from: a/b, to: a/f, port: 80, expect: allow}\n")
		if r := ztcn(t, "check", "--config", cfg, "--skip-ca", "--tests", wrong); r.code != 1 || !strings.Contains(r.stdout, "FAIL policy tests") {
			t.Fatalf("exit %d\n%s", r.code, r.stdout)
		}
	})
	t.Run("an invalid configuration fails the gate", func(t *testing.T) {
		bad := writeTemp(t, "bad.toml", "[policy]\nmode = \"lax\"\n")
		if r := ztcn(t, "check", "--config", bad, "--skip-ca"); r.code != 1 || !strings.Contains(r.stdout, "FAIL configuration") {
			t.Fatalf("exit %d\n%s", r.code, r.stdout)
		}
	})
}

func TestPolicyImportTranslatesExactlyOrSaysWhy(t *testing.T) {
	// Holds both exact and untranslatable rules (namespace-label and
	// matchExpressions peers).
	np := "../../internal/policy/testdata/kube/upstream-style.yaml"
	r := ztcn(t, "policy", "import", np)
	if r.code != 0 || !strings.Contains(r.stdout, "policies:") || !strings.Contains(r.stderr, "dropped") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if r := ztcn(t, "policy", "import", "--strict", np); r.code != 1 {
		t.Fatalf("--strict with a dropped part: exit %d", r.code)
	}
	// The translation loads as a native policy.
	out := writeTemp(t, "native.yaml", r.stdout)
	if r := ztcn(t, "policy", "lint", out); r.code != 0 {
		t.Fatalf("imported policy does not lint: %s", r.stdout)
	}
}
