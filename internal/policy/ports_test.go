package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// portsIndex loads and compiles policy source (native or Kubernetes) and
// fails the test on any error.
func portsIndex(t *testing.T, mode IsolationMode, src string) *Index {
	t.Helper()
	set, diags := LoadBytes("policy.yaml", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("policy does not load:\n%v", diags)
	}
	ix, err := Compile(set, mode)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// portsByDecide is the specification AllowedPorts must meet: the ports
// Decide allows, found the slow way, one port at a time.
func portsByDecide(ix *Index, src, dst *Subject, proto Protocol) []PortRange {
	var out []PortRange
	for p := 1; p <= 65535; p++ {
		if !ix.Decide(src, dst, proto, uint16(p)).Allowed {
			continue
		}
		if n := len(out); n > 0 && int(out[n-1].Hi)+1 == p {
			out[n-1].Hi = uint16(p)
			continue
		}
		out = append(out, PortRange{Protocol: proto, Lo: uint16(p), Hi: uint16(p)})
	}
	return out
}

func portsText(rs []PortRange) string {
	if rs == nil {
		return "none"
	}
	return fmt.Sprint(rs)
}

func udp(lo, hi uint16) PortRange { return PortRange{Protocol: UDP, Lo: lo, Hi: hi} }

// portsPods are the workloads the table below speaks of; "client" and
// "server" carry named ports, "bare" has none.
func portsPods() map[string]*Endpoint {
	named := []NamedPort{{Name: "dns", Port: 53, Protocol: UDP}, {Name: "dns", Port: 5353, Protocol: TCP}, {Name: "stun", Port: 3478, Protocol: UDP}}
	return map[string]*Endpoint{
		"client": {Workload: true, Namespace: "x", Name: "client", Labels: map[string]string{"app": "client"},
			NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "x"}, IP: netip.MustParseAddr("10.0.0.1")},
		"server": {Workload: true, Namespace: "x", Name: "server", Labels: map[string]string{"app": "server"},
			NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "x"}, IP: netip.MustParseAddr("10.0.0.2"), Ports: named},
		"bare": {Workload: true, Namespace: "x", Name: "bare", Labels: map[string]string{"app": "server"},
			NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "x"}, IP: netip.MustParseAddr("10.0.0.3")},
		"internet": {IP: netip.MustParseAddr("198.51.100.7")},
		"resolver": {IP: netip.MustParseAddr("192.0.2.53")},
	}
}

const kubeAllowAllFromClient = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-client, namespace: x}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
%s
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-out, namespace: x}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {}}]
%s
`

func TestAllowedPortsAgreesWithDecide(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     IsolationMode
		policy   string
		src, dst string
		proto    Protocol
		want     []PortRange
	}{{
		name: "a UDP range is allowed as written",
		policy: `policies:
  - subject: "app:client"
    allow:
      - destination: "app:server"
        ports: ["1000-2000", 53]
        protocols: [udp]
`,
		src: "client", dst: "server", proto: UDP,
		want: []PortRange{udp(53, 53), udp(1000, 2000)},
	}, {
		name: "a UDP rule allows no TCP port",
		policy: `policies:
  - subject: "app:client"
    allow:
      - destination: "app:server"
        ports: ["1000-2000"]
        protocols: [udp]
`,
		src: "client", dst: "server", proto: TCP,
	}, {
		name: "the rule does not allow the reverse direction",
		policy: `policies:
  - subject: "app:client"
    allow:
      - destination: "app:server"
        protocols: [udp]
`,
		src: "server", dst: "client", proto: UDP,
	}, {
		name: "a deny carves single ports and ranges out of the middle of an allow",
		policy: `policies:
  - subject: "app:client"
    allow:
      - destination: "app:server"
        ports: ["1000-2000"]
        protocols: [udp]
    deny:
      - destination: "app:server"
        ports: [1500, "1600-1700", 2000]
        protocols: [udp, sctp]
`,
		src: "client", dst: "server", proto: UDP,
		want: []PortRange{udp(1000, 1499), udp(1501, 1599), udp(1701, 1999)},
	}, {
		name: "a deny of the reverse direction leaves this one alone",
		policy: `policies:
  - subject: "app:client"
    allow:
      - destination: "app:server"
        protocols: [udp]
  - subject: "app:server"
    deny:
      - destination: "app:client"
        ports: ["1-1023"]
        protocols: [udp]
