package netns

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// requireRoot skips a test that needs root, or fails it under CI=true,
// where a skipped namespace test would hide a broken setup.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root to create network namespaces (CI=true)")
	}
	t.Skip("needs root to create network namespaces")
}

// testPrefix returns a name prefix unique to this test, short enough that
// prefix plus a few characters is a valid interface name, and registers
// (first, so it runs last) a check that nothing named with it survives
// the test's other cleanups.
func testPrefix(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	prefix := fmt.Sprintf("zt%x", randBytes(t, 3))
	t.Cleanup(func() { assertNothingLeft(t, prefix) })
	return prefix
}

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func assertNothingLeft(t *testing.T, prefix string) {
	t.Helper()
	names, err := List(prefix)
	if err != nil {
		t.Error(err)
	}
	if len(names) > 0 {
		t.Errorf("namespaces left in %s: %v", RunDir, names)
	}
	// The kernel frees a deleted namespace asynchronously, and only then
	// the veth peers of its interfaces, so give host links a moment.
	deadline := time.Now().Add(2 * time.Second)
	for {
		// This goroutine is not locked, so its thread is in the host's
		// namespace.
		links, err := netlink.LinkList()
		if err != nil {
			t.Errorf("list host links: %v", err)
			return
		}
		var left []string
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, prefix) {
				left = append(left, l.Attrs().Name)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("host links left: %v", left)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// createNS creates a namespace that is closed and deleted when the test
// ends.
func createNS(t *testing.T, name string) *NS {
	t.Helper()
	ns, err := Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := Delete(name); err != nil {
			t.Error(err)
		}
	})
	return ns
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func fdInode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// threadsOutside lists the process's threads whose network namespace is
// not the one with inode home.
func threadsOutside(t *testing.T, home uint64) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/proc/self/task", task.Name(), "ns/net"), &st) != nil {
			continue // the thread exited meanwhile
		}
		if st.Ino != home {
			out = append(out, task.Name())
		}
	}
	return out
}

