package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// OriginalDst returns where a redirected connection was going before the
// pod's rules sent it to the agent: getsockopt(SOL_IP, SO_ORIGINAL_DST),
// answered from the connection's conntrack entry. On a connection that was
// not redirected it returns the connection's own local address. IPv4 only.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok && la.AddrPort().Addr().Unmap().Is6() {
		return netip.AddrPort{}, errors.New("redirect: SO_ORIGINAL_DST: IPv6 connections are not redirected")
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("redirect: SO_ORIGINAL_DST: %w", err)
	}
	var (
		sa   *unix.IPv6Mreq
		gerr error
	)
	// The kernel writes a struct sockaddr_in (16 bytes); IPv6Mreq is the
	// x/sys getter with a buffer of at least that size.
	if err := rc.Control(func(fd uintptr) {
		sa, gerr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
	}); err != nil {
		return netip.AddrPort{}, fmt.Errorf("redirect: SO_ORIGINAL_DST: %w", err)
	}
	if gerr != nil {
		return netip.AddrPort{}, fmt.Errorf("redirect: SO_ORIGINAL_DST: %w", gerr)
	}
	b := sa.Multiaddr // sin_family (host order), sin_port (network order), sin_addr
	if fam := binary.NativeEndian.Uint16(b[0:2]); fam != unix.AF_INET {
		return netip.AddrPort{}, fmt.Errorf("redirect: SO_ORIGINAL_DST: address family %d, want AF_INET", fam)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4])), nil
}
