package policy

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// largeSet is a cluster of services services with rules rules: rule i lets
// svc-(i mod services) call svc-((i*7+1+i/services) mod services) on one port, like a
// microservice call graph, plus namespace-wide and deny rules so that
// every kind of entry is exercised.
func largeSet(services, rules int) *Set {
	s := &Set{}
	svc := func(i int) Selector { return label("app", fmt.Sprintf("svc-%d", i%services)) }
	for i := 0; i < rules; i++ {
		port := uint16(8000 + i%100)
		switch {
		case i%50 == 0:
			nativeRule(s, Deny, svc(i), svc(i*7+1+i/services), tcp(port+1))
		case i%25 == 0:
			nativeRule(s, Allow, svc(i), Selector{Terms: []Term{{Kind: TermNamespace, Value: fmt.Sprintf("ns-%d", i%40)}}}, tcp(9090))
		default:
			nativeRule(s, Allow, svc(i), svc(i*7+1+i/services), tcp(port))
		}
	}
	return s
}

func largeEndpoint(i int) *Endpoint {
	return &Endpoint{Workload: true, Namespace: fmt.Sprintf("ns-%d", i%40), Name: fmt.Sprintf("svc-%d-0", i),
		Labels: map[string]string{"app": fmt.Sprintf("svc-%d", i)}, IP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}
}

// scanDecide is the baseline: interpret the rules one by one for every
// connection, which is what the index exists to avoid.
func scanDecide(s *Set, src, dst *Endpoint, proto Protocol, port uint16) bool {
	egress, ingress := false, false
	for i := range s.Grants {
		g := &s.Grants[i]
		var subject, peer *Endpoint
		if g.Direction == Egress {
			subject, peer = src, dst
		} else {
			subject, peer = dst, src
		}
		if !g.Subject.Matches(subject) || !g.Peer.Matches(peer) {
			continue
		}
		for _, pr := range g.Ports {
			r := portRule{PortRange: pr}
			if r.matches(dst, proto, port) {
				if g.Action == Deny {
					return false
				}
				if g.Direction == Egress {
					egress = true
				} else {
					ingress = true
				}
			}
		}
	}
	return egress && ingress
}

const (
	benchServices = 15000
	benchRules    = 100000
)

// BenchmarkDecide measures a decision at 15,000 services / 100,000 rules,
// with the naive rule scan as the baseline in the same run. The target is
// ≤ 200 ns and 0 allocations for the index.
func BenchmarkDecide(b *testing.B) {
	set := largeSet(benchServices, benchRules)
	ix, err := Compile(set, IsolateAll)
	if err != nil {
		b.Fatal(err)
	}
	// Rule 1 lets svc-1 call svc-8 on 8001.
	srcEP, dstEP := largeEndpoint(1), largeEndpoint(8)
	src, dst := ix.Resolve(srcEP), ix.Resolve(dstEP)
	if !ix.Decide(src, dst, TCP, 8001).Allowed || ix.Decide(src, dst, TCP, 8002).Allowed {
		b.Fatal("benchmark fixture does not decide as designed")
	}
	if !scanDecide(set, srcEP, dstEP, TCP, 8001) {
		b.Fatal("baseline does not decide as designed")
	}
	var indexNs float64
	b.Run("index/allowed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !ix.Decide(src, dst, TCP, 8001).Allowed {
				b.Fatal("denied")
			}
		}
		indexNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("index/denied", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ix.Decide(src, dst, TCP, 8002).Allowed {
				b.Fatal("allowed")
			}
		}
	})
	b.Run("scan-baseline/allowed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !scanDecide(set, srcEP, dstEP, TCP, 8001) {
				b.Fatal("denied")
			}
		}
		if indexNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/indexNs, "x-slower-than-index")
		}
	})
}

// BenchmarkCompile measures compiling 100,000 rules (target ≤ 2 s) and
// resolving one endpoint against them.
func BenchmarkCompile(b *testing.B) {
	set := largeSet(benchServices, benchRules)
	b.Run("compile", func(b *testing.B) {
		for b.Loop() {
			if _, err := Compile(set, IsolateAll); err != nil {
				b.Fatal(err)
			}
		}
	})
	ix, _ := Compile(set, IsolateAll)
	b.Run("resolve", func(b *testing.B) {
		ep := largeEndpoint(1)
		for b.Loop() {
			ix.Resolve(ep)
		}
	})
}

