package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// These tests build Sets by hand, so they test the index alone; the parsers'
// tests check that files produce such Sets.

func label(k, v string) Selector {
	return Selector{Terms: []Term{{Kind: TermLabel, Key: k, Op: OpEquals, Value: v}}}
}

func external(name string, cidrs ...string) Selector {
	t := Term{Kind: TermExternal, Value: name}
	for _, c := range cidrs {
		t.Prefixes = append(t.Prefixes, netip.MustParsePrefix(c))
	}
	return Selector{Terms: []Term{t}}
}

func tcp(ports ...uint16) []PortRange {
	out := make([]PortRange, len(ports))
	for i, p := range ports {
		out[i] = PortRange{Protocol: TCP, Lo: p, Hi: p}
	}
	return out
}

// nativeRule adds what the native parser makes of one rule: a rule, an
// egress grant of the subject and an ingress grant of the destination.
func nativeRule(s *Set, action Action, subject, dest Selector, ports []PortRange) int {
	r := s.AddRule(Rule{Pos: Position{File: "policy.yaml", Line: len(s.Rules) + 1, Col: 7}, Origin: "native",
		Text: fmt.Sprintf("%s %s -> %s", action, subject, dest)})
	s.Grants = append(s.Grants,
		Grant{Direction: Egress, Action: action, Subject: subject, Peer: dest, Ports: ports, Rule: r},
		Grant{Direction: Ingress, Action: action, Subject: dest, Peer: subject, Ports: ports, Rule: r})
	if action == Allow {
		s.Isolations = append(s.Isolations, Isolation{Direction: Egress, Subject: subject, Rule: r}, Isolation{Direction: Ingress, Subject: dest, Rule: r})
	}
	return r
}

func pod(ns, name string, labels map[string]string, ip string, ports ...NamedPort) *Endpoint {
	return &Endpoint{Workload: true, Namespace: ns, Name: name, ServiceAccount: "default", Labels: labels, IP: netip.MustParseAddr(ip), Ports: ports}
}

func outside(ip string) *Endpoint { return &Endpoint{IP: netip.MustParseAddr(ip)} }

// missionSet is the policy of the project's mission, as the native parser
// compiles it.
func missionSet() *Set {
	s := &Set{}
	nativeRule(s, Allow, label("app", "frontend"), label("app", "backend"), tcp(80, 443))
	nativeRule(s, Allow, label("app", "frontend"), external("metrics", "203.0.113.0/24"), tcp(9100))
	return s
}

func TestMissionPolicyDecisions(t *testing.T) {
	ix, err := Compile(missionSet(), IsolateAll)
	if err != nil {
		t.Fatal(err)
	}
	frontend := ix.Resolve(pod("shop", "frontend", map[string]string{"app": "frontend"}, "10.0.0.1"))
	backend := ix.Resolve(pod("shop", "backend", map[string]string{"app": "backend"}, "10.0.0.2"))
	other := ix.Resolve(pod("shop", "other", map[string]string{"app": "other"}, "10.0.0.3"))
	metrics := ix.Resolve(outside("203.0.113.7"))
	elsewhere := ix.Resolve(outside("198.51.100.1"))

	cases := []struct {
		name     string
		src, dst *Subject
		port     uint16
		proto    Protocol
		want     bool
		reason   Reason
	}{
		{"frontend may call backend on 80", frontend, backend, 80, TCP, true, ReasonAllowed},
		{"frontend may call backend on 443", frontend, backend, 443, TCP, true, ReasonAllowed},
		{"frontend may not call backend on 8080", frontend, backend, 8080, TCP, false, ReasonNoEgressRule},
		{"frontend may not call backend on 80/UDP", frontend, backend, 80, UDP, false, ReasonNoEgressRule},
		{"backend may not call frontend", backend, frontend, 80, TCP, false, ReasonNoEgressRule},
		{"frontend may reach the metrics network on 9100", frontend, metrics, 9100, TCP, true, ReasonAllowed},
		{"frontend may not reach another external address", frontend, elsewhere, 9100, TCP, false, ReasonNoEgressRule},
		{"an unmentioned pod may not call backend", other, backend, 80, TCP, false, ReasonNoEgressRule},
		{"frontend may not call an unmentioned pod", frontend, other, 80, TCP, false, ReasonNoEgressRule},
		{"the outside may not call backend", elsewhere, backend, 80, TCP, false, ReasonNoIngressRule},
		{"the metrics network may not call frontend", metrics, frontend, 80, TCP, false, ReasonNoIngressRule},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := ix.Decide(tc.src, tc.dst, tc.proto, tc.port)
			if v.Allowed != tc.want || v.Reason != tc.reason {
				t.Fatalf("verdict %+v, want allowed=%v reason=%s\n%s", v, tc.want, tc.reason, ix.Explain(tc.src, tc.dst, tc.proto, tc.port))
			}
		})
	}
}

