package redirect

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Direction says which way a non-TCP flow starts, seen from the pod.
type Direction uint8

const (
	// Egress flows are started by the pod: Peer is their destination and
	// the ports are the destination's.
	Egress Direction = iota + 1
	// Ingress flows are started by someone else: Peer is their source and
	// the ports are the pod's own (the destination's).
	Ingress
)

func (d Direction) String() string {
	switch d {
	case Egress:
		return "egress"
	case Ingress:
		return "ingress"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// Protocol is an IP protocol number that the non-TCP allowlist can admit.
// TCP is never in the list: it always goes through the agent.
type Protocol uint8

const (
	// ICMP admits echo requests (type 8, code 0) only; echo replies and
	// ICMP errors about allowed flows pass as conntrack "established" or
	// "related" traffic.
	ICMP Protocol = 1
	// UDP datagrams to the listed ports.
	UDP Protocol = 17
	// SCTP associations to the listed ports.
	SCTP Protocol = 132
)

func (p Protocol) String() string {
	switch p {
	case ICMP:
		return "icmp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// icmpEchoRequest is what the ICMP rule loads in place of a port: the two
// bytes at the start of the ICMP header, type 8 and code 0.
const icmpEchoRequest = 8 << 8

// Allow is one non-TCP flow the pod may take part in, compiled from policy.
// Everything not listed is dropped (fail closed).
type Allow struct {
	Direction Direction
	Protocol  Protocol
	// Peer is the remote side: the destination of an Egress flow, the
	// source of an Ingress flow. IPv4 only, like the rest of the rule set.
	Peer netip.Prefix
	// Port and EndPort (inclusive; 0 means just Port) bound the destination
	// port, as in NetworkPolicy. Port 0 means every port. Both must be 0
	// for ICMP.
	Port, EndPort uint16
}

func (a Allow) String() string {
	ports := ""
	switch {
	case a.Protocol == ICMP:
		ports = " echo-request"
	case a.Port == 0 && a.EndPort == 0:
	case a.EndPort == 0 || a.EndPort == a.Port:
		ports = fmt.Sprintf(" port %d", a.Port)
	default:
		ports = fmt.Sprintf(" ports %d-%d", a.Port, a.EndPort)
	}
	return fmt.Sprintf("%s %s %s%s", a.Direction, a.Protocol, a.Peer, ports)
}

// validate reports what is wrong with an entry, naming it.
func (a Allow) validate() error {
	var problem string
	switch {
	case a.Direction != Egress && a.Direction != Ingress:
		problem = "direction must be egress or ingress"
	case a.Protocol != ICMP && a.Protocol != UDP && a.Protocol != SCTP:
		problem = "protocol must be udp, sctp or icmp (tcp always goes through the agent)"
	case !a.Peer.IsValid() || !a.Peer.Addr().Is4():
		problem = "peer must be an IPv4 prefix"
	case a.Protocol == ICMP && (a.Port != 0 || a.EndPort != 0):
		problem = "icmp has no ports"
	case a.EndPort != 0 && a.EndPort < a.Port:
		problem = "end port below port"
	default:
		return nil
	}
	return fmt.Errorf("redirect: allowlist entry %q: %s", a, problem)
}

// span is a closed interval.
type span struct{ lo, hi uint32 }

// box is one element of an allowlist set: a range of IPv4 addresses, one
// protocol and a range of ports (or the ICMP type and code).
type box struct {
	addr  span
	proto Protocol
	port  span
}

func (b box) String() string {
	return fmt.Sprintf("%s-%s . %s . %d-%d", u32addr(b.addr.lo), u32addr(b.addr.hi), b.proto, b.port.lo, b.port.hi)
}

// keyLen is the length of an element key: ipv4_addr . inet_proto .
// inet_service, each field padded to a 4-byte register as nftables does for
// concatenations.
const keyLen = 12

// keys encodes the element as the set wants it: the lowest point of the box
// as the key and the highest as the key end.
func (b box) keys() (key, keyEnd []byte) {
	enc := func(addr, port uint32) []byte {
		k := make([]byte, keyLen)
		binary.BigEndian.PutUint32(k[0:4], addr)
		k[4] = byte(b.proto)
		binary.BigEndian.PutUint16(k[8:10], uint16(port))
		return k
	}
	return enc(b.addr.lo, b.port.lo), enc(b.addr.hi, b.port.hi)
}

// boxFromKeys decodes an element read back from the kernel.
func boxFromKeys(key, keyEnd []byte) (box, error) {
	if len(keyEnd) == 0 {
		keyEnd = key // an element that is a single point may come back without an end
	}
	if len(key) != keyLen || len(keyEnd) != keyLen {
		return box{}, fmt.Errorf("element key of %d/%d bytes, want %d", len(key), len(keyEnd), keyLen)
	}
	if key[4] != keyEnd[4] {
		return box{}, fmt.Errorf("element spans protocols %d-%d", key[4], keyEnd[4])
	}
	return box{
		addr:  span{binary.BigEndian.Uint32(key[0:4]), binary.BigEndian.Uint32(keyEnd[0:4])},
		proto: Protocol(key[4]),
		port:  span{uint32(binary.BigEndian.Uint16(key[8:10])), uint32(binary.BigEndian.Uint16(keyEnd[8:10]))},
	}, nil
}

// compiled is an allowlist split by direction into the elements of the two
// sets, each list sorted and free of overlaps.
type compiled struct {
	egress, ingress []box
	probe           netip.Addr // Spec.ProbeSource
}

// compileSpec is compile for a whole Spec.
func compileSpec(spec Spec) (compiled, error) {
	if spec.ProbeSource.IsValid() && !spec.ProbeSource.Is4() {
		return compiled{}, fmt.Errorf("redirect: probe source %s is not an IPv4 address", spec.ProbeSource)
	}
	c, err := compile(spec.NonTCP)
	c.probe = spec.ProbeSource
	return c, err
}

// compile validates entries and turns them into disjoint set elements.
//
// The kernel's interval set for concatenations (pipapo) refuses an element
// that overlaps one already in the set, while entries compiled from policy
// overlap all the time (10.0.0.0/8 port 53 and 10.1.0.0/16 ports 50-60).
// So the entries are cut along every address boundary, the port ranges that
// cover each address piece are merged, and neighbouring pieces with the same
// ports are joined again: the result admits exactly the same packets, with
// no overlap and few elements.
func compile(entries []Allow) (compiled, error) {
	var errs []error
	groups := map[Direction]map[Protocol][]box{Egress: {}, Ingress: {}}
	for _, a := range entries {
		if err := a.validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		p := a.Peer.Masked()
		lo := binary.BigEndian.Uint32(p.Addr().AsSlice())
		hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
		port := span{uint32(a.Port), uint32(a.Port)}
		switch {
		case a.Protocol == ICMP:
			port = span{icmpEchoRequest, icmpEchoRequest}
		case a.Port == 0 && a.EndPort == 0:
			port = span{0, 0xffff}
		case a.EndPort != 0:
			port.hi = uint32(a.EndPort)
		}
		groups[a.Direction][a.Protocol] = append(groups[a.Direction][a.Protocol], box{span{lo, hi}, a.Protocol, port})
	}
	if len(errs) > 0 {
		return compiled{}, errors.Join(errs...)
	}
	var c compiled
	for _, proto := range []Protocol{ICMP, UDP, SCTP} {
		c.egress = append(c.egress, disjoint(groups[Egress][proto])...)
		c.ingress = append(c.ingress, disjoint(groups[Ingress][proto])...)
	}
	return c, nil
}

// disjoint rewrites boxes of one protocol into boxes that do not overlap
// and cover the same points.
func disjoint(in []box) []box {
	if len(in) == 0 {
		return nil
	}
	// Every address where coverage may change; uint64 so that the point
	// after 255.255.255.255 exists.
	var cuts []uint64
	for _, b := range in {
		cuts = append(cuts, uint64(b.addr.lo), uint64(b.addr.hi)+1)
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)

	type piece struct {
		addr  span
		ports []span
	}
	var pieces []piece
	for i := 0; i+1 < len(cuts); i++ {
		a := span{uint32(cuts[i]), uint32(cuts[i+1] - 1)}
		var ports []span
		for _, b := range in {
			if b.addr.lo <= a.lo && a.lo <= b.addr.hi {
				ports = append(ports, b.port)
			}
		}
		if len(ports) == 0 {
			continue
		}
		ports = merge(ports)
		// Join with the previous piece when it touches and admits the
		// same ports.
		if n := len(pieces); n > 0 && uint64(pieces[n-1].addr.hi)+1 == uint64(a.lo) && slices.Equal(pieces[n-1].ports, ports) {
			pieces[n-1].addr.hi = a.hi
			continue
		}
		pieces = append(pieces, piece{a, ports})
	}
	var out []box
	for _, p := range pieces {
		for _, port := range p.ports {
			out = append(out, box{p.addr, in[0].proto, port})
		}
	}
	return out
}

// merge sorts spans and joins those that overlap or touch.
func merge(s []span) []span {
	slices.SortFunc(s, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	out := s[:1]
	for _, x := range s[1:] {
		last := &out[len(out)-1]
		if uint64(x.lo) <= uint64(last.hi)+1 {
			last.hi = max(last.hi, x.hi)
			continue
		}
		out = append(out, x)
	}
	return slices.Clone(out)
}

func u32addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// sameList reports whether two compiled allowlists hold the same elements,
// in any order.
func sameList(a, b compiled) bool {
	return sameBoxes(a.egress, b.egress) && sameBoxes(a.ingress, b.ingress)
}

func sameBoxes(a, b []box) bool {
	key := func(x box) string { return x.String() }
	as, bs := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		as[i] = key(a[i])
	}
	for i := range b {
		bs[i] = key(b[i])
	}
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(as, bs)
}

// covers reports whether allowlist c admits every flow old admits. The
// output of disjoint is canonical (maximal address runs of equal port
// sets), so old is covered exactly when adding it to c changes nothing.
func covers(c, old compiled) bool {
	return sameBoxes(union(c.egress, old.egress), c.egress) && sameBoxes(union(c.ingress, old.ingress), c.ingress)
}

func union(a, b []box) []box {
	byProto := map[Protocol][]box{}
	for _, x := range slices.Concat(a, b) {
		byProto[x.proto] = append(byProto[x.proto], x)
	}
	var out []box
	for _, p := range []Protocol{ICMP, UDP, SCTP} {
		out = append(out, disjoint(byProto[p])...)
	}
	return out
}
