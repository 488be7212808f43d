package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Identifiers here start with staged/Staged: other files of the package add
// test helpers concurrently, and a shared name would break the build.

// stagedFlags lists, per rule of set, "text" or "text [audit]".
func stagedFlags(set *Set) []string {
	var out []string
	for _, r := range set.Rules {
		s := r.Text
		if r.Staged {
			s += " [audit]"
		}
		out = append(out, s)
	}
	return out
}

func stagedLoad(t *testing.T, name, src string) *Set {
	t.Helper()
	set, diags := LoadBytes(name, []byte(src))
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags)
	}
	return set
}

func TestStagedNativeSyntax(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "without mode every rule is enforced",
			src:  ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b"),
			want: []string{"app:a -> app:b ports */TCP"},
		},
		{
			name: "mode: audit on the document stages all its rules",
			src: ntYAML("mode: audit", "policies:",
				"  - subject: app:a", "    allow:", "      - destination: app:b", "    deny:", "      - destination: app:c",
				"  - subject: app:x", "    allow:", "      - destination: app:y"),
			want: []string{"app:a -> app:b ports */TCP [audit]", "deny app:a -> app:c ports */TCP [audit]", "app:x -> app:y ports */TCP [audit]"},
		},
		{
			name: "mode: audit on a policy stages its rules only",
			src: ntYAML("policies:",
				"  - subject: app:a", "    mode: audit", "    allow:", "      - destination: app:b", "    deny:", "      - destination: app:c",
				"  - subject: app:x", "    allow:", "      - destination: app:y"),
			want: []string{"app:a -> app:b ports */TCP [audit]", "deny app:a -> app:c ports */TCP [audit]", "app:x -> app:y ports */TCP"},
		},
		{
			name: "mode: audit on a rule stages that rule only",
			src: ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b",
				"      - destination: app:c", "        mode: audit", "    deny:", "      - destination: app:d", "        mode: audit"),
			want: []string{"app:a -> app:b ports */TCP", "app:a -> app:c ports */TCP [audit]", "deny app:a -> app:d ports */TCP [audit]"},
		},
		{
			name: "mode: enforce is the default, at every level",
			src: ntYAML("mode: enforce", "policies:", "  - subject: app:a", "    mode: enforce", "    allow:",
				"      - destination: app:b", "        mode: enforce"),
			want: []string{"app:a -> app:b ports */TCP"},
		},
		{
			name: "mode: audit below mode: audit is allowed",
			src: ntYAML("mode: audit", "policies:", "  - subject: app:a", "    mode: audit", "    allow:",
				"      - destination: app:b", "        mode: audit"),
			want: []string{"app:a -> app:b ports */TCP [audit]"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, diags := LoadBytes("p.yaml", []byte(tc.src))
			if len(diags) != 0 {
				t.Fatalf("diagnostics: %v", diags)
			}
			if got := stagedFlags(set); !slices.Equal(got, tc.want) {
				t.Errorf("rules:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestStagedNativeErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		src   string
		diags []string // "line:col: severity: message prefix"
	}{
		{
			name:  "an unknown mode of a document",
			src:   ntYAML("mode: dry-run", "policies:", "  - subject: app:a", "    allow:", "      - destination: app:b"),
			diags: []string{`1:7: error: unknown mode "dry-run" (want audit to stage the rules or enforce, the default, to enforce them)`},
		},
		{
			name:  "an unknown mode of a policy",
			src:   ntYAML("policies:", "  - subject: app:a", "    mode: Audit", "    allow:", "      - destination: app:b"),
			diags: []string{`3:11: error: unknown mode "Audit" (want audit`},
		},
		{
			name:  "an unknown mode of a rule",
			src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        mode: audti"),
			diags: []string{`5:15: error: unknown mode "audti" (want audit`},
		},
		{
			name:  "a mode that is not a string",
			src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        mode: true"),
			diags: []string{`5:15: error: mode is a boolean (want audit or enforce)`},
		},
		{
			name:  "a mode that is a list",
			src:   ntYAML("mode: [audit]", "policies: []"),
			diags: []string{`1:7: error: mode is a list (want audit or enforce)`},
		},
		{
			name: "mode: enforce in a staged document",
			src:  ntYAML("mode: audit", "policies:", "  - subject: app:a", "    mode: enforce", "    allow:", "      - destination: app:b"),
			diags: []string{`4:11: error: mode: enforce in a document staged by the mode: audit at p.yaml:1:7; nothing under mode: audit is enforced ` +
				`(move this policy out, or remove that mode: audit)`},
		},
		{
			name: "mode: enforce on a rule of a staged document",
			src:  ntYAML("mode: audit", "policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        mode: enforce"),
			diags: []string{`6:15: error: mode: enforce in a document staged by the mode: audit at p.yaml:1:7; nothing under mode: audit is enforced ` +
				`(move this rule out, or remove that mode: audit)`},
		},
		{
			name:  "mode: enforce on a rule of a staged policy",
			src:   ntYAML("policies:", "  - subject: app:a", "    mode: audit", "    allow:", "      - destination: app:b", "        mode: enforce"),
			diags: []string{`6:15: error: mode: enforce in a policy staged by the mode: audit at p.yaml:3:11;`},
		},
		{
			name:  "mode: audit on a document without policies does nothing",
			src:   ntYAML("mode: audit", "networks:", "  n: [192.0.2.0/24]"),
			diags: []string{`1:7: warning: mode: audit has no effect: the document has no policies`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, diags := LoadBytes("p.yaml", []byte(tc.src))
			ntCheckDiags(t, diags, "p.yaml", tc.diags)
			if diags.HasErrors() && len(set.Rules) != 0 {
				// A policy with an error adds nothing: a broken mode must
				// not enforce what was meant to be staged.
				t.Errorf("rules %q were added despite the error", ntRules(set))
			}
		})
	}
}

// stagedKube is a NetworkPolicy isolating pods app=backend of namespace shop
// for ingress, allowing only app=frontend, with extra metadata lines.
func stagedKube(name string, metadata ...string) string {
	return ntYAML(append(append([]string{
		"apiVersion: networking.k8s.io/v1",
		"kind: NetworkPolicy",
		"metadata:",
		"  name: " + name,
		"  namespace: shop",
	}, metadata...),
		"spec:",
		"  podSelector: {matchLabels: {app: backend}}",
		"  ingress:",
		"  - from:",
		"    - podSelector: {matchLabels: {app: frontend}}",
	)...)
}

func TestStagedKubeAnnotation(t *testing.T) {
	set := stagedLoad(t, "np.yaml", stagedKube("staged", "  annotations:", "    ztcn.io/mode: audit", "    other.io/x: \"z\"")+
		"---\n"+stagedKube("enforced", "  annotations:", "    ztcn.io/mode: enforce")+
		"---\n"+stagedKube("plain"))
	var got []string
	for _, r := range set.Rules {
		got = append(got, fmt.Sprintf("%s staged=%v", r.Origin, r.Staged))
	}
	want := []string{
		"NetworkPolicy shop/staged staged=true", "NetworkPolicy shop/staged staged=true",
		"NetworkPolicy shop/enforced staged=false", "NetworkPolicy shop/enforced staged=false",
		"NetworkPolicy shop/plain staged=false", "NetworkPolicy shop/plain staged=false",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rules:\n got %q\nwant %q", got, want)
	}
	if s := set.Rules[1].String(); !strings.Contains(s, ": [audit] shop/staged ingress[0]:") {
		t.Errorf("a staged rule prints as %q, want it marked [audit]", s)
	}

	for _, tc := range []struct{ name, src, want string }{
		{"an unknown mode", stagedKube("p", "  annotations:", "    ztcn.io/mode: dry-run"),
			`7:5: error: metadata.annotations[ztcn.io/mode]: Unsupported value: "dry-run": supported values: "audit", "enforce"`},
		{"a misspelt ztcn annotation", stagedKube("p", "  annotations:", "    ztcn.io/mdoe: audit"),
			`7:5: error: metadata.annotations[ztcn.io/mdoe]: Forbidden: unknown ztcn.io annotation; the one there is is ztcn.io/mode (audit or enforce)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, diags := LoadBytes("np.yaml", []byte(tc.src))
			ntCheckDiags(t, diags, "np.yaml", []string{tc.want})
			if len(set.Rules) != 0 {
				t.Errorf("a policy with a bad annotation added rules %q", ntRules(set))
			}
		})
	}
}

// stagedEndpoints are endpoints that the selectors of stagedRandomSet
// match in overlapping ways.
func stagedEndpoints() []*Endpoint {
	return []*Endpoint{
		pod("x", "a1", map[string]string{"app": "a", "tier": "x"}, "10.0.0.1", NamedPort{Name: "p", Port: 700, Protocol: TCP}),
		pod("x", "b1", map[string]string{"app": "b"}, "10.0.0.5", NamedPort{Name: "p", Port: 80, Protocol: TCP}),
		pod("y", "b2", map[string]string{"app": "b", "tier": "x"}, "10.9.0.1"),
		pod("y", "c1", map[string]string{"app": "c"}, "10.9.0.2"),
		outside("192.0.2.9"),
		outside("10.0.0.6"),
	}
}

// stagedRandomSet builds a random set whose rules are each staged with
// probability 1/3. Every rule has a unique text, so that rules can be told
// apart across sets that number them differently.
func stagedRandomSet(rng *rand.Rand) *Set {
	selectors := []Selector{
		label("app", "a"), label("app", "b"), label("tier", "x"), label("app", "c"),
		{Terms: []Term{{Kind: TermAny}}},
		{Terms: []Term{{Kind: TermWorkload}}},
		{Terms: []Term{{Kind: TermNamespace, Value: "y"}}},
		{Terms: []Term{{Kind: TermCIDR, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Except: []netip.Prefix{netip.MustParsePrefix("10.0.0.4/30")}}}},
		external("net", "192.0.2.0/24"),
	}
	ports := func() []PortRange {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return []PortRange{{Protocol: TCP, Name: "p"}}
		}
		lo := uint16([]int{80, 443, 700, 1000}[rng.IntN(4)])
		return []PortRange{{Protocol: []Protocol{TCP, AnyProtocol, UDP}[rng.IntN(3)], Lo: lo, Hi: lo + uint16(rng.IntN(2)*100)}}
	}
	set := &Set{}
	for i := range 4 + rng.IntN(10) {
		r := set.AddRule(Rule{Text: fmt.Sprintf("rule %d", i), Staged: rng.IntN(3) == 0})
		action := Action(rng.IntN(3) / 2) // a third are denies
		subject, peer := selectors[rng.IntN(len(selectors))], selectors[rng.IntN(len(selectors))]
		p := ports()
		if rng.IntN(2) == 0 {
			// Native-style: both sides.
			set.Grants = append(set.Grants,
				Grant{Direction: Egress, Action: action, Subject: subject, Peer: peer, Ports: p, Rule: r},
				Grant{Direction: Ingress, Action: action, Subject: peer, Peer: subject, Ports: p, Rule: r})
			if action == Allow {
				set.Isolations = append(set.Isolations, Isolation{Direction: Egress, Subject: subject, Rule: r}, Isolation{Direction: Ingress, Subject: peer, Rule: r})
			}
			continue
		}
		// Kubernetes-style: one side, isolating its subject.
		dir := Direction(rng.IntN(2))
		set.Grants = append(set.Grants, Grant{Direction: dir, Action: Allow, Subject: subject, Peer: peer, Ports: p, Rule: r})
		set.Isolations = append(set.Isolations, Isolation{Direction: dir, Subject: subject, Rule: r})
	}
	return set
}

// stagedSubset keeps the rules keep says and what refers to them,
// renumbered; with enforce, every kept rule is enforced.
func stagedSubset(set *Set, keep func(Rule) bool, enforce bool) *Set {
	out := &Set{Networks: set.Networks}
	index := map[int]int{}
	for i, r := range set.Rules {
		if keep(r) {
			if enforce {
				r.Staged = false
			}
			index[i] = out.AddRule(r)
		}
	}
	for _, g := range set.Grants {
		if n, ok := index[g.Rule]; ok {
			g.Rule = n
			out.Grants = append(out.Grants, g)
		}
	}
	for _, iso := range set.Isolations {
		if n, ok := index[iso.Rule]; ok {
			iso.Rule = n
			out.Isolations = append(out.Isolations, iso)
		}
	}
	return out
}

// stagedVerdict prints a verdict with its rule's text, which is the same
// in indexes that number rules differently.
func stagedVerdict(ix *Index, v Verdict) string {
	r, _ := ix.Rule(v.Rule)
	return fmt.Sprintf("allowed=%v reason=%q rule=%q staged=%v", v.Allowed, v.Reason, r.Text, r.Staged)
}

// TestStagedViewsOnRandomPolicies checks the two views against their
// definitions on random policies: the enforced index of E ∪ S decides
// exactly as Compile(E) of a set without S, and the staged view exactly as
// Compile(E ∪ S) with every rule enforced.
func TestStagedViewsOnRandomPolicies(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	eps := stagedEndpoints()
	ports := []uint16{80, 81, 443, 543, 700, 1000, 1100, 9999}
	counts := map[string]int{}
	for round := range 60 {
		set := stagedRandomSet(rng)
		mode := []IsolationMode{IsolateAll, IsolateSelected}[round%2]
		enforced, err := Compile(set, mode)
		if err != nil {
			t.Fatal(err)
		}
		staged, err := CompileStaged(set, mode)
		if err != nil {
			t.Fatal(err)
		}
		if (staged != nil) != set.HasStaged() {
			t.Fatalf("round %d: staged view %v, but the set has staged rules: %v", round, staged != nil, set.HasStaged())
		}
		if staged == nil {
			counts["no staged rule"]++
			continue
		}
		onlyE, _ := Compile(stagedSubset(set, func(r Rule) bool { return !r.Staged }, false), mode)
		all, _ := Compile(stagedSubset(set, func(Rule) bool { return true }, true), mode)
		if enforced.StagedView() || !staged.StagedView() || onlyE.StagedView() {
			t.Fatal("StagedView is wrong")
		}
		resolve := func(ix *Index) []*Subject {
			out := make([]*Subject, len(eps))
			for i, ep := range eps {
				out[i] = ix.Resolve(ep)
			}
			return out
		}
		se, ss, so, sa := resolve(enforced), resolve(staged), resolve(onlyE), resolve(all)
		for i := range eps {
			for j := range eps {
				for _, proto := range []Protocol{TCP, UDP} {
					for _, port := range ports {
						ve, vs := enforced.Decide(se[i], se[j], proto, port), staged.Decide(ss[i], ss[j], proto, port)
						if got, want := stagedVerdict(enforced, ve), stagedVerdict(onlyE, onlyE.Decide(so[i], so[j], proto, port)); got != want {
							t.Fatalf("round %d (%s) %s -> %s %d/%s: enforced index of E∪S says %s, Compile(E) says %s\nrules %q",
								round, mode, eps[i], eps[j], port, proto, got, want, stagedFlags(set))
						}
						if want := all.Decide(sa[i], sa[j], proto, port); vs != want {
							t.Fatalf("round %d (%s) %s -> %s %d/%s: staged view says %+v, Compile(E∪S) says %+v\nrules %q",
								round, mode, eps[i], eps[j], port, proto, vs, want, stagedFlags(set))
						}
						if ve.Rule >= 0 && set.Rules[ve.Rule].Staged {
							t.Fatalf("round %d: the enforced index decided by the staged rule %d", round, ve.Rule)
						}
						switch {
						case ve.Allowed == vs.Allowed:
							counts["same"]++
						case vs.Allowed:
							counts["would-be allow"]++
						default:
							counts["would-be deny"]++
						}
					}
				}
			}
		}
	}
	// A generator that never made the views differ would make this test
	// vacuous.
	for _, k := range []string{"no staged rule", "same", "would-be allow", "would-be deny"} {
		if counts[k] == 0 {
			t.Errorf("no case of %q: %v", k, counts)
		}
	}
}

// stagedShop is the shop's enforced policy with a staged tightening and a
// staged widening.
const stagedShop = `policies:
  - subject: app:frontend
    allow:
      - destination: app:backend
        ports: [80, 443]
  - subject: app:frontend
    mode: audit
    deny:
      - destination: app:backend
        ports: [443]
    allow:
      - destination: app:backend
        ports: [8080]
`

func TestStagedDecisions(t *testing.T) {
	set := stagedLoad(t, "shop.yaml", stagedShop)
	enforced, err := Compile(set, IsolateAll)
	if err != nil {
		t.Fatal(err)
	}
	staged, err := CompileStaged(set, IsolateAll)
	if err != nil || staged == nil {
		t.Fatalf("CompileStaged: %v, %v", staged, err)
	}
	frontend := pod("shop", "frontend", map[string]string{"app": "frontend"}, "10.0.0.1")
	backend := pod("shop", "backend", map[string]string{"app": "backend"}, "10.0.0.2")
	ef, eb := enforced.Resolve(frontend), enforced.Resolve(backend)
	sf, sb := staged.Resolve(frontend), staged.Resolve(backend)

	for _, tc := range []struct {
		name             string
		port             uint16
		enforced, staged string // "allow|deny by <file:line:col: text>" or "allow|deny"
	}{
		{"80 is allowed in both views", 80, "allow by shop.yaml:4:9: app:frontend -> app:backend ports 80/TCP,443/TCP",
			"allow by shop.yaml:4:9: app:frontend -> app:backend ports 80/TCP,443/TCP"},
		{"443 is allowed in force and a would-be deny by the staged deny", 443,
			"allow by shop.yaml:4:9: app:frontend -> app:backend ports 80/TCP,443/TCP",
			"deny by shop.yaml:9:9: [audit] deny app:frontend -> app:backend ports 443/TCP"},
		{"8080 is denied in force and a would-be allow by the staged allow", 8080, "deny",
			"allow by shop.yaml:12:9: [audit] app:frontend -> app:backend ports 8080/TCP"},
		{"9090 is denied in both views", 9090, "deny", "deny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			say := func(ix *Index, v Verdict) string {
				s := "deny"
				if v.Allowed {
					s = "allow"
				}
				if r, ok := ix.Rule(v.Rule); ok {
					s += " by " + r.String()
				}
				return s
			}
			if got := say(enforced, enforced.Decide(ef, eb, TCP, tc.port)); got != tc.enforced {
				t.Errorf("enforced: %s, want %s", got, tc.enforced)
			}
			if got := say(staged, staged.Decide(sf, sb, TCP, tc.port)); got != tc.staged {
				t.Errorf("staged: %s, want %s", got, tc.staged)
			}
			// The other index names its rules alike: rule numbers are shared.
			if v := staged.Decide(sf, sb, TCP, tc.port); v.Rule >= 0 {
				if a, _ := staged.Rule(v.Rule); a != enforced.Rules()[v.Rule] {
					t.Errorf("rule %d is %v in the staged view and %v in the enforced index", v.Rule, a, enforced.Rules()[v.Rule])
				}
			}
		})
	}

	// Subjects of one view are refused by the other.
	if v := staged.Decide(ef, eb, TCP, 80); v.Allowed {
		t.Error("the staged view accepted subjects of the enforced index")
	}
	if v := enforced.Decide(sf, sb, TCP, 80); v.Allowed {
		t.Error("the enforced index accepted subjects of the staged view")
	}

	e := staged.Explain(sf, sb, TCP, 443)
	if s := e.String(); !strings.HasPrefix(s, "DENY shop/frontend -> shop/backend 443/TCP (denied by rule) [staged view]\n") ||
		!strings.Contains(s, "denied by shop.yaml:9:9: [audit] deny app:frontend") {
		t.Errorf("staged explanation:\n%s", s)
	}
	if s := enforced.Explain(ef, eb, TCP, 443).String(); strings.Contains(s, "staged") || strings.Contains(s, "[audit]") {
		t.Errorf("the enforced explanation mentions staging:\n%s", s)
	}
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"staged":true`) || !strings.Contains(string(data), `"Staged":true`) {
		t.Errorf("staged explanation as JSON: %s", data)
	}
	if data, _ := json.Marshal(enforced.Explain(ef, eb, TCP, 80)); strings.Contains(strings.ToLower(string(data)), "staged") {
		t.Errorf("enforced explanation as JSON mentions staging: %s", data)
	}

	if got, want := enforced.Stats(), (Stats{Rules: 1, Grants: 2, Selectors: 2}); got != want {
		t.Errorf("enforced stats %+v, want %+v", got, want)
	}
	if got, want := staged.Stats(), (Stats{Rules: 3, Staged: 2, Grants: 6, Selectors: 2}); got != want {
		t.Errorf("staged stats %+v, want %+v", got, want)
	}
}

// TestStagedIsolationSelected: under isolation: selected a staged policy
// isolates the pods it selects in the staged view only, which shows the
// flows it would cut.
func TestStagedIsolationSelected(t *testing.T) {
	set := stagedLoad(t, "np.yaml", stagedKube("lockdown", "  annotations:", "    ztcn.io/mode: audit"))
	enforced, _ := Compile(set, IsolateSelected)
	staged, err := CompileStaged(set, IsolateSelected)
	if err != nil || staged == nil {
		t.Fatalf("CompileStaged: %v, %v", staged, err)
	}
	frontend := pod("shop", "frontend", map[string]string{"app": "frontend"}, "10.0.0.1")
	backend := pod("shop", "backend", map[string]string{"app": "backend"}, "10.0.0.2")
	other := pod("shop", "other", map[string]string{"app": "other"}, "10.0.0.3")
	decide := func(ix *Index, src, dst *Endpoint) Verdict {
		return ix.Decide(ix.Resolve(src), ix.Resolve(dst), TCP, 80)
	}

	if v := decide(enforced, other, backend); !v.Allowed {
		t.Errorf("enforced: other -> backend %+v, want allowed (nothing isolates backend in force)", v)
	}
	if v := decide(staged, other, backend); v.Allowed || v.Reason != ReasonNoIngressRule {
		t.Errorf("staged: other -> backend %+v, want a would-be deny: the staged policy isolates backend", v)
	}
	if v := decide(staged, frontend, backend); !v.Allowed || !set.Rules[v.Rule].Staged {
		t.Errorf("staged: frontend -> backend %+v, want allowed by the staged rule", v)
	}
	if v := decide(staged, backend, other); !v.Allowed {
		t.Errorf("staged: backend -> other %+v, want allowed (egress is not isolated)", v)
	}
}

func TestStagedNoStagedRulesMeansNoStagedView(t *testing.T) {
	set := stagedLoad(t, "p.yaml", missionPolicy)
	if set.HasStaged() {
		t.Fatal("the mission policy has staged rules")
	}
	if ix, err := CompileStaged(set, IsolateAll); ix != nil || err != nil {
		t.Errorf("CompileStaged = %v, %v; want nil, nil", ix, err)
	}
	if _, err := CompileStaged(set, "bogus"); err == nil {
		t.Error("CompileStaged accepted an unknown isolation mode")
	}
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(missionPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, _, err := BuildSnapshot(IsolateAll, path)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Staged != nil || snap.View(true) != snap.Index || snap.View(false) != snap.Index {
		t.Errorf("snapshot without staged rules: Staged %v, views %p %p of %p", snap.Staged, snap.View(true), snap.View(false), snap.Index)
	}
	// A rule without Staged prints and encodes as before staging existed.
	if data, _ := json.Marshal(set.Rules[0]); strings.Contains(string(data), "Staged") {
		t.Errorf("an enforced rule encodes as %s", data)
	}
}

func TestStagedBuild(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shop.yaml")
	if err := os.WriteFile(path, []byte(stagedShop), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, _, err := BuildSnapshot(IsolateAll, path)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Staged == nil || !snap.Staged.StagedView() || snap.Index.StagedView() {
		t.Fatalf("BuildSnapshot: Index staged=%v, Staged %v", snap.Index.StagedView(), snap.Staged)
	}
	if snap.View(true) != snap.Staged || snap.View(false) != snap.Index {
		t.Error("View does not pick the view asked for")
	}
	ix, _, err := Build(IsolateAll, path)
	if err != nil {
		t.Fatal(err)
	}
	if ix.StagedView() || ix.Stats() != snap.Index.Stats() {
		t.Errorf("Build gave %+v (staged view %v), want the enforced index %+v", ix.Stats(), ix.StagedView(), snap.Index.Stats())
	}
}

func TestStagedWatcherReloadCarriesTheStagedView(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(watchPolicy(80)), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newWatchFixture(t, []string{path}, WithLinter(Lint))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := f.w.Subscribe(ctx)
	f.run(t)
	if s := f.w.Current(); s.Staged != nil {
		t.Fatal("version 1 has no staged rule but a staged view")
	}

	// Stage a deny of 80 and an allow of 8080.
	watchWrite(t, path, watchPolicy(80)+`  - subject: "app:frontend"
    mode: audit
    deny:
      - destination: "app:backend"
        ports: [80]
    allow:
      - destination: "app:backend"
        ports: [8080]
`)
	if r := f.next(t); !r.OK || !r.Changed || r.Version != 2 {
		t.Fatalf("reload: %+v", r)
	}
	v2 := watchReceive(t, sub)
	if v2 != f.w.Current() || v2.Staged == nil {
		t.Fatalf("version 2: %+v, want a staged view", v2)
	}
	stagedAllowed := func(s *Snapshot, port uint16) bool {
		return s.Staged.Decide(s.Staged.Resolve(watchFrontend), s.Staged.Resolve(watchBackend), TCP, port).Allowed
	}
	if !watchAllowed(v2, watchFrontend, watchBackend, 80) || watchAllowed(v2, watchFrontend, watchBackend, 8080) {
		t.Error("version 2 in force: want 80 allowed and 8080 denied, as before the staged rules")
	}
	if stagedAllowed(v2, 80) || !stagedAllowed(v2, 8080) {
		t.Error("version 2 staged: want 80 denied and 8080 allowed")
	}

	// Enforcing the staged rules ends the staged view.
	watchWrite(t, path, strings.ReplaceAll(watchPolicy(80), "ports: [80]", "ports: [8080]"))
	if r := f.next(t); !r.OK || !r.Changed || r.Version != 3 {
		t.Fatalf("reload: %+v", r)
	}
	v3 := watchReceive(t, sub)
	if v3.Staged != nil || watchAllowed(v3, watchFrontend, watchBackend, 80) || !watchAllowed(v3, watchFrontend, watchBackend, 8080) {
		t.Errorf("version 3: staged view %v, want none and 8080 only in force", v3.Staged)
	}

	// A broken mode keeps the last good policy, with file:line:col.
	watchWrite(t, path, "mode: audti\n"+watchPolicy(80))
	r := f.next(t)
	if r.OK || f.w.Current() != v3 {
		t.Fatalf("a bad mode was accepted: %+v", r)
	}
	if !strings.Contains(r.Err.Error(), path+`:1:7: error: unknown mode "audti"`) {
		t.Errorf("error %q does not point at the mode", r.Err)
	}
}

func TestStagedLint(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "a staged rule identical to an enforced one changes nothing",
			src: ntYAML("policies:", "  - subject: app:a", "    allow:",
				"      - destination: app:b", "        ports: [80]",
				"      - destination: app:b", "        ports: [80]", "        mode: audit"),
			want: []string{"p.yaml:6:9: warning: staged rule changes nothing: it duplicates the enforced rule at p.yaml:4:9 (app:a -> app:b ports 80/TCP)"},
		},
		{
			name: "so does one written before it; the enforced rule is not a duplicate",
			src: ntYAML("policies:", "  - subject: app:a", "    allow:",
				"      - destination: app:b", "        ports: [80]", "        mode: audit",
				"      - destination: app:b", "        ports: [80]"),
			want: []string{"p.yaml:4:9: warning: staged rule changes nothing: it duplicates the enforced rule at p.yaml:7:9 (app:a -> app:b ports 80/TCP)"},
		},
		{
			name: "a staged rule that an enforced one covers changes nothing",
			src: ntYAML("policies:", "  - subject: app:a", "    allow:",
				"      - destination: app:b",
				"      - destination: app:b", "        ports: [80]", "        mode: audit"),
			want: []string{"p.yaml:5:9: warning: staged rule changes nothing: shadowed by the enforced rule at p.yaml:4:9 (app:a -> app:b ports */TCP), which already allows everything it does"},
		},
		{
			name: "an enforced rule covered only by a staged one is not redundant",
			src: ntYAML("policies:", "  - subject: app:a", "    allow:",
				"      - destination: app:b", "        mode: audit",
				"      - destination: app:b", "        ports: [80]"),
		},
		{
			name: "a staged deny over an enforced allow is the tightening being staged",
			src: ntYAML("policies:", "  - subject: app:a", "    allow:",
				"      - destination: app:b", "        ports: [80, 443]",
				"    deny:", "      - destination: app:b", "        ports: [443]", "        mode: audit"),
		},
		{
			name: "a staged allow that an enforced deny overrides is reported as staged",
			src: ntYAML("policies:", "  - subject: app:a", "    deny:",
				"      - destination: app:b", "        ports: [443]",
				"    allow:", "      - destination: app:b", "        ports: [443]", "        mode: audit"),
			want: []string{"p.yaml:7:9: warning: staged rule: deny wins: app:a -> app:b is never allowed on ports 443/TCP (denied by the rule at p.yaml:4:9 (deny app:a -> app:b ports 443/TCP))"},
		},
		{
			name: "staged duplicates of each other",
			src: ntYAML("mode: audit", "policies:", "  - subject: app:a", "    allow:",
				"      - destination: app:b", "      - destination: app:b"),
			want: []string{"p.yaml:6:9: warning: staged rule: duplicate of the rule at p.yaml:5:9 ([audit] app:a -> app:b ports */TCP)"},
		},
		{
			name: "an over-broad staged rule",
			src:  ntYAML("policies:", "  - subject: '*'", "    mode: audit", "    allow:", "      - destination: '*'", "        ports: [80]"),
			want: []string{`p.yaml:5:9: warning: staged rule: over-broad: "*" -> "*" lets every endpoint reach every other on ports 80/TCP; name the workloads instead`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := stagedLoad(t, "p.yaml", tc.src)
			if got := ntDiags(Lint(set)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("lint:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestStagedImportLeavesStagedPoliciesOut: a staged NetworkPolicy allows
// nothing in force, and its grants must not pair with enforced ones into
// an enforced native rule.
func TestStagedImportLeavesStagedPoliciesOut(t *testing.T) {
	src := ntYAML(
		"apiVersion: networking.k8s.io/v1", "kind: NetworkPolicy",
		"metadata: {name: in, namespace: shop}",
		"spec:", "  podSelector: {matchLabels: {app: backend}}",
		"  ingress:", "  - from:", "    - podSelector: {matchLabels: {app: frontend}}",
		"---",
		"apiVersion: networking.k8s.io/v1", "kind: NetworkPolicy",
		"metadata: {name: out, namespace: shop, annotations: {ztcn.io/mode: audit}}",
		"spec:", "  podSelector: {matchLabels: {app: frontend}}", "  policyTypes: [Egress]",
		"  egress:", "  - to:", "    - podSelector: {matchLabels: {app: backend}}",
	)
	c := checkImport(t, "staged.yaml", []byte(src))
	if c.lost != 0 {
		t.Errorf("the import lost %d flows", c.lost)
	}
	out, notes, diags := ImportBytes("staged.yaml", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if strings.Contains(string(out), "app:backend") {
		t.Errorf("the staged egress was paired into a native rule:\n%s", out)
	}
	found := false
	for _, n := range notes {
		if n.Policy == "shop/out" && strings.HasPrefix(n.Message, "staged (ztcn.io/mode: audit): not translated") {
			found = true
		}
	}
	if !found {
		t.Errorf("no note says the staged policy was left out: %v", notes)
	}
}
