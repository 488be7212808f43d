package policy

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// ntYAML joins lines, so that a case's line numbers can be read off its
// position in the list.
func ntYAML(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// ntGrants prints grants compactly: "egress allow app:a => app:b 80/TCP #0".
func ntGrants(set *Set) []string {
	var out []string
	for _, g := range set.Grants {
		out = append(out, fmt.Sprintf("%s %s %s => %s %s #%d", g.Direction, g.Action, g.Subject.Key(), g.Peer.Key(), lintPortsText(g.Ports), g.Rule))
	}
	return out
}

func ntRules(set *Set) []string {
	var out []string
	for _, r := range set.Rules {
		out = append(out, r.String())
	}
	return out
}

func ntDiags(ds Diagnostics) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.String())
	}
	return out
}

func ntLabel(k, v string) Term { return Term{Kind: TermLabel, Key: k, Op: OpEquals, Value: v} }

func ntSel(terms ...Term) Selector { return Selector{Terms: terms} }

// ntWrite writes files into a fresh directory and returns their paths.
func ntWrite(t *testing.T, files ...string) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for i := 0; i+1 < len(files); i += 2 {
		p := filepath.Join(dir, files[i])
		if err := os.WriteFile(p, []byte(files[i+1]), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

const missionPolicy = `policies:
  - subject: "app:frontend"            # who: label selector
    allow:
      - destination: "app:backend"
        ports: [80, 443]
      - destination: "external:metrics" # a named network from ` + "`networks:`" + `
        ports: [9100]
networks:
  metrics: ["203.0.113.0/24"]
`

func TestNativeMissionExampleLoadsExactly(t *testing.T) {
	data, err := os.ReadFile("testdata/native/mission.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != missionPolicy {
		t.Fatal("testdata/native/mission.yaml differs from the mission example")
	}
	set, diags := LoadBytes("mission.yaml", data)
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	wantRules := []Rule{
		{Pos: Position{File: "mission.yaml", Line: 4, Col: 9}, Origin: "native", Text: "app:frontend -> app:backend ports 80/TCP,443/TCP"},
		{Pos: Position{File: "mission.yaml", Line: 6, Col: 9}, Origin: "native", Text: "app:frontend -> external:metrics ports 9100/TCP"},
	}
	if !reflect.DeepEqual(set.Rules, wantRules) {
		t.Errorf("rules:\n got %v\nwant %v", set.Rules, wantRules)
	}
	frontend := ntSel(ntLabel("app", "frontend"))
	backend := ntSel(ntLabel("app", "backend"))
	metrics := ntSel(Term{Kind: TermExternal, Value: "metrics", Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	web := []PortRange{{Protocol: TCP, Lo: 80, Hi: 80}, {Protocol: TCP, Lo: 443, Hi: 443}}
	scrape := []PortRange{{Protocol: TCP, Lo: 9100, Hi: 9100}}
	wantGrants := []Grant{
		{Direction: Egress, Action: Allow, Subject: frontend, Peer: backend, Ports: web, Rule: 0},
		{Direction: Ingress, Action: Allow, Subject: backend, Peer: frontend, Ports: web, Rule: 0},
		{Direction: Egress, Action: Allow, Subject: frontend, Peer: metrics, Ports: scrape, Rule: 1},
		{Direction: Ingress, Action: Allow, Subject: metrics, Peer: frontend, Ports: scrape, Rule: 1},
	}
	if !reflect.DeepEqual(set.Grants, wantGrants) {
		t.Errorf("grants:\n got %q\nwant %v", ntGrants(set), wantGrants)
	}
	wantIsolations := []Isolation{
		{Direction: Egress, Subject: frontend, Rule: 0},
		{Direction: Ingress, Subject: backend, Rule: 0},
		{Direction: Egress, Subject: frontend, Rule: 1},
		{Direction: Ingress, Subject: metrics, Rule: 1},
	}
	if !reflect.DeepEqual(set.Isolations, wantIsolations) {
		t.Errorf("isolations:\n got %v\nwant %v", set.Isolations, wantIsolations)
	}
	wantNetworks := map[string]Network{"metrics": {
		Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
		Pos:      Position{File: "mission.yaml", Line: 9, Col: 3},
	}}
	if !reflect.DeepEqual(set.Networks, wantNetworks) {
		t.Errorf("networks: got %v, want %v", set.Networks, wantNetworks)
	}
	if lint := Lint(set); len(lint) != 0 {
		t.Errorf("lint: %v", lint)
	}
}

func TestNativeGrantsAreIndependentCopies(t *testing.T) {
	set, diags := LoadBytes("mission.yaml", []byte(missionPolicy))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	set.Grants[0].Ports[0].Lo = 1
	set.Grants[0].Subject.Terms[0].Value = "changed"
	if set.Grants[1].Ports[0].Lo != 80 || set.Grants[1].Peer.Terms[0].Value != "frontend" || set.Isolations[0].Subject.Terms[0].Value != "frontend" {
		t.Error("grants of one rule share slices: changing one changed another")
	}
}

func TestNativeJSONLoadsWithPositions(t *testing.T) {
	set, diags := Load("testdata/native/mission.json")
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	want := []string{
		"testdata/native/mission.json:6:9: app:frontend -> app:backend ports 80/TCP,443/TCP",
		"testdata/native/mission.json:7:9: app:frontend -> external:metrics ports 9100/TCP",
	}
	if got := ntRules(set); !reflect.DeepEqual(got, want) {
		t.Errorf("rules:\n got %q\nwant %q", got, want)
	}

	// An error in JSON points at the offending token.
	src := `{"policies": [{"subject": "app:a", "allow": [{"destination": "app:b", "ports": [80, 0], "protocol": "udp"}]}]}`
	_, diags = LoadBytes("p.json", []byte(src))
	want = []string{
		fmt.Sprintf("p.json:1:%d: error: port 0 outside 1–65535", strings.Index(src, "0]")+1),
		fmt.Sprintf(`p.json:1:%d: error: unknown key "protocol" in rule (want destination, ports, protocols, mode, description)`, strings.Index(src, `"protocol"`)+1),
	}
	if got := ntDiags(diags); !reflect.DeepEqual(got, want) {
		t.Errorf("diagnostics:\n got %q\nwant %q", got, want)
	}
}

func TestNativeFullExample(t *testing.T) {
	set, diags := Load("testdata/native/full.yaml")
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	const f = "testdata/native/full.yaml"
	const shop = "app.kubernetes.io/name:web & ns:shop"
	wantRules := []string{
		f + ":9:9: " + shop + " -> sa:shop/payments ports 8443/TCP,9000-9100/TCP,grpc/TCP,8443/UDP,9000-9100/UDP,grpc/UDP",
		f + ":13:9: " + shop + " -> spiffe://example.org/ns/db/sa/postgres ports 5432/TCP",
		f + ":15:9: " + shop + " -> external:partners ports */TCP",
		f + ":16:9: " + shop + " -> cidr:198.51.100.7/32 ports 53/UDP",
		f + ":20:9: deny " + shop + " -> cidr:10.0.0.0/8 ports 22/TCP",
		f + ":24:9: * -> ns:kube-system ports dns/UDP,dns/TCP",
	}
	if got := ntRules(set); !reflect.DeepEqual(got, wantRules) {
		t.Errorf("rules:\n got %q\nwant %q", got, wantRules)
	}
	wantGrants := []string{
		"egress allow " + shop + " => sa:shop/payments 8443/TCP,9000-9100/TCP,grpc/TCP,8443/UDP,9000-9100/UDP,grpc/UDP #0",
		"ingress allow sa:shop/payments => " + shop + " 8443/TCP,9000-9100/TCP,grpc/TCP,8443/UDP,9000-9100/UDP,grpc/UDP #0",
		"egress allow " + shop + " => spiffe://example.org/ns/db/sa/postgres 5432/TCP #1",
		"ingress allow spiffe://example.org/ns/db/sa/postgres => " + shop + " 5432/TCP #1",
		"egress allow " + shop + " => external:partners=192.0.2.0/24,2001:db8::/32 */TCP #2",
		"ingress allow external:partners=192.0.2.0/24,2001:db8::/32 => " + shop + " */TCP #2",
		"egress allow " + shop + " => cidr:198.51.100.7/32 53/UDP #3",
		"ingress allow cidr:198.51.100.7/32 => " + shop + " 53/UDP #3",
		"egress deny " + shop + " => cidr:10.0.0.0/8 22/TCP #4",
		"ingress deny cidr:10.0.0.0/8 => " + shop + " 22/TCP #4",
		"egress allow * => ns:kube-system dns/UDP,dns/TCP #5",
		"ingress allow ns:kube-system => * dns/UDP,dns/TCP #5",
	}
	if got := ntGrants(set); !reflect.DeepEqual(got, wantGrants) {
		t.Errorf("grants:\n got %q\nwant %q", got, wantGrants)
	}
	// Deny rules do not make their endpoints isolated: 5 allow rules, two
	// isolations each.
	if len(set.Isolations) != 10 {
		t.Errorf("got %d isolations, want 10", len(set.Isolations))
	}
	for _, iso := range set.Isolations {
		if iso.Rule == 4 {
			t.Errorf("deny rule made an isolation: %+v", iso)
		}
	}
	if lint := Lint(set); len(lint) != 0 {
		t.Errorf("lint: %v", lint)
	}
}

// nativeSemanticCases load cleanly (maybe with warnings) and produce the
// listed grants.
var nativeSemanticCases = []struct {
	name   string
	src    string
	grants []string
	diags  []string
}{
	{
		name: "a deny rule denies both directions and isolates nothing",
		src:  ntYAML("policies:", "  - subject: app:a", "    deny:", "      - destination: app:b", "        ports: [22]"),
		grants: []string{
			"egress deny app:a => app:b 22/TCP #0",
			"ingress deny app:b => app:a 22/TCP #0",
		},
	},
	{
		name: "omitted ports mean every port of each protocol",
		src:  ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        protocols: [udp, SCTP]"),
		grants: []string{
			"egress allow app:a => app:b */UDP,*/SCTP #0",
			"ingress allow app:b => app:a */UDP,*/SCTP #0",
		},
	},
	{
		name: "icmp is a protocol without ports",
		src:  ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        protocols: [icmp, udp]"),
		grants: []string{
			"egress allow app:a => app:b ICMP,*/UDP #0",
			"ingress allow app:b => app:a ICMP,*/UDP #0",
		},
	},
	{
		name: "each protocol gets each port, range and named port",
		src: ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b",
			`        ports: [53, "8000-8100", "9000", dns]`, "        protocols: [udp, tcp]"),
		grants: []string{
			"egress allow app:a => app:b 53/UDP,8000-8100/UDP,9000/UDP,dns/UDP,53/TCP,8000-8100/TCP,9000/TCP,dns/TCP #0",
			"ingress allow app:b => app:a 53/UDP,8000-8100/UDP,9000/UDP,dns/UDP,53/TCP,8000-8100/TCP,9000/TCP,dns/TCP #0",
		},
	},
	{
		name:   "a single port and protocol need no list",
		src:    ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        ports: 53", "        protocols: udp"),
		grants: []string{"egress allow app:a => app:b 53/UDP #0", "ingress allow app:b => app:a 53/UDP #0"},
	},
	{
		name:   "a selector list is one selector whose terms all must match",
		src:    ntYAML("policies:", "  - subject: [app:a, env:prod, ns:shop]", "    allow:", "      - destination: [sa:shop/db, app:db]", "        ports: [5432]"),
		grants: []string{"egress allow app:a & env:prod & ns:shop => app:db & sa:shop/db 5432/TCP #0", "ingress allow app:db & sa:shop/db => app:a & env:prod & ns:shop 5432/TCP #0"},
	},
	{
		name: "a bare IP is a host prefix, IPv4-mapped prefixes are IPv4, and host bits are cleared with a warning",
		src: ntYAML("policies:", "  - subject: app:a", "    allow:", `      - destination: "cidr:10.1.2.3"`, `      - destination: "cidr:2001:db8::1"`,
			`      - destination: "cidr:10.1.2.3/16"`, `      - destination: "cidr:::ffff:192.0.2.0/120"`, `      - destination: "cidr:::ffff:192.0.2.1"`),
		grants: []string{
			"egress allow app:a => cidr:10.1.2.3/32 */TCP #0", "ingress allow cidr:10.1.2.3/32 => app:a */TCP #0",
			"egress allow app:a => cidr:2001:db8::1/128 */TCP #1", "ingress allow cidr:2001:db8::1/128 => app:a */TCP #1",
			"egress allow app:a => cidr:10.1.0.0/16 */TCP #2", "ingress allow cidr:10.1.0.0/16 => app:a */TCP #2",
			"egress allow app:a => cidr:192.0.2.0/24 */TCP #3", "ingress allow cidr:192.0.2.0/24 => app:a */TCP #3",
			"egress allow app:a => cidr:192.0.2.1/32 */TCP #4", "ingress allow cidr:192.0.2.1/32 => app:a */TCP #4",
		},
		diags: []string{`p.yaml:6:22: warning: selector "cidr:10.1.2.3/16" has host bits set; it means cidr:10.1.0.0/16`},
	},
	{
		name:   "* selects everything",
		src:    ntYAML("policies:", "  - subject: '*'", "    allow:", "      - destination: app:b"),
		grants: []string{"egress allow * => app:b */TCP #0", "ingress allow app:b => * */TCP #0"},
	},
	{
		name: "* next to other selectors is dropped with a warning",
		src:  ntYAML("policies:", "  - subject: ['*', app:a]", "    allow:", "      - destination: ['*', '*']"),
		grants: []string{
			"egress allow app:a => * */TCP #0",
			"ingress allow * => app:a */TCP #0",
		},
		diags: []string{
			`p.yaml:2:15: warning: "*" in a selector list is redundant: the list's selectors must all match, and "*" matches everything`,
			`p.yaml:4:23: warning: "*" in a selector list is redundant: the list's selectors must all match, and "*" matches everything`,
		},
	},
	{
		name: "a network may be defined in a later document, with a header",
		src: ntYAML("apiVersion: ztcn.io/v1alpha1", "kind: Policy", "policies:", "  - subject: app:a", "    allow:",
			"      - destination: external:corp", "---", "kind: Policy", "networks:", "  corp: [192.0.2.1, 198.51.100.0/24]"),
		grants: []string{
			"egress allow app:a => external:corp=192.0.2.1/32,198.51.100.0/24 */TCP #0",
			"ingress allow external:corp=192.0.2.1/32,198.51.100.0/24 => app:a */TCP #0",
		},
	},
	{
		name: "name and description are documentation only",
		src: ntYAML("policies:", "  - name: a", "    description: talks to b", "    subject: app:a", "    allow:",
			"      - destination: app:b", "        description: why"),
		grants: []string{"egress allow app:a => app:b */TCP #0", "ingress allow app:b => app:a */TCP #0"},
	},
	{
		name: "a selector that can never match is a warning",
		src:  ntYAML("policies:", "  - subject: [ns:a, ns:b]", "    allow:", "      - destination: [external:m, app:x]", "networks:", "  m: [192.0.2.0/24]"),
		grants: []string{
			"egress allow ns:a & ns:b => app:x & external:m=192.0.2.0/24 */TCP #0",
			"ingress allow app:x & external:m=192.0.2.0/24 => ns:a & ns:b */TCP #0",
		},
		diags: []string{
			"p.yaml:2:14: warning: subject never matches anything: ns:a and ns:b cannot both hold",
			"p.yaml:4:22: warning: destination never matches anything: external:m selects addresses outside the cluster, app:x selects workloads",
		},
	},
	{
		name: "a label key that looks like a misspelt external is a warning",
		src:  ntYAML("policies:", "  - subject: internal:yes", "    allow:", "      - destination: extrenal:metrics", "      - destination: exernal:metrics"),
		grants: []string{
			"egress allow internal:yes => extrenal:metrics */TCP #0", "ingress allow extrenal:metrics => internal:yes */TCP #0",
			"egress allow internal:yes => exernal:metrics */TCP #1", "ingress allow exernal:metrics => internal:yes */TCP #1",
		},
		diags: []string{
			`p.yaml:4:22: warning: selector "extrenal:metrics" is a label selector; if you meant a network, write external:metrics`,
			`p.yaml:5:22: warning: selector "exernal:metrics" is a label selector; if you meant a network, write external:metrics`,
		},
	},
	{
		name:  "a policy without rules does nothing, with a warning",
		src:   ntYAML("policies:", "  - subject: app:a", "    allow: []"),
		diags: []string{"p.yaml:2:5: warning: policy has no allow or deny rules; it does nothing"},
	},
	{
		name:  "a duplicate protocol is a warning",
		src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        protocols: [tcp, TCP]"),
		diags: []string{"p.yaml:5:26: warning: protocol tcp is listed twice"},
		grants: []string{
			"egress allow app:a => app:b */TCP #0",
			"ingress allow app:b => app:a */TCP #0",
		},
	},
}

func TestNativeSemantics(t *testing.T) {
	for _, tc := range nativeSemanticCases {
		t.Run(tc.name, func(t *testing.T) {
			set, diags := LoadBytes("p.yaml", []byte(tc.src))
			if got := ntDiags(diags); !reflect.DeepEqual(got, tc.diags) {
				t.Errorf("diagnostics:\n got %q\nwant %q", got, tc.diags)
			}
			if got := ntGrants(set); !reflect.DeepEqual(got, tc.grants) {
				t.Errorf("grants:\n got %q\nwant %q", got, tc.grants)
			}
		})
	}
}

func TestNativeSelectorListMatchesOnlyEndpointsWithEveryTerm(t *testing.T) {
	set, diags := LoadBytes("p.yaml", []byte(ntYAML("policies:", "  - subject: [app:a, env:prod]", "    allow:", "      - destination: ns:db")))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	subject := set.Grants[0].Subject
	for _, tc := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"app": "a", "env": "prod"}, true},
		{map[string]string{"app": "a", "env": "prod", "tier": "web"}, true},
		{map[string]string{"app": "a"}, false},
		{map[string]string{"env": "prod"}, false},
		{map[string]string{"app": "a", "env": "dev"}, false},
	} {
		ep := &Endpoint{Workload: true, Namespace: "x", Name: "p", Labels: tc.labels}
		if got := subject.Matches(ep); got != tc.want {
			t.Errorf("subject %s matches %v = %v, want %v", subject, tc.labels, got, tc.want)
		}
	}
}

