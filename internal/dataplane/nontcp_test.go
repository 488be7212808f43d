package dataplane

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ztcn/ztcn/internal/dataplane/redirect"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/policy"
)

// compilePolicy loads policy source (native or Kubernetes) and compiles it.
func compilePolicy(t *testing.T, mode policy.IsolationMode, src string) *policy.Index {
	t.Helper()
	set, diags := policy.LoadBytes("policy.yaml", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("policy does not load:\n%v", diags)
	}
	ix, err := policy.Compile(set, mode)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func workload(name, ip string, labels map[string]string, ports ...policy.NamedPort) *policy.Endpoint {
	return &policy.Endpoint{Workload: true, Namespace: "shop", Name: name, ServiceAccount: name, Labels: labels,
		NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "shop"},
		SPIFFEID:        "spiffe://cluster.local/ns/shop/sa/" + name, IP: netip.MustParseAddr(ip), Ports: ports}
}

func allowStrings(list []redirect.Allow) []string {
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.String()
	}
	return out
}

func wantAllowlist(t *testing.T, got []redirect.Allow, want ...string) {
	t.Helper()
	if g := allowStrings(got); !slices.Equal(g, want) {
		t.Errorf("allowlist:\ngot:\n  %s\nwant:\n  %s", strings.Join(g, "\n  "), strings.Join(want, "\n  "))
	}
}

// shopPods: a and b may talk, c is the outsider; dns is a named UDP port
// of b.
func shopPods() (a, b, c *policy.Endpoint) {
	return workload("a", "10.0.0.1", map[string]string{"app": "a"}),
		workload("b", "10.0.0.2", map[string]string{"app": "b"}, policy.NamedPort{Name: "dns", Port: 53, Protocol: policy.UDP}),
		workload("c", "10.0.0.3", map[string]string{"app": "c"})
}

const shopNonTCPPolicy = `policies:
  - subject: "app:a"
    allow:
      - destination: "app:b"
        ports: [5000, dns]
        protocols: [udp]
      - destination: "external:dns"
        ports: [53]
        protocols: [udp, tcp]
  - subject: "app:c"
    allow:
      - destination: "app:b"
        ports: ["6000-6010"]
        protocols: [sctp]
      - destination: "app:b"
        ports: [80]
networks:
  dns: ["192.0.2.0/24"]
`

