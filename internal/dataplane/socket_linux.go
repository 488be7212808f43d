package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ztcn/ztcn/internal/dataplane/redirect"
	"github.com/ztcn/ztcn/internal/netns"
)

// InNetns runs fn on a thread inside a pod's network namespace. Sockets
// created by fn belong to that namespace for their whole life, whichever
// thread later uses them: that is how the agent, running in its own
// namespace, listens and dials inside every pod.
type InNetns func(fn func() error) error

// listen opens a TCP listener at addr inside the namespace.
func listen(in InNetns, addr netip.AddrPort) (*net.TCPListener, error) {
	var ln net.Listener
	err := in(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			return control(c, func(fd int) error {
				// IP_FREEBIND lets the HBONE listener bind the pod's
				// address even while its interface is still coming up.
				return unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_FREEBIND, 1)
			})
		}}
		var err error
		ln, err = lc.Listen(context.Background(), "tcp4", addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dataplane: listen on %s: %w", addr, err)
	}
	return ln.(*net.TCPListener), nil
}

// dial connects to dst from inside the namespace with the bypass mark set,
// so the pod's own redirection rules let the agent's connection through.
// If src is valid the connection leaves with src as its source address
// (IP_TRANSPARENT + IP_FREEBIND): the application then sees the real
// client instead of the agent, and its replies are routed back to the
// agent by the pod's connmark rule and local route. Only the socket is made
// inside the namespace (netns.DialTCPVia): the connect waits outside.
func dial(ctx context.Context, in InNetns, src, dst netip.AddrPort, timeout time.Duration) (*net.TCPConn, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return netns.DialTCPVia(ctx, in, dst, func(fd int) error { return dialOptions(fd, src) })
}

// dialOptions sets the bypass mark and, for a transparent source, binds
// it.
func dialOptions(fd int, src netip.AddrPort) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, redirect.BypassMark); err != nil {
		return fmt.Errorf("SO_MARK: %w", err)
	}
	if !src.IsValid() {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_TRANSPARENT, 1); err != nil {
		return fmt.Errorf("IP_TRANSPARENT: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_FREEBIND, 1); err != nil {
		return fmt.Errorf("IP_FREEBIND: %w", err)
	}
	// Binding the client's address with port 0 would make bind() pick a
	// port unique across every destination, searching past all ports in
	// use or in TIME_WAIT: slow, and exhaustible, under connection churn.
	// Deferring the choice to connect() lets ports be shared by 4-tuple.
	if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
		return fmt.Errorf("IP_BIND_ADDRESS_NO_PORT: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.Addr().As4()}); err != nil {
		return fmt.Errorf("bind %s: %w", src.Addr(), err)
	}
	return nil
}

func control(c syscall.RawConn, f func(fd int) error) error {
	var ferr error
	if err := c.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// reset closes a connection with an RST instead of a FIN: a refused flow
// must fail at once at the application, not look like an empty answer.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}