func TestPodsTalkOverBridgeAndHostIsUntouched(t *testing.T) {
	prefix := testPrefix(t)
	octet := randBytes(t, 1)[0]
	subnet := netip.MustParsePrefix(fmt.Sprintf("10.251.%d.0/24", octet))
	at := func(host byte) netip.Prefix {
		a := subnet.Addr().As4()
		a[3] = host
		return netip.PrefixFrom(netip.AddrFrom4(a), subnet.Bits())
	}

	node, err := NewNode(prefix+"node", at(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := node.Teardown(); err != nil {
			t.Error(err)
		}
	})
	a, err := node.AddPod(prefix+"a", at(2))
	if err != nil {
		t.Fatal(err)
	}
	b, err := node.AddPod(prefix+"b", at(3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node.AddPod(prefix+"c", at(1)); err == nil {
		t.Error("AddPod with the gateway's address succeeded")
	}

	// The pod's default route points at the bridge's address.
	ha, err := NewHandle(a.NS)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := ha.Netlink().RouteList(nil, netlink.FAMILY_V4)
	ha.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
		return (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(at(1).Addr().AsSlice())
	}) {
		t.Errorf("pod a has no default route via %s: %v", at(1).Addr(), routes)
	}

	// A listener opened in pod a stays there after Do returns.
	var ln net.Listener
	err = Do(a.NS, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(a.Addr.Addr(), 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // the socket pins pod a's namespace
	type accepted struct {
		peer net.Addr
		err  error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- accepted{err: err}
			return
		}
		defer c.Close()
		buf := make([]byte, 4)
		if _, err = io.ReadFull(c, buf); err == nil && string(buf) != "ping" {
			err = fmt.Errorf("server read %q", buf)
		}
		if err == nil {
			_, err = c.Write([]byte("pong"))
		}
		acc <- accepted{c.RemoteAddr(), err}
	}()

	// Dial from pod b; the connection is used outside Do.
	var c net.Conn
	err = Do(b.NS, func() (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial pod a from pod b: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 4)
	if _, err := io.ReadFull(c, reply); err != nil || string(reply) != "pong" {
		t.Fatalf("client read %q, %v", reply, err)
	}
	got := <-acc
	if got.err != nil {
		t.Fatal(got.err)
	}
	if ip := got.peer.(*net.TCPAddr).AddrPort().Addr(); ip != b.Addr.Addr() {
		t.Errorf("server saw peer %s, want pod b's %s", ip, b.Addr.Addr())
	}

	// The host has no route into the pods' subnet, and cannot connect.
	hostRoutes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range hostRoutes {
		if r.Dst != nil && r.Dst.Contains(a.Addr.Addr().AsSlice()) && r.Dst.String() != "0.0.0.0/0" {
			t.Errorf("host has a route into the pod subnet: %v", r)
		}
	}
	if hc, err := net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond); err == nil {
		hc.Close()
		t.Errorf("host reached pod a at %s", ln.Addr())
	}

	if err := node.RemovePod(b.NS.Name()); err != nil {
		t.Error(err)
	}
	if err := node.RemovePod(prefix + "b"); err != nil {
		t.Errorf("second RemovePod: %v", err)
	}
	if names, _ := List(prefix + "b"); len(names) != 0 {
		t.Errorf("RemovePod left %v", names)
	}
}

func TestDoSwitchesOnlyItsOwnThread(t *testing.T) {
	prefix := testPrefix(t)
	ns := createNS(t, prefix+"do")
	target := fdInode(t, ns.Fd())
	home := inode(t, "/proc/thread-self/ns/net")
	if target == home {
		t.Fatal("new namespace is the host's")
	}

	var inside unix.Stat_t
	var ln net.Listener
	err := Do(ns, func() (err error) {
		if err := unix.Stat("/proc/thread-self/ns/net", &inside); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if inside.Ino != target {
		t.Errorf("inside Do: namespace inode %d, want %d", inside.Ino, target)
	}
	if now := inode(t, "/proc/thread-self/ns/net"); now != home {
		t.Errorf("after Do: namespace inode %d, want %d", now, home)
	}

	// SIOCGSKNS opens the namespace a socket belongs to.
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var sockNS int
	var ioctlErr error
	if err := raw.Control(func(fd uintptr) {
		sockNS, ioctlErr = unix.IoctlRetInt(int(fd), unix.SIOCGSKNS)
	}); err != nil || ioctlErr != nil {
		t.Fatal(err, ioctlErr)
	}
	if got := fdInode(t, sockNS); got != target {
		t.Errorf("listener made in Do is in namespace %d, want %d", got, target)
	}
	unix.Close(sockNS)

	sentinel := errors.New("sentinel")
	if err := Do(ns, func() error { return sentinel }); err != sentinel {
		t.Errorf("Do returned %v, want fn's error unchanged", err)
	}
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want fn's panic", v)
			}
		}()
		Do(ns, func() error { panic("boom") })
	}()
	if err := Do(ns, func() error { runtime.Goexit(); return nil }); !errors.Is(err, errGoexit) {
		t.Errorf("Do after Goexit returned %v", err)
	}

	// Whatever way fn ended, every thread went back to the host namespace.
	if out := threadsOutside(t, home); len(out) > 0 {
		t.Errorf("threads %v are outside the host namespace", out)
	}
}

func TestCreateOpenDeleteList(t *testing.T) {
	prefix := testPrefix(t)
	name := prefix + "x"
	ns := createNS(t, name)
	if ns.Name() != name || ns.Path() != filepath.Join(RunDir, name) {
		t.Errorf("Name, Path = %q, %q", ns.Name(), ns.Path())
	}
	if _, err := Create(name); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create: %v, want ErrExist", err)
	}
	createNS(t, prefix+"y")
	if names, err := List(prefix); err != nil || !slices.Equal(names, []string{prefix + "x", prefix + "y"}) {
		t.Errorf("List = %v, %v", names, err)
	}

	// Opening by name and by path reaches the same namespace.
	byPath, err := Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	if byPath.Name() != "" || fdInode(t, byPath.Fd()) != fdInode(t, ns.Fd()) {
		t.Errorf("Open by path: name %q, different namespace", byPath.Name())
	}
	byPath.Close()

	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if err := Delete(name); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	_, err = Open(name)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), name) {
		t.Errorf("Open of a deleted namespace: %v", err)
	}

	// A leftover mount point that was never mounted (a crash mid-create)
	// is refused by Open and removed by Delete.
	stale := filepath.Join(RunDir, prefix+"stale")
	if err := os.WriteFile(stale, nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(prefix + "stale"); err == nil || !strings.Contains(err.Error(), "not a network namespace") {
		t.Errorf("Open of a stale mount point: %v", err)
	}
	if err := Delete(prefix + "stale"); err != nil {
		t.Error(err)
	}

	for _, bad := range []string{"", "..", "a/b"} {
		if _, err := Create(bad); err == nil {
			t.Errorf("Create(%q) succeeded", bad)
		}
		if err := Delete(bad); err == nil {
			t.Errorf("Delete(%q) succeeded", bad)
		}
	}
}

