package redirect

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The policy routing half of the rule set:
//
//	ip rule add fwmark 0x111/0xfff pref 32764 lookup 100
//	ip route add local 0.0.0.0/0 dev lo table 100
//
// Replies of the application to a connection the agent opened with the
// client's address (IP_TRANSPARENT) carry the connmark, restored onto the
// packet mark by mangle_output; this route then delivers them locally, to
// the agent's socket, instead of out of the pod.

func ipRule() *netlink.Rule {
	r := netlink.NewRule()
	r.Family = netlink.FAMILY_V4
	r.Priority = RulePriority
	r.Mark = ConnMark
	mask := uint32(MarkMask)
	r.Mask = &mask
	r.Table = RouteTable
	return r
}

func localRoute(lo int) *netlink.Route {
	return &netlink.Route{
		Family:    netlink.FAMILY_V4,
		LinkIndex: lo,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Table:     RouteTable,
		Type:      unix.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	}
}

func openHandle(ns netns.NsHandle) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("redirect: open rtnetlink in pod namespace: %w", err)
	}
	return h, nil
}

// installRouting brings lo up (the redirect targets and the local route
// live on it, and a fresh namespace has it down), replaces the local route
// and adds the rule unless it is there already.
func installRouting(ns netns.NsHandle) error {
	h, err := openHandle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("redirect: find lo: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("redirect: bring lo up: %w", err)
		}
	}
	if err := h.RouteReplace(localRoute(lo.Attrs().Index)); err != nil {
		return fmt.Errorf("redirect: add local route to table %d: %w", RouteTable, err)
	}
	found, err := hasIPRule(h)
	if err != nil {
		return err
	}
	if !found {
		// The kernel refuses an exact duplicate (EEXIST): someone added it
		// between our look and our add, which is what we wanted.
		if err := h.RuleAdd(ipRule()); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("redirect: add ip rule fwmark %#x/%#x lookup %d: %w", ConnMark, MarkMask, RouteTable, err)
		}
	}
	return nil
}

func removeRouting(ns netns.NsHandle) error {
	h, err := openHandle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	var errs []error
	// Delete every copy (a rule added by hand with the same selector may
	// sit next to ours); ENOENT ends the loop.
	for range 8 {
		err := h.RuleDel(ipRule())
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("redirect: delete ip rule: %w", err))
			break
		}
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("redirect: find lo: %w", err))...)
	}
	if err := h.RouteDel(localRoute(lo.Attrs().Index)); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("redirect: delete local route: %w", err))
	}
	return errors.Join(errs...)
}

// hasIPRule reports whether a rule exactly like ours is installed.
func hasIPRule(h *netlink.Handle) (bool, error) {
	rules, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("redirect: list ip rules: %w", err)
	}
	for _, r := range rules {
		if r.Priority == RulePriority && r.Mark == ConnMark && r.Mask != nil && *r.Mask == MarkMask &&
			r.Table == RouteTable && !r.Invert && r.Src == nil && r.Dst == nil &&
			r.IifName == "" && r.OifName == "" && r.Goto <= 0 {
			return true, nil
		}
	}
	return false, nil
}

// verifyRouting reports the routing drift and how many of the two pieces
// (rule, route) are present.
func verifyRouting(ns netns.NsHandle) (drift []Drift, present int, err error) {
	h, err := openHandle(ns)
	if err != nil {
		return nil, 0, err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, 0, fmt.Errorf("redirect: find lo: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		drift = append(drift, Drift{Kind: LoopbackDown, Object: "link lo"})
	}
	ok, err := hasIPRule(h)
	if err != nil {
		return nil, 0, err
	}
	if ok {
		present++
	} else {
		drift = append(drift, Drift{Kind: MissingIPRule, Object: fmt.Sprintf("ip rule fwmark %#x/%#x pref %d lookup %d", ConnMark, MarkMask, RulePriority, RouteTable)})
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: RouteTable}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, 0, fmt.Errorf("redirect: list routes of table %d: %w", RouteTable, err)
	}
	found := false
	for _, r := range routes {
		isDefault := r.Dst == nil || (r.Dst.IP.To4() != nil && r.Dst.IP.To4().Equal(net.IPv4zero) && maskOnes(r.Dst.Mask) == 0)
		if r.Table == RouteTable && r.Type == unix.RTN_LOCAL && isDefault && r.LinkIndex == lo.Attrs().Index {
			found = true
			break
		}
	}
	if found {
		present++
	} else {
		drift = append(drift, Drift{Kind: MissingRoute, Object: fmt.Sprintf("route local 0.0.0.0/0 dev lo table %d", RouteTable)})
	}
	return drift, present, nil
}

func maskOnes(m net.IPMask) int {
	ones, _ := m.Size()
	return ones
}
