package policy

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// The fuzz targets of this file check what the older FuzzLoadNative and
// FuzzLoadNetworkPolicy do not: that every diagnostic points inside the
// file, that whatever loads compiles and decides the same way through
// Decide and Explain, that the importer's output never allows a flow its
// input does not, and that policy test files run. Their seeds (the table
// tests' inputs, examples/ and the NetworkPolicy conformance data) run in
// the normal suite; run one with e.g.
//
//	go test -run '^$' -fuzz '^FuzzLoadBytesNative$' -fuzztime 60s ./internal/policy/

// fuzzName is the file name the targets give the loader.
const fuzzName = "fuzz.yaml"

// FuzzLoadBytesNative: LoadBytes never panics, its diagnostics (and
// Lint's) point inside the input, and a Set without errors compiles in
// every mode, with Decide and Explain agreeing on every probe flow.
func FuzzLoadBytesNative(f *testing.F) {
	f.Add([]byte(missionPolicy))
	for _, tc := range nativeSemanticCases {
		f.Add([]byte(tc.src))
	}
	for _, tc := range nativeErrorCases {
		f.Add([]byte(tc.src))
	}
	for _, tc := range lintCases {
		f.Add([]byte(tc.src))
	}
	fuzzAddFiles(f, "testdata/native", "../../examples/policy", "../../examples/quickstart/policy.yaml")
	for _, s := range []string{
		"policies:\n  - subject: app:a\r    allow: [{destination: app:b}]\n",
		"policies:\n  - subject: \"app:a\"\n    mode: audit\n    deny:\n      - destination: \"*\"\n        ports: [\"1-65535\"]\n",
		"networks: {n: [\"10.0.0.0/8\", \"::/0\"]}\npolicies: [{subject: workload, allow: [{destination: external:n, protocols: [udp, sctp]}]}]\n",
		"# comment only\n",
		"---\n---\npolicies: []\n...\n",
	} {
		f.Add([]byte(s))
	}

	probes := fuzzProbeEndpoints()
	f.Fuzz(func(t *testing.T, data []byte) {
		set, diags := LoadBytes(fuzzName, data)
		fuzzCheckPositions(t, data, "load", diags)
		if diags.HasErrors() {
			return
		}
		fuzzCheckPositions(t, data, "lint", Lint(set))
		fuzzCheckCompiles(t, set, probes)
	})
}

// FuzzLoadBytesNetworkPolicy: the same for Kubernetes NetworkPolicy
// documents, and ImportBytes of a file that loads, with and without pod
// CIDRs, must succeed, load again, and never allow (under isolation: all)
// a probe flow the input does not; when no note says something was
// dropped, exactly the same flows.
func FuzzLoadBytesNetworkPolicy(f *testing.F) {
	fuzzAddFiles(f, "testdata/kube")
	for _, doc := range fuzzNetpolDocuments(f) {
		f.Add(doc)
	}
	for _, s := range []string{
		kubeHeader + "spec: {podSelector: {}, ingress: [{}], egress: [{}]}\n",
		kubeHeader + "spec: {podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [a]}]}, ingress: [{from: [{podSelector: {}, namespaceSelector: {matchLabels: {ns: y}}}]}]}\n",
		kubeHeader + "spec: {egress: [{to: [{ipBlock: {cidr: 10.0.0.0/24, except: [10.0.0.0/28]}}], ports: [{port: serve-80-tcp}, {port: 81, endPort: 90}]}], policyTypes: [Egress]}\n",
		kubeHeader + "  annotations: {ztcn.io/mode: audit}\nspec: {ingress: [{ports: [{protocol: UDP}]}]}\n",
		"kind: List\nitems:\n- " + strings.ReplaceAll(kubeHeader, "\n", "\n  ") + "spec: {}\n",
	} {
		f.Add([]byte(s))
	}

	probes := fuzzProbeEndpoints()
	f.Fuzz(func(t *testing.T, data []byte) {
		set, diags := LoadBytes(fuzzName, data)
		fuzzCheckPositions(t, data, "load", diags)
		if diags.HasErrors() {
			return
		}
		fuzzCheckPositions(t, data, "lint", Lint(set))
		in := fuzzCheckCompiles(t, set, probes)

		witnesses, flows := fuzzWitnesses(set)
		npOnly := true
		for _, r := range set.Rules {
			npOnly = npOnly && strings.HasPrefix(r.Origin, "NetworkPolicy ")
		}
		for _, imp := range fuzzImports {
			out, notes, idiags := ImportBytes(fuzzName, data, imp.opts...)
			if idiags.HasErrors() {
				t.Fatalf("%s: the import of a file that loads fails: %v", imp.name, idiags)
			}
			dropped := false
			for _, n := range notes {
				dropped = dropped || n.Dropped
				if n.Pos.File != fuzzName || n.Message == "" {
					t.Errorf("%s: import note without a position or a message: %#v", imp.name, n)
				}
			}
			outSet, odiags := LoadBytes("imported.yaml", out)
			if odiags.HasErrors() {
				t.Fatalf("%s: the import does not load: %v\n%s", imp.name, odiags, out)
			}
			outIx, err := Compile(outSet, IsolateAll)
			if err != nil {
				t.Fatalf("%s: the import does not compile: %v\n%s", imp.name, err, out)
			}
			if npOnly { // native rules (denies) are not imported: no claim
				fuzzCompareImport(t, imp.name, in, outIx, imp.probes(append(witnesses, probes...)), flows, !dropped, out)
			}
		}
	})
}