func TestDenyWinsOverAllow(t *testing.T) {
	s := missionSet()
	deny := nativeRule(s, Deny, label("app", "frontend"), label("app", "backend"), tcp(443))
	ix, _ := Compile(s, IsolateAll)
	frontend := ix.Resolve(pod("shop", "frontend", map[string]string{"app": "frontend"}, "10.0.0.1"))
	backend := ix.Resolve(pod("shop", "backend", map[string]string{"app": "backend"}, "10.0.0.2"))
	if v := ix.Decide(frontend, backend, TCP, 443); v.Allowed || v.Reason != ReasonDenyRule || v.Rule != deny {
		t.Fatalf("443: %+v", v)
	}
	if v := ix.Decide(frontend, backend, TCP, 80); !v.Allowed || v.Rule != 0 {
		t.Fatalf("80: %+v", v)
	}
}

func TestIsolationSelectedLeavesUnselectedWorkloadsOpen(t *testing.T) {
	s := &Set{}
	// A Kubernetes-style ingress policy: backend accepts only frontend.
	r := s.AddRule(Rule{Pos: Position{File: "np.yaml", Line: 1}, Origin: "NetworkPolicy shop/backend"})
	s.Grants = append(s.Grants, Grant{Direction: Ingress, Action: Allow, Subject: label("app", "backend"), Peer: label("app", "frontend"), Ports: tcp(80), Rule: r})
	s.Isolations = append(s.Isolations, Isolation{Direction: Ingress, Subject: label("app", "backend"), Rule: r})

	frontendEP := pod("shop", "frontend", map[string]string{"app": "frontend"}, "10.0.0.1")
	backendEP := pod("shop", "backend", map[string]string{"app": "backend"}, "10.0.0.2")
	otherEP := pod("shop", "other", map[string]string{"app": "other"}, "10.0.0.3")

	selected, _ := Compile(s, IsolateSelected)
	all, _ := Compile(s, IsolateAll)
	for _, tc := range []struct {
		name     string
		ix       *Index
		src, dst *Endpoint
		want     bool
	}{
		{"selected: frontend to backend is allowed", selected, frontendEP, backendEP, true},
		{"selected: other to backend is denied (backend is isolated)", selected, otherEP, backendEP, false},
		{"selected: backend to other is allowed (nobody isolated)", selected, backendEP, otherEP, true},
		{"all: frontend to backend is denied (frontend's egress is isolated)", all, frontendEP, backendEP, false},
		{"all: backend to other is denied", all, backendEP, otherEP, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.ix.Decide(tc.ix.Resolve(tc.src), tc.ix.Resolve(tc.dst), TCP, 80)
			if v.Allowed != tc.want {
				t.Fatalf("verdict %+v, want %v", v, tc.want)
			}
		})
	}
}