`,
		src: "client", dst: "server", proto: UDP,
		want: []PortRange{udp(1, 65535)},
	}, {
		name: "a deny of the reverse direction applies to it",
		policy: `policies:
  - subject: "app:client"
    allow:
      - destination: "app:server"
        protocols: [udp]
  - subject: "app:server"
    allow:
      - destination: "app:client"
        protocols: [udp]
    deny:
      - destination: "app:client"
        ports: ["1-1023"]
        protocols: [udp]
`,
		src: "server", dst: "client", proto: UDP,
		want: []PortRange{udp(1024, 65535)},
	}, {
		name:   "both sides must allow: the ports are the intersection",
		policy: fmt.Sprintf(kubeAllowAllFromClient, "    ports: [{port: 150, endPort: 400, protocol: UDP}]", "    ports: [{port: 100, endPort: 200, protocol: UDP}, {port: 300, protocol: TCP}]"),
		src:    "client", dst: "server", proto: UDP,
		want: []PortRange{udp(150, 200)},
	}, {
		name:   "named ports resolve through the destination's own ports and protocol",
		policy: fmt.Sprintf(kubeAllowAllFromClient, "    ports: [{port: dns, protocol: UDP}, {port: stun, protocol: UDP}]", "    ports: [{port: 1, endPort: 65535, protocol: UDP}]"),
		src:    "client", dst: "server", proto: UDP,
		want: []PortRange{udp(53, 53), udp(3478, 3478)},
	}, {
		name:   "a destination without the named port gets nothing from it",
		policy: fmt.Sprintf(kubeAllowAllFromClient, "    ports: [{port: dns, protocol: UDP}]", "    ports: [{port: 1, endPort: 65535, protocol: UDP}]"),
		src:    "client", dst: "bare", proto: UDP,
	}, {
		name:   "a named port of another protocol does not count",
		policy: fmt.Sprintf(kubeAllowAllFromClient, "    ports: [{port: dns, protocol: SCTP}]", "    ports: [{port: 1, endPort: 65535, protocol: SCTP}]"),
		src:    "client", dst: "server", proto: SCTP,
	}, {
		name:   "a rule without ports allows every port of UDP",
		policy: fmt.Sprintf(kubeAllowAllFromClient, "", ""),
		src:    "client", dst: "server", proto: UDP,
		want: []PortRange{udp(1, 65535)},
	}, {
		name:   "a rule without ports allows every port of SCTP",
		policy: fmt.Sprintf(kubeAllowAllFromClient, "", ""),
		src:    "client", dst: "server", proto: SCTP,
		want: []PortRange{{Protocol: SCTP, Lo: 1, Hi: 65535}},
	}, {
		name:   "a rule without ports allows ICMP",
		policy: fmt.Sprintf(kubeAllowAllFromClient, "", ""),
		src:    "client", dst: "server", proto: ICMP,
		want: AllPorts,
	}, {
		name:   "a UDP-only rule allows no SCTP",
		policy: fmt.Sprintf(kubeAllowAllFromClient, "    ports: [{protocol: UDP}]", ""),
		src:    "client", dst: "server", proto: SCTP,
	}, {
		name:   "a UDP-only rule allows no ICMP",
		policy: fmt.Sprintf(kubeAllowAllFromClient, "    ports: [{protocol: UDP}]", ""),
		src:    "client", dst: "server", proto: ICMP,
	}, {
		name: "a native rule listing icmp allows ICMP",
		policy: `policies:
  - subject: "app:client"
    allow:
      - destination: "app:server"
        protocols: [icmp]
`,
		src: "client", dst: "server", proto: ICMP,
		want: AllPorts,
	}, {
		name: "a native rule listing icmp allows no UDP",
		policy: `policies:
  - subject: "app:client"
    allow:
      - destination: "app:server"
        protocols: [icmp]
`,
		src: "client", dst: "server", proto: UDP,
	}, {
		name:   "the source's narrow egress limits the destination's wide ingress",
		policy: fmt.Sprintf(kubeAllowAllFromClient, "    ports: [{protocol: UDP}]", "    ports: [{port: 53, protocol: UDP}]"),
		src:    "client", dst: "server", proto: UDP,
		want: []PortRange{udp(53, 53)},
	}, {
		name: "sides that no policy selects allow every port in selected mode",
		mode: IsolateSelected,
		policy: `policies:
  - subject: "app:nobody"
    allow:
      - destination: "app:nothing"
        protocols: [udp]
`,
		src: "client", dst: "server", proto: UDP,
		want: []PortRange{udp(1, 65535)},
	}, {
		name: "sides that no policy selects allow ICMP in selected mode",
		mode: IsolateSelected,
		policy: `policies:
  - subject: "app:nobody"
    allow:
      - destination: "app:nothing"