// fuzzWitnesses makes, for every selector of set, endpoints it matches
// (a workload with the labels, namespace, service account or address its
// terms ask for; an address outside the cluster for an address range),
// and the flows its rules name (both ends of every port range, named
// ports resolved at 8080 on every witness workload), so that comparing two
// policies on them exercises what the rules say. Fixed probe endpoints
// rarely match a fuzzed selector, and under isolation: all a flow needs
// both of its sides allowed.
func fuzzWitnesses(set *Set) ([]*Endpoint, []fuzzFlow) {
	const maxWitnesses, maxFlows = 24, 16
	flows := append([]fuzzFlow(nil), fuzzFlows...)
	var named []NamedPort
	addFlow := func(fl fuzzFlow) {
		for _, have := range flows {
			if have == fl {
				return
			}
		}
		if len(flows) < maxFlows {
			flows = append(flows, fl)
		}
	}
	var eps []*Endpoint
	seen := map[string]bool{}
	add := func(ep *Endpoint) {
		key := fmt.Sprint(*ep)
		if !seen[key] && len(eps) < maxWitnesses {
			seen[key] = true
			eps = append(eps, ep)
		}
	}
	witness := func(sel Selector) {
		ep := &Endpoint{Namespace: "default", ServiceAccount: "default", Labels: map[string]string{},
			NamespaceLabels: map[string]string{}, IP: netip.MustParseAddr("10.0.0.200")}
		workload, external := false, false
		for _, t := range sel.Terms {
			switch t.Kind {
			case TermWorkload:
				workload = true
			case TermNamespace:
				workload, ep.Namespace = true, t.Value
			case TermServiceAccount:
				workload = true
				if ns, sa, ok := strings.Cut(t.Value, "/"); ok {
					ep.Namespace, ep.ServiceAccount = ns, sa
				}
			case TermSPIFFEID:
				workload, ep.SPIFFEID = true, t.Value
			case TermLabel, TermNamespaceLabel:
				workload = true
				labels := ep.Labels
				if t.Kind == TermNamespaceLabel {
					labels = ep.NamespaceLabels
				}
				switch t.Op {
				case OpEquals:
					labels[t.Key] = t.Value
				case OpIn:
					if len(t.Values) > 0 {
						labels[t.Key] = t.Values[0]
					}
				case OpExists:
					labels[t.Key] = "x"
				case OpNotIn:
					labels[t.Key] = "not-" + strings.Join(t.Values, "-")
				}
			case TermCIDR, TermExternal:
				external = external || t.Kind == TermExternal
				for _, p := range t.Prefixes {
					if ip, ok := fuzzAddrIn(p, t.Except); ok {
						ep.IP = ip
						break
					}
				}
			}
		}
		if v, ok := ep.NamespaceLabels["kubernetes.io/metadata.name"]; ok {
			ep.Namespace = v
		}
		ep.NamespaceLabels["kubernetes.io/metadata.name"] = ep.Namespace
		if ep.SPIFFEID == "" {
			ep.SPIFFEID = "spiffe://cluster.local/ns/" + ep.Namespace + "/sa/" + ep.ServiceAccount
		}
		if workload || !external {
			w := *ep
			w.Workload, w.Name = true, "w"
			add(&w)
		}
		if !workload {
			add(&Endpoint{IP: ep.IP})
		}
	}
	for _, g := range set.Grants {
		witness(g.Subject)
		witness(g.Peer)
		for _, pr := range g.Ports {
			proto := pr.Protocol
			if proto == AnyProtocol {
				proto = TCP
			}
			if pr.Name != "" {
				named = append(named, NamedPort{Name: pr.Name, Port: 8080, Protocol: proto})
				addFlow(fuzzFlow{proto, 8080})
				continue
			}
			addFlow(fuzzFlow{proto, pr.Lo})
			addFlow(fuzzFlow{proto, pr.Hi})
		}
	}
	for _, iso := range set.Isolations {
		witness(iso.Subject)
	}
	for _, ep := range eps {
		if ep.Workload {
			ep.Ports = named
		}
	}
	return eps, flows
}