// The data plane's NonTCPAllowlist resolves the peers through its caches
// and compiles the same lists as the package function, which resolves
// every peer for every pod.
func TestDataPlaneNonTCPAllowlistMatches(t *testing.T) {
	ix := compilePolicy(t, policy.IsolateAll, shopNonTCPPolicy)
	snap := &policy.Snapshot{Index: ix}
	dp, err := New(Config{Policy: func() *policy.Snapshot { return snap }, Verifier: identity.NewVerifier(identity.NewBundles(), nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	a, b, c := shopPods()
	peers := []*policy.Endpoint{a, b, c}
	for _, self := range peers {
		for range 2 { // the second time from the caches
			want := allowStrings(NonTCPAllowlist(ix, ix.Resolve(self), peers))
			if got := allowStrings(dp.NonTCPAllowlist(ix, ix.Resolve(self), peers)); !slices.Equal(got, want) {
				t.Errorf("%s: data plane %v, package %v", self.Name, got, want)
			}
		}
	}
	first := dp.Subject(ix, b)
	if again := dp.Subject(ix, b); again != first {
		t.Error("a peer was resolved twice for one policy version")
	}
}

func TestNonTCPAllowlistFromNativePolicy(t *testing.T) {
	ix := compilePolicy(t, policy.IsolateAll, shopNonTCPPolicy)
	a, b, c := shopPods()
	peers := []*policy.Endpoint{a, b, c}

	t.Run("a may send UDP to b on 5000 and its named dns port, and to the dns network", func(t *testing.T) {
		wantAllowlist(t, NonTCPAllowlist(ix, ix.Resolve(a), peers),
			"egress udp 10.0.0.2/32 port 53",
			"egress udp 10.0.0.2/32 port 5000",
			"egress udp 192.0.2.0/24 port 53",
		)
	})
	t.Run("b receives UDP from a and SCTP from c, and sends nothing", func(t *testing.T) {
		wantAllowlist(t, NonTCPAllowlist(ix, ix.Resolve(b), peers),
			"ingress udp 10.0.0.1/32 port 53",
			"ingress udp 10.0.0.1/32 port 5000",
			"ingress sctp 10.0.0.3/32 ports 6000-6010",
		)
	})
	t.Run("c may send SCTP to b; its TCP rule is the proxy's business", func(t *testing.T) {
		wantAllowlist(t, NonTCPAllowlist(ix, ix.Resolve(c), peers),
			"egress sctp 10.0.0.2/32 ports 6000-6010",
		)
	})
	t.Run("a peer the list does not know is not admitted", func(t *testing.T) {
		wantAllowlist(t, NonTCPAllowlist(ix, ix.Resolve(b), []*policy.Endpoint{a}),
			"ingress udp 10.0.0.1/32 port 53",
			"ingress udp 10.0.0.1/32 port 5000",
		)
	})
	t.Run("a self of another index gets an empty list", func(t *testing.T) {
		stale := compilePolicy(t, policy.IsolateAll, shopNonTCPPolicy)
		wantAllowlist(t, NonTCPAllowlist(ix, stale.Resolve(a), peers))
	})
}

func TestNonTCPAllowlistFromKubernetesPolicy(t *testing.T) {
	const np = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
  - from: [{ipBlock: {cidr: 198.51.100.0/24, except: [198.51.100.0/30]}}]
    ports: [{port: 443, protocol: UDP}, {port: dns, protocol: UDP}]
`
	// Selected mode, upstream semantics: b is isolated for ingress only;
	// everything else, and b's egress, is open.
	ix := compilePolicy(t, policy.IsolateSelected, np)
	a, b, c := shopPods()
	peers := []*policy.Endpoint{a, b, c}

	t.Run("b admits everything from a, ICMP included, and only UDP 53 and 443 from the ipBlock", func(t *testing.T) {
		wantAllowlist(t, NonTCPAllowlist(ix, ix.Resolve(b), peers),
			"egress icmp 0.0.0.0/0 echo-request",
			"egress udp 0.0.0.0/0 ports 1-65535",
			"egress sctp 0.0.0.0/0 ports 1-65535",
			"ingress icmp 10.0.0.1/32 echo-request",
			"ingress udp 10.0.0.1/32 ports 1-65535",
			"ingress udp 198.51.100.4/30 port 53",
			"ingress udp 198.51.100.4/30 port 443",
			"ingress udp 198.51.100.8/29 port 53",
			"ingress udp 198.51.100.8/29 port 443",
			"ingress udp 198.51.100.16/28 port 53",
			"ingress udp 198.51.100.16/28 port 443",
			"ingress udp 198.51.100.32/27 port 53",
			"ingress udp 198.51.100.32/27 port 443",
			"ingress udp 198.51.100.64/26 port 53",
			"ingress udp 198.51.100.64/26 port 443",
			"ingress udp 198.51.100.128/25 port 53",
			"ingress udp 198.51.100.128/25 port 443",
			"ingress sctp 10.0.0.1/32 ports 1-65535",
		)
	})
	t.Run("c is not isolated: it may send anywhere but to b, and receive from anyone", func(t *testing.T) {
		var want []string
		for _, proto := range []string{"icmp", "udp", "sctp"} {
			ports := " ports 1-65535"
			if proto == "icmp" {
				ports = " echo-request"
			}
			// Everything but b (10.0.0.2), in the fewest prefixes.
			for _, p := range []string{"0.0.0.0/5", "8.0.0.0/7", "10.0.0.0/31", "10.0.0.3/32", "10.0.0.4/30", "10.0.0.8/29",
				"10.0.0.16/28", "10.0.0.32/27", "10.0.0.64/26", "10.0.0.128/25", "10.0.1.0/24", "10.0.2.0/23", "10.0.4.0/22",
				"10.0.8.0/21", "10.0.16.0/20", "10.0.32.0/19", "10.0.64.0/18", "10.0.128.0/17", "10.1.0.0/16", "10.2.0.0/15",
				"10.4.0.0/14", "10.8.0.0/13", "10.16.0.0/12", "10.32.0.0/11", "10.64.0.0/10", "10.128.0.0/9", "11.0.0.0/8",
				"12.0.0.0/6", "16.0.0.0/4", "32.0.0.0/3", "64.0.0.0/2", "128.0.0.0/1"} {
				want = append(want, "egress "+proto+" "+p+ports)
			}
			// b's egress is not isolated either: the NetworkPolicy is
			// for its ingress only.
			want = append(want, "ingress "+proto+" 0.0.0.0/0"+ports)
		}
		got := allowStrings(NonTCPAllowlist(ix, ix.Resolve(c), peers))
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("allowlist:\ngot:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	})
}

func TestNonTCPAllowlistOutsideRanges(t *testing.T) {
	a, b, c := shopPods()
	t.Run("a deny carves a range out of an external network", func(t *testing.T) {
		ix := compilePolicy(t, policy.IsolateAll, `policies:
  - subject: "app:a"
    allow:
      - destination: "external:internet"
        protocols: [udp]
    deny:
      - destination: "cidr:203.0.113.128/25"
        protocols: [udp]
networks:
  internet: ["203.0.113.0/24"]
`)
		wantAllowlist(t, NonTCPAllowlist(ix, ix.Resolve(a), []*policy.Endpoint{b, c}),
			"egress udp 203.0.113.0/25 ports 1-65535")
	})
	t.Run("a known workload inside an external network is cut out of it", func(t *testing.T) {
		// external: matches addresses outside the cluster only, so b
		// (10.0.0.2) must not get the network's entry; c is not in the
		// peers and, as documented, falls under it.
		ix := compilePolicy(t, policy.IsolateAll, `policies:
  - subject: "app:z"
    allow:
      - destination: "external:lan"
        ports: [53]
        protocols: [udp]
networks:
  lan: ["10.0.0.0/29"]
`)
		self := workload("z", "10.1.0.1", map[string]string{"app": "z"})
		wantAllowlist(t, NonTCPAllowlist(ix, ix.Resolve(self), []*policy.Endpoint{a, b}),
			"egress udp 10.0.0.0/32 port 53",
			"egress udp 10.0.0.3/32 port 53",
			"egress udp 10.0.0.4/30 port 53",
		)
	})
	t.Run("a cidr selector matches workloads too, so they join the range", func(t *testing.T) {
		ix := compilePolicy(t, policy.IsolateAll, `policies:
  - subject: "app:z"
    allow:
      - destination: "cidr:10.0.0.0/29"
        ports: [53]
        protocols: [udp]
`)
		self := workload("z", "10.1.0.1", map[string]string{"app": "z"})
		// Only the ingress side of a, b, c is isolated (IsolateAll), and
		// the same rule is their ingress grant: the range is whole.
		wantAllowlist(t, NonTCPAllowlist(ix, ix.Resolve(self), []*policy.Endpoint{a, b, c}),
			"egress udp 10.0.0.0/29 port 53")
	})
}

func TestNonTCPAllowlistPeers(t *testing.T) {
	ix := compilePolicy(t, policy.IsolateAll, `policies:
  - subject: "app:a"
    allow:
      - destination: "app:b"
        ports: [9000]
        protocols: [udp]
`)
	a, b, _ := shopPods()
	b2 := workload("b2", "10.0.0.3", map[string]string{"app": "b"})
	self := ix.Resolve(a)

	t.Run("neighbours that admit the same share a prefix", func(t *testing.T) {
		wantAllowlist(t, NonTCPAllowlist(ix, self, []*policy.Endpoint{b2, b}),
			"egress udp 10.0.0.2/31 port 9000")
	})
	t.Run("the order of peers does not matter", func(t *testing.T) {
		x, y := NonTCPAllowlist(ix, self, []*policy.Endpoint{b, b2, a}), NonTCPAllowlist(ix, self, []*policy.Endpoint{a, b2, b})
		if !slices.Equal(x, y) {
			t.Fatalf("%v != %v", x, y)
		}
	})
	t.Run("self, outside endpoints, IPv6 and address-less peers are skipped", func(t *testing.T) {
		v6 := workload("b6", "fd00::2", map[string]string{"app": "b"})
		none := &policy.Endpoint{Workload: true, Name: "pending", Labels: map[string]string{"app": "b"}}
		// An endpoint that is not a workload is decided as an outside
		// address: app:b cannot match it.
		notWorkload := &policy.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Labels: map[string]string{"app": "b"}}
		wantAllowlist(t, NonTCPAllowlist(ix, self, []*policy.Endpoint{a, v6, none, notWorkload, nil}))
	})
	t.Run("two peers with one address get what both may do", func(t *testing.T) {
		impostor := workload("old", "10.0.0.2", map[string]string{"app": "old"})
		wantAllowlist(t, NonTCPAllowlist(ix, self, []*policy.Endpoint{b, impostor}))
		wantAllowlist(t, NonTCPAllowlist(ix, self, []*policy.Endpoint{impostor, b}))
	})
}

// admits reports whether the allowlist lets a packet of proto between the
// pod and addr, to port, in direction dir — what the kernel's sets do.
func admits(list []redirect.Allow, dir redirect.Direction, proto redirect.Protocol, addr netip.Addr, port uint16) bool {
	for _, a := range list {
		if a.Direction != dir || a.Protocol != proto || !a.Peer.Contains(addr) {
			continue
		}
		if proto == redirect.ICMP || a.Port == 0 && a.EndPort == 0 {
			return true
		}
		end := a.EndPort
		if end == 0 {
			end = a.Port
		}
		if a.Port <= port && port <= end {
			return true
		}
	}
	return false
}

// TestNonTCPAllowlistAgreesWithDecide compiles random policies and checks,
// at every address boundary, at the peers and at random points, for ports
// on and around every rule boundary, that the allowlist admits exactly
// what Decide allows.
func TestNonTCPAllowlistAgreesWithDecide(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	label := func(k, v string) policy.Selector {
		return policy.Selector{Terms: []policy.Term{{Kind: policy.TermLabel, Key: k, Op: policy.OpEquals, Value: v}}}
	}
	prefixes := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	selectors := []policy.Selector{
		label("app", "a"), label("app", "b"), label("tier", "x"),
		{Terms: []policy.Term{{Kind: policy.TermAny}}},
		{Terms: []policy.Term{{Kind: policy.TermWorkload}}},
		{Terms: []policy.Term{{Kind: policy.TermCIDR, Prefixes: prefixes("10.0.0.0/24"), Except: prefixes("10.0.0.4/30")}}},
		{Terms: []policy.Term{{Kind: policy.TermExternal, Value: "net", Prefixes: prefixes("192.0.2.0/24", "10.0.0.0/28")}}},
		{Terms: []policy.Term{{Kind: policy.TermCIDR, Prefixes: prefixes("0.0.0.0/1")}}},
	}
	pods := []*policy.Endpoint{
		workload("a1", "10.0.0.1", map[string]string{"app": "a", "tier": "x"}, policy.NamedPort{Name: "p", Port: 700, Protocol: policy.UDP}),
		workload("b1", "10.0.0.5", map[string]string{"app": "b"}, policy.NamedPort{Name: "p", Port: 9000, Protocol: policy.SCTP}),
		workload("b2", "10.0.0.6", map[string]string{"app": "b", "tier": "x"}),
		workload("b3", "172.16.0.9", map[string]string{"app": "b"}),
	}
	protos := []policy.Protocol{policy.AnyProtocol, policy.TCP, policy.UDP, policy.SCTP}
	randomPorts := func() []policy.PortRange {
		if rng.IntN(4) == 0 {
			return nil // every port of every protocol
		}
		var out []policy.PortRange
		for range 1 + rng.IntN(3) {
			r := policy.PortRange{Protocol: protos[rng.IntN(len(protos))]}
			switch rng.IntN(3) {
			case 0:
				r.Name = "p"
			default:
				r.Lo = uint16(1 + rng.IntN(2000))
				r.Hi = r.Lo + uint16(rng.IntN(500))
			}
			out = append(out, r)
		}
		return out
	}
	// How often each protocol was allowed and denied: a generator that
	// only ever produced one answer would make this test vacuous.
	seen := map[redirect.Protocol]map[bool]int{}
	for _, p := range nonTCPProtocols {
		seen[p.nft] = map[bool]int{}
	}
	for round := range 50 {
		set := &policy.Set{}
		for range 1 + rng.IntN(6) {
			r := set.AddRule(policy.Rule{Text: "random"})
			g := policy.Grant{
				Direction: policy.Direction(rng.IntN(2)), Action: policy.Action(rng.IntN(3) / 2),
				Subject: selectors[rng.IntN(len(selectors))], Peer: selectors[rng.IntN(len(selectors))],
				Ports: randomPorts(), Rule: r,
			}
			set.Grants = append(set.Grants, g)
			if rng.IntN(2) == 0 {
				set.Isolations = append(set.Isolations, policy.Isolation{Direction: g.Direction, Subject: g.Subject, Rule: r})
			}
		}
		mode := []policy.IsolationMode{policy.IsolateAll, policy.IsolateSelected}[round%2]
		ix, err := policy.Compile(set, mode)
		if err != nil {
			t.Fatal(err)
		}
		// Ports to probe: both sides of every rule's boundaries, the named
		// ports, the ends and random ones. (policy's own tests check
		// AllowedPorts on every port; this checks the allowlist built on it.)
		ports := []uint16{1, 700, 9000, 65535}
		for _, g := range set.Grants {
			for _, r := range g.Ports {
				for _, v := range []int{int(r.Lo) - 1, int(r.Lo), int(r.Hi), int(r.Hi) + 1} {
					if 1 <= v && v <= 65535 {
						ports = append(ports, uint16(v))
					}
				}
			}
		}
		for range 20 {
			ports = append(ports, uint16(1+rng.IntN(65535)))
		}
		selfEP := pods[round%len(pods)]
		self := ix.Resolve(selfEP)
		list := NonTCPAllowlist(ix, self, pods)

		// Addresses to probe: the peers, both sides of every boundary,
		// and random ones.
		var addrs []netip.Addr
		for _, p := range pods {
			if p != selfEP {
				addrs = append(addrs, p.IP)
			}
		}
		for _, p := range ix.Networks() {
			lo, hi := prefixRange(p)
			for _, v := range []uint64{uint64(lo) - 1, uint64(lo), uint64(hi), uint64(hi) + 1} {
				if v < 1<<32 {
					addrs = append(addrs, u32Addr(uint32(v)))
				}
			}
		}
		for range 20 {
			addrs = append(addrs, u32Addr(rng.Uint32()))
		}
		for _, addr := range addrs {
			if addr == selfEP.IP {
				continue
			}
			ep := outsideEndpoint(addr)
			for _, p := range pods {
				if p.IP == addr {
					ep = p
				}
			}
			peer := ix.Resolve(ep)
			for _, proto := range nonTCPProtocols {
				check := func(port uint16) {
					out := ix.Decide(self, peer, proto.policy, port).Allowed
					in := ix.Decide(peer, self, proto.policy, port).Allowed
					seen[proto.nft][out]++
					if got := admits(list, redirect.Egress, proto.nft, addr, port); got != out {
						t.Fatalf("round %d: egress %s %s port %d: allowlist %v, Decide %v\nlist: %v\ngrants: %+v", round, proto.nft, addr, port, got, out, list, set.Grants)
					}
					if got := admits(list, redirect.Ingress, proto.nft, addr, port); got != in {
						t.Fatalf("round %d: ingress %s %s port %d: allowlist %v, Decide %v\nlist: %v\ngrants: %+v", round, proto.nft, addr, port, got, in, list, set.Grants)
					}
				}
				if proto.nft == redirect.ICMP {
					check(0)
					continue
				}
				for _, port := range ports {
					check(port)
				}
			}
		}
	}
	for proto, n := range seen {
		if n[true] == 0 || n[false] == 0 {
			t.Errorf("%s: %d allowed and %d denied probes; the generator needs both", proto, n[true], n[false])
		}
	}
}

func TestRangePrefixes(t *testing.T) {
	for _, tc := range []struct {
		lo, hi string
		want   string
	}{
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
		{"10.0.0.7", "10.0.0.7", "10.0.0.7/32"},
		{"255.255.255.255", "255.255.255.255", "255.255.255.255/32"},
		{"10.0.0.1", "10.0.0.6", "10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32"},
		{"0.0.0.0", "192.0.1.255", "0.0.0.0/1 128.0.0.0/2 192.0.0.0/23"},
		{"10.0.0.3", "255.255.255.255", "10.0.0.3/32 10.0.0.4/30 10.0.0.8/29 10.0.0.16/28 10.0.0.32/27 10.0.0.64/26 10.0.0.128/25 " +
			"10.0.1.0/24 10.0.2.0/23 10.0.4.0/22 10.0.8.0/21 10.0.16.0/20 10.0.32.0/19 10.0.64.0/18 10.0.128.0/17 10.1.0.0/16 " +
			"10.2.0.0/15 10.4.0.0/14 10.8.0.0/13 10.16.0.0/12 10.32.0.0/11 10.64.0.0/10 10.128.0.0/9 11.0.0.0/8 12.0.0.0/6 " +
			"16.0.0.0/4 32.0.0.0/3 64.0.0.0/2 128.0.0.0/1"},
	} {
		t.Run(tc.lo+"-"+tc.hi, func(t *testing.T) {
			got := fmt.Sprint(rangePrefixes(addrU32(netip.MustParseAddr(tc.lo)), addrU32(netip.MustParseAddr(tc.hi))))
			if want := "[" + tc.want + "]"; got != want {
				t.Fatalf("got %s, want %s", got, want)
			}
		})
	}
}

// TestRangePrefixesCoverExactlyAndMinimally: the prefixes tile the range
// in order, and no two neighbours could be one prefix (siblings), which
// for an aligned split is what makes the list the shortest.
func TestRangePrefixesCoverExactlyAndMinimally(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		lo, hi := rng.Uint32(), rng.Uint32()
		if rng.IntN(2) == 0 {
			hi = lo + rng.Uint32N(300) // short ranges hit the edges of blocks more often
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		ps := rangePrefixes(lo, hi)
		next := uint64(lo)
		for i, p := range ps {
			plo, phi := prefixRange(p)
			if p != p.Masked() || uint64(plo) != next {
				t.Fatalf("%s-%s: prefix %d %s does not continue at %s: %v", u32Addr(lo), u32Addr(hi), i, p, u32Addr(uint32(next)), ps)
			}
			next = uint64(phi) + 1
			if i > 0 {
				prev := ps[i-1]
				if prev.Bits() == p.Bits() && p.Bits() > 0 {
					if parent, _ := prev.Addr().Prefix(p.Bits() - 1); parent.Contains(p.Addr()) {
						t.Fatalf("%s-%s: %s and %s could be one prefix: %v", u32Addr(lo), u32Addr(hi), prev, p, ps)
					}
				}
			}
		}
		if next != uint64(hi)+1 {
			t.Fatalf("%s-%s: prefixes end at %s: %v", u32Addr(lo), u32Addr(hi), u32Addr(uint32(next-1)), ps)
		}
	}
}

func TestIntersectPorts(t *testing.T) {
	r := func(lo, hi uint16) policy.PortRange { return policy.PortRange{Protocol: policy.UDP, Lo: lo, Hi: hi} }
	for _, tc := range []struct {
		name string
		a, b []policy.PortRange
		want []policy.PortRange
	}{
		{name: "nothing and something", a: nil, b: []policy.PortRange{r(1, 65535)}},
		{name: "overlaps", a: []policy.PortRange{r(1, 10), r(20, 30), r(40, 50)}, b: []policy.PortRange{r(5, 25), r(30, 45)},
			want: []policy.PortRange{r(5, 10), r(20, 25), r(30, 30), r(40, 45)}},
		{name: "one range spans many", a: []policy.PortRange{r(1, 65535)}, b: []policy.PortRange{r(53, 53), r(100, 200)},
			want: []policy.PortRange{r(53, 53), r(100, 200)}},
		{name: "disjoint", a: []policy.PortRange{r(1, 10)}, b: []policy.PortRange{r(11, 20)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := intersectPorts(tc.a, tc.b); !slices.Equal(got, tc.want) {
				t.Errorf("a∩b = %v, want %v", got, tc.want)
			}
			if got := intersectPorts(tc.b, tc.a); !slices.Equal(got, tc.want) {
				t.Errorf("b∩a = %v, want %v", got, tc.want)
			}
		})
	}
}