func TestNamedPortsAndRangesAndProtocols(t *testing.T) {
	s := &Set{}
	nativeRule(s, Allow, label("app", "a"), label("app", "b"), []PortRange{
		{Protocol: TCP, Name: "http"},
		{Protocol: TCP, Lo: 8000, Hi: 8100},
		{Protocol: UDP, Lo: 53, Hi: 53},
	})
	ix, _ := Compile(s, IsolateAll)
	a := ix.Resolve(pod("x", "a", map[string]string{"app": "a"}, "10.0.0.1"))
	b := ix.Resolve(pod("x", "b", map[string]string{"app": "b"}, "10.0.0.2", NamedPort{Name: "http", Port: 9090, Protocol: TCP}))
	bNoName := ix.Resolve(pod("x", "b2", map[string]string{"app": "b"}, "10.0.0.3"))
	for _, tc := range []struct {
		dst   *Subject
		proto Protocol
		port  uint16
		want  bool
	}{
		{b, TCP, 9090, true},        // the destination's port named http
		{bNoName, TCP, 9090, false}, // no such name at this destination
		{b, TCP, 8000, true}, {b, TCP, 8100, true}, {b, TCP, 8101, false}, {b, TCP, 7999, false},
		{b, UDP, 53, true}, {b, TCP, 53, false}, {b, SCTP, 53, false},
	} {
		if v := ix.Decide(a, tc.dst, tc.proto, tc.port); v.Allowed != tc.want {
			t.Errorf("%s %d/%s: allowed=%v, want %v", tc.dst.ep.Name, tc.port, tc.proto, v.Allowed, tc.want)
		}
	}
}

func TestSubjectOfAnotherIndexIsRefused(t *testing.T) {
	ix1, _ := Compile(missionSet(), IsolateAll)
	ix2, _ := Compile(missionSet(), IsolateAll)
	f := ix1.Resolve(pod("shop", "frontend", map[string]string{"app": "frontend"}, "10.0.0.1"))
	b := ix1.Resolve(pod("shop", "backend", map[string]string{"app": "backend"}, "10.0.0.2"))
	if v := ix2.Decide(f, b, TCP, 80); v.Allowed {
		t.Fatal("a subject resolved by another index was decided on")
	}
}

func TestEmptySelectorMatchesNothing(t *testing.T) {
	s := &Set{}
	nativeRule(s, Allow, Selector{}, Selector{}, nil)
	ix, _ := Compile(s, IsolateAll)
	a := ix.Resolve(pod("x", "a", nil, "10.0.0.1"))
	b := ix.Resolve(pod("x", "b", nil, "10.0.0.2"))
	if v := ix.Decide(a, b, TCP, 80); v.Allowed {
		t.Fatal("a rule with empty selectors allowed a flow")
	}
}

func TestExplainNamesTheRules(t *testing.T) {
	ix, _ := Compile(missionSet(), IsolateAll)
	f := ix.Resolve(pod("shop", "frontend", map[string]string{"app": "frontend"}, "10.0.0.1"))
	b := ix.Resolve(pod("shop", "backend", map[string]string{"app": "backend"}, "10.0.0.2"))
	allow := ix.Explain(f, b, TCP, 80).String()
	for _, want := range []string{"ALLOW shop/frontend -> shop/backend 80/TCP", "egress of shop/frontend: allowed by policy.yaml:1:7", "ingress of shop/backend: allowed by policy.yaml:1:7"} {
		if !strings.Contains(allow, want) {
			t.Errorf("explanation lacks %q:\n%s", want, allow)
		}
	}
	deny := ix.Explain(b, f, TCP, 80).String()
	for _, want := range []string{"DENY shop/backend -> shop/frontend 80/TCP (no rule allows egress from the source)", "no rule allows it (default deny)"} {
		if !strings.Contains(deny, want) {
			t.Errorf("explanation lacks %q:\n%s", want, deny)
		}
	}
}

func TestKubectlListOutputLoads(t *testing.T) {
	src := `apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: backend, namespace: shop}
  spec:
    podSelector: {matchLabels: {app: backend}}
    ingress:
    - from:
      - podSelector: {matchLabels: {app: frontend}}
`
	set, diags := LoadBytes("list.yaml", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ix, _ := Compile(set, IsolateSelected)
	f := ix.Resolve(pod("shop", "f", map[string]string{"app": "frontend"}, "10.0.0.1"))
	b := ix.Resolve(pod("shop", "b", map[string]string{"app": "backend"}, "10.0.0.2"))
	o := ix.Resolve(pod("shop", "o", map[string]string{"app": "other"}, "10.0.0.3"))
	if !ix.Decide(f, b, TCP, 80).Allowed || ix.Decide(o, b, TCP, 80).Allowed {
		t.Fatal("the List's NetworkPolicy was not applied")
	}
}
