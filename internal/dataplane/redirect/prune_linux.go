package redirect

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// pruneFlows deletes the conntrack entries of the pod's non-TCP flows that
// allowlist c no longer admits. The filter chains accept "ct state
// established" before they look at the allowlist, so without this a UDP
// flow whose permission was withdrawn would keep going until its entry
// timed out (30 s, or 120 s once both directions were seen). With the
// entry gone, its next packet is new, meets the allowlist and is dropped.
func pruneFlows(ns netns.NsHandle, c compiled) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("redirect: open netlink in pod namespace: %w", err)
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("redirect: list pod addresses: %w", err)
	}
	f := staleFlow{c: c, local: map[netip.Addr]bool{}}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			f.local[ip] = true
		}
	}
	if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.FAMILY_V4, f); err != nil {
		return fmt.Errorf("redirect: end flows no longer allowed: %w", err)
	}
	return nil
}

// staleFlow matches the conntrack entries of non-TCP flows between the pod
// and the outside that the allowlist does not admit.
type staleFlow struct {
	c     compiled
	local map[netip.Addr]bool
}

func (f staleFlow) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	proto := Protocol(flow.Forward.Protocol)
	if proto != UDP && proto != SCTP && proto != ICMP {
		return false // TCP goes through the agent, which re-checks it itself
	}
	src, ok1 := netip.AddrFromSlice(flow.Forward.SrcIP.To4())
	dst, ok2 := netip.AddrFromSlice(flow.Forward.DstIP.To4())
	if !ok1 || !ok2 {
		return false
	}
	// Conntrack keeps the echo ID, not a port, for ICMP; the only ICMP
	// flows the allowlist ever admits are echo requests.
	port := uint32(flow.Forward.DstPort)
	if proto == ICMP {
		port = icmpEchoRequest
	}
	switch srcIn, dstIn := f.isLocal(src), f.isLocal(dst); {
	case srcIn && !dstIn:
		return !admitted(f.c.egress, dst, proto, port)
	case !srcIn && dstIn:
		return !admitted(f.c.ingress, src, proto, port)
	}
	return false // inside the pod (loopback)
}

func (f staleFlow) isLocal(a netip.Addr) bool { return a.IsLoopback() || f.local[a] }

// admitted reports whether an element admits the flow.
func admitted(boxes []box, peer netip.Addr, proto Protocol, port uint32) bool {
	p := peer.As4()
	v := binary.BigEndian.Uint32(p[:])
	for _, b := range boxes {
		if b.proto == proto && b.addr.lo <= v && v <= b.addr.hi && b.port.lo <= port && port <= b.port.hi {
			return true
		}
	}
	return false
}
