package podnet

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/ztcn/ztcn/internal/config"
	"github.com/ztcn/ztcn/internal/netns"
)

// Attacher connects pod namespaces to the node bridge of Network.
type Attacher struct {
	Network config.Network
	// StateDir is agent.state_dir; address grants live below it.
	StateDir string
}

func (a *Attacher) ipam() *ipam {
	return newIPAM(filepath.Join(a.StateDir, "ipam", a.Network.Bridge), a.Network.PodCIDR)
}

// Ensure returns the pod's addresses, giving it a veth and an address
// first if it has none; connected tells whether it did. owner (a container
// or pod ID) names the grant and the veth, for Disconnect.
func (a *Attacher) Ensure(ns *netns.NS, owner string) (ips []netip.Addr, connected bool, err error) {
	in, err := netns.NewHandle(ns)
	if err != nil {
		return nil, false, err
	}
	ips, err = addresses(in)
	in.Close()
	if err != nil {
		return nil, false, fmt.Errorf("addresses in %s: %w", ns, err)
	}
	if len(ips) > 0 {
		return ips, false, nil
	}
	addr, err := a.connect(ns, owner)
	if err != nil {
		return nil, false, fmt.Errorf("network for %s: %w", owner, err)
	}
	return []netip.Addr{addr}, true, nil
}

// connect attaches ns to the node bridge with a new address.
func (a *Attacher) connect(ns *netns.NS, owner string) (netip.Addr, error) {
	m := a.ipam()
	addr, err := m.allocate(owner)
	if err != nil {
		return netip.Addr{}, err
	}
	err = onNode(func(host *netns.Handle) error {
		if err := ensureBridge(host, a.Network.Bridge, m.gateway()); err != nil {
			return err
		}
		return connect(host, ns, owner, a.Network.Bridge, addr, m.gateway().Addr())
	})
	if err != nil {
		return netip.Addr{}, errors.Join(err, m.release(owner))
	}
	return addr.Addr(), nil
}

// Disconnect removes owner's veth and returns its address. Nothing to
// remove is not an error: a pod that had a network of its own got neither.
func (a *Attacher) Disconnect(owner string) error {
	err := onNode(func(host *netns.Handle) error { return disconnect(host, owner) })
	return errors.Join(err, a.ipam().release(owner))
}

// onNode runs fn with a netlink handle in the node's network namespace, the
// one the caller runs in.
func onNode(fn func(*netns.Handle) error) error {
	ns, err := netns.Open("/proc/self/ns/net")
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netns.NewHandle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}