// nativeErrorCases each yield exactly the listed diagnostics, and the rule
// count says what survives: a policy with any error adds nothing.
var nativeErrorCases = []struct {
	name  string
	src   string
	diags []string // "line:col: severity: message fragment"
	rules int
}{
	{
		name:  "unknown key in the document",
		src:   ntYAML("polices:", "  - subject: app:a"),
		diags: []string{`1:1: error: unknown key "polices" in document (want policies, networks, mode, apiVersion, kind)`},
	},
	{
		name: "unknown key in a policy",
		src:  ntYAML("policies:", "  - subjet: app:a", "    allow:", "      - destination: app:b"),
		diags: []string{
			`2:5: error: unknown key "subjet" in policy (want subject, allow, deny, mode, name, description)`,
			`2:5: error: policy has no subject (want a selector such as "app:web")`,
		},
	},
	{
		name: "unknown key in a rule",
		src:  ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destinaton: app:b"),
		diags: []string{
			`4:9: error: unknown key "destinaton" in rule (want destination, ports, protocols, mode, description)`,
			`4:9: error: rule has no destination (want a selector such as "app:backend")`,
		},
	},
	{
		name:  "a repeated key is not silently ignored",
		src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        destination: app:c"),
		diags: []string{`5:9: error: duplicate key "destination" in rule (first at p.yaml:4:9)`},
	},
	{
		name:  "a document of another kind is refused once",
		src:   ntYAML("apiVersion: apps/v1", "kind: Deployment", "spec: {}"),
		diags: []string{`2:7: error: unsupported kind "Deployment" (want Policy, or NetworkPolicy for a Kubernetes network policy)`},
	},
	{
		name:  "an unknown apiVersion is refused",
		src:   ntYAML("apiVersion: ztcn.io/v2", "policies: []"),
		diags: []string{`1:13: error: unsupported apiVersion "ztcn.io/v2" (want ztcn.io/v1alpha1)`},
	},
	{
		name:  "policies must be a list",
		src:   ntYAML("policies: {subject: app:a}"),
		diags: []string{`1:11: error: policies is a mapping (want a list of policies)`},
	},
	{
		name:  "a policy must be a mapping",
		src:   ntYAML("policies:", "  - app:a"),
		diags: []string{`2:5: error: policy is a string (want a mapping with subject and allow or deny)`},
	},
	{
		name:  "a rule must be a mapping",
		src:   ntYAML("policies:", "  - subject: app:a", "    allow: [app:b]"),
		diags: []string{`3:13: error: allow rule is a string (want a mapping with destination and optional ports and protocols)`},
	},
	{
		name:  "allow must be a list",
		src:   ntYAML("policies:", "  - subject: app:a", "    allow: {destination: app:b}"),
		diags: []string{`3:12: error: allow is a mapping (want a list of rules)`},
	},
	{
		name:  "empty subject",
		src:   ntYAML("policies:", `  - subject: ""`, "    allow:", "      - destination: app:b"),
		diags: []string{`2:14: error: subject is empty (want key:value, ns:<namespace>, sa:<namespace>/<name>, spiffe://<trust-domain>/<path>, external:<network>, cidr:<prefix> or *)`},
	},
	{
		name:  "subject with no value",
		src:   ntYAML("policies:", "  - subject:", "    allow:", "      - destination: app:b"),
		diags: []string{`2:13: error: subject is empty (want a selector string: key:value`},
	},
	{
		name:  "empty subject list",
		src:   ntYAML("policies:", "  - subject: []", "    allow:", "      - destination: app:b"),
		diags: []string{`2:14: error: subject lists no selector (want key:value`},
	},
	{
		name:  "subject that is a mapping",
		src:   ntYAML("policies:", "  - subject: {app: a}", "    allow:", "      - destination: app:b"),
		diags: []string{`2:14: error: subject is a mapping (want a selector string or a list of them, which all must match)`},
	},
	{
		name:  "subject that is a number",
		src:   ntYAML("policies:", "  - subject: 42", "    allow:", "      - destination: app:b"),
		diags: []string{`2:14: error: subject is an integer (want a selector string: key:value`},
	},
	{
		name:  "a YAML alias is refused",
		src:   ntYAML("policies:", "  - subject: &s app:a", "    allow:", "      - destination: *s"),
		diags: []string{`4:22: error: YAML alias *s is not supported in a policy; write the value out`},
	},
	{
		name: "a broken deny rule drops its whole policy, good allow rules included",
		src: ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "    deny:",
			"      - destination: app:c", "        ports: [0]", "  - subject: app:x", "    allow:", "      - destination: app:y"),
		diags: []string{`7:17: error: port 0 outside 1–65535`},
		rules: 1,
	},
	{
		name: "a network with errors drops the rules using it without a second error",
		src: ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: external:corp",
			"networks:", "  corp: [10.0.0.0/33]"),
		diags: []string{`6:10: error: invalid prefix "10.0.0.0/33" in network "corp"`},
	},
	{
		name:  "networks must be a mapping",
		src:   ntYAML("networks: [10.0.0.0/8]"),
		diags: []string{`1:11: error: networks is a list (want a mapping of network name to a list of address prefixes)`},
	},
	{
		name:  "a network must list prefixes",
		src:   ntYAML("networks:", "  corp: []"),
		diags: []string{`2:9: error: network "corp" lists no prefixes (want at least one address prefix, such as 203.0.113.0/24)`},
	},
	{
		name:  "a network prefix with host bits is a warning",
		src:   ntYAML("networks:", "  corp: [10.0.0.1/8]"),
		diags: []string{`2:10: warning: prefix 10.0.0.1/8 in network "corp" has host bits set; it means 10.0.0.0/8`},
	},
	{
		name:  "a network name must be simple",
		src:   ntYAML("networks:", `  "corp net": [10.0.0.0/8]`),
		diags: []string{`2:3: error: invalid network name "corp net" (want letters, digits, '-', '_' and '.')`},
	},
	{
		name:  "a network defined twice in one file",
		src:   ntYAML("networks:", "  corp: [10.0.0.0/8]", "---", "networks:", "  corp: [10.0.0.0/8]"),
		diags: []string{`5:3: error: network "corp" is already defined at p.yaml:2:3`},
	},
	{
		name:  "a network defined twice in one mapping",
		src:   ntYAML("networks:", "  corp: [10.0.0.0/8]", "  corp: [192.0.2.0/24]"),
		diags: []string{`3:3: error: network "corp" is already defined at p.yaml:2:3`},
	},
	{
		name:  "an unknown network names the defined ones",
		src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: external:metric", "networks:", "  metrics: [10.0.0.0/8]", "  corp: [10.0.0.0/8]"),
		diags: []string{`4:22: error: unknown network "metric" in selector "external:metric" (defined networks: corp, metrics)`},
	},
	{
		name:  "an unknown network when none is defined",
		src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: external:metrics"),
		diags: []string{`4:22: error: unknown network "metrics" in selector "external:metrics" (no networks are defined; define it under networks:)`},
	},
	{
		name: "ports: [] is an error, not all ports",
		src:  ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        ports: []"),
		diags: []string{
			`5:16: error: ports lists no port (omit ports to mean all ports)`,
		},
	},
	{
		name:  "ports: with no value is an error, not all ports",
		src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        ports:"),
		diags: []string{`5:15: error: ports lists no port (omit ports to mean all ports)`},
	},
	{
		name:  "protocols: [] is an error",
		src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        protocols: []"),
		diags: []string{`5:20: error: protocols lists no protocol (want tcp, udp, sctp or icmp; omit protocols to mean tcp)`},
	},
	{
		name:  "an unknown protocol",
		src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        protocols: [tcp, gre]"),
		diags: []string{`5:26: error: unknown protocol "gre" (want tcp, udp, sctp or icmp)`},
	},
	{
		name:  "icmp with ports",
		src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        protocols: [udp, icmp]", "        ports: [53]"),
		diags: []string{`6:16: error: icmp has no ports: write it in a rule of its own, without ports`},
	},
	{
		name:  "a protocol that is not a string",
		src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        protocols: [6]"),
		diags: []string{`5:21: error: protocol is an integer (want a string)`},
	},
	{
		name:  "name must be a string",
		src:   ntYAML("policies:", "  - name: [a]", "    subject: app:a", "    allow:", "      - destination: app:b"),
		diags: []string{`2:11: error: name is a list (want a string)`},
	},
}

