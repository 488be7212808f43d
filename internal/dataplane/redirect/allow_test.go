package redirect

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func boxStrings(bs []box) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.String()
	}
	return out
}

func TestCompile(t *testing.T) {
	udp := func(p string, port, end uint16) Allow {
		return Allow{Direction: Egress, Protocol: UDP, Peer: pfx(p), Port: port, EndPort: end}
	}
	cases := []struct {
		name    string
		in      []Allow
		egress  []string
		ingress []string
	}{
		{"one port to one host is one element",
			[]Allow{udp("10.0.0.1/32", 53, 0)},
			[]string{"10.0.0.1-10.0.0.1 . udp . 53-53"}, nil},
		{"no port means every port",
			[]Allow{udp("10.0.0.0/24", 0, 0)},
			[]string{"10.0.0.0-10.0.0.255 . udp . 0-65535"}, nil},
		{"a port range is one element",
			[]Allow{udp("10.0.0.0/24", 5000, 5010)},
			[]string{"10.0.0.0-10.0.0.255 . udp . 5000-5010"}, nil},
		{"an unmasked prefix counts as its network",
			[]Allow{udp("10.0.0.5/24", 53, 0)},
			[]string{"10.0.0.0-10.0.0.255 . udp . 53-53"}, nil},
		{"icmp admits echo requests only",
			[]Allow{{Direction: Egress, Protocol: ICMP, Peer: pfx("0.0.0.0/0")}},
			[]string{"0.0.0.0-255.255.255.255 . icmp . 2048-2048"}, nil},
		{"a host inside a listed network with the same port is absorbed",
			[]Allow{udp("10.0.0.0/8", 53, 0), udp("10.1.2.3/32", 53, 0)},
			[]string{"10.0.0.0-10.255.255.255 . udp . 53-53"}, nil},
		{"a nested network with other ports is cut out",
			[]Allow{udp("10.0.0.0/24", 53, 0), udp("10.0.0.128/25", 60, 0)},
			[]string{
				"10.0.0.0-10.0.0.127 . udp . 53-53",
				"10.0.0.128-10.0.0.255 . udp . 53-53",
				"10.0.0.128-10.0.0.255 . udp . 60-60",
			}, nil},
		{"neighbouring networks with the same ports are joined",
			[]Allow{udp("10.0.0.0/25", 53, 0), udp("10.0.0.128/25", 53, 0)},
			[]string{"10.0.0.0-10.0.0.255 . udp . 53-53"}, nil},
		{"touching and overlapping port ranges are joined",
			[]Allow{udp("10.0.0.1/32", 53, 0), udp("10.0.0.1/32", 54, 60), udp("10.0.0.1/32", 58, 70)},
			[]string{"10.0.0.1-10.0.0.1 . udp . 53-70"}, nil},
		{"duplicates collapse",
			[]Allow{udp("10.0.0.1/32", 53, 0), udp("10.0.0.1/32", 53, 0)},
			[]string{"10.0.0.1-10.0.0.1 . udp . 53-53"}, nil},
		{"directions and protocols stay apart",
			[]Allow{
				udp("10.0.0.1/32", 53, 0),
				{Direction: Egress, Protocol: SCTP, Peer: pfx("10.0.0.1/32"), Port: 53},
				{Direction: Ingress, Protocol: UDP, Peer: pfx("10.0.0.0/24"), Port: 53},
			},
			[]string{"10.0.0.1-10.0.0.1 . udp . 53-53", "10.0.0.1-10.0.0.1 . sctp . 53-53"},
			[]string{"10.0.0.0-10.0.0.255 . udp . 53-53"}},
		{"nothing listed compiles to empty sets", nil, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := compile(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := boxStrings(c.egress); !slices.Equal(got, tc.egress) {
				t.Errorf("egress = %q, want %q", got, tc.egress)
			}
			if got := boxStrings(c.ingress); !slices.Equal(got, tc.ingress) {
				t.Errorf("ingress = %q, want %q", got, tc.ingress)
			}
		})
	}
}

func TestCompileRefusesBadEntries(t *testing.T) {
	good := Allow{Direction: Egress, Protocol: UDP, Peer: pfx("10.0.0.0/24"), Port: 53}
	cases := []struct {
		name   string
		mutate func(*Allow)
		why    string
	}{
		{"tcp is never on the list", func(a *Allow) { a.Protocol = 6 }, "protocol"},
		{"a direction is required", func(a *Allow) { a.Direction = 0 }, "direction"},
		{"an IPv6 peer is refused", func(a *Allow) { a.Peer = pfx("2001:db8::/64") }, "IPv4"},
		{"a peer is required", func(a *Allow) { a.Peer = netip.Prefix{} }, "IPv4"},
		{"icmp has no ports", func(a *Allow) { a.Protocol = ICMP }, "icmp has no ports"},
		{"an end port below the port", func(a *Allow) { a.Port, a.EndPort = 60, 50 }, "end port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := good
			tc.mutate(&bad)
			_, err := compile([]Allow{good, bad})
			if err == nil || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("compile = %v, want an error about %q", err, tc.why)
			}
		})
	}
}

