package policy

import (
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

var updateImportGolden = flag.Bool("update-import", false, "rewrite testdata/kube/*.import.golden from the importer's output")

// importCheck is what checkImport found for one input.
type importCheck struct {
	exact     bool // no note is Dropped
	decisions int
	lost      int // flows the input allows and the output does not
}

// checkImport proves Import's guarantee on one input: with both loaded
// under isolation: all, the output allows no flow the input denies, and
// if no note is Dropped it allows every flow the input allows. Flows are
// taken between endpoints built to match, and just miss, every selector
// of the input, on every port its rules name (and the ports next to
// them).
//
// With pod CIDRs, the importer assumes every workload's IP is in one of
// them, and so does the check.
func checkImport(t *testing.T, name string, input []byte, podCIDRs ...netip.Prefix) importCheck {
	t.Helper()
	var opts []ImportOption
	if len(podCIDRs) > 0 {
		opts = append(opts, WithPodCIDRs(podCIDRs...))
	}
	kset, diags := LoadBytes(name, input)
	if diags.HasErrors() {
		t.Fatalf("%s: input does not load: %v", name, diags)
	}
	out, notes, diags := ImportBytes(name, input, opts...)
	if diags.HasErrors() {
		t.Fatalf("%s: import failed: %v", name, diags)
	}
	nset, ndiags := LoadBytes(name+".native.yaml", out)
	if len(ndiags) > 0 {
		t.Fatalf("%s: the output does not load cleanly: %v\n%s", name, ndiags, out)
	}
	kix, err := Compile(kset, IsolateAll)
	if err != nil {
		t.Fatal(err)
	}
	nix, err := Compile(nset, IsolateAll)
	if err != nil {
		t.Fatal(err)
	}
	c := importCheck{exact: !slices.ContainsFunc(notes, func(n ImportNote) bool { return n.Dropped })}
	eps, ports := importGrid(kset, podCIDRs)
	ks, ns := make([]*Subject, len(eps)), make([]*Subject, len(eps))
	for i, ep := range eps {
		ks[i], ns[i] = kix.Resolve(ep), nix.Resolve(ep)
	}
	failures := 0
	fail := func(format string, args ...any) {
		if failures++; failures <= 5 {
			t.Errorf("%s: "+format, append([]any{name}, args...)...)
		}
	}
	for i := range eps {
		for j := range eps {
			if i == j {
				continue
			}
			for _, proto := range []Protocol{TCP, UDP, SCTP} {
				for _, port := range ports {
					c.decisions++
					k := kix.Decide(ks[i], ks[j], proto, port).Allowed
					n := nix.Decide(ns[i], ns[j], proto, port).Allowed
					switch {
					case n && !k:
						fail("the output allows what the input denies:\n%s%s\noutput:\n%s",
							kix.Explain(ks[i], ks[j], proto, port), nix.Explain(ns[i], ns[j], proto, port), out)
					case k && !n:
						c.lost++
						if c.exact {
							fail("no note is dropped, but the output denies what the input allows:\n%s%s\noutput:\n%s\nnotes: %v",
								kix.Explain(ks[i], ks[j], proto, port), nix.Explain(ns[i], ns[j], proto, port), out, notes)
						}
					}
				}
			}
		}
	}
	return c
}

// importGrid builds endpoints for checkImport: for every selector of set,
// a pod that matches it and pods that miss one of its terms each; for every
// address range, a pod and an outside address at each of its edges; and
// the ports worth probing. Pods get IPs in podCIDRs, if given.
func importGrid(set *Set, podCIDRs []netip.Prefix) ([]*Endpoint, []uint16) {
	var sels []Selector
	for _, g := range set.Grants {
		sels = append(sels, g.Subject, g.Peer)
	}
	for _, iso := range set.Isolations {
		sels = append(sels, iso.Subject)
	}
	names := map[string]bool{}
	portSet := map[uint16]bool{53: true, 80: true, 443: true}
	for _, g := range set.Grants {
		for _, r := range g.Ports {
			if r.Name != "" {
				names[r.Name] = true
				continue
			}
			for _, p := range []int{int(r.Lo) - 1, int(r.Lo), int(r.Hi), int(r.Hi) + 1} {
				if p > 0 && p <= 65535 {
					portSet[uint16(p)] = true
				}
			}
		}
	}
	// Every pod serves every named port the rules use, at its own number.
	var named []NamedPort
	nameList := slices.Sorted(maps.Keys(names))
	for i, name := range nameList {
		for _, proto := range []Protocol{TCP, UDP, SCTP} {
			named = append(named, NamedPort{Name: name, Port: uint16(20000 + i), Protocol: proto})
		}
		portSet[uint16(20000+i)] = true
	}

	var eps []*Endpoint
	next := 0
	pod := func(terms []Term, ip netip.Addr) {
		ep := &Endpoint{Workload: true, Namespace: "elsewhere", Labels: map[string]string{}, NamespaceLabels: map[string]string{}, Ports: named}
		for _, t := range terms {
			var labels map[string]string
			switch t.Kind {
			case TermNamespace:
				ep.Namespace = t.Value
				continue
			case TermLabel:
				labels = ep.Labels
			case TermNamespaceLabel:
				labels = ep.NamespaceLabels
			default:
				continue
			}
			switch t.Op {
			case OpEquals:
				labels[t.Key] = t.Value
			case OpIn:
				labels[t.Key] = t.Values[0]
			case OpExists:
				labels[t.Key] = "set"
			}
		}
		ep.NamespaceLabels["kubernetes.io/metadata.name"] = ep.Namespace
		next++
		ep.Name = fmt.Sprintf("pod%d", next)
		switch {
		case !ip.IsValid() && len(podCIDRs) > 0:
			ip = podCIDRs[0].Addr()
			for range next {
				ip = ip.Next()
			}
		case !ip.IsValid():
			ip = netip.AddrFrom4([4]byte{10, 250, byte(next >> 8), byte(next)})
		case len(podCIDRs) > 0 && !slices.ContainsFunc(podCIDRs, func(p netip.Prefix) bool { return p.Contains(ip) }):
			return // no workload has this address
		}
		ep.IP = ip
		eps = append(eps, ep)
	}
	outside := func(ip netip.Addr) { eps = append(eps, &Endpoint{IP: ip}) }
	edges := func(p netip.Prefix) []netip.Addr {
		first := p.Masked().Addr()
		last := first
		for i := p.Bits(); i < first.BitLen(); i++ {
			last = importSetBit(last, i)
		}
		out := []netip.Addr{first, last}
		if prev := first.Prev(); prev.IsValid() {
			out = append(out, prev)
		}
		if next := last.Next(); next.IsValid() {
			out = append(out, next)
		}
		return out
	}
	for _, s := range sels {
		pod(s.Terms, netip.Addr{})
		for i := range s.Terms {
			pod(slices.Delete(slices.Clone(s.Terms), i, i+1), netip.Addr{})
		}
		for _, t := range s.Terms {
			for _, p := range append(slices.Clone(t.Prefixes), t.Except...) {
				for _, ip := range edges(p) {
					pod(s.Terms, ip)
					outside(ip)
				}
			}
		}
	}
	for _, ip := range []string{"8.8.8.8", "2001:db8::1", "10.250.0.1"} {
		outside(netip.MustParseAddr(ip))
	}
	ports := slices.Sorted(maps.Keys(portSet))
	return eps, ports
}

func importNoteLines(notes []ImportNote) []string {
	out := make([]string, len(notes))
	for i, n := range notes {
		mark := "note"
		if n.Dropped {
			mark = "DROPPED"
		}
		out[i] = fmt.Sprintf("%s %s", mark, n)
	}
	return out
}

// TestImportGolden imports each testdata/kube input and compares output
// and notes with its golden file; the guarantee is checked on each.
func TestImportGolden(t *testing.T) {
	for _, tc := range []struct {
		input string
		exact bool
	}{
		{input: "shop.yaml", exact: true},
		// Its pod rules can never complete a flow under isolation: all (no
		// egress rule of the frontend), so the outside rules are all.
		{input: "docs-example.yaml", exact: true},
		{input: "upstream-style.yaml"},
	} {
		t.Run(tc.input, func(t *testing.T) {
			path := filepath.Join("testdata", "kube", tc.input)
			input, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			out, notes, diags := ImportBytes(tc.input, input)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			got := string(out) + "# notes:\n# " + strings.Join(importNoteLines(notes), "\n# ") + "\n"
			golden := strings.TrimSuffix(path, ".yaml") + ".import.golden"
			if *updateImportGolden {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update-import to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (run with -update-import after checking):\n%s", golden, got)
			}
			c := checkImport(t, tc.input, input)
			if c.exact != tc.exact {
				t.Errorf("exact = %v, want %v", c.exact, tc.exact)
			}
			t.Logf("%s: %d decisions compared, %d flows lost", tc.input, c.decisions, c.lost)
		})
	}
}

func TestImportPodCIDRsProveIPBlocksOutside(t *testing.T) {
	// Pods of x accept port 80 from 10.244.0.0/15 and may send to each
	// other: the ipBlock's pod part is live.
	input := []byte(kubeHeader + `spec:
  ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/15}}], ports: [{port: 80}]}]
  egress: [{to: [{podSelector: {}}], ports: [{port: 80}]}]
`)
	ipBlockNote := func(notes []ImportNote) string {
		for _, n := range notes {
			if n.Dropped && strings.Contains(n.Message, "ipBlock") {
				return n.Message
			}
		}
		return ""
	}
	for _, tc := range []struct {
		name     string
		podCIDRs []netip.Prefix
		want     string
	}{
		{"without pod CIDRs the range may hold pods", nil, "give the pod CIDRs to prove that no pod is in the range"},
		{"pod CIDRs outside the range prove it holds none", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}, ""},
		{"pod CIDRs inside the range", []netip.Prefix{netip.MustParsePrefix("10.245.0.0/16")}, "the range overlaps the pod CIDRs 10.245.0.0/16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, notes, diags := ImportBytes("np.yaml", input, WithPodCIDRs(tc.podCIDRs...))
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if got := ipBlockNote(notes); tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("ipBlock note = %q, want it to say %q", got, tc.want)
			}
			checkImport(t, "np.yaml", input, tc.podCIDRs...)
		})
	}
}