`,
		src: "client", dst: "server", proto: ICMP,
		want: AllPorts,
	}, {
		name: "in selected mode only the isolated side restricts",
		mode: IsolateSelected,
		policy: `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-in, namespace: x}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - ports: [{port: 5000, endPort: 5010, protocol: UDP}]
`,
		src: "client", dst: "server", proto: UDP,
		want: []PortRange{udp(5000, 5010)},
	}, {
		name: "a deny still applies to a side that is not isolated",
		mode: IsolateSelected,
		policy: `policies:
  - subject: "app:client"
    deny:
      - destination: "app:server"
        ports: [53]
        protocols: [udp]
`,
		src: "client", dst: "server", proto: UDP,
		want: []PortRange{udp(1, 52), udp(54, 65535)},
	}, {
		name: "egress to a named external network",
		policy: `policies:
  - subject: "app:client"
    allow:
      - destination: "external:dns"
        ports: [53]
        protocols: [udp, tcp]
networks:
  dns: ["192.0.2.0/24"]
`,
		src: "client", dst: "resolver", proto: UDP,
		want: []PortRange{udp(53, 53)},
	}, {
		name: "an address outside the named network gets nothing",
		policy: `policies:
  - subject: "app:client"
    allow:
      - destination: "external:dns"
        ports: [53]
        protocols: [udp]
networks:
  dns: ["192.0.2.0/24"]
`,
		src: "client", dst: "internet", proto: UDP,
	}, {
		name: "ingress from a CIDR with an except",
		policy: `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-outside, namespace: x}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{ipBlock: {cidr: 198.51.100.0/24, except: [198.51.100.0/30]}}]
    ports: [{port: 443, protocol: UDP}]
`,
		src: "internet", dst: "server", proto: UDP,
		want: []PortRange{udp(443, 443)},
	}, {
		name: "between two outside addresses nothing restricts",
		policy: `policies:
  - subject: "app:client"
    allow:
      - destination: "app:server"
`,
		src: "internet", dst: "resolver", proto: UDP,
		want: []PortRange{udp(1, 65535)},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			mode := tc.mode
			if mode == "" {
				mode = IsolateAll
			}
			ix := portsIndex(t, mode, tc.policy)
			pods := portsPods()
			src, dst := ix.Resolve(pods[tc.src]), ix.Resolve(pods[tc.dst])
			got := ix.AllowedPorts(src, dst, tc.proto)
			if !slices.Equal(got, tc.want) {
				t.Errorf("AllowedPorts = %s, want %s", portsText(got), portsText(tc.want))
			}
			if tc.proto == ICMP {
				return
			}
			if slow := portsByDecide(ix, src, dst, tc.proto); !slices.Equal(got, slow) {
				t.Errorf("AllowedPorts = %s, Decide allows %s", portsText(got), portsText(slow))
			}
		})
	}
}

func TestAllowedPortsRefusesSubjectsOfAnotherIndex(t *testing.T) {
	const src = `policies:
  - subject: "app:client"
    allow:
      - destination: "app:server"
        protocols: [udp]
`
	old, cur := portsIndex(t, IsolateAll, src), portsIndex(t, IsolateAll, src)
	pods := portsPods()
	if got := cur.AllowedPorts(old.Resolve(pods["client"]), cur.Resolve(pods["server"]), UDP); got != nil {
		t.Fatalf("a stale subject was answered: %s", portsText(got))
	}
}

func TestNetworksListsEveryOutsideBoundary(t *testing.T) {
	ix := portsIndex(t, IsolateAll, `policies:
  - subject: "app:client"
    allow:
      - destination: "external:dns"
        protocols: [udp]
      - destination: "cidr:10.1.0.5/16"
    deny:
      - destination: "cidr:2001:db8::/32"
  - subject: "cidr:172.16.0.0/12"
    allow:
      - destination: "app:server"
networks:
  dns: ["192.0.2.0/24", "10.1.0.0/16"]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-outside, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 198.51.100.0/24, except: [198.51.100.0/30, 198.51.100.128/25]}}]
