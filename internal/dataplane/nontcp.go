package dataplane

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/ztcn/ztcn/internal/dataplane/redirect"
	"github.com/ztcn/ztcn/internal/policy"
)

// UDP, SCTP and ICMP are not proxied: the pod's nftables filter admits or
// drops them by peer address, protocol and port before any process sees
// them (DESIGN §5). This file compiles that allowlist from the policy
// index, so that the filter admits exactly the flows Decide allows.

// NonTCPAllowlist is the non-TCP allowlist of the pod self (a workload
// subject resolved with ix): Egress entries for the UDP, SCTP and ICMP
// echo flows self may start, Ingress entries for those it may receive,
// with the same answers as ix.Decide. The result is sorted, so that equal
// policies give equal lists.
//
// The peers are every address of IPv4:
//   - each workload in peers, by its IP (self, endpoints that are not
//     workloads and endpoints without an IPv4 address are skipped); when two
//     peers claim one IP, the address gets only what both may do;
//   - everything else, as an address outside the cluster. ix.Networks
//     partitions that space into ranges that policy treats alike, so one
//     decision per range, for a representative address, holds for all of it.
//
// Neighbouring addresses with the same ports are joined, and each run of
// addresses becomes the fewest CIDR prefixes that cover it exactly, so a
// workload can share an entry with its neighbours.
//
// ICMP is echo request only (replies and errors about allowed flows pass
// as conntrack "related"). It is allowed where a native rule lists icmp,
// where a rule naming no port and no protocol allows the flow (see
// policy.Index.AllowedPorts), and where neither side is isolated.
//
// Known limitation: the filter sees addresses, not identities. A workload
// that is not in peers but whose IP falls in an outside range is admitted
// by that range's entries, as if it were outside the cluster (for example
// by a rule to `external:` 0.0.0.0/0, which policy says matches no
// workload). Pass every workload the pod can exchange packets with, not
// only those on this node, and compile again when a peer appears, goes or
// changes labels. Packets are not authenticated either: a peer is trusted
// to be the address it sends from (DESIGN §5: non-TCP is not encrypted).
//
// A self resolved with another index compiles to an empty list: every
// non-TCP packet is dropped (fail closed).
func NonTCPAllowlist(ix *policy.Index, self *policy.Subject, peers []*policy.Endpoint) []redirect.Allow {
	return nonTCPAllowlist(ix, self, peers, ix.Resolve, func(ip netip.Addr) *policy.Subject { return ix.Resolve(outsideEndpoint(ip)) })
}

// NonTCPAllowlist is the package's NonTCPAllowlist with the peers resolved
// through the data plane's subject caches (see subjectOf), so that
// recompiling every pod's list costs one resolution per peer and policy
// version, not one per pod and peer: at 100,000 rules a resolution takes
// about 190 µs. The peers must be immutable (attached pods' and directory
// endpoints).
func (dp *DataPlane) NonTCPAllowlist(ix *policy.Index, self *policy.Subject, peers []*policy.Endpoint) []redirect.Allow {
	return nonTCPAllowlist(ix, self, peers,
		func(ep *policy.Endpoint) *policy.Subject { return dp.subjectOf(ix, ep) },
		func(ip netip.Addr) *policy.Subject { return dp.subjectOf(ix, dp.outsideEndpointOf(ip)) })
}

// Subject is ep resolved against ix through the data plane's caches (see
// NonTCPAllowlist for the conditions).
func (dp *DataPlane) Subject(ix *policy.Index, ep *policy.Endpoint) *policy.Subject {
	return dp.subjectOf(ix, ep)
}

// nonTCPAllowlist is NonTCPAllowlist with the resolution of peers and of
// outside addresses given.
func nonTCPAllowlist(ix *policy.Index, self *policy.Subject, peers []*policy.Endpoint,
	resolve func(*policy.Endpoint) *policy.Subject, resolveOutside func(netip.Addr) *policy.Subject) []redirect.Allow {
	selfIP := self.Endpoint().IP.Unmap()

	// The known workloads, sorted by address, one admission per address.
	type peer struct {
		ip  uint32
		adm admission
	}
	var known []peer
	for _, ep := range peers {
		if ep == nil || !ep.Workload {
			continue
		}
		ip := ep.IP.Unmap()
		if !ip.Is4() || ip == selfIP {
			continue
		}
		known = append(known, peer{ip: addrU32(ip), adm: admissionOf(ix, self, resolve(ep))})
	}
	slices.SortStableFunc(known, func(a, b peer) int { return cmp.Compare(a.ip, b.ip) })
	n := 0
	for i := range known {
		if n > 0 && known[n-1].ip == known[i].ip {
			// Two endpoints with one address (a stale directory entry, a
			// reused address): the filter cannot tell them apart, so admit
			// only what both may do.
			known[n-1].adm.intersect(&known[i].adm)
			continue
		}
		known[n] = known[i]
		n++
	}
	known = known[:n]

	// The outside ranges: cut IPv4 at every boundary of every prefix that
	// policy tests an outside address against. uint64, so that the point
	// after 255.255.255.255 exists.
	cuts := []uint64{0, 1 << 32}
	for _, p := range ix.Networks() {
		lo, hi := prefixRange(p)
		cuts = append(cuts, uint64(lo), uint64(hi)+1)
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)

	// Walk the outside ranges in order, cutting the known workloads out of
	// them, and join neighbours that admit the same.
	var segs []segment
	add := func(lo, end uint64, adm *admission) {
		if n := len(segs); n > 0 && segs[n-1].end == lo && segs[n-1].adm.equal(adm) {
			segs[n-1].end = end
			return
		}
		segs = append(segs, segment{lo: lo, end: end, adm: *adm})
	}
	next := 0
	for i := 0; i+1 < len(cuts); i++ {
		lo, end := cuts[i], cuts[i+1]
		outside := admissionOf(ix, self, resolveOutside(u32Addr(uint32(lo))))
		for ; next < len(known) && uint64(known[next].ip) < end; next++ {
			ip := uint64(known[next].ip)
			if lo < ip {
				add(lo, ip, &outside)
			}
			add(ip, ip+1, &known[next].adm)
			lo = ip + 1
		}
		if lo < end {
			add(lo, end, &outside)
		}
	}

	// Emit each direction and protocol on its own, joining again the runs
	// of addresses that admit the same ports there: a pod open to
	// everything on egress keeps 0.0.0.0/0 however its ingress is cut.
	var out []redirect.Allow
	for d, dir := range [...]redirect.Direction{redirect.Egress, redirect.Ingress} {
		for i, proto := range nonTCPProtocols {
			emit := func(lo, end uint64, ports []policy.PortRange) {
				for _, pfx := range rangePrefixes(uint32(lo), uint32(end-1)) {
					for _, r := range ports {
						out = append(out, allowEntry(dir, proto.nft, pfx, r))
					}
				}
			}
			var lo, end uint64
			var ports []policy.PortRange
			for _, s := range segs {
				if here := s.adm[d][i]; s.lo == end && slices.Equal(here, ports) {
					end = s.end
					continue
				}
				if len(ports) > 0 {
					emit(lo, end, ports)
				}
				lo, end, ports = s.lo, s.end, s.adm[d][i]
			}
			if len(ports) > 0 {
				emit(lo, end, ports)
			}
		}
	}
	slices.SortFunc(out, compareAllow)
	return out
}