// TestCompileAdmitsExactlyTheListedFlows checks, on random allowlists in
// a small address and port space, every point: the elements admit a flow
// exactly when some entry does, and never overlap (the kernel refuses
// overlapping elements).
func TestCompileAdmitsExactlyTheListedFlows(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := binary.BigEndian.Uint32([]byte{10, 0, 0, 0})
	for round := range 300 {
		var entries []Allow
		for range 1 + rng.IntN(6) {
			bits := 28 + rng.IntN(5)
			a := Allow{
				Direction: Egress,
				Protocol:  []Protocol{UDP, SCTP, ICMP}[rng.IntN(3)],
				Peer:      netip.PrefixFrom(u32addr(base+uint32(rng.IntN(16))), bits).Masked(),
			}
			if a.Protocol != ICMP && rng.IntN(5) > 0 {
				a.Port = uint16(50 + rng.IntN(20))
				if rng.IntN(2) == 0 {
					a.EndPort = a.Port + uint16(rng.IntN(8))
				}
			}
			entries = append(entries, a)
		}
		c, err := compile(entries)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range c.egress {
			for _, y := range c.egress[i+1:] {
				if x.proto == y.proto && x.addr.lo <= y.addr.hi && y.addr.lo <= x.addr.hi && x.port.lo <= y.port.hi && y.port.lo <= x.port.hi {
					t.Fatalf("round %d: %v and %v overlap (entries %v)", round, x, y, entries)
				}
			}
		}
		for addr := base; addr < base+24; addr++ {
			for _, proto := range []Protocol{UDP, SCTP, ICMP} {
				ports := []uint32{0, 45, 49, 50, 55, 60, 69, 70, 77, 78, icmpEchoRequest, 65535}
				for _, port := range ports {
					want := slices.ContainsFunc(entries, func(a Allow) bool { return admits(a, addr, proto, port) })
					got := slices.ContainsFunc(c.egress, func(b box) bool {
						return b.proto == proto && b.addr.lo <= addr && addr <= b.addr.hi && b.port.lo <= port && port <= b.port.hi
					})
					if got != want {
						t.Fatalf("round %d: %s %s port %d: elements admit %v, entries %v (entries %v, elements %v)",
							round, u32addr(addr), proto, port, got, want, entries, boxStrings(c.egress))
					}
				}
			}
		}
	}
}

// admits is the meaning of one entry, written independently of compile.
func admits(a Allow, addr uint32, proto Protocol, port uint32) bool {
	if a.Protocol != proto || !a.Peer.Contains(u32addr(addr)) {
		return false
	}
	switch {
	case proto == ICMP:
		return port == icmpEchoRequest
	case a.Port == 0 && a.EndPort == 0:
		return true
	case a.EndPort == 0:
		return port == uint32(a.Port)
	}
	return uint32(a.Port) <= port && port <= uint32(a.EndPort)
}

func TestElementKeysRoundTrip(t *testing.T) {
	b := box{span{0x0a000000, 0x0a0000ff}, SCTP, span{5000, 5010}}
	key, end := b.keys()
	if len(key) != keyLen || len(end) != keyLen {
		t.Fatalf("key lengths %d/%d", len(key), len(end))
	}
	// ipv4_addr . inet_proto (padded to 4) . inet_service (padded to 4).
	if want := []byte{10, 0, 0, 0, 132, 0, 0, 0, 0x13, 0x88, 0, 0}; !slices.Equal(key, want) {
		t.Errorf("key = %x, want %x", key, want)
	}
	got, err := boxFromKeys(key, end)
	if err != nil || got != b {
		t.Errorf("boxFromKeys = %v, %v; want %v", got, err, b)
	}
	if got, err := boxFromKeys(key, nil); err != nil || got.addr.hi != b.addr.lo || got.port.hi != b.port.lo {
		t.Errorf("a point element without an end = %v, %v", got, err)
	}
}

func TestHealthString(t *testing.T) {
	h := Health{State: Drifted, Drift: []Drift{
		{Kind: MissingTable, Object: "table ip ztcn"},
		{Kind: RuleMismatch, Object: "table inet ztcn-guard chain output", Detail: "rule 1: ..."},
	}}
	want := "drifted: missing table: table ip ztcn; rule mismatch: table inet ztcn-guard chain output: rule 1: ..."
	if got := h.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if !h.Has(RuleMismatch) || h.Has(MissingRoute) {
		t.Error("Has is wrong")
	}
	if got := (Health{State: Healthy}).String(); got != "healthy" {
		t.Errorf("healthy String() = %q", got)
	}
}

func TestCovers(t *testing.T) {
	list := func(entries ...Allow) compiled {
		c, err := compile(entries)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	dns := Allow{Direction: Egress, Protocol: UDP, Peer: pfx("10.0.0.53/32"), Port: 53}
	dnsNet := Allow{Direction: Egress, Protocol: UDP, Peer: pfx("10.0.0.0/24"), Port: 53}
	ntp := Allow{Direction: Egress, Protocol: UDP, Peer: pfx("10.0.0.123/32"), Port: 123}
	in := Allow{Direction: Ingress, Protocol: UDP, Peer: pfx("10.0.0.53/32"), Port: 53}
	cases := []struct {
		name     string
		now, old compiled
		want     bool
	}{
		{"the same list covers itself", list(dns, ntp), list(dns, ntp), true},
		{"a wider network covers a host in it", list(dnsNet), list(dns), true},
		{"adding an entry covers the old list", list(dns, ntp), list(dns), true},
		{"withdrawing an entry does not", list(dns), list(dns, ntp), false},
		{"a host does not cover its network", list(dns), list(dnsNet), false},
		{"egress does not cover ingress", list(dns), list(in), false},
		{"anything covers nothing", list(), list(), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := covers(tc.now, tc.old); got != tc.want {
				t.Errorf("covers = %v, want %v", got, tc.want)
			}
		})
	}
	if !sameList(list(dns, ntp), list(ntp, dns)) || sameList(list(dns), list(dnsNet)) {
		t.Error("sameList is wrong")
	}
}