// Bad selectors and ports, each as the destination or port of one rule.
func init() {
	for _, tc := range []struct{ dest, diag string }{
		{`"app"`, `error: unknown selector "app" (want key:value, ns:<namespace>, sa:<namespace>/<name>, spiffe://<trust-domain>/<path>, external:<network>, cidr:<prefix> or *)`},
		{`"app:"`, `error: label selector "app:" has an empty value (want key:value)`},
		{`"bad key:x"`, `error: invalid label key "bad key" in selector "bad key:x": a label key must be letters, digits`},
		{`"Example.com/app:x"`, `error: invalid label key "Example.com/app" in selector "Example.com/app:x": a label key prefix (before '/') must be lowercase`},
		{`"app:bad value"`, `error: invalid label value "bad value" in selector "app:bad value": a label value must be letters, digits`},
		{`"app:` + strings.Repeat("x", 64) + `"`, `error: invalid label value "` + strings.Repeat("x", 64) + `" in selector "app:` + strings.Repeat("x", 64) + `": a label value must be at most 63 characters`},
		{`"ns:Bad_NS"`, `error: invalid namespace "Bad_NS" in selector "ns:Bad_NS": a namespace must be lowercase letters`},
		{`"sa:default"`, `error: invalid service account selector "sa:default" (want sa:<namespace>/<name>)`},
		{`"sa:default/Bad_Name"`, `error: invalid service account name "Bad_Name" in selector "sa:default/Bad_Name"`},
		{`"sa:Bad/name"`, `error: invalid namespace "Bad" in selector "sa:Bad/name"`},
		{`"spiffe://Example.org/x"`, `error: invalid SPIFFE ID "spiffe://Example.org/x": trust domain characters are limited to lowercase letters`},
		{`"spiffe://"`, `error: invalid SPIFFE ID "spiffe://": `},
		{`"10.0.0.0/8"`, `error: selector "10.0.0.0/8" is an address; write cidr:10.0.0.0/8`},
		{`"2001:db8::1"`, `error: selector "2001:db8::1" is an address; write cidr:2001:db8::1/128`},
		{`"cidr:10.0.0.0/33"`, `error: invalid CIDR "10.0.0.0/33" in selector "cidr:10.0.0.0/33": `},
		{`"cidr:example.com"`, `error: invalid CIDR "example.com" in selector "cidr:example.com": `},
		{`"cidr:fe80::1%eth0"`, `error: invalid CIDR "fe80::1%eth0" in selector "cidr:fe80::1%eth0": address "fe80::1%eth0" has a zone`},
		{`"*:x"`, `error: invalid label key "*" in selector "*:x"`},
	} {
		nativeErrorCases = append(nativeErrorCases, struct {
			name  string
			src   string
			diags []string
			rules int
		}{
			name:  "bad selector " + tc.dest,
			src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: "+tc.dest),
			diags: []string{"4:22: " + tc.diag},
		})
	}
	for _, tc := range []struct{ port, diag string }{
		{`0`, `error: port 0 outside 1–65535`},
		{`70000`, `error: port 70000 outside 1–65535`},
		{`-1`, `error: port -1 outside 1–65535`},
		{`"0"`, `error: port 0 outside 1–65535`},
		{`"90-80"`, `error: port range "90-80" is reversed (want lo-hi with lo ≤ hi)`},
		{`"80-70000"`, `error: port 70000 outside 1–65535 in range "80-70000"`},
		{`"0-80"`, `error: port 0 outside 1–65535 in range "0-80"`},
		{`"Bad_Name"`, `error: invalid port "Bad_Name": a port name must be lowercase letters, digits and '-' (want a number 1–65535, a range "lo-hi" or a port name)`},
		{`"much-too-long-name"`, `error: invalid port "much-too-long-name": a port name must be at most 15 characters`},
		{`"web--x"`, `error: invalid port "web--x": a port name must not contain "--"`},
		{`"-web"`, `error: invalid port "-web": a port name must not start or end with '-'`},
		{`"80-"`, `error: invalid port "80-": a port name must contain a letter`},
		{`1.5`, `error: port 1.5 is a float (want a number 1–65535, a range "lo-hi" or a port name)`},
		{`true`, `error: port true is a boolean (want a number 1–65535, a range "lo-hi" or a port name)`},
		{`null`, `error: port null is empty (want`},
		{`[80]`, `error: port is a list (want a number 1–65535, a range "lo-hi" or a port name)`},
	} {
		nativeErrorCases = append(nativeErrorCases, struct {
			name  string
			src   string
			diags []string
			rules int
		}{
			name:  "bad port " + tc.port,
			src:   ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: app:b", "        ports: ["+tc.port+"]"),
			diags: []string{"5:17: " + tc.diag},
		})
	}
}