// fuzzAddrIn returns an address of p outside except: its first, second,
// last or last but one.
func fuzzAddrIn(p netip.Prefix, except []netip.Prefix) (netip.Addr, bool) {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	for _, a := range []netip.Addr{p.Addr(), p.Addr().Next(), last, last.Prev()} {
		if a.IsValid() && p.Contains(a) && !inPrefixes(a, except) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// fuzzPodCIDRs hold every workload of fuzzProbeEndpoints.
var fuzzPodCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("2001:db8::/64")}

// fuzzImports are the ways FuzzLoadBytesNetworkPolicy imports: without
// pod CIDRs, where any range may hold pods, and with them, where only
// probes that fit are kept: workloads inside them, addresses outside.
var fuzzImports = []struct {
	name   string
	opts   []ImportOption
	probes func([]*Endpoint) []*Endpoint
}{
	{"import", nil, func(eps []*Endpoint) []*Endpoint { return eps }},
	{"import with pod CIDRs", []ImportOption{WithPodCIDRs(fuzzPodCIDRs...)}, func(eps []*Endpoint) []*Endpoint {
		var out []*Endpoint
		for _, ep := range eps {
			if ep.Workload == inPrefixes(ep.IP, fuzzPodCIDRs) {
				out = append(out, ep)
			}
		}
		return out
	}},
}

// FuzzParseTestFile: ParseTestFile never panics and points inside the
// file; a file without errors runs against an empty policy (isolation:
// all) with one result per case, every flow with a workload on either side
// denied and every flow between two addresses allowed.
func FuzzParseTestFile(f *testing.F) {
	fuzzAddFiles(f, "../../examples/policy-tests.yaml")
	for _, s := range []string{
		"workloads: []\ntestz: []\n",
		"workloads:\n  - name: a/b\n    lables: {}\n",
		"workloads:\n  - name: ab\n",
		"workloads:\n  - name: a/b\ntests:\n  - {from: a/b, to: a/b, port: 80, expect: maybe}\n",
		"tests:\n  - {from: a/x, to: 10.0.0.1, port: 80, expect: deny}\n",
		"workloads:\n  - name: a/b\ntests:\n  - {from: a/b, to: a/b, port: 80, protocol: icmp, expect: deny}\n",
		"isolation: some\n",
		"isolation: selected\ntrustDomain: example.org\nnamespaces:\n  x: {labels: {ns: x}}\nworkloads:\n  - name: x/a\n    serviceAccount: sa\n    labels: {pod: a}\n    ips: [10.0.0.11]\n    ports: [{name: serve-80-tcp, port: 80, protocol: TCP}]\ntests:\n  - {name: a to itself, from: x/a, to: 10.0.0.11, port: serve-80-tcp, protocol: TCP, expect: allow}\n  - {from: 192.0.2.1, to: 2001:db8::1, port: \"65535\", protocol: SCTP, expect: deny}\n",
	} {
		f.Add([]byte(s))
	}

	empty, err := Compile(&Set{Networks: map[string]Network{}}, IsolateAll)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tf, diags := ParseTestFile(fuzzName, data)
		fuzzCheckPositions(t, data, "parse", diags)
		if diags.HasErrors() {
			return
		}
		if tf == nil {
			t.Fatal("no test file and no error")
		}
		results := RunTests(empty, tf)
		if len(results) != len(tf.Tests) {
			t.Fatalf("%d results for %d cases", len(results), len(tf.Tests))
		}
		for i, r := range results {
			c := tf.Tests[i]
			if r.Case != c {
				t.Fatalf("result %d is for %+v, not %+v", i, r.Case, c)
			}
			if r.Err != nil {
				continue
			}
			src, err1 := tf.Endpoint(c.From)
			dst, err2 := tf.Endpoint(c.To)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: a case that ran names an unknown endpoint: %v %v", c.Label(), err1, err2)
			}
			if want := !src.Workload && !dst.Workload; r.Explanation.Allowed != want {
				t.Errorf("%s: allowed=%v by the empty policy, want %v", c.Label(), r.Explanation.Allowed, want)
			}
			if r.Passed != (r.Explanation.Allowed == c.Expect) {
				t.Errorf("%s: passed=%v, allowed=%v, expected allow=%v", c.Label(), r.Passed, r.Explanation.Allowed, c.Expect)
			}
		}
		if len(tf.Workloads) <= 32 {
			m := ReachabilityMatrix(empty, tf, TCP, 80)
			for i := range m.Allowed {
				for j, ok := range m.Allowed[i] {
					if ok {
						t.Errorf("the empty policy lets %s reach %s", m.Names[i], m.Names[j])
					}
				}
			}
		}
	})
}