func TestImportMirrorRules(t *testing.T) {
	egress := kubeHeader + `spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: b}}}], ports: [{port: 80}]}]
`
	ingress := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: q, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: PORTS}]
`
	withPorts := func(ports string) string { return egress + "---\n" + strings.Replace(ingress, "PORTS", ports, 1) }
	for _, tc := range []struct {
		name, input string
		rules       int
		dropped     []string
	}{
		// Alone, a pod rule can never complete a flow under isolation:
		// all: leaving it out loses nothing.
		{"an ingress rule alone has no effect", strings.Replace(ingress, "PORTS", "[{port: 80}]", 1), 0, nil},
		{"an egress rule alone has no effect", egress, 0, nil},
		{"mirror rules make one native rule", withPorts("[{port: 80}]"), 1, nil},
		{"mirror rules on disjoint ports never meet", withPorts("[{port: 81}]"), 0, nil},
		{"mirror rules on overlapping ports are left out", withPorts("[{port: 80}, {port: 81}]"), 0, []string{
			"np.yaml:9:12: x/p: egress to {app:b & ns:x}: left out: a native rule grants both the source's egress and the destination's ingress, this rule only the egress side, and the input has no ingress rule of {app:b & ns:x} from {app:a & ns:x} on the same ports (ports 80/TCP) to pair it with; alone, the native rule would also grant the ingress side (np.yaml:16:13 has the mirror rule with other ports: ports 80/TCP, 81/TCP)",
			"np.yaml:16:13: x/q: ingress from {app:a & ns:x}: left out: a native rule grants both the source's egress and the destination's ingress, this rule only the ingress side, and the input has no egress rule of {app:a & ns:x} to {app:b & ns:x} on the same ports (ports 80/TCP, 81/TCP) to pair it with; alone, the native rule would also grant the egress side (np.yaml:9:12 has the mirror rule with other ports: ports 80/TCP)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, notes, diags := ImportBytes("np.yaml", []byte(tc.input))
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			nset, _ := LoadBytes("out.yaml", out)
			if len(nset.Rules) != tc.rules {
				t.Errorf("got %d native rules, want %d:\n%s", len(nset.Rules), tc.rules, out)
			}
			var dropped []string
			for _, n := range notes {
				if n.Dropped {
					dropped = append(dropped, n.String())
				}
			}
			kubeEqualLines(t, "dropped notes", dropped, tc.dropped)
			checkImport(t, "np.yaml", []byte(tc.input))
		})
	}
}

func TestImportInexpressible(t *testing.T) {
	for _, tc := range []struct {
		name, peer, why string
	}{
		{"namespace labels", `{namespaceSelector: {matchLabels: {team: web}}}`, "selects namespaces by label (team:web)"},
		{"NotIn", `{podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [db]}]}}`, "tests tier notin (db), which native selectors cannot"},
		{"a label the native syntax reserves", `{podSelector: {matchLabels: {ns: web}}}`, `tests the label "ns", which the native syntax reads as its own ns: selector`},
		{"an empty label value", `{podSelector: {matchLabels: {tier: ""}}}`, "tests the label tier for the empty value"},
		{"every pod of every namespace", `{namespaceSelector: {}}`, "means every pod of every namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Both directions, so that the rules are live and the reason
			// they are left out is the selector.
			input := kubeHeader + "spec:\n  ingress: [{from: [" + tc.peer + "]}]\n  egress: [{to: [" + tc.peer + "]}]\n"
			_, notes, diags := ImportBytes("np.yaml", []byte(input))
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if len(notes) != 2 || !notes[0].Dropped || !strings.Contains(notes[0].Message, tc.why) {
				t.Errorf("want two dropped notes saying %q, got:\n%s", tc.why, strings.Join(importNoteLines(notes), "\n"))
			}
			checkImport(t, "np.yaml", []byte(input))
		})
	}
}

func TestImportInputWithErrors(t *testing.T) {
	out, _, diags := ImportBytes("np.yaml", []byte(kubeHeader+"spec: {policyTypes: [Sideways]}\n"))
	if !diags.HasErrors() || out != nil {
		t.Errorf("want errors and no output, got %v and %q", diags, out)
	}
}

// TestImportConformancePolicies checks the guarantee on every policy set
// of the conformance data: each step of each reachability case, and each
// traffic case.
func TestImportConformancePolicies(t *testing.T) {
	var inputs []struct {
		name string
		data []byte
	}
	var reach netpolReachability
	decodeNetpolData(t, netpolData(t, "k8s-e2e-netpol-reachability.yaml"), &reach)
	for _, tc := range reach.Cases {
		cluster := netpolCluster{podLabels: netpolCloneLabels(reach.Topology.PodLabels), nsLabels: netpolCloneLabels(reach.Topology.Namespaces)}
		for si, step := range tc.Steps {
			for _, a := range step.Actions {
				cluster.apply(t, a)
			}
			policies := make([]any, len(cluster.policies))
			for i, p := range cluster.policies {
				policies[i] = p
			}
			inputs = append(inputs, struct {
				name string
				data []byte
			}{fmt.Sprintf("%s-step%d.yaml", tc.ID, si+1), netpolPolicyYAML(t, policies)})
		}
	}
	var traffic netpolTraffic
	decodeNetpolData(t, netpolData(t, "netpol-traffic-cases.yaml"), &traffic)
	for _, tc := range traffic.Cases {
		inputs = append(inputs, struct {
			name string
			data []byte
		}{tc.ID + ".yaml", netpolPolicyYAML(t, tc.Policies)})
	}
	exact, decisions, lost := 0, 0, 0
	var partial []string
	for _, in := range inputs {
		c := checkImport(t, in.name, in.data)
		decisions += c.decisions
		lost += c.lost
		if c.exact {
			exact++
		} else {
			partial = append(partial, in.name)
		}
	}
	sort.Strings(partial)
	t.Logf("import: %d policy sets, %d translated exactly, %d decisions compared, none widened, %d flows lost where notes say dropped",
		len(inputs), exact, decisions, lost)
}

func TestImportSubtract(t *testing.T) {
	for _, tc := range []struct {
		cidr   string
		except []string
		want   string
	}{
		{"10.0.0.0/8", nil, "10.0.0.0/8"},
		{"172.17.0.0/16", []string{"172.17.1.0/24"}, "172.17.0.0/24,172.17.128.0/17,172.17.16.0/20,172.17.2.0/23,172.17.32.0/19,172.17.4.0/22,172.17.64.0/18,172.17.8.0/21"},
		{"10.0.0.0/30", []string{"10.0.0.1/32", "10.0.0.2/32"}, "10.0.0.0/32,10.0.0.3/32"},
		{"10.0.0.0/24", []string{"10.0.0.0/25", "10.0.0.128/25"}, ""},
		{"2001:db8::/32", []string{"2001:db8:8000::/33"}, "2001:db8::/33"},
	} {
		var except []netip.Prefix
		for _, e := range tc.except {
			except = append(except, netip.MustParsePrefix(e))
		}
		if got := joinPrefixes(importSubtract(netip.MustParsePrefix(tc.cidr), except)); got != tc.want {
			t.Errorf("%s except %v = %s, want %s", tc.cidr, tc.except, got, tc.want)
		}
	}
}

func TestImportMayOverlap(t *testing.T) {
	sel := func(terms ...Term) Selector { return Selector{Terms: terms} }
	ns := func(v string) Term { return Term{Kind: TermNamespace, Value: v} }
	label := func(k string, op LabelOp, v ...string) Term {
		t := Term{Kind: TermLabel, Key: k, Op: op, Values: v}
		if op == OpEquals {
			t.Value, t.Values = v[0], nil
		}
		return t
	}
	cidr := func(kind TermKind, p string) Term {
		return Term{Kind: kind, Prefixes: []netip.Prefix{netip.MustParsePrefix(p)}}
	}
	workload := Term{Kind: TermWorkload}
	for _, tc := range []struct {
		name string
		a, b Selector
		want bool
	}{
		{"same namespace", sel(ns("x")), sel(ns("x"), label("app", OpEquals, "a")), true},
		{"two namespaces", sel(ns("x")), sel(ns("y")), false},
		{"two values of a label", sel(label("app", OpEquals, "a")), sel(label("app", OpEquals, "b")), false},
		{"a value and In", sel(label("app", OpEquals, "a")), sel(label("app", OpIn, "a", "b")), true},
		{"a value not In", sel(label("app", OpEquals, "c")), sel(label("app", OpIn, "a", "b")), false},
		{"a value NotIn", sel(label("app", OpEquals, "a")), sel(label("app", OpNotIn, "a")), false},
		{"Exists and DoesNotExist", sel(label("app", OpExists)), sel(label("app", OpDoesNotExist)), false},
		{"In and NotIn leaving a value", sel(label("app", OpIn, "a", "b")), sel(label("app", OpNotIn, "a")), true},
		{"pods and outside addresses", sel(workload), sel(cidr(TermExternal, "0.0.0.0/0")), false},
		{"pods and an address range", sel(workload), sel(cidr(TermCIDR, "10.0.0.0/8")), true},
		{"disjoint ranges", sel(cidr(TermCIDR, "10.0.0.0/8")), sel(cidr(TermExternal, "192.0.2.0/24")), false},
		{"anything and everything", sel(Term{Kind: TermAny}), sel(ns("x")), true},
		{"an empty selector matches nothing", sel(), sel(Term{Kind: TermAny}), false},
	} {
		if got := importMayOverlap(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: importMayOverlap(%s, %s) = %v", tc.name, tc.a, tc.b, got)
		}
	}
}