func TestNativeErrors(t *testing.T) {
	for _, tc := range nativeErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			set, diags := LoadBytes("p.yaml", []byte(tc.src))
			ntCheckDiags(t, diags, "p.yaml", tc.diags)
			if len(set.Rules) != tc.rules {
				t.Errorf("got rules %q, want %d", ntRules(set), tc.rules)
			}
		})
	}
}

// ntCheckDiags checks that diags are exactly want, in order, each given
// as "line:col: severity: message prefix" within file.
func ntCheckDiags(t *testing.T, diags Diagnostics, file string, want []string) {
	t.Helper()
	ok := len(diags) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasPrefix(diags[i].String(), file+":"+want[i])
	}
	if !ok {
		t.Errorf("diagnostics:\n got %q\nwant %q", ntDiags(diags), want)
	}
}

func TestNativeNetworksAcrossFiles(t *testing.T) {
	set, diags := Load("testdata/native/split")
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	want := []string{
		"egress allow app:frontend => external:metrics=203.0.113.0/24 9100/TCP #0",
		"ingress allow external:metrics=203.0.113.0/24 => app:frontend 9100/TCP #0",
	}
	if got := ntGrants(set); !reflect.DeepEqual(got, want) {
		t.Errorf("grants:\n got %q\nwant %q", got, want)
	}
}