// nonTCPProtocols are the protocols of the allowlist and what policy calls
// them; a read-only table.
var nonTCPProtocols = [...]struct {
	policy policy.Protocol
	nft    redirect.Protocol
}{
	{policy.UDP, redirect.UDP},
	{policy.SCTP, redirect.SCTP},
	{policy.ICMP, redirect.ICMP},
}

// admission is what policy allows between the pod and one peer: for each
// direction (egress, ingress) and each of nonTCPProtocols, the ports.
type admission [2][len(nonTCPProtocols)][]policy.PortRange

func admissionOf(ix *policy.Index, self, peer *policy.Subject) admission {
	var a admission
	for i, proto := range nonTCPProtocols {
		a[0][i] = ix.AllowedPorts(self, peer, proto.policy)
		a[1][i] = ix.AllowedPorts(peer, self, proto.policy)
	}
	return a
}

func (a *admission) equal(b *admission) bool {
	for d := range a {
		for i := range a[d] {
			if !slices.Equal(a[d][i], b[d][i]) {
				return false
			}
		}
	}
	return true
}

// intersect keeps in a only the ports b admits too.
func (a *admission) intersect(b *admission) {
	for d := range a {
		for i := range a[d] {
			a[d][i] = intersectPorts(a[d][i], b[d][i])
		}
	}
}

// intersectPorts intersects two sorted lists of disjoint ranges of one
// protocol.
func intersectPorts(a, b []policy.PortRange) []policy.PortRange {
	var out []policy.PortRange
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := max(a[i].Lo, b[j].Lo), min(a[i].Hi, b[j].Hi)
		if lo <= hi {
			r := a[i]
			r.Lo, r.Hi = lo, hi
			out = append(out, r)
		}
		if a[i].Hi < b[j].Hi {
			i++
		} else {
			j++
		}
	}
	return out
}

// segment is a run of addresses [lo, end) that the pod may exchange the
// same non-TCP flows with.
type segment struct {
	lo, end uint64
	adm     admission
}

func allowEntry(dir redirect.Direction, proto redirect.Protocol, peer netip.Prefix, r policy.PortRange) redirect.Allow {
	a := redirect.Allow{Direction: dir, Protocol: proto, Peer: peer}
	if proto == redirect.ICMP {
		return a // echo request; ICMP has no ports
	}
	// AllowedPorts never returns port 0, so Port 0 ("every port") cannot
	// arise by accident; EndPort 0 means "just Port".
	a.Port = r.Lo
	if r.Hi != r.Lo {
		a.EndPort = r.Hi
	}
	return a
}

func compareAllow(a, b redirect.Allow) int {
	return cmp.Or(
		cmp.Compare(a.Direction, b.Direction),
		cmp.Compare(a.Protocol, b.Protocol),
		a.Peer.Addr().Compare(b.Peer.Addr()),
		cmp.Compare(a.Peer.Bits(), b.Peer.Bits()),
		cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.EndPort, b.EndPort),
	)
}

// rangePrefixes returns the fewest IPv4 prefixes that cover exactly the
// addresses lo..hi (inclusive), in address order: at each step the largest
// block that starts at lo, is aligned on its size and ends by hi.
func rangePrefixes(lo, hi uint32) []netip.Prefix {
	var out []netip.Prefix
	for {
		size := bits.TrailingZeros32(lo) // 32 when lo is 0.0.0.0
		for size > 0 && uint64(lo)+(uint64(1)<<size)-1 > uint64(hi) {
			size--
		}
		out = append(out, netip.PrefixFrom(u32Addr(lo), 32-size))
		next := uint64(lo) + uint64(1)<<size
		if next > uint64(hi) {
			return out
		}
		lo = uint32(next)
	}
}

// prefixRange is the first and last address of an IPv4 prefix.
func prefixRange(p netip.Prefix) (lo, hi uint32) {
	p = p.Masked()
	lo = addrU32(p.Addr())
	return lo, lo | uint32(uint64(1)<<(32-p.Bits())-1)
}

func addrU32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func u32Addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
