package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// loadKube parses one file and fails the test on any error.
func loadKube(t *testing.T, src string) *Set {
	t.Helper()
	set, diags := LoadBytes("np.yaml", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%v", diags)
	}
	return set
}

// kubeGrantLines renders grants as "ingress <subject> <- <peer> [ports]" (or
// "egress … ->"), the form the tests below read as the specification.
func kubeGrantLines(set *Set) []string {
	out := make([]string, len(set.Grants))
	for i, g := range set.Grants {
		arrow := "<-"
		if g.Direction == Egress {
			arrow = "->"
		}
		out[i] = fmt.Sprintf("%s %s %s %s %s", g.Direction, g.Subject.Key(), arrow, g.Peer.Key(), kubeDescribePorts(g.Ports))
	}
	return out
}

func kubeIsolationLines(set *Set) []string {
	out := make([]string, len(set.Isolations))
	for i, iso := range set.Isolations {
		out[i] = fmt.Sprintf("%s %s", iso.Direction, iso.Subject.Key())
	}
	return out
}

func kubeEqualLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

const kubeHeader = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: p
  namespace: x
`

func TestKubePolicyTypesDefaulting(t *testing.T) {
	const subject = "ns:x & pod:a & workload"
	for _, tc := range []struct {
		name, spec string
		isolations []string
		grants     []string
	}{{
		name: "no policyTypes and no rules isolate ingress only",
		spec: `
  podSelector: {matchLabels: {pod: a}}`,
		isolations: []string{"ingress " + subject},
	}, {
		name: "no policyTypes with egress rules isolate both directions",
		spec: `
  podSelector: {matchLabels: {pod: a}}
  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/24}}]}]`,
		isolations: []string{"ingress " + subject, "egress " + subject},
		grants:     []string{"egress " + subject + " -> cidr:10.0.0.0/24 all ports"},
	}, {
		name: "no policyTypes and an empty egress list isolate ingress only",
		spec: `
  podSelector: {matchLabels: {pod: a}}
  egress: []`,
		isolations: []string{"ingress " + subject},
	}, {
		name: "an empty policyTypes list is defaulted like an absent one",
		spec: `
  podSelector: {matchLabels: {pod: a}}
  policyTypes: []
  ingress: [{}]`,
		isolations: []string{"ingress " + subject},
		grants:     []string{"ingress " + subject + " <- * all ports"},
	}, {
		name: "explicit Egress ignores the ingress section",
		spec: `
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  ingress: [{from: [{podSelector: {}}]}]
  egress: [{}]`,
		isolations: []string{"egress " + subject},
		grants:     []string{"egress " + subject + " -> * all ports"},
	}, {
		name: "explicit Ingress ignores the egress section",
		spec: `
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  egress: [{}]`,
		isolations: []string{"ingress " + subject},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			set := loadKube(t, kubeHeader+"spec:"+tc.spec+"\n")
			kubeEqualLines(t, "isolations", kubeIsolationLines(set), tc.isolations)
			kubeEqualLines(t, "grants", kubeGrantLines(set), tc.grants)
		})
	}
}

func TestKubePeers(t *testing.T) {
	const subject = "ns:x & workload"
	for _, tc := range []struct {
		name, rule string
		grants     []string
	}{{
		name:   "an absent from matches every endpoint",
		rule:   `{ports: [{port: 80}]}`,
		grants: []string{"ingress " + subject + " <- * ports 80/TCP"},
	}, {
		name:   "an empty from matches every endpoint",
		rule:   `{from: []}`,
		grants: []string{"ingress " + subject + " <- * all ports"},
	}, {
		name: "peers are OR'ed: one grant each, same ports",
		rule: `{from: [{podSelector: {matchLabels: {pod: b}}}, {namespaceSelector: {matchLabels: {team: blue}}}, {ipBlock: {cidr: 192.0.2.0/24}}], ports: [{port: 80}, {port: 53, protocol: UDP}]}`,
		grants: []string{
			"ingress " + subject + " <- ns:x & pod:b & workload ports 80/TCP, 53/UDP",
			"ingress " + subject + " <- nslabel team:blue & workload ports 80/TCP, 53/UDP",
			"ingress " + subject + " <- cidr:192.0.2.0/24 ports 80/TCP, 53/UDP",
		},
	}, {
		name:   "podSelector alone selects pods of the policy's namespace",
		rule:   `{from: [{podSelector: {}}]}`,
		grants: []string{"ingress " + subject + " <- ns:x & workload all ports"},
	}, {
		name:   "namespaceSelector {} selects every pod of every namespace",
		rule:   `{from: [{namespaceSelector: {}}]}`,
		grants: []string{"ingress " + subject + " <- workload all ports"},
	}, {
		name:   "namespaceSelector and podSelector in one peer are AND'ed",
		rule:   `{from: [{namespaceSelector: {matchLabels: {team: blue}}, podSelector: {matchLabels: {pod: b}, matchExpressions: [{key: tier, operator: In, values: [web, api]}]}}]}`,
		grants: []string{"ingress " + subject + " <- nslabel team:blue & pod:b & tier in (api,web) & workload all ports"},
	}, {
		name:   "every selector operator",
		rule:   `{from: [{namespaceSelector: {matchExpressions: [{key: a, operator: NotIn, values: [x]}, {key: b, operator: Exists}, {key: c, operator: DoesNotExist}]}}]}`,
		grants: []string{"ingress " + subject + " <- nslabel !c & nslabel a notin (x) & nslabel b & workload all ports"},
	}, {
		name:   "the namespace name label is the namespace",
		rule:   `{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}}, {namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: ["z"]}]}}]}`,
		grants: []string{"ingress " + subject + " <- ns:y & workload all ports", "ingress " + subject + " <- ns:z & workload all ports"},
	}, {
		name:   "the namespace name label with several values stays a label test",
		rule:   `{from: [{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: ["y", "z"]}]}}]}`,
		grants: []string{"ingress " + subject + " <- nslabel kubernetes.io/metadata.name in (y,z) & workload all ports"},
	}, {
		name:   "ipBlock with except",
		rule:   `{from: [{ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24, 172.17.2.0/24]}}]}`,
		grants: []string{"ingress " + subject + " <- cidr:172.17.0.0/16 except 172.17.1.0/24,172.17.2.0/24 all ports"},
	}, {
		name:   "IPv6 ipBlock",
		rule:   `{from: [{ipBlock: {cidr: "2001:db8::/32", except: ["2001:db8:1::/48"]}}]}`,
		grants: []string{"ingress " + subject + " <- cidr:2001:db8::/32 except 2001:db8:1::/48 all ports"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			set := loadKube(t, kubeHeader+"spec:\n  podSelector: {}\n  ingress:\n  - "+tc.rule+"\n")
			kubeEqualLines(t, "grants", kubeGrantLines(set), tc.grants)
		})
	}
}

func TestKubePorts(t *testing.T) {
	for _, tc := range []struct {
		name, ports string
		want        []PortRange
	}{
		{"absent ports are every port of every protocol", ``, nil},
		{"an empty ports list is every port of every protocol", `ports: []`, nil},
		{"a protocol alone is all of its ports", `ports: [{protocol: UDP}]`, []PortRange{{Protocol: UDP, Lo: 0, Hi: 65535}}},
		{"protocol defaults to TCP", `ports: [{port: 80}]`, []PortRange{{Protocol: TCP, Lo: 80, Hi: 80}}},
		{"endPort makes an inclusive range", `ports: [{port: 32000, endPort: 32768}]`, []PortRange{{Protocol: TCP, Lo: 32000, Hi: 32768}}},
		{"endPort equal to port", `ports: [{port: 80, endPort: 80, protocol: SCTP}]`, []PortRange{{Protocol: SCTP, Lo: 80, Hi: 80}}},
		{"a named port is resolved later", `ports: [{port: http, protocol: UDP}]`, []PortRange{{Protocol: UDP, Name: "http"}}},
		{"several entries", `ports: [{port: 1}, {port: 65535, protocol: UDP}]`, []PortRange{{Protocol: TCP, Lo: 1, Hi: 1}, {Protocol: UDP, Lo: 65535, Hi: 65535}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := loadKube(t, kubeHeader+"spec:\n  egress:\n  - {"+tc.ports+"}\n")
			if len(set.Grants) != 1 {
				t.Fatalf("got %d grants, want 1", len(set.Grants))
			}
			if got := set.Grants[0].Ports; !slices.Equal(got, tc.want) {
				t.Errorf("ports = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestKubeRules(t *testing.T) {
	src := kubeHeader + `spec:
  podSelector:
    matchLabels:
      pod: a
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: b}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - port: 80
  egress:
  - to:
    - namespaceSelector: {}
  policyTypes: [Ingress, Egress]
