package redirect

// Helpers for the tests that need root: they build real network namespaces
// with vishvananda/netns and netlink (no iproute2, no named namespaces, so
// nothing is left behind even if the test binary dies: a namespace lives as
// long as the file descriptor that holds it).

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requireRoot skips a test that needs root, unless CI promises root, where
// its absence is a broken runner.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("root is required in CI")
	}
	t.Skip("needs root (network namespaces, nftables)")
}

// inNS runs fn on an OS thread switched into ns. Sockets fn creates belong
// to ns for life. If the thread cannot be switched back it stays locked, so
// the runtime discards it instead of reusing a thread in the wrong
// namespace.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, err) // thread stays locked and dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// newNetns makes an anonymous network namespace, closed when the test ends.
func newNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err = netns.New() // also switches this thread into it
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		if err := netns.Set(orig); err != nil {
			errc <- err // thread stays locked
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// topology is a pod namespace joined to a peer namespace by a veth pair.
type topology struct {
	pod, peer     netns.NsHandle
	podIP, peerIP netip.Addr
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	tp := &topology{
		pod: newNetns(t), peer: newNetns(t),
		podIP:  netip.MustParseAddr("10.99.0.2"),
		peerIP: netip.MustParseAddr("10.99.0.1"),
	}
	hp, err := netlink.NewHandleAt(tp.pod)
	if err != nil {
		t.Fatal(err)
	}
	defer hp.Close()
	hq, err := netlink.NewHandleAt(tp.peer)
	if err != nil {
		t.Fatal(err)
	}
	defer hq.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "eth0"},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(tp.peer)),
	}
	if err := hp.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, side := range []struct {
		h  *netlink.Handle
		ip netip.Addr
	}{{hp, tp.podIP}, {hq, tp.peerIP}} {
		for _, name := range []string{"lo", "eth0"} {
			l, err := side.h.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if name == "eth0" {
				addr := &netlink.Addr{IPNet: &net.IPNet{IP: side.ip.AsSlice(), Mask: net.CIDRMask(24, 32)}}
				if err := side.h.AddrAdd(l, addr); err != nil {
					t.Fatalf("add %s: %v", side.ip, err)
				}
			}
			if err := side.h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tp
}

// listen opens a TCP listener inside ns and hands every accepted
// connection to the returned channel until the test ends.
func listen(t *testing.T, ns netns.NsHandle, addr string) <-chan *net.TCPConn {
	t.Helper()
	var ln net.Listener
	if err := inNS(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	ch := make(chan *net.TCPConn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			ch <- c.(*net.TCPConn)
		}
	}()
	return ch
}

// dialOpts say how a test socket is made.
type dialOpts struct {
	mark        int        // SO_MARK, 0 for none
	transparent netip.Addr // bind to this (foreign) address with IP_TRANSPARENT
}

// dial connects from inside ns.
func dial(ns netns.NsHandle, addr string, o dialOpts) (*net.TCPConn, error) {
	var c net.Conn
	err := inNS(ns, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				if o.mark != 0 {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, o.mark)
				}
				if serr == nil && o.transparent.IsValid() {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
				}
			})
			return errors.Join(err, serr)
		}}
		if o.transparent.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(o.transparent, 0))
		}
		var err error
		c, err = d.DialContext(context.Background(), "tcp4", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// accepted waits for one connection on ch.
func accepted(t *testing.T, ch <-chan *net.TCPConn, what string) *net.TCPConn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(2 * time.Second):
		t.Fatalf("%s: no connection accepted", what)
		return nil
	}
}

// noneAccepted asserts that nothing arrived on ch within wait.
func noneAccepted(t *testing.T, ch <-chan *net.TCPConn, wait time.Duration, what string) {
	t.Helper()
	select {
	case c := <-ch:
		t.Errorf("%s: unexpected connection from %s to %s", what, c.RemoteAddr(), c.LocalAddr())
	case <-time.After(wait):
	}
}

// listenUDP opens a UDP socket inside ns and forwards every datagram's
// payload to the returned channel.
func listenUDP(t *testing.T, ns netns.NsHandle, addr string) <-chan string {
	t.Helper()
	var pc net.PacketConn
	if err := inNS(ns, func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	ch := make(chan string, 1024)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

// udpSocket opens an unconnected UDP socket inside ns.
func udpSocket(t *testing.T, ns netns.NsHandle) *net.UDPConn {
	t.Helper()
	var pc net.PacketConn
	if err := inNS(ns, func() (err error) { pc, err = net.ListenPacket("udp4", "0.0.0.0:0"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// received waits up to wait for payload on ch, ignoring other payloads.
func received(ch <-chan string, payload string, wait time.Duration) bool {
	deadline := time.After(wait)
	for {
		select {
		case p := <-ch:
			if p == payload {
				return true
			}
		case <-deadline:
			return false
		}
	}
}
