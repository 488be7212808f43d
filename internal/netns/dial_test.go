package netns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// DialTCP's connection lives in the namespace it was made in: it reaches a
// listener there on 127.0.0.1, which the host's loopback does not have,
// and its addresses are the connected ones.
func TestDialTCPConnectsFromInsideTheNamespace(t *testing.T) {
	prefix := testPrefix(t)
	ns := createNS(t, prefix+"dial")
	var ln net.Listener
	if err := Do(ns, func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	var marked int
	c, err := DialTCP(context.Background(), ns, addr, func(fd int) error {
		marked = fd
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, 0x539)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if marked == 0 {
		t.Error("setup was not called")
	}
	if got := c.RemoteAddr().(*net.TCPAddr).AddrPort(); got != addr {
		t.Errorf("RemoteAddr %s, want %s", got, addr)
	}
	if local := c.LocalAddr().(*net.TCPAddr); local.Port == 0 {
		t.Errorf("LocalAddr %s: not the connected one", local)
	}
	rc, _ := c.SyscallConn()
	var mark int
	_ = rc.Control(func(fd uintptr) { mark, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) })
	if mark != 0x539 {
		t.Errorf("SO_MARK %#x, want 0x539 from setup", mark)
	}
	srv := <-accepted
	defer srv.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := srv.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
}

// Failures: a closed port is ECONNREFUSED, a setup error is returned (and
// the socket closed), an address that does not answer ends with ctx.
func TestDialTCPFailures(t *testing.T) {
	prefix := testPrefix(t)
	ns := createNS(t, prefix+"fail")
	var ln net.Listener
	if err := Do(ns, func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	if _, err := DialTCP(context.Background(), ns, closed, nil); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("closed port: %v, want ECONNREFUSED", err)
	}
	boom := errors.New("boom")
	if _, err := DialTCP(context.Background(), ns, closed, func(int) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("setup error: %v, want boom", err)
	}
	if _, err := DialTCP(context.Background(), ns, netip.MustParseAddrPort("[::1]:80"), nil); err == nil {
		t.Error("IPv6 destination accepted")
	}
	// A SYN that is dropped never gets an answer.
	nft := exec.Command("ip", "netns", "exec", ns.Name(), "nft", "-f", "-")
	nft.Stdin = strings.NewReader("table ip t { chain o { type filter hook output priority 0; tcp dport 9 drop; }; }\n")
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := DialTCP(ctx, ns, netip.MustParseAddrPort("127.0.0.1:9"), nil)
	if err == nil {
		t.Fatal("dial through a blackhole succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unanswered SYN: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s", d)
	}
}