`)
	got := ix.Networks()
	// 172.16.0.0/12 is the subject of one grant and the peer of
	// another (the server's ingress), so it is a boundary too.
	want := []netip.Prefix{
		netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("198.51.100.0/30"),
		netip.MustParsePrefix("198.51.100.128/25"),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Networks = %v, want %v", got, want)
	}
}

// TestAllowedPortsMatchesDecideOnRandomPolicies builds random policies
// from a small vocabulary, so that rules overlap, deny inside allows,
// name ports some endpoints have and others do not, and mix protocols,
// then checks every port of every pair against Decide.
func TestAllowedPortsMatchesDecideOnRandomPolicies(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	selectors := []Selector{
		label("app", "a"), label("app", "b"), label("tier", "x"),
		{Terms: []Term{{Kind: TermAny}}},
		{Terms: []Term{{Kind: TermWorkload}}},
		{Terms: []Term{{Kind: TermCIDR, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Except: []netip.Prefix{netip.MustParsePrefix("10.0.0.4/30")}}}},
		external("net", "192.0.2.0/24"),
	}
	endpoints := []*Endpoint{
		pod("x", "a1", map[string]string{"app": "a", "tier": "x"}, "10.0.0.1", NamedPort{Name: "p", Port: 700, Protocol: UDP}),
		pod("x", "b1", map[string]string{"app": "b"}, "10.0.0.5", NamedPort{Name: "p", Port: 9000, Protocol: UDP}, NamedPort{Name: "q", Port: 40, Protocol: SCTP}),
		pod("x", "b2", map[string]string{"app": "b", "tier": "x"}, "10.9.0.1"),
		outside("192.0.2.9"),
		outside("10.0.0.6"),
	}
	protos := []Protocol{AnyProtocol, TCP, UDP, SCTP}
	randomPorts := func() []PortRange {
		if rng.IntN(5) == 0 {
			return nil // every port of every protocol
		}
		var out []PortRange
		for range 1 + rng.IntN(4) {
			if rng.IntN(8) == 0 {
				// A native icmp rule: no port.
				out = append(out, PortRange{Protocol: ICMP, Lo: 0, Hi: 65535})
				continue
			}
			r := PortRange{Protocol: protos[rng.IntN(len(protos))]}
			switch rng.IntN(4) {
			case 0:
				r.Name = []string{"p", "q", "zz"}[rng.IntN(3)]
			case 1:
				r.Lo = uint16(1 + rng.IntN(1000))
				r.Hi = r.Lo
			default:
				r.Lo = uint16(rng.IntN(60000))
				r.Hi = r.Lo + uint16(rng.IntN(5535))
			}
			out = append(out, r)
		}
		return out
	}
	// How often the answer was no port, every port or some ports: a
	// generator stuck on one of them would make this test vacuous.
	shapes := map[string]int{}
	for round := range 8 {
		set := &Set{}
		for range 2 + rng.IntN(8) {
			r := set.AddRule(Rule{Text: "random"})
			g := Grant{
				Direction: Direction(rng.IntN(2)), Action: Action(rng.IntN(3) / 2), // a third are denies
				Subject: selectors[rng.IntN(len(selectors))], Peer: selectors[rng.IntN(len(selectors))],
				Ports: randomPorts(), Rule: r,
			}
			set.Grants = append(set.Grants, g)
			if rng.IntN(2) == 0 {
				set.Isolations = append(set.Isolations, Isolation{Direction: g.Direction, Subject: g.Subject, Rule: r})
			}
		}
		mode := []IsolationMode{IsolateAll, IsolateSelected}[round%2]
		ix, err := Compile(set, mode)
		if err != nil {
			t.Fatal(err)
		}
		subjects := make([]*Subject, len(endpoints))
		for i, ep := range endpoints {
			subjects[i] = ix.Resolve(ep)
		}
		for _, src := range subjects {
			for _, dst := range subjects {
				for _, proto := range []Protocol{UDP, SCTP, TCP} {
					got, want := ix.AllowedPorts(src, dst, proto), portsByDecide(ix, src, dst, proto)
					switch {
					case len(want) == 0:
						shapes["none"]++
					case len(want) == 1 && want[0].Lo == 1 && want[0].Hi == 65535:
						shapes["all"]++
					default:
						shapes["some"]++
					}
					if !slices.Equal(got, want) {
						t.Fatalf("round %d (%s) %s -> %s %s: AllowedPorts = %s, Decide allows %s\ngrants: %+v",
							round, mode, src.Endpoint(), dst.Endpoint(), proto, portsText(got), portsText(want), set.Grants)
					}
				}
				icmp := ix.AllowedPorts(src, dst, ICMP)
				if want := ix.Decide(src, dst, ICMP, 0).Allowed; (icmp != nil) != want {
					t.Fatalf("round %d %s -> %s: portless answer %s, Decide says %v", round, src.Endpoint(), dst.Endpoint(), portsText(icmp), want)
				}
			}
		}
	}
	for _, shape := range []string{"none", "all", "some"} {
		if shapes[shape] == 0 {
			t.Errorf("no pair was allowed %s ports: %v", shape, shapes)
		}
	}
}
