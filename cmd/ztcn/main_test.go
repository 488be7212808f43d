package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets tests run the real binary: the test executable re-executes
// itself as `ztcn` when ZTCN_TEST_MAIN is set.
func TestMain(m *testing.M) {
	if os.Getenv("ZTCN_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
}

func ztcn(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

func mustZtcn(t *testing.T, args ...string) string {
	t.Helper()
	r := ztcn(t, args...)
	if r.code != 0 {
		t.Fatalf("ztcn %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

func TestHelpListsEveryCommand(t *testing.T) {
	out := mustZtcn(t, "--help")
	for _, c := range []string{"agent", "ca", "config", "svid", "version"} {
		if !strings.Contains(out, "\n  "+c+" ") {
			t.Errorf("--help does not list %q:\n%s", c, out)
		}
	}
	caHelp := mustZtcn(t, "ca", "--help")
	for _, c := range []string{"init", "issue-node", "show", "bundle"} {
		if !strings.Contains(caHelp, "\n  "+c+" ") {
			t.Errorf("ca --help does not list %q", c)
		}
	}
}

func TestVersionPrintsVersionAndGoVersion(t *testing.T) {
	out := mustZtcn(t, "version")
	if !strings.HasPrefix(out, "ztcn ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("version output: %q", out)
	}
}

func TestCAWorkflow(t *testing.T) {
	dir := t.TempDir()
	root, node, svid := filepath.Join(dir, "root"), filepath.Join(dir, "node"), filepath.Join(dir, "svid")
	mustZtcn(t, "ca", "init", "--trust-domain", "example.org", "--out", root)

	info, err := os.Stat(filepath.Join(root, "root.key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("root.key: %v, mode %v", err, info.Mode())
	}
	if r := ztcn(t, "ca", "init", "--trust-domain", "example.org", "--out", root); r.code == 0 || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("second init without --force: exit %d, %s", r.code, r.stderr)
	}
	mustZtcn(t, "ca", "init", "--trust-domain", "example.org", "--out", root, "--force")

	mustZtcn(t, "ca", "issue-node", "--ca", root, "--node", "node-1", "--out", node)
	mustZtcn(t, "svid", "issue", "--ca", node, "--id", "spiffe://example.org/ns/shop/sa/cart", "--label", "app=cart", "--ttl", "10m", "--out", svid)
	for _, f := range []string{"svid.crt", "svid.key", "bundle.crt"} {
		if _, err := os.Stat(filepath.Join(svid, f)); err != nil {
			t.Fatal(err)
		}
	}

	show := mustZtcn(t, "ca", "show", filepath.Join(svid, "svid.crt"))
	for _, want := range []string{"SPIFFE ID:", "spiffe://example.org/ns/shop/sa/cart", "Not after:", "Key type:", "ECDSA P-256", "SHA-256 fingerprint:", "CN=ztcn node CA node-1"} {
		if !strings.Contains(show, want) {
			t.Errorf("ca show lacks %q:\n%s", want, show)
		}
	}
	var infos []map[string]any
	if err := json.Unmarshal([]byte(mustZtcn(t, "ca", "show", "-o", "json", node)), &infos); err != nil || len(infos) != 2 {
		t.Fatalf("ca show -o json of a node dir: %v, %d certificates", err, len(infos))
	}

	var bundle struct {
		Keys []struct {
			Use string   `json:"use"`
			X5C []string `json:"x5c"`
		} `json:"keys"`
		Sequence *uint64 `json:"spiffe_sequence"`
	}
	if err := json.Unmarshal([]byte(mustZtcn(t, "ca", "bundle", root)), &bundle); err != nil {
		t.Fatal(err)
	}
	if len(bundle.Keys) != 1 || bundle.Keys[0].Use != "x509-svid" || len(bundle.Keys[0].X5C) != 1 || bundle.Sequence == nil {
		t.Fatalf("bundle = %+v", bundle)
	}

	if openssl, err := exec.LookPath("openssl"); err == nil {
		out, err := exec.Command(openssl, "verify", "-CAfile", filepath.Join(svid, "bundle.crt"),
			"-untrusted", filepath.Join(node, "node.crt"), filepath.Join(svid, "svid.crt")).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl verify: %v\n%s", err, out)
		}
	}
}

// TestBadInputGivesOneClearError: each broken input is reported in a single
// "ztcn: …" line naming the problem, with exit code 1.
func TestBadInputGivesOneClearError(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	mustZtcn(t, "ca", "init", "--trust-domain", "example.org", "--out", root)
	other := filepath.Join(base, "other")
	mustZtcn(t, "ca", "init", "--trust-domain", "example.org", "--out", other)

	copyCA := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "ca")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"root.crt", "root.key"} {
			data, err := os.ReadFile(filepath.Join(root, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	issue := func(ca string) []string {
		return []string{"svid", "issue", "--ca", ca, "--id", "spiffe://example.org/ns/a/sa/b", "--out", filepath.Join(t.TempDir(), "out")}
	}

	cases := []struct {
		name string
		args func(t *testing.T) []string
		want []string
	}{
		{"corrupt certificate PEM", func(t *testing.T) []string {
			ca := copyCA(t)
			if err := os.WriteFile(filepath.Join(ca, "root.crt"), []byte("-----BEGIN CERTIFICATE-----\nnot base64\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return issue(ca)
		}, []string{"root.crt", "PEM"}},
		{"key that does not match the certificate", func(t *testing.T) []string {
			ca := copyCA(t)
			data, _ := os.ReadFile(filepath.Join(other, "root.key"))
			if err := os.WriteFile(filepath.Join(ca, "root.key"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			return issue(ca)
		}, []string{"root.crt", "private key does not match"}},
		{"world-readable key file", func(t *testing.T) []string {
			ca := copyCA(t)
			if err := os.Chmod(filepath.Join(ca, "root.key"), 0o644); err != nil {
				t.Fatal(err)
			}
			return issue(ca)
		}, []string{"root.key", "0644", "chmod 600"}},
		{"expired root", func(t *testing.T) []string {
			ca := filepath.Join(t.TempDir(), "expired")
			mustZtcn(t, "ca", "init", "--trust-domain", "example.org", "--out", ca, "--ttl", "1s")
			time.Sleep(1100 * time.Millisecond)
			return issue(ca)
		}, []string{"expired"}},
		{"invalid SPIFFE ID", func(t *testing.T) []string {
			return []string{"svid", "issue", "--ca", root, "--id", "spiffe://example.org/ns/../sa/b", "--out", t.TempDir()}
		}, []string{"invalid SPIFFE ID", "spiffe://example.org/ns/../sa/b"}},
		{"SPIFFE ID with a foreign scheme", func(t *testing.T) []string {
			return []string{"svid", "issue", "--ca", root, "--id", "https://example.org/ns/a/sa/b", "--out", t.TempDir()}
		}, []string{"invalid SPIFFE ID"}},
		{"invalid trust domain", func(t *testing.T) []string {
			return []string{"ca", "init", "--trust-domain", "Bad Domain", "--out", t.TempDir()}
		}, []string{"invalid trust domain"}},
		{"unknown config key", func(t *testing.T) []string {
			p := filepath.Join(t.TempDir(), "runtime.toml")
			if err := os.WriteFile(p, []byte("[identity]\ntrust_domain = \"a.b\"\ncert_tl = \"1h\"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"config", "check", p}
		}, []string{"runtime.toml:3", "identity.cert_tl", "unknown key"}},
		{"malformed label", func(t *testing.T) []string {
			return append(issue(root), "--label", "novalue")
		}, []string{"--label", "key=value"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ztcn(t, tc.args(t)...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1; stderr: %s", r.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "ztcn: ") {
				t.Fatalf("want one error line, got:\n%s", r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("error %q does not mention %q", strings.TrimSpace(r.stderr), w)
				}
			}
		})
	}
}

func TestConfigCheckPrintsTheEffectiveConfiguration(t *testing.T) {
	p := filepath.Join(t.TempDir(), "runtime.toml")
	if err := os.WriteFile(p, []byte("[identity]\ncert_ttl = \"2h\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustZtcn(t, "config", "check", p)
	for _, want := range []string{"[identity]", "cert_ttl = '2h", "trust_domain = 'cluster.local'", "[policy]", "mode = 'strict'", "admin_address = '127.0.0.1:15020'"} {
		if !strings.Contains(strings.ReplaceAll(out, `"`, "'"), want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
}

// TestAgentDevServesHealthAndStopsOnSignal runs the real binary as a user
// would: `ztcn agent --dev`, probes, SIGTERM, and a clean exit.
func TestAgentDevServesHealthAndStopsOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			addr := freeAddr(t)
			dir := t.TempDir()
			cfg := filepath.Join(dir, "runtime.toml")
			if err := os.WriteFile(cfg, fmt.Appendf(nil, "[identity]\nworkload_api_socket = %q\n[agent]\ncontrol_socket = %q\nstate_dir = %q\n[telemetry]\naudit_log = %q\n", filepath.Join(dir, "workload.sock"), filepath.Join(dir, "control.sock"), filepath.Join(dir, "state"), filepath.Join(dir, "audit.log")), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "agent", "--dev", "--config", cfg, "--admin-address", addr)
			cmd.Env = append(os.Environ(), "ZTCN_TEST_MAIN=1")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill() })

			waitHTTP(t, "http://"+addr+"/readyz", &stderr)
			if body := get(t, "http://"+addr+"/healthz"); strings.TrimSpace(body) != "ok" {
				t.Fatalf("/healthz = %q", body)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("agent exited with %v\n%s", err, stderr.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("agent did not stop on %s\n%s", sig, stderr.String())
			}
			if _, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
				t.Fatal("admin endpoint still listening after stop")
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHTTP(t *testing.T, url string, log *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered 200\n%s", url, log.String())
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}

// TestExampleRuntimeTOMLIsTheDefault keeps examples/runtime.toml, which the
// README points newcomers to, valid and equal to the built-in defaults.
func TestExampleRuntimeTOMLIsTheDefault(t *testing.T) {
	example := mustZtcn(t, "config", "check", "../../examples/runtime.toml")
	empty := filepath.Join(t.TempDir(), "empty.toml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defaults := mustZtcn(t, "config", "check", empty)
	if example != defaults {
		t.Fatalf("examples/runtime.toml differs from the defaults:\n%s\nvs\n%s", example, defaults)
	}
}
