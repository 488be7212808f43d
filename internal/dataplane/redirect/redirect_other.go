//go:build !linux

package redirect

import (
	"errors"
	"net"
	"net/netip"

	"github.com/vishvananda/netns"
)

// errUnsupported: network namespaces, nftables and SO_ORIGINAL_DST are
// Linux only. The portable half of the package (constants, Allow, Health)
// still builds elsewhere, for tools that only read or print them.
var errUnsupported = errors.New("redirect: in-pod redirection needs Linux")

func Install(netns.NsHandle, Spec) error                               { return errUnsupported }
func SetNonTCPAllowlist(netns.NsHandle, Spec) error                    { return errUnsupported }
func Verify(netns.NsHandle, Spec) (Health, error)                      { return Health{}, errUnsupported }
func Repair(netns.NsHandle, Spec) (Health, error)                      { return Health{}, errUnsupported }
func Remove(netns.NsHandle) error                                      { return errUnsupported }
func OriginalDst(*net.TCPConn) (netip.AddrPort, error)                 { return netip.AddrPort{}, errUnsupported }
func InstallNodeProbes(netns.NsHandle, netip.Addr, []netip.Addr) error { return errUnsupported }
func RemoveNodeProbes(netns.NsHandle) error                            { return errUnsupported }