func TestLinksFromHostIntoNamespace(t *testing.T) {
	prefix := testPrefix(t)
	pod := createNS(t, prefix+"p")
	host, err := Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	h, err := NewHandle(host)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ph, err := NewHandle(pod)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()

	veth := prefix + "h"
	t.Cleanup(func() {
		if err := h.DeleteLink(veth); err != nil {
			t.Error(err)
		}
	})
	if err := h.AddVeth(veth, pod, "eth0", WithMTU(1400)); err != nil {
		t.Fatal(err)
	}
	checkLink := func(h *Handle, name string, mtu int) netlink.Link {
		t.Helper()
		l, err := h.Netlink().LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().Flags&net.FlagUp == 0 || l.Attrs().MTU != mtu {
			t.Errorf("%s: flags %v, MTU %d; want up, %d", name, l.Attrs().Flags, l.Attrs().MTU, mtu)
		}
		return l
	}
	checkLink(h, veth, 1400)
	checkLink(ph, "eth0", 1400)
	checkLink(ph, "lo", 65536) // Create brings loopback up

	if err := h.SetMTU(veth, 1300); err != nil {
		t.Error(err)
	}
	checkLink(h, veth, 1300)

	// A bridge and a route in the pod namespace.
	if err := ph.AddBridge("br0"); err != nil {
		t.Fatal(err)
	}
	if err := ph.SetMaster("eth0", "br0"); err != nil {
		t.Error(err)
	}
	if br, eth := checkLink(ph, "br0", 1400), checkLink(ph, "eth0", 1400); eth.Attrs().MasterIndex != br.Attrs().Index {
		t.Errorf("eth0 master index %d, want br0's %d", eth.Attrs().MasterIndex, br.Attrs().Index)
	}
	if err := ph.AddAddr("br0", netip.MustParsePrefix("203.0.113.10/24")); err != nil {
		t.Error(err)
	}
	if err := ph.AddAddr("br0", netip.MustParsePrefix("203.0.113.10/24")); err != nil {
		t.Errorf("adding an address twice: %v", err)
	}
	dst := netip.MustParsePrefix("198.51.100.0/24")
	if err := ph.AddRoute(dst, "br0"); err != nil {
		t.Error(err)
	}
	routes, err := ph.Netlink().RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.String() == dst.String() }) {
		t.Errorf("no route to %s in %v", dst, routes)
	}

	// Errors name what failed.
	if err := ph.AddBridge("br0"); err == nil || !strings.Contains(err.Error(), `add bridge "br0"`) {
		t.Errorf("second AddBridge: %v", err)
	}
	if err := ph.AddBridge("a-name-too-long-for-linux"); err == nil || !strings.Contains(err.Error(), "longer than 15") {
		t.Errorf("AddBridge with a long name: %v", err)
	}
	if err := ph.SetUp("nosuch0"); err == nil || !strings.Contains(err.Error(), `"nosuch0"`) {
		t.Errorf("SetUp of a missing link: %v", err)
	}

	// Deleting the host end removes the pod end; deleting again is fine.
	if err := h.DeleteLink(veth); err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteLink(veth); err != nil {
		t.Errorf("second DeleteLink: %v", err)
	}
	if _, err := ph.Netlink().LinkByName("eth0"); err == nil {
		t.Error("pod's eth0 outlived its host end")
	}
}

func TestEnableIPv4ForwardingOnlyInNamespace(t *testing.T) {
	prefix := testPrefix(t)
	const sysctl = "/proc/sys/net/ipv4/ip_forward"
	hostBefore, err := os.ReadFile(sysctl)
	if err != nil {
		t.Fatal(err)
	}
	ns := createNS(t, prefix+"fw")
	if err := EnableIPv4Forwarding(ns); err != nil {
		t.Fatal(err)
	}
	var inside []byte
	if err := Do(ns, func() (err error) { inside, err = os.ReadFile(sysctl); return err }); err != nil {
		t.Fatal(err)
	}
	if string(inside) != "1\n" {
		t.Errorf("ip_forward in the namespace = %q, want 1", inside)
	}
	if hostAfter, _ := os.ReadFile(sysctl); string(hostAfter) != string(hostBefore) {
		t.Errorf("host ip_forward changed from %q to %q", hostBefore, hostAfter)
	}
}

// TestIPToolSeesNamespace checks that what Create makes is an ordinary
// named namespace to iproute2 (the package itself never runs ip).
func TestIPToolSeesNamespace(t *testing.T) {
	prefix := testPrefix(t)
	if _, err := exec.LookPath("ip"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ip (iproute2) not installed (CI=true)")
		}
		t.Skip("ip (iproute2) not installed")
	}
	name := prefix + "ip"
	createNS(t, name)
	out, err := exec.Command("ip", "netns", "exec", name, "ip", "-o", "link", "show", "lo").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "state UNKNOWN") || !strings.Contains(string(out), ",UP") {
		t.Errorf("ip netns exec %s ip link show lo: %v\n%s", name, err, out)
	}
}
