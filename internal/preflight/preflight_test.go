package preflight

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztcn/ztcn/internal/identity"
)

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGateNeverPassesByNotLooking(t *testing.T) {
	bad := write(t, "runtime.toml", "[policy]\nmode = \"lax\"\n")
	results := Run(Options{ConfigPath: bad})
	if Passed(results) {
		t.Fatal("an invalid configuration passed")
	}
	if len(results) != 2 || results[1].OK || results[1].Skipped {
		t.Fatalf("the policy check after a bad configuration must fail, not pass or skip: %+v", results)
	}
}

func TestMissingPolicyFileFailsTheGate(t *testing.T) {
	results := Run(Options{PolicyPaths: []string{"/nonexistent/policy.yaml"}, SkipCA: true})
	if Passed(results) {
		t.Fatalf("a missing policy passed: %+v", results)
	}
}

func TestCertificatesMustOutliveMinValidity(t *testing.T) {
	dir := t.TempDir()
	root, err := identity.NewRootCA(spiffeid.RequireTrustDomainFromString("cluster.local"), 10*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteRootCA(dir, root, false); err != nil {
		t.Fatal(err)
	}
	policy := write(t, "policy.yaml", "policies:\n  - subject: \"app:a\"\n    allow:\n      - destination: \"app:b\"\n        ports: [80]\n")
	cfg := write(t, "runtime.toml", "[identity]\nca_path = \""+dir+"\"\n[policy]\nconfig_path = \""+policy+"\"\n")

	results := Run(Options{ConfigPath: cfg, MinValidity: 30 * 24 * time.Hour})
	if Passed(results) {
		t.Fatal("a CA expiring in 10 days passed a 30-day minimum")
	}
	if got := strings.Join(results[2].Problems, "\n"); !strings.Contains(got, "expires") {
		t.Fatalf("problems: %s", got)
	}
	if results := Run(Options{ConfigPath: cfg, MinValidity: 24 * time.Hour}); !Passed(results) {
		t.Fatalf("a CA valid for 10 days failed a 1-day minimum: %+v", results)
	}
}