// fuzzAddFiles adds every file under paths (files or directories) as a
// seed; a path that does not exist is skipped.
func fuzzAddFiles(f *testing.F, paths ...string) {
	f.Helper()
	for _, root := range paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(path, ".golden") {
				return err
			}
			data, err := os.ReadFile(path)
			if err == nil {
				f.Add(data)
			}
			return err
		})
		if err != nil && !os.IsNotExist(err) {
			f.Fatal(err)
		}
	}
}

// fuzzNetpolDocuments returns the NetworkPolicy objects of the conformance
// data (see conformance_test.go), each alone and each case's together, as
// YAML files. Without the data it returns nothing: testdata/fuzz holds a
// few of them.
func fuzzNetpolDocuments(f *testing.F) [][]byte {
	f.Helper()
	var docs [][]byte
	for _, name := range []string{"k8s-e2e-netpol-reachability.yaml", "netpol-traffic-cases.yaml"} {
		data, err := os.ReadFile(filepath.Join(netpolDataDir, name))
		if err != nil {
			continue
		}
		var root struct {
			Cases []any `yaml:"cases"`
		}
		if err := yaml.Unmarshal(data, &root); err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		for _, c := range root.Cases {
			var all bytes.Buffer
			for _, p := range fuzzFindNetworkPolicies(c) {
				out, err := yaml.Marshal(p)
				if err != nil {
					f.Fatal(err)
				}
				docs = append(docs, out)
				all.WriteString("---\n")
				all.Write(out)
			}
			docs = append(docs, all.Bytes())
		}
	}
	return docs
}

// fuzzFindNetworkPolicies collects the NetworkPolicy objects of a case of
// either data format (policies, or steps of createPolicy/updatePolicy
// actions).
func fuzzFindNetworkPolicies(v any) []map[string]any {
	switch v := v.(type) {
	case map[string]any:
		if v["kind"] == "NetworkPolicy" {
			return []map[string]any{v}
		}
		var out []map[string]any
		for _, k := range []string{"policies", "steps", "actions", "createPolicy", "updatePolicy"} {
			out = append(out, fuzzFindNetworkPolicies(v[k])...)
		}
		return out
	case []any:
		var out []map[string]any
		for _, x := range v {
			out = append(out, fuzzFindNetworkPolicies(x)...)
		}
		return out
	}
	return nil
}

// fuzzCheckPositions fails unless every diagnostic names the file, has a
// message, and points at a line of the input (0: no line) and a column
// within that line (0: no column).
func fuzzCheckPositions(t *testing.T, data []byte, what string, diags Diagnostics) {
	t.Helper()
	lines := fuzzYAMLLines(data)
	for _, d := range diags {
		p := d.Pos
		if p.File != fuzzName || d.Message == "" || (d.Severity != SeverityError && d.Severity != SeverityWarning) {
			t.Fatalf("%s: diagnostic without the file, a message or a severity: %#v", what, d)
		}
		if p.Line < 0 || p.Line > len(lines) || p.Col < 0 {
			t.Fatalf("%s: %s is outside the input's %d lines", what, d, len(lines))
		}
		if p.Line > 0 && p.Col > utf8.RuneCount(lines[p.Line-1])+1 {
			t.Fatalf("%s: %s is past the end of line %d (%q)", what, d, p.Line, lines[p.Line-1])
		}
	}
}

