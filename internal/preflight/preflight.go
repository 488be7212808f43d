// Package preflight is `ztcn check`: the "zero-trust network test" a CI
// pipeline runs before a change reaches a node. Each check reports what it
// looked at and every problem it found; the gate fails if any check fails.
package preflight

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ztcn/ztcn/internal/config"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/policy"
)

// Options say what to check.
type Options struct {
	// ConfigPath is runtime.toml; empty means the built-in defaults.
	ConfigPath string
	// PolicyPaths override policy.config_path.
	PolicyPaths []string
	// Isolation overrides policy.isolation ("" keeps it).
	Isolation policy.IsolationMode
	// TestFiles are policy test files that must pass.
	TestFiles []string
	// MinValidity is how long every CA and bundle certificate must still
	// be valid.
	MinValidity time.Duration
	// SkipCA skips the CA and bundle checks, for repositories that hold
	// policy but not the nodes' CA material.
	SkipCA bool
	Now    func() time.Time
}

// Result is the outcome of one check.
type Result struct {
	Name     string   `json:"name"`
	OK       bool     `json:"ok"`
	Skipped  bool     `json:"skipped,omitempty"`
	Detail   string   `json:"detail,omitempty"`
	Problems []string `json:"problems,omitempty"`
}

// Run performs every check. A check that cannot run because an earlier one
// failed (no configuration, no policy) is reported as failed, not skipped:
// the gate must never pass by not looking.
func Run(opts Options) []Result {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var results []Result
	cfg, res := checkConfig(opts.ConfigPath)
	results = append(results, res)
	if cfg == nil {
		return append(results, Result{Name: "policy", Problems: []string{"not checked: the configuration is invalid"}})
	}
	paths := opts.PolicyPaths
	if len(paths) == 0 {
		paths = []string{cfg.Policy.ConfigPath}
	}
	mode := policy.IsolationMode(cfg.Policy.Isolation)
	if opts.Isolation != "" {
		mode = opts.Isolation
	}
	results = append(results, checkPolicyLint(paths))
	if opts.SkipCA {
		results = append(results, Result{Name: "certificates", OK: true, Skipped: true, Detail: "skipped (--skip-ca)"})
	} else {
		results = append(results, checkCertificates(cfg, opts.MinValidity, opts.Now()))
	}
	if len(opts.TestFiles) > 0 {
		results = append(results, checkPolicyTests(paths, mode, opts.TestFiles))
	}
	return results
}

// Passed reports whether every check passed.
func Passed(results []Result) bool {
	for _, r := range results {
		if !r.OK {
			return false
		}
	}
	return true
}

func checkConfig(path string) (*config.Config, Result) {
	r := Result{Name: "configuration"}
	if path == "" {
		r.OK, r.Detail = true, "built-in defaults"
		return config.Default(), r
	}
	cfg, err := config.Load(path)
	if err != nil {
		r.Problems = []string{err.Error()}
		return nil, r
	}
	r.OK, r.Detail = true, path
	return cfg, r
}

func checkPolicyLint(paths []string) Result {
	r := Result{Name: "policy lint (strict)", Detail: fmt.Sprint(paths)}
	for _, d := range policy.LintPaths(paths...) {
		r.Problems = append(r.Problems, d.String())
	}
	r.OK = len(r.Problems) == 0
	return r
}

func checkPolicyTests(paths []string, mode policy.IsolationMode, files []string) Result {
	r := Result{Name: "policy tests"}
	passed, failed := 0, 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			r.Problems = append(r.Problems, err.Error())
			continue
		}
		tf, diags := policy.ParseTestFile(f, data)
		if diags.HasErrors() {
			for _, d := range diags {
				r.Problems = append(r.Problems, d.String())
			}
			continue
		}
		m := mode
		if tf.Isolation != "" {
			m = tf.Isolation
		}
		ix, diags, err := policy.Build(m, paths...)
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("policy does not build: %v", err))
			for _, d := range diags {
				if d.Severity == policy.SeverityError {
					r.Problems = append(r.Problems, d.String())
				}
			}
			continue
		}
		for _, res := range policy.RunTests(ix, tf) {
			if res.Passed {
				passed++
				continue
			}
			failed++
			if res.Err != nil {
				r.Problems = append(r.Problems, fmt.Sprintf("%s: %s: %v", res.Case.Pos, res.Case.Label(), res.Err))
			} else {
				r.Problems = append(r.Problems, fmt.Sprintf("%s: %s: expected %s, got %s (%s)", res.Case.Pos, res.Case.Label(),
					allowWord(res.Case.Expect), allowWord(res.Explanation.Allowed), res.Explanation.Reason))
			}
		}
	}
	r.Detail = fmt.Sprintf("%d passed, %d failed", passed, failed)
	r.OK = len(r.Problems) == 0
	return r
}

func checkCertificates(cfg *config.Config, minValidity time.Duration, now time.Time) Result {
	r := Result{Name: "certificates", Detail: cfg.Identity.CAPath}
	deadline := now.Add(minValidity)
	expiring := func(what string, certs []*x509.Certificate) {
		for i, c := range certs {
			if slices.ContainsFunc(certs[:i], c.Equal) {
				continue
			}
			if c.NotAfter.Before(deadline) {
				r.Problems = append(r.Problems, fmt.Sprintf("%s: certificate %q expires %s, within %s", what, c.Subject, c.NotAfter.UTC().Format(time.RFC3339), minValidity))
			}
		}
	}
	dirs := []string{cfg.Identity.CAPath}
	if cfg.Identity.TrustDomainPerNamespace {
		// Tenants' CAs live in subdirectories named after their domains.
		entries, _ := os.ReadDir(cfg.Identity.CAPath)
		for _, e := range entries {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(cfg.Identity.CAPath, e.Name()))
			}
		}
	}
	for _, dir := range dirs {
		ca, err := identity.LoadCA(dir)
		if err != nil {
			r.Problems = append(r.Problems, err.Error())
			continue
		}
		expiring(dir, append(append([]*x509.Certificate{ca.Certificate()}, ca.Chain()...), ca.Roots()...))
	}
	for _, f := range cfg.Identity.Federation {
		td, err := identity.ParseTrustDomain(f.TrustDomain)
		if err != nil {
			r.Problems = append(r.Problems, err.Error())
			continue
		}
		certs, err := identity.LoadBundleFile(td, f.BundlePath)
		if err != nil {
			r.Problems = append(r.Problems, err.Error())
			continue
		}
		expiring(f.BundlePath, certs)
	}
	r.OK = len(r.Problems) == 0
	return r
}

func allowWord(b bool) string {
	if b {
		return "allow"
	}
	return "deny"
}
