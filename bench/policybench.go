package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ztcn/ztcn/internal/policy"
)

// runPolicy builds a policy file of 15,000 services and 100,000 rules, as
// an operator would write it, and measures loading it and one decision.
func runPolicy(o options, res *Results) error {
	const services, rules = 15000, 100000
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := 0; i < rules; i++ {
		fmt.Fprintf(&b, "  - subject: \"app:svc-%d\"\n    allow:\n      - destination: \"app:svc-%d\"\n        ports: [%d]\n",
			i%services, (i*7+1+i/services)%services, 8000+i%100)
	}
	dir, err := os.MkdirTemp("", "ztcn-bench-policy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	start := time.Now()
	ix, diags, err := policy.Build(policy.IsolateAll, path)
	if err != nil || diags.HasErrors() {
		return fmt.Errorf("build: %v %v", err, diags)
	}
	build := time.Since(start)
	ep := func(i int) *policy.Endpoint {
		return &policy.Endpoint{Workload: true, Namespace: "ns", Name: fmt.Sprintf("svc-%d", i),
			Labels: map[string]string{"app": fmt.Sprintf("svc-%d", i)}, IP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}
	}
	// Rule 0 lets svc-0 call svc-1 on 8000.
	src, dst := ix.Resolve(ep(0)), ix.Resolve(ep(1))
	if !ix.Decide(src, dst, policy.TCP, 8000).Allowed {
		return fmt.Errorf("the synthetic policy does not allow its first rule")
	}
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ix.Decide(src, dst, policy.TCP, 8000)
		}
	})
	res.Policy = PolicyResult{Services: services, Rules: rules, BuildFromFile: build,
		DecideNs: float64(r.T.Nanoseconds()) / float64(r.N), DecideAllocs: r.AllocsPerOp()}
	return nil
}