`
	set := loadKube(t, src)
	var got []string
	for _, r := range set.Rules {
		got = append(got, fmt.Sprintf("%s | %s | %s", r.Pos, r.Origin, r.Text))
	}
	kubeEqualLines(t, "rules", got, []string{
		"np.yaml:19:17 | NetworkPolicy x/p | x/p: pods {pod=a} in x are isolated for ingress",
		"np.yaml:11:5 | NetworkPolicy x/p | x/p ingress[0]: pods {pod=a} in x from pods {pod=b} in x or 10.0.0.0/8 except 10.1.0.0/16, ports 80/TCP",
		"np.yaml:19:26 | NetworkPolicy x/p | x/p: pods {pod=a} in x are isolated for egress",
		"np.yaml:17:5 | NetworkPolicy x/p | x/p egress[0]: pods {pod=a} in x to all pods in all namespaces, all ports",
	})
	for _, g := range set.Grants {
		if g.Action != Allow {
			t.Errorf("grant %v is not an allow: NetworkPolicy never denies", g)
		}
		if r := set.Rules[g.Rule]; !strings.Contains(r.Text, g.Direction.String()+"[") {
			t.Errorf("%s grant points at rule %q", g.Direction, r.Text)
		}
	}
	if n := len(set.Grants); n != 3 {
		t.Errorf("got %d grants, want 3", n)
	}
	want := Term{Kind: TermCIDR, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Except: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	if got := set.Grants[1].Peer.Terms; len(got) != 1 || got[0].key() != want.key() {
		t.Errorf("ipBlock peer = %v, want %v", got, want)
	}
}

func TestKubeDefaultedIsolationPointsAtPodSelector(t *testing.T) {
	set := loadKube(t, kubeHeader+"spec:\n  podSelector: {}\n")
	if got := set.Rules[set.Isolations[0].Rule].Pos.String(); got != "np.yaml:7:3" {
		t.Errorf("isolation rule at %s, want np.yaml:7:3", got)
	}
}

func TestKubeMultipleDocuments(t *testing.T) {
	src := kubeHeader + "spec: {}\n---\n" + strings.Replace(kubeHeader, "name: p", "name: q", 1) + "spec: {policyTypes: [Egress]}\n"
	set := loadKube(t, src)
	kubeEqualLines(t, "isolations", kubeIsolationLines(set), []string{"ingress ns:x & workload", "egress ns:x & workload"})
	if o := set.Rules[1].Origin; o != "NetworkPolicy x/q" {
		t.Errorf("second policy's origin = %q", o)
	}
}

func TestKubeWarnings(t *testing.T) {
	set, diags := LoadBytes("np.yaml", []byte(kubeHeader+"spec:\n  ingress:\n  - from:\n    - ipBlock: {cidr: 192.168.242.213/24}\n"))
	if diags.HasErrors() || len(diags) != 1 {
		t.Fatalf("want one warning, got %v", diags)
	}
	if got, want := diags[0].String(), "np.yaml:9:17: warning: spec.ingress[0].from[0].ipBlock.cidr: Invalid value: \"192.168.242.213/24\": has bits set beyond the prefix length; it means 192.168.242.0/24"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := set.Grants[0].Peer.Key(); got != "cidr:192.168.242.0/24" {
		t.Errorf("peer = %s", got)
	}
}

func TestKubeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      string // "line:col: message substring"
	}{
		{"wrong apiVersion", "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n",
			`1:1: apiVersion: Unsupported value: "extensions/v1beta1": supported values: "networking.k8s.io/v1"`},
		{"missing apiVersion", "kind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n",
			`1:1: apiVersion: Unsupported value: ""`},
		{"missing namespace", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n",
			"3:1: metadata.namespace: Required value: a policy file must say which namespace the policy applies to"},
		{"missing name", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n",
			"3:1: metadata.name: Required value"},
		{"missing metadata", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n",
			"1:1: metadata.name: Required value"},
		{"bad namespace name", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: X_y}\n",
			`3:21: metadata.namespace: Invalid value: "X_y": a lowercase RFC 1123 label`},
		{"bad policy name", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: -p, namespace: x}\n",
			`3:12: metadata.name: Invalid value: "-p"`},
		{"unknown field", kubeHeader + "spec:\n  ingress:\n  - form: []\n",
			`8:5: spec.ingress[0].form: unknown field (known: from, ports)`},
		{"field names are case-sensitive", kubeHeader + "spec:\n  PodSelector: {}\n",
			`7:3: spec.PodSelector: unknown field (did you mean "podSelector"? field names are case-sensitive)`},
		{"unknown top-level field", kubeHeader + "status: {}\n",
			`6:1: status: unknown field`},
		{"duplicate key", kubeHeader + "spec:\n  podSelector: {}\n  podSelector: {}\n",
			`8:3: spec: duplicate key "podSelector" (first at line 7)`},
		{"wrong type", kubeHeader + "spec:\n  ingress: {}\n",
			`7:12: spec.ingress: expected a list, got a mapping`},
		{"label value a YAML 1.1 boolean", kubeHeader + "spec:\n  podSelector: {matchLabels: {app: yes}}\n",
			`7:36: spec.podSelector.matchLabels[app]: yes is a boolean to kubectl (YAML 1.1) but a string here; quote it`},
		{"label value a float", kubeHeader + "spec:\n  podSelector: {matchLabels: {version: 1.10}}\n",
			`7:40: spec.podSelector.matchLabels[version]: the number 1.10 is read differently by YAML versions`},
		{"port in hexadecimal", kubeHeader + "spec:\n  ingress: [{ports: [{endPort: 0x50, port: 1}]}]\n",
			`7:32: spec.ingress[0].ports[0].endPort: expected an integer in decimal, got the number 0x50`},
		{"endPort out of int32", kubeHeader + "spec:\n  ingress: [{ports: [{port: 1, endPort: 4294967296}]}]\n",
			`7:41: spec.ingress[0].ports[0].endPort: the number 4294967296 is not a valid int32`},
		{"port a float", kubeHeader + "spec:\n  ingress: [{ports: [{port: 80.5}]}]\n",
			`7:29: spec.ingress[0].ports[0].port: the number 80.5 is not a valid intstr.IntOrString`},
		{"port zero", kubeHeader + "spec:\n  ingress: [{ports: [{port: 0}]}]\n",
			`7:23: spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`},
		{"port too large", kubeHeader + "spec:\n  ingress:\n  - ports:\n    - port: 65536\n",
			`9:7: spec.ingress[0].ports[0].port: Invalid value: 65536: must be between 1 and 65535, inclusive`},
		{"port a number in quotes", kubeHeader + "spec:\n  ingress:\n  - ports:\n    - port: \"80\"\n",
			`9:7: spec.ingress[0].ports[0].port: Invalid value: "80": must contain at least one letter`},
		{"bad port name", kubeHeader + "spec:\n  ingress:\n  - ports:\n    - port: Http\n",
			`9:7: spec.ingress[0].ports[0].port: Invalid value: "Http": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)`},
		{"endPort below port", kubeHeader + "spec:\n  egress:\n  - ports:\n    - port: 80\n      endPort: 79\n",
			"10:7: spec.egress[0].ports[0].endPort: Invalid value: 79: must be greater than or equal to `port`"},
		{"endPort with a named port", kubeHeader + "spec:\n  egress:\n  - ports:\n    - port: http\n      endPort: 90\n",
			"10:7: spec.egress[0].ports[0].endPort: Invalid value: 90: may not be specified when `port` is non-numeric"},
		{"endPort without port", kubeHeader + "spec:\n  egress:\n  - ports:\n    - endPort: 90\n",
			"9:7: spec.egress[0].ports[0].endPort: Invalid value: 90: may not be specified when `port` is not specified"},
		{"endPort too large", kubeHeader + "spec:\n  egress:\n  - ports:\n    - {port: 80, endPort: 70000}\n",
			"9:18: spec.egress[0].ports[0].endPort: Invalid value: 70000: must be between 1 and 65535, inclusive"},
		{"protocol in lower case", kubeHeader + "spec:\n  egress:\n  - ports:\n    - protocol: tcp\n",
			`9:7: spec.egress[0].ports[0].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"`},
		{"unknown protocol", kubeHeader + "spec:\n  egress:\n  - ports:\n    - {protocol: ICMP, port: 1}\n",
			`9:8: spec.egress[0].ports[0].protocol: Unsupported value: "ICMP"`},
		{"empty peer", kubeHeader + "spec:\n  ingress:\n  - from:\n    - {}\n",
			"9:7: spec.ingress[0].from[0]: Required value: must specify a peer"},
		{"ipBlock with a selector", kubeHeader + "spec:\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8}\n      podSelector: {}\n",
			"9:7: spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer"},
		{"ipBlock without cidr", kubeHeader + "spec:\n  ingress:\n  - from:\n    - ipBlock:\n        except: [10.0.0.0/8]\n",
			"9:7: spec.ingress[0].from[0].ipBlock.cidr: Required value"},
		{"bad cidr", kubeHeader + "spec:\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/33}\n",
			`9:17: spec.egress[0].to[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid CIDR value`},
		{"cidr with leading zeros", kubeHeader + "spec:\n  egress:\n  - to:\n    - ipBlock: {cidr: 010.0.0.0/8}\n",
			`9:17: spec.egress[0].to[0].ipBlock.cidr: Invalid value: "010.0.0.0/8": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64), without leading zeros`},
		{"IPv4-mapped cidr", kubeHeader + "spec:\n  egress:\n  - to:\n    - ipBlock: {cidr: \"::ffff:10.0.0.0/104\"}\n",
			`9:17: spec.egress[0].to[0].ipBlock.cidr: Invalid value: "::ffff:10.0.0.0/104": must not be an IPv4-mapped IPv6 address`},
		{"except outside cidr", kubeHeader + "spec:\n  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.0.0.0/16\n        except:\n        - 10.1.0.0/24\n",
			"12:11: spec.egress[0].to[0].ipBlock.except[0]: Invalid value: \"10.1.0.0/24\": must be a strict subset of `cidr`"},
		{"except equal to cidr", kubeHeader + "spec:\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}\n",
			"9:45: spec.egress[0].to[0].ipBlock.except[0]: Invalid value: \"10.0.0.0/16\": must be a strict subset of `cidr`"},
		{"except of the other family", kubeHeader + "spec:\n  egress:\n  - to:\n    - ipBlock: {cidr: 0.0.0.0/0, except: [\"::/1\"]}\n",
			"9:43: spec.egress[0].to[0].ipBlock.except[0]: Invalid value: \"::/1\": must be a strict subset of `cidr`"},
		{"bad label key", kubeHeader + "spec:\n  podSelector:\n    matchLabels:\n      -bad: x\n",
			`9:7: spec.podSelector.matchLabels[-bad]: Invalid value: "-bad": name part must consist of alphanumeric characters`},
		{"bad label value", kubeHeader + "spec:\n  podSelector:\n    matchLabels:\n      app: -x\n",
			`9:7: spec.podSelector.matchLabels[app]: Invalid value: "-x": a valid label must be`},
		{"In without values", kubeHeader + "spec:\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchExpressions:\n        - {key: team, operator: In}\n",
			"11:11: spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"},
		{"Exists with values", kubeHeader + "spec:\n  podSelector:\n    matchExpressions:\n    - key: team\n      operator: Exists\n      values: [a]\n",
			"11:7: spec.podSelector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"},
		{"unknown operator", kubeHeader + "spec:\n  podSelector:\n    matchExpressions:\n    - {key: team, operator: Equals, values: [a]}\n",
			`9:19: spec.podSelector.matchExpressions[0].operator: Invalid value: "Equals": not a valid selector operator`},
		{"unknown policyType", kubeHeader + "spec:\n  policyTypes: [Ingress, Outgress]\n",
			`7:26: spec.policyTypes[1]: Unsupported value: "Outgress": supported values: "Ingress", "Egress"`},
		{"three policyTypes", kubeHeader + "spec:\n  policyTypes: [Ingress, Egress, Ingress]\n",
			`7:3: spec.policyTypes: Invalid value`},
		{"merge keys", kubeHeader + "spec:\n  <<: {podSelector: {}}\n",
			`7:3: spec: a key must be a plain string, got !!merge <<`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, diags := LoadBytes("np.yaml", []byte(tc.src))
			if !diags.HasErrors() {
				t.Fatalf("no error; want %s", tc.want)
			}
			found := false
			for _, d := range diags {
				got := fmt.Sprintf("%d:%d: %s", d.Pos.Line, d.Pos.Col, d.Message)
				if d.Severity == SeverityError && strings.HasPrefix(got, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("want np.yaml:%s\ngot:\n%v", tc.want, diags)
			}
			if len(set.Grants)+len(set.Isolations) > 0 {
				t.Errorf("a policy with errors added %d grants and %d isolations", len(set.Grants), len(set.Isolations))
			}
		})
	}
}

func TestKubeScalarsBothYAMLVersionsAgreeOn(t *testing.T) {
	for _, v := range []string{`"yes"`, `'on'`, `!!str y`, `true`, `2`, `release-1.10`} {
		set := loadKube(t, kubeHeader+"spec:\n  podSelector: {matchLabels: {app: "+v+"}}\n")
		if len(set.Isolations) != 1 {
			t.Errorf("app: %s did not load", v)
		}
	}
}

func TestKubeAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString(strings.Replace(kubeHeader, "  namespace: x\n", "  namespace: x\n  managedFields:\n  - fieldsV1:\n      a0: &a0 [x]\n", 1))
	for i := 1; i < 40; i++ {
		fmt.Fprintf(&b, "      a%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
	}
	_, diags := LoadBytes("np.yaml", []byte(b.String()))
	if len(diags) != 1 || !strings.Contains(diags[0].Message, "expands to more than") {
		t.Fatalf("want one error about the expansion, got %v", diags)
	}
}