func TestNativeNetworkDefinedTwiceAcrossFiles(t *testing.T) {
	paths := ntWrite(t,
		"a.yaml", ntYAML("networks:", "  metrics: [203.0.113.0/24]"),
		"b.yaml", ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: external:metrics", "networks:", "  corp: [10.0.0.0/8]", "  metrics: [198.51.100.0/24]"),
	)
	set, diags := Load(paths...)
	want := []string{fmt.Sprintf("%s:7:3: error: network \"metrics\" is already defined at %s:2:3", paths[1], paths[0])}
	if got := ntDiags(diags); !reflect.DeepEqual(got, want) {
		t.Errorf("diagnostics:\n got %q\nwant %q", got, want)
	}
	// The first definition stands.
	if got := set.Networks["metrics"].Prefixes; len(got) != 1 || got[0] != netip.MustParsePrefix("203.0.113.0/24") {
		t.Errorf("metrics = %v, want the first definition", got)
	}
}

func TestNativeUnknownNetworkAcrossFiles(t *testing.T) {
	paths := ntWrite(t,
		"a.yaml", ntYAML("networks:", "  metrics: [203.0.113.0/24]"),
		"b.yaml", ntYAML("policies:", "  - subject: app:a", "    allow:", "      - destination: external:metricz"),
	)
	set, diags := Load(filepath.Dir(paths[0]))
	ntCheckDiags(t, diags, paths[1], []string{`4:22: error: unknown network "metricz" in selector "external:metricz" (defined networks: metrics)`})
	if len(set.Rules) != 0 {
		t.Errorf("rules %q, want none", ntRules(set))
	}
}

func TestPolicyFilesMustBeUTF8(t *testing.T) {
	for name, data := range map[string][]byte{
		"UTF-16 with BOM": append([]byte{0xff, 0xfe}, []byte("p\x00o\x00l\x00")...),
		"binary":          {0x00, 0xff, 0x80, 0x81},
	} {
		_, diags := LoadBytes("p.yaml", data)
		if got := ntDiags(diags); len(got) != 1 || !strings.Contains(got[0], "1:1: error: the file is not UTF-8") {
			t.Errorf("%s: diagnostics %q", name, got)
		}
	}
	if _, diags := LoadBytes("p.yaml", []byte("\xef\xbb\xbfpolicies: []\n")); diags.HasErrors() {
		t.Errorf("a UTF-8 BOM is refused: %v", diags)
	}
}