// fuzzYAMLLines splits data into lines as YAML counts them: CR LF, a lone
// CR, LF, and (yaml.v3 follows YAML 1.1 there) NEL, LS and PS each end a
// line. A file with lone CRs therefore has more lines in diagnostics than
// wc -l counts; that is the parser's view, not a wrong position. A file
// that starts with a UTF-16 byte order mark is UTF-16 to YAML, and its
// lines are those of the text it decodes to.
func fuzzYAMLLines(data []byte) [][]byte {
	if len(data) >= 2 && (data[0] == 0xfe && data[1] == 0xff || data[0] == 0xff && data[1] == 0xfe) {
		units := make([]uint16, 0, len(data)/2)
		for i := 2; i+1 < len(data); i += 2 {
			if data[0] == 0xfe {
				units = append(units, uint16(data[i])<<8|uint16(data[i+1]))
			} else {
				units = append(units, uint16(data[i+1])<<8|uint16(data[i]))
			}
		}
		data = []byte(string(utf16.Decode(units)))
	}
	var lines [][]byte
	start := 0
	for i := 0; i < len(data); {
		n := 0
		switch {
		case data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n':
			n = 2
		case data[i] == '\r' || data[i] == '\n':
			n = 1
		case bytes.HasPrefix(data[i:], []byte("\u0085")), bytes.HasPrefix(data[i:], []byte("\u2028")), bytes.HasPrefix(data[i:], []byte("\u2029")):
			_, n = utf8.DecodeRune(data[i:])
		}
		if n == 0 {
			i++
			continue
		}
		lines = append(lines, data[start:i])
		i += n
		start = i
	}
	return append(lines, data[start:])
}

// fuzzFlow is a protocol and port every probe pair is decided on.
type fuzzFlow struct {
	proto Protocol
	port  uint16
}

var fuzzFlows = []fuzzFlow{{TCP, 80}, {TCP, 81}, {TCP, 443}, {TCP, 65535}, {UDP, 80}, {SCTP, 80}, {ICMP, 0}}

// fuzzProbeEndpoints are workloads of the conformance topology (x, y, z ×
// a, b, c) and of the examples, with named ports, and addresses outside
// the cluster.
func fuzzProbeEndpoints() []*Endpoint {
	var eps []*Endpoint
	pod := func(ns, name string, labels map[string]string, ip string) {
		eps = append(eps, &Endpoint{
			Workload: true, Namespace: ns, Name: name, ServiceAccount: "default", Labels: labels,
			NamespaceLabels: map[string]string{"ns": ns, "kubernetes.io/metadata.name": ns},
			SPIFFEID:        "spiffe://cluster.local/ns/" + ns + "/sa/default",
			IP:              netip.MustParseAddr(ip),
			Ports: []NamedPort{
				{Name: "serve-80-tcp", Port: 80, Protocol: TCP}, {Name: "serve-81-tcp", Port: 81, Protocol: TCP},
				{Name: "serve-80-udp", Port: 80, Protocol: UDP}, {Name: "serve-80-sctp", Port: 80, Protocol: SCTP},
				{Name: "http", Port: 80, Protocol: TCP}, {Name: "https", Port: 443, Protocol: TCP},
			},
		})
	}
	for i, ns := range []string{"x", "y", "z"} {
		for j, name := range []string{"a", "b", "c"} {
			pod(ns, name, map[string]string{"pod": name}, fmt.Sprintf("10.0.0.%d%d", i+1, j+1))
		}
	}
	pod("shop", "frontend", map[string]string{"app": "frontend", "tier": "web"}, "10.0.0.10")
	pod("shop", "backend", map[string]string{"app": "backend"}, "10.0.0.20")
	pod("default", "bare", nil, "2001:db8::20")
	for _, ip := range []string{"192.0.2.1", "192.0.2.200", "203.0.113.9", "198.51.100.1", "10.0.0.99", "2001:db8::1", "::ffff:10.0.0.5"} {
		eps = append(eps, &Endpoint{IP: netip.MustParseAddr(ip)})
	}
	return eps
}