// TestDecideDoesNotAllocate guards the hot path in the ordinary suite.
func TestDecideDoesNotAllocate(t *testing.T) {
	ix, _ := Compile(largeSet(200, 2000), IsolateAll)
	src, dst := ix.Resolve(largeEndpoint(1)), ix.Resolve(largeEndpoint(8))
	if a := testing.AllocsPerRun(100, func() { ix.Decide(src, dst, TCP, 8001) }); a != 0 {
		t.Fatalf("Decide allocates %.0f times per call", a)
	}
}

// TestIndexAgreesWithTheScanBaseline cross-checks the index against the
// rule-by-rule interpretation on a few thousand flows.
func TestIndexAgreesWithTheScanBaseline(t *testing.T) {
	set := largeSet(60, 1500) // dense: every service has many rules
	ix, _ := Compile(set, IsolateAll)
	eps := make([]*Endpoint, 60)
	subs := make([]*Subject, len(eps))
	for i := range eps {
		eps[i] = largeEndpoint(i)
		subs[i] = ix.Resolve(eps[i])
	}
	start := time.Now()
	checked, allowed := 0, 0
	for i := range eps {
		for j := range eps {
			for _, port := range []uint16{8000, 8001, 8002, 8026, 8051, 8077, 8099, 9090, 443} {
				want := scanDecide(set, eps[i], eps[j], TCP, port)
				got := ix.Decide(subs[i], subs[j], TCP, port)
				if got.Allowed != want {
					t.Fatalf("%s -> %s:%d: index %v, scan %v\n%s", eps[i], eps[j], port, got.Allowed, want, ix.Explain(subs[i], subs[j], TCP, port))
				}
				checked++
				if want {
					allowed++
				}
			}
		}
	}
	if allowed == 0 {
		t.Fatal("fixture allows nothing: the comparison proves nothing")
	}
	t.Logf("%d flows agree (%d allowed) in %s", checked, allowed, time.Since(start))
}

// BenchmarkBuildFromFiles measures the whole path a reload takes — read,
// parse, lint, compile — for a 100,000-rule native file (target ≤ 2 s).
func BenchmarkBuildFromFiles(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("policies:\n")
	for i := 0; i < benchRules; i++ {
		fmt.Fprintf(&sb, "  - subject: \"app:svc-%d\"\n    allow:\n      - destination: \"app:svc-%d\"\n        ports: [%d]\n",
			i%benchServices, (i*7+1+i/benchServices)%benchServices, 8000+i%100)
	}
	path := filepath.Join(b.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		ix, diags, err := Build(IsolateAll, path)
		if err != nil || diags.HasErrors() {
			b.Fatal(err, diags)
		}
		if ix.Stats().Rules != benchRules {
			b.Fatalf("%d rules", ix.Stats().Rules)
		}
	}
}

// TestMixedFileOfNativeAndNetworkPolicyDocuments: one multi-document file
// may hold both kinds; both apply.
func TestMixedFileOfNativeAndNetworkPolicyDocuments(t *testing.T) {
	src := `policies:
  - subject: "app:frontend"
    allow:
      - destination: "app:backend"
        ports: [80]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-from-admin, namespace: shop}
spec:
  podSelector: {matchLabels: {app: backend}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: admin}}}]
    ports: [{port: 22}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: admin-to-backend, namespace: shop}
spec:
  podSelector: {matchLabels: {app: admin}}
  egress:
  - to: [{podSelector: {matchLabels: {app: backend}}}]
    ports: [{port: 22}]
`
	set, diags := LoadBytes("mixed.yaml", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ix, _ := Compile(set, IsolateAll)
	f := ix.Resolve(pod("shop", "f", map[string]string{"app": "frontend"}, "10.0.0.1"))
	b := ix.Resolve(pod("shop", "b", map[string]string{"app": "backend"}, "10.0.0.2"))
	a := ix.Resolve(pod("shop", "a", map[string]string{"app": "admin"}, "10.0.0.3"))
	if !ix.Decide(f, b, TCP, 80).Allowed {
		t.Error("native rule not applied")
	}
	if !ix.Decide(a, b, TCP, 22).Allowed {
		t.Error("NetworkPolicy rules not applied")
	}
	if ix.Decide(a, b, TCP, 80).Allowed || ix.Decide(f, b, TCP, 22).Allowed {
		t.Error("rules leaked between documents")
	}
}
