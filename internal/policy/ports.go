package policy

import (
	"cmp"
	"net/netip"
	"slices"
)

// This file answers Decide for many flows at once, for the data plane's
// non-TCP allowlist: nftables admits packets by (peer address, protocol,
// port) before any process sees them, so the allowlist must be compiled
// ahead of time from the same index, with the same answers.

// AllowedPorts returns the destination ports on which src may send proto
// to dst: exactly the ports for which Decide(src, dst, proto, port) is
// allowed, as sorted, merged, non-overlapping ranges whose Protocol is
// proto (Name empty). UDP, SCTP and TCP are answered over ports 1–65535;
// port 0 is no port a flow can use and is never returned.
//
// ICMP (and AnyProtocol) have no ports: ICMP is granted by native rules
// that list icmp in their protocols, by rules that name no port and no
// protocol (a Kubernetes rule without ports, which allows "all traffic"),
// or where neither side is isolated. The answer is AllPorts when
// Decide(src, dst, proto, 0) allows the flow, nil otherwise.
//
// Decide is called once per range of ports on which no rule of either side
// starts or ends, not once per port: the cost follows the number of rules
// that could match the pair.
func (ix *Index) AllowedPorts(src, dst *Subject, proto Protocol) []PortRange {
	if src.ix != ix || dst.ix != ix {
		return nil // Decide refuses subjects of another index; so do we
	}
	if proto == AnyProtocol || proto == ICMP {
		if ix.Decide(src, dst, proto, 0).Allowed {
			return slices.Clone(AllPorts)
		}
		return nil
	}
	// Cut points: the first port of every run of ports on which the
	// verdict may change. uint32, so that the point after 65535 exists.
	cuts := []uint32{1, 65536}
	cut := func(lo, hi uint16) {
		cuts = append(cuts, max(uint32(lo), 1), uint32(hi)+1)
	}
	collect := func(t *sideTable, peerOf []int32) {
		for i, id := range t.peers {
			if _, ok := slices.BinarySearch(peerOf, id); !ok {
				continue
			}
			for _, rules := range [][]portRule{t.ports[i].allow, t.ports[i].deny} {
				for _, r := range rules {
					switch {
					case r.Protocol != AnyProtocol && r.Protocol != proto:
					case r.Name != "":
						// Named ports are the destination's, as in
						// matches.
						if p, ok := dst.ep.portNamed(r.Name, proto); ok {
							cut(p, p)
						}
					default:
						cut(r.Lo, r.Hi)
					}
				}
			}
		}
	}
	if src.ep.Workload {
		collect(&src.side[Egress], dst.peerOf)
	}
	if dst.ep.Workload {
		collect(&dst.side[Ingress], src.peerOf)
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)

	var out []PortRange
	for i := 0; i+1 < len(cuts); i++ {
		lo, hi := cuts[i], cuts[i+1]-1
		if lo > 65535 {
			break
		}
		// No rule of either side starts or ends inside [lo, hi], so every
		// port in it gets the verdict of lo.
		if !ix.Decide(src, dst, proto, uint16(lo)).Allowed {
			continue
		}
		if n := len(out); n > 0 && uint32(out[n-1].Hi)+1 == lo {
			out[n-1].Hi = uint16(hi)
			continue
		}
		out = append(out, PortRange{Protocol: proto, Lo: uint16(lo), Hi: uint16(hi)})
	}
	return out
}

// Networks returns every IPv4 prefix that a peer selector of a grant
// tests an address against: the Prefixes and Except of its TermCIDR and
// TermExternal terms, masked, sorted and without duplicates.
//
// An address outside the cluster matches no other kind of term than these
// and `*`, and it is only ever the peer of a grant (it has no policy of
// its own). So two outside addresses that no prefix boundary separates
// match the same selectors and get the same decisions: these prefixes
// partition the outside world into ranges that policy treats alike.
func (ix *Index) Networks() []netip.Prefix {
	var out []netip.Prefix
	for id, sel := range ix.selectors {
		if !ix.isPeer[id] {
			continue
		}
		for _, t := range sel.Terms {
			if t.Kind != TermCIDR && t.Kind != TermExternal {
				continue
			}
			for _, p := range slices.Concat(t.Prefixes, t.Except) {
				// inPrefixes unmaps the address, so a 4-in-6 prefix
				// contains no IPv4 address and draws no boundary.
				if p.IsValid() && p.Addr().Is4() {
					out = append(out, p.Masked())
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	return slices.Compact(out)
}