// fuzzCheckCompiles compiles set in every mode, staged view included, and
// decides every flow between the probes and the set's witnesses (see
// fuzzWitnesses): two outside addresses are never denied, and Explain
// agrees with Decide, listing the deciding rule on the side that decided.
// It returns the enforced index under isolation: all.
func fuzzCheckCompiles(t *testing.T, set *Set, probes []*Endpoint) *Index {
	t.Helper()
	witnesses, flows := fuzzWitnesses(set)
	eps := append(witnesses, probes...)
	// Explain allocates: it is checked on one flow, the first a rule names.
	explained := flows[0]
	if len(flows) > len(fuzzFlows) {
		explained = flows[len(fuzzFlows)]
	}
	var all *Index
	for _, mode := range []IsolationMode{IsolateAll, IsolateSelected} {
		ix, err := Compile(set, mode)
		if err != nil {
			t.Fatalf("Compile(%s) of a set without errors: %v", mode, err)
		}
		staged, err := CompileStaged(set, mode)
		if err != nil {
			t.Fatalf("CompileStaged(%s) of a set without errors: %v", mode, err)
		}
		if (staged != nil) != set.HasStaged() {
			t.Fatalf("CompileStaged(%s) gave a view: %v, but HasStaged is %v", mode, staged != nil, set.HasStaged())
		}
		if mode == IsolateAll {
			all = ix
		}
		for _, view := range []*Index{ix, staged} {
			if view == nil {
				continue
			}
			subs := make([]*Subject, len(eps))
			for i, ep := range eps {
				subs[i] = view.Resolve(ep)
			}
			for _, src := range subs {
				for _, dst := range subs {
					for _, fl := range flows {
						v := view.Decide(src, dst, fl.proto, fl.port)
						switch noRule := v.Reason == ReasonNoEgressRule || v.Reason == ReasonNoIngressRule; {
						case v.Rule < -1 || v.Rule >= len(set.Rules),
							(v.Reason == ReasonAllowed) != v.Allowed,
							v.Reason == ReasonDenyRule && v.Rule < 0,
							noRule && v.Rule != -1:
							t.Fatalf("verdict %+v with %d rules", v, len(set.Rules))
						}
						if !src.ep.Workload && !dst.ep.Workload && !v.Allowed {
							t.Fatalf("a flow between two outside addresses is denied: %+v", v)
						}
						if fl == explained {
							fuzzCheckExplain(t, view, src, dst, fl, v)
						}
					}
				}
			}
		}
	}
	return all
}

// fuzzCheckExplain checks that Explain agrees with the verdict v of Decide.
func fuzzCheckExplain(t *testing.T, ix *Index, src, dst *Subject, fl fuzzFlow, v Verdict) {
	t.Helper()
	e := ix.Explain(src, dst, fl.proto, fl.port)
	if e.Verdict != v || e.Allowed != v.Allowed || e.Staged != ix.StagedView() {
		t.Fatalf("Decide says %+v, Explain %+v", v, e)
	}
	if v.Rule < 0 {
		return
	}
	r := ix.Rules()[v.Rule]
	lists := [][]Rule{e.Egress.Allowed, e.Ingress.Allowed}
	if v.Reason == ReasonDenyRule {
		lists = [][]Rule{e.Egress.Denied, e.Ingress.Denied}
	}
	for _, l := range lists {
		for _, have := range l {
			if have == r {
				return
			}
		}
	}
	t.Fatalf("the explanation of %s -> %s %d/%s does not list the deciding rule %s:\n%s", src.ep.String(), dst.ep.String(), fl.port, fl.proto, r, e)
}

// fuzzCompareImport checks that out (the import of in's NetworkPolicies)
// allows no probe flow that in does not, and the same flows if exact.
func fuzzCompareImport(t *testing.T, what string, in, out *Index, probes []*Endpoint, flows []fuzzFlow, exact bool, doc []byte) {
	t.Helper()
	ins, outs := make([]*Subject, len(probes)), make([]*Subject, len(probes))
	for i, ep := range probes {
		ins[i], outs[i] = in.Resolve(ep), out.Resolve(ep)
	}
	for i, src := range probes {
		for j, dst := range probes {
			si, di, so, do := ins[i], ins[j], outs[i], outs[j]
			for _, fl := range flows {
				a := in.Decide(si, di, fl.proto, fl.port).Allowed
				b := out.Decide(so, do, fl.proto, fl.port).Allowed
				if b && !a {
					t.Fatalf("%s allows %s -> %s %d/%s, which the input denies:\n%s\noutput:\n%s",
						what, src, dst, fl.port, fl.proto, in.Explain(si, di, fl.proto, fl.port), doc)
				}
				if exact && a && !b {
					t.Fatalf("%s: no note says anything was dropped, but it denies %s -> %s %d/%s, which the input allows:\n%s\noutput:\n%s",
						what, src, dst, fl.port, fl.proto, in.Explain(si, di, fl.proto, fl.port), doc)
				}
			}
		}
	}
}
