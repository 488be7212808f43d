package policy

import (
	"reflect"
	"testing"
)

// lintCases are native policies and exactly the warnings Lint gives them.
var lintCases = []struct {
	name string
	src  string
	want []string
}{
	{
		name: "a clean policy gives no warnings",
		src: ntYAML(
			"policies:",
			"  - subject: app:a",
			"    allow:",
			"      - destination: app:b",
			"        ports: [80]",
			"      - destination: app:b",
			"        ports: [80]",
			"        protocols: [udp]",
			"      - destination: app:c",
			"        ports: [80]",
			"    deny:",
			"      - destination: app:b",
			"        ports: [81]",
			"  - subject: [app:a, env:prod]",
			"    allow:",
			"      - destination: app:b",
			"        ports: [80]",
			"  - subject: '*'",
			"    allow:",
			"      - destination: app:d",
			"        ports: [80]",
			"      - destination: app:e",
			"        ports: [80, 443]",
			"  - subject: app:a",
			"    allow:",
			"      - destination: app:e",
			"        ports: [8443]",
			"      - destination: '*'",
			"        ports: [9090]",
			"      - destination: app:f",
			"        ports: [80, 443]",
		),
	},
	{
		name: "a duplicate is reported at the later rule, once",
		src: ntYAML(
			"policies:",
			"  - subject: app:a",
			"    allow:",
			"      - destination: app:b",
			"        ports: [80]",
			"  - subject: app:a",
			"    allow:",
			"      - destination: app:b",
			"        ports: [80]",
		),
		want: []string{"p.yaml:8:9: warning: duplicate of the rule at p.yaml:4:9 (app:a -> app:b ports 80/TCP)"},
	},
	{
		name: "a duplicate may order its ports and selectors differently",
		src: ntYAML(
			"policies:",
			"  - subject: [app:a, env:prod]",
			"    allow:",
			"      - destination: app:b",
			"        ports: [80, 443]",
			"  - subject: [env:prod, app:a]",
			"    allow:",
			"      - destination: app:b",
			"        ports: [443, 80]",
		),
		want: []string{"p.yaml:8:9: warning: duplicate of the rule at p.yaml:4:9 (app:a & env:prod -> app:b ports 80/TCP,443/TCP)"},
	},
	{
		name: "of three identical rules the last two are duplicates of the first",
		src: ntYAML(
			"policies:",
			"  - subject: app:a",
			"    deny:",
			"      - destination: app:b",
			"      - destination: app:b",
			"      - destination: app:b",
		),
		want: []string{
			"p.yaml:5:9: warning: duplicate of the rule at p.yaml:4:9 (deny app:a -> app:b ports */TCP)",
			"p.yaml:6:9: warning: duplicate of the rule at p.yaml:4:9 (deny app:a -> app:b ports */TCP)",
		},
	},
	{
		name: "a rule whose ports another rule holds is shadowed, whichever comes first",
		src: ntYAML(
			"policies:",
			"  - subject: app:a",
			"    allow:",
			"      - destination: app:b",
			"        ports: [443]",
			"      - destination: app:b",
			"        ports: [80, 443]",
			"      - destination: app:c",
			`        ports: ["8000-8100"]`,
			"      - destination: app:c",
			"        ports: [8080]",
		),
		want: []string{
			"p.yaml:4:9: warning: shadowed by the rule at p.yaml:6:9 (app:a -> app:b ports 80/TCP,443/TCP), which already allows everything this rule does",
			"p.yaml:10:9: warning: shadowed by the rule at p.yaml:8:9 (app:a -> app:c ports 8000-8100/TCP), which already allows everything this rule does",
		},
	},
	{
		name: "a rule is shadowed by a * rule of the same subject with more ports",
		src: ntYAML(
			"policies:",
			"  - subject: app:a",
			"    allow:",
			"      - destination: app:b",
			"        ports: [80]",
			"      - destination: '*'",
			"        ports: [80, 443]",
			"      - destination: app:c",
			"        ports: [80, 8080]",
		),
		want: []string{"p.yaml:4:9: warning: shadowed by the rule at p.yaml:6:9 (app:a -> * ports 80/TCP,443/TCP), which already allows everything this rule does"},
	},
	{
		name: "every port covers a named port, and a named port only itself",
		src: ntYAML(
			"policies:",
			"  - subject: app:a",
			"    allow:",
			"      - destination: app:b",
			"      - destination: app:b",
			"        ports: [http]",
			"      - destination: app:c",
			"        ports: [80]",
			"      - destination: app:c",
			"        ports: [http]",
		),
		want: []string{"p.yaml:5:9: warning: shadowed by the rule at p.yaml:4:9 (app:a -> app:b ports */TCP), which already allows everything this rule does"},
	},
	{
		name: "a deny overrides an allow on the ports both hold",
		src: ntYAML(
			"policies:",
			"  - subject: app:a",
			"    allow:",
			"      - destination: app:b",
			"        ports: [80, 443]",
			"    deny:",
			"      - destination: app:b",
			"        ports: [443, 8443]",
		),
		want: []string{"p.yaml:4:9: warning: deny wins: app:a -> app:b is never allowed on ports 443/TCP (denied by the rule at p.yaml:7:9 (deny app:a -> app:b ports 443/TCP,8443/TCP))"},
	},
	{
		name: "a deny to * overrides allows to anything, and ports only overlap within a protocol",
		src: ntYAML(
			"policies:",
			"  - subject: app:a",
			"    allow:",
			"      - destination: app:b",
			"        ports: [80, 8080, http]",
			"      - destination: app:c",
			"        ports: [53]",
			"        protocols: [udp]",
			"  - subject: '*'",
			"    deny:",
			"      - destination: '*'",
			`        ports: ["1-1024"]`,
			"      - destination: app:b",
			"        ports: [8080]",
		),
		want: []string{
			"p.yaml:4:9: warning: deny wins: app:a -> app:b is never allowed on ports 80/TCP,8080/TCP (denied by the rules at p.yaml:11:9 (deny * -> * ports 1-1024/TCP), p.yaml:13:9 (deny * -> app:b ports 8080/TCP))",
		},
	},
	{
		name: "* to * is over-broad",
		src: ntYAML(
			"policies:",
			"  - subject: '*'",
			"    allow:",
			"      - destination: '*'",
			"        ports: [443]",
		),
		want: []string{`p.yaml:4:9: warning: over-broad: "*" -> "*" lets every endpoint reach every other on ports 443/TCP; name the workloads instead`},
	},
	{
		name: "every address is over-broad, as a CIDR or as a network",
		src: ntYAML(
			"policies:",
			"  - subject: app:a",
			"    allow:",
			"      - destination: cidr:0.0.0.0/0",
			"      - destination: external:internet",
			"  - subject: cidr:::/0",
			"    allow:",
			"      - destination: app:b",
			"networks:",
			"  internet: [0.0.0.0/0, 10.0.0.0/8]",
		),
		want: []string{
			"p.yaml:4:9: warning: over-broad: cidr:0.0.0.0/0 matches every IPv4 address, workloads included",
			"p.yaml:8:9: warning: over-broad: cidr:::/0 matches every IPv6 address, workloads included",
			`p.yaml:10:3: warning: over-broad: network "internet" contains 0.0.0.0/0, so external:internet matches every IPv4 address outside the cluster`,
		},
	},
	{
		name: "denying everything is not over-broad",
		src: ntYAML(
			"policies:",
			"  - subject: '*'",
			"    deny:",
			"      - destination: '*'",
			"      - destination: cidr:0.0.0.0/0",
		),
		want: []string{"p.yaml:5:9: warning: shadowed by the rule at p.yaml:4:9 (deny * -> * ports */TCP), which already denies everything this rule does"},
	},
}

