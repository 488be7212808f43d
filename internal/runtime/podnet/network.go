package podnet

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"

	"github.com/ztcn/ztcn/internal/netns"
)

// containerIfName is the container's end of the veth the hook adds.
const containerIfName = "eth0"

// HostVethName is the node's end of a container's veth: derived from the
// container ID so that poststop finds it without any record.
func HostVethName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "zt" + hex.EncodeToString(sum[:])[:12]
}

// addresses returns the global unicast addresses on the namespace's
// interfaces other than loopback: the network it already has (from a CNI
// plugin, podman's netavark, ...).
func addresses(h *netns.Handle) ([]netip.Addr, error) {
	links, err := h.Netlink().LinkList()
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := h.Netlink().AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap().IsGlobalUnicast() {
				ips = append(ips, ip.Unmap())
			}
		}
	}
	return ips, nil
}

// ensureBridge creates the node bridge with the gateway address if it is
// missing, and checks an existing one is a bridge carrying it.
func ensureBridge(host *netns.Handle, name string, gateway netip.Prefix) error {
	l, err := host.Netlink().LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		if err := host.AddBridge(name); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	case err != nil:
		return fmt.Errorf("bridge %q: %w", name, err)
	case l.Type() != "bridge":
		return fmt.Errorf("network.bridge %q exists and is a %s, not a bridge", name, l.Type())
	}
	if err := host.AddAddr(name, gateway); err != nil {
		return err
	}
	return host.SetUp(name)
}

// connect gives the container namespace ns a veth to the bridge with
// address addr and a default route through gateway.
func connect(host *netns.Handle, ns *netns.NS, id, bridge string, addr netip.Prefix, gateway netip.Addr) (err error) {
	veth := HostVethName(id)
	if err := host.AddVeth(veth, ns, containerIfName, netns.WithMaster(bridge)); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, host.DeleteLink(veth))
		}
	}()
	in, err := netns.NewHandle(ns)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := in.AddAddr(containerIfName, addr); err != nil {
		return err
	}
	return in.SetDefaultRoute(gateway)
}

// disconnect removes the container's veth from the node, if it is still
// there (it goes away by itself with the container's namespace).
func disconnect(host *netns.Handle, id string) error {
	return host.DeleteLink(HostVethName(id))
}
