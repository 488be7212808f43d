package netns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Handle manages links, addresses and routes in one namespace over a
// netlink socket opened inside it. The socket keeps the namespace alive
// until Close.
type Handle struct {
	ns *NS
	nl *netlink.Handle
}

// NewHandle opens a netlink handle in ns.
//
// The socket is created inside Do rather than with netlink.NewHandleAt:
// NewHandleAt switches the thread itself and unlocks it even when
// switching back fails, which would let the runtime reuse a thread left in
// ns. A netlink socket, like any socket, keeps the namespace it was
// created in.
func NewHandle(ns *NS) (*Handle, error) {
	var nl *netlink.Handle
	err := Do(ns, func() (err error) {
		nl, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: netlink handle in %s: %w", ns, err)
	}
	return &Handle{ns: ns, nl: nl}, nil
}

// Close closes the netlink socket; it does not close the NS.
func (h *Handle) Close() { h.nl.Close() }

// Netlink is the underlying handle, for what this package does not wrap
// (rules, routes in other tables). It speaks NETLINK_ROUTE only: requests
// of other netlink families would go to the caller's namespace.
func (h *Handle) Netlink() *netlink.Handle { return h.nl }

// LinkOption adjusts a link that AddBridge or AddVeth creates.
type LinkOption func(*linkOptions)

type linkOptions struct {
	mtu    int
	master string
}

// WithMTU sets the MTU of the new link (both ends of a veth).
func WithMTU(mtu int) LinkOption { return func(o *linkOptions) { o.mtu = mtu } }

// WithMaster attaches the new link (the local end of a veth) to bridge.
func WithMaster(bridge string) LinkOption { return func(o *linkOptions) { o.master = bridge } }

// attrs turns the options into attributes for a new, up link called name.
func (h *Handle) attrs(name string, opts []LinkOption) (netlink.LinkAttrs, error) {
	var o linkOptions
	for _, opt := range opts {
		opt(&o)
	}
	a := netlink.NewLinkAttrs()
	a.Name, a.MTU, a.Flags = name, o.mtu, net.FlagUp
	if o.master != "" {
		m, err := h.nl.LinkByName(o.master)
		if err != nil {
			return a, fmt.Errorf("master %q: %w", o.master, err)
		}
		a.MasterIndex = m.Attrs().Index
	}
	return a, nil
}

// AddBridge creates the bridge name, up.
func (h *Handle) AddBridge(name string, opts ...LinkOption) error {
	if err := validIfName(name); err != nil {
		return h.errorf(err, "add bridge %q", name)
	}
	a, err := h.attrs(name, opts)
	if err == nil {
		err = h.nl.LinkAdd(&netlink.Bridge{LinkAttrs: a})
	}
	return h.errorf(err, "add bridge %q", name)
}

// AddVeth creates a veth pair, both ends up: name here, and peerName
// created directly in the namespace peer (so it never exists under a
// temporary name, and "eth0" cannot clash with a link here).
func (h *Handle) AddVeth(name string, peer *NS, peerName string, opts ...LinkOption) error {
	what := fmt.Sprintf("add veth %q (peer %q in %s)", name, peerName, peer)
	err := errors.Join(validIfName(name), validIfName(peerName))
	if err != nil {
		return h.errorf(err, "%s", what)
	}
	a, err := h.attrs(name, opts)
	if err != nil {
		return h.errorf(err, "%s", what)
	}
	veth := &netlink.Veth{LinkAttrs: a, PeerName: peerName, PeerNamespace: netlink.NsFd(peer.Fd())}
	if err := h.nl.LinkAdd(veth); err != nil {
		return h.errorf(err, "%s", what)
	}
	// The peer's flags cannot be set at creation, so it is brought up from
	// inside its namespace.
	ph, err := NewHandle(peer)
	if err == nil {
		err = ph.SetUp(peerName)
		ph.Close()
	}
	if err != nil {
		// Deleting one end deletes both.
		return errors.Join(h.errorf(err, "%s", what), h.DeleteLink(name))
	}
	return nil
}

// SetMaster attaches link to bridge.
func (h *Handle) SetMaster(link, bridge string) error {
	l, err := h.nl.LinkByName(link)
	if err == nil {
		var br netlink.Link
		if br, err = h.nl.LinkByName(bridge); err == nil {
			err = h.nl.LinkSetMaster(l, br)
		}
	}
	return h.errorf(err, "attach %q to bridge %q", link, bridge)
}

// SetUp brings link up.
func (h *Handle) SetUp(link string) error {
	l, err := h.nl.LinkByName(link)
	if err == nil {
		err = h.nl.LinkSetUp(l)
	}
	return h.errorf(err, "set %q up", link)
}

// SetMTU sets link's MTU.
func (h *Handle) SetMTU(link string, mtu int) error {
	l, err := h.nl.LinkByName(link)
	if err == nil {
		err = h.nl.LinkSetMTU(l, mtu)
	}
	return h.errorf(err, "set MTU of %q to %d", link, mtu)
}

// DeleteLink deletes link (both ends, for a veth). Deleting a missing link
// is not an error.
func (h *Handle) DeleteLink(link string) error {
	l, err := h.nl.LinkByName(link)
	if err == nil {
		err = h.nl.LinkDel(l)
	}
	var missing netlink.LinkNotFoundError
	if errors.As(err, &missing) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	return h.errorf(err, "delete link %q", link)
}

// AddAddr adds addr (address and prefix length, e.g. 10.0.0.2/24) to link.
// An address already present is not an error, so it suits reconciling.
func (h *Handle) AddAddr(link string, addr netip.Prefix) error {
	if !addr.IsValid() {
		return h.errorf(errors.New("invalid prefix"), "add address %s to %q", addr, link)
	}
	l, err := h.nl.LinkByName(link)
	if err == nil {
		err = h.nl.AddrReplace(l, &netlink.Addr{IPNet: ipNet(addr)})
	}
	return h.errorf(err, "add address %s to %q", addr, link)
}

// SetDefaultRoute makes gw the default gateway, replacing any previous
// default route of gw's family.
func (h *Handle) SetDefaultRoute(gw netip.Addr) error {
	if !gw.IsValid() {
		return h.errorf(errors.New("invalid address"), "set default route via %s", gw)
	}
	err := h.nl.RouteReplace(&netlink.Route{Gw: gw.AsSlice()})
	return h.errorf(err, "set default route via %s", gw)
}

// AddRoute routes dst directly out of link (no gateway). A route already
// present is replaced.
func (h *Handle) AddRoute(dst netip.Prefix, link string) error {
	if !dst.IsValid() {
		return h.errorf(errors.New("invalid prefix"), "add route to %s via %q", dst, link)
	}
	l, err := h.nl.LinkByName(link)
	if err == nil {
		err = h.nl.RouteReplace(&netlink.Route{
			LinkIndex: l.Attrs().Index,
			Dst:       ipNet(dst.Masked()),
			Scope:     netlink.SCOPE_LINK,
		})
	}
	return h.errorf(err, "add route to %s via %q", dst, link)
}

// errorf annotates err, if any, with the namespace and the operation.
func (h *Handle) errorf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("netns: in %s: %s: %w", h.ns, fmt.Sprintf(format, args...), err)
}

// EnableIPv4Forwarding turns on IPv4 forwarding in ns only. Net sysctls
// under /proc/sys/net belong to the namespace of the thread that opens
// them, so the write happens inside Do and the host's setting is never
// touched.
func EnableIPv4Forwarding(ns *NS) error {
	err := Do(ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0)
	})
	if err != nil {
		return fmt.Errorf("netns: enable IPv4 forwarding in %s: %w", ns, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// validIfName checks the kernel's rules for interface names up front, so
// the error says why instead of netlink's bare EINVAL.
func validIfName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("invalid interface name %q", name)
	case len(name) > unix.IFNAMSIZ-1:
		return fmt.Errorf("interface name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	case strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("interface name %q contains '/', ':' or whitespace", name)
	}
	return nil
}