func TestLint(t *testing.T) {
	for _, tc := range lintCases {
		t.Run(tc.name, func(t *testing.T) {
			set, diags := LoadBytes("p.yaml", []byte(tc.src))
			if diags.HasErrors() {
				t.Fatalf("load: %v", diags)
			}
			if got := ntDiags(Lint(set)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("lint:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// lintKubeRule adds a rule with one grant per peer, the way a Kubernetes
// NetworkPolicy rule compiles.
func lintKubeRule(s *Set, line int, dir Direction, subject Selector, ports []PortRange, peers ...Selector) {
	r := s.AddRule(Rule{Pos: Position{File: "k.yaml", Line: line, Col: 7}, Origin: "NetworkPolicy shop/web", Text: "rule"})
	for _, p := range peers {
		s.Grants = append(s.Grants, Grant{Direction: dir, Action: Allow, Subject: subject, Peer: p, Ports: ports, Rule: r})
	}
}

func TestLintKubernetesRules(t *testing.T) {
	web, api, db := ntSel(ntLabel("app", "web")), ntSel(ntLabel("app", "api")), ntSel(ntLabel("app", "db"))
	p80 := []PortRange{{Protocol: TCP, Lo: 80, Hi: 80}}
	set := &Set{}
	lintKubeRule(set, 10, Ingress, web, p80, api, db)
	lintKubeRule(set, 20, Ingress, web, p80, api) // covered by half of line 10's rule
	lintKubeRule(set, 30, Ingress, web, nil, db)  // all ports: not covered
	lintKubeRule(set, 40, Egress, web, p80, api)  // a different direction
	lintKubeRule(set, 50, Egress, web, p80, api)
	want := []string{
		"k.yaml:20:7: warning: shadowed by the rule at k.yaml:10:7 (rule), which already allows everything this rule does",
		"k.yaml:50:7: warning: duplicate of the rule at k.yaml:40:7 (rule)",
	}
	if got := ntDiags(Lint(set)); !reflect.DeepEqual(got, want) {
		t.Errorf("lint:\n got %q\nwant %q", got, want)
	}
}

func TestLintNativeAndKubernetesTogether(t *testing.T) {
	set, diags := LoadBytes("n.yaml", []byte(ntYAML("policies:", "  - subject: app:web", "    allow:", "      - destination: app:api", "        ports: [80]")))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	web, api := ntSel(ntLabel("app", "web")), ntSel(ntLabel("app", "api"))
	p80 := []PortRange{{Protocol: TCP, Lo: 80, Hi: 80}}
	// The native rule gives both the egress and the ingress these give, so
	// they are shadowed; it is not shadowed by them, as neither gives both.
	lintKubeRule(set, 1, Egress, web, p80, api)
	lintKubeRule(set, 2, Ingress, api, p80, web)
	want := []string{
		"k.yaml:1:7: warning: shadowed by the rule at n.yaml:4:9 (app:web -> app:api ports 80/TCP), which already allows everything this rule does",
		"k.yaml:2:7: warning: shadowed by the rule at n.yaml:4:9 (app:web -> app:api ports 80/TCP), which already allows everything this rule does",
	}
	if got := ntDiags(Lint(set)); !reflect.DeepEqual(got, want) {
		t.Errorf("lint:\n got %q\nwant %q", got, want)
	}
}

func TestLintIgnoresGrantsOfUnknownRules(t *testing.T) {
	set := &Set{Grants: []Grant{{Subject: ntSel(Term{Kind: TermAny}), Peer: ntSel(Term{Kind: TermAny}), Rule: 3}, {Rule: -1}}}
	if got := Lint(set); len(got) != 0 {
		t.Errorf("lint: %v", got)
	}
}

func TestLintPortSets(t *testing.T) {
	r := func(p Protocol, lo, hi uint16) PortRange { return PortRange{Protocol: p, Lo: lo, Hi: hi} }
	named := func(p Protocol, n string) PortRange { return PortRange{Protocol: p, Name: n} }
	for _, tc := range []struct {
		name         string
		outer, inner []PortRange
		covers       bool
		overlap      string
	}{
		{"a range covers a port in it", []PortRange{r(TCP, 1, 100)}, []PortRange{r(TCP, 80, 80)}, true, "80/TCP"},
		{"adjacent ranges cover together", []PortRange{r(TCP, 1, 79), r(TCP, 80, 100)}, []PortRange{r(TCP, 50, 90)}, true, "50-79/TCP,80-90/TCP"},
		{"unsorted overlapping ranges cover together", []PortRange{r(TCP, 50, 100), r(TCP, 1, 60)}, []PortRange{r(TCP, 1, 100)}, true, "50-100/TCP,1-60/TCP"},
		{"any-protocol and TCP ranges cover TCP together", []PortRange{r(AnyProtocol, 1, 50), r(TCP, 51, 100)}, []PortRange{r(TCP, 1, 100)}, true, "1-50/TCP,51-100/TCP"},
		{"a TCP range does not cover UDP", []PortRange{r(AnyProtocol, 1, 50), r(TCP, 51, 100)}, []PortRange{r(UDP, 1, 100)}, false, "1-50/UDP"},
		{"a gap is not covered", []PortRange{r(TCP, 1, 79), r(TCP, 81, 100)}, []PortRange{r(TCP, 50, 90)}, false, "50-79/TCP,81-90/TCP"},
		{"another protocol is not covered", []PortRange{r(UDP, 1, 65535)}, []PortRange{r(TCP, 53, 53)}, false, ""},
		{"any protocol covers each", AllPorts, []PortRange{r(SCTP, 53, 53), named(UDP, "dns")}, true, "53/SCTP,dns/UDP"},
		{"port 0 is not a port", []PortRange{r(TCP, 1, 65535)}, []PortRange{r(TCP, 0, 65535)}, true, "*/TCP"},
		{"a number does not cover a name", []PortRange{r(TCP, 80, 80)}, []PortRange{named(TCP, "http")}, false, ""},
		{"the same name covers a name", []PortRange{named(TCP, "http")}, []PortRange{named(TCP, "http")}, true, "http/TCP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := lintPortsCover(lintNormalize(tc.outer), tc.inner); got != tc.covers {
				t.Errorf("cover = %v, want %v", got, tc.covers)
			}
			if got := lintPortsText(lintPortsOverlap(tc.inner, tc.outer)); got != tc.overlap {
				t.Errorf("overlap = %q, want %q", got, tc.overlap)
			}
		})
	}
}
