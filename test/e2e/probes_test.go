package e2e

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ztcn/ztcn/internal/dataplane"
	"github.com/ztcn/ztcn/internal/dataplane/redirect"
	"github.com/ztcn/ztcn/internal/netns"
)

// TestKubeletProbesReachPodsInStrictMode: with probes on, the node's own
// plaintext TCP (the kubelet's probes) reaches a pod's application in
// strict mode, from the probe source, whatever the policy says; the same
// request from a pod is still refused, and with probes off the node is
// refused too.
func TestKubeletProbesReachPodsInStrictMode(t *testing.T) {
	m := newMeshWith(t, shopPolicy, dataplane.Strict, true)
	frontend := m.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := m.addPod("backend", 3, map[string]string{"app": "backend"})
	served := serveHTTPIn(t, backend.ns, backend.name, 8080)
	// A port policy does not open: probes do not depend on policy.
	serveHTTPIn(t, backend.ns, backend.name, 9090)
	for _, port := range []uint16{8080, 9090} {
		line, err := m.httpFromNode(t, netip.AddrPortFrom(backend.ip, port))
		if err != nil {
			t.Fatalf("probe of :%d from the node: %v", port, err)
		}
		if want := "you are " + redirect.DefaultProbeSource.String() + ":"; !strings.Contains(line, want) {
			t.Errorf("probe of :%d: %q, want the application to see %s", port, line, want)
		}
	}
	if served.Load() == 0 {
		t.Fatal("the application served no probe")
	}
	// The node's rules are repaired whole (the agent's reconcile loop).
	if err := redirect.RemoveNodeProbes(vnetns.NsHandle(m.node.NS().Fd())); err != nil {
		t.Fatal(err)
	}
	if _, err := m.httpFromNode(t, netip.AddrPortFrom(backend.ip, 8080)); err == nil {
		t.Fatal("a probe got in without the node's rules: the test proves nothing")
	}
	if err := m.dp.RepairProbes(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.httpFromNode(t, netip.AddrPortFrom(backend.ip, 8080)); err != nil {
		t.Fatalf("probe after RepairProbes: %v", err)
	}
	// A pod's plaintext, bypassing its own agent, is still refused.
	if _, err := plaintextFrom(frontend.ns, netip.Addr{}, netip.AddrPortFrom(backend.ip, 8080)); err == nil {
		t.Error("a pod's plaintext reached the application")
	}

	off := newMesh(t, shopPolicy)
	other := off.addPod("backend", 3, map[string]string{"app": "backend"})
	serveHTTPIn(t, other.ns, other.name, 8080)
	if line, err := off.httpFromNode(t, netip.AddrPortFrom(other.ip, 8080)); err == nil {
		t.Errorf("with probes off the node's plaintext got in: %q", line)
	}
}

// TestAttackSpoofedProbeSource: a pod that sends from the probe source
// and can receive the answers (NET_ADMIN in its namespace, or ARP
// poisoning on the bridge) would pass itself off as the kubelet and reach
// another pod's application in plaintext, past mTLS and policy. The
// node's rules drop its packets, bridged to the victim (pods on one
// bridge) or routed by the node (CNIs that route). Control: with the
// node's rules removed, the same attacks get through.
func TestAttackSpoofedProbeSource(t *testing.T) {
	m := newMeshWith(t, shopPolicy, dataplane.Strict, true)
	attacker := m.addPod("batch", 4, map[string]string{"app": "batch"})
	backend := m.addPod("backend", 3, map[string]string{"app": "backend"})
	serveHTTPIn(t, backend.ns, backend.name, 8080)
	serveHTTPIn(t, backend.ns, backend.name, 8081)
	src := redirect.DefaultProbeSource
	// The attacker receives what is sent to the probe source: the
	// victim's answers are routed to it, and it accepts them locally.
	ipIn(t, backend.ns, "route", "add", src.String()+"/32", "via", attacker.ip.String())
	ipIn(t, attacker.ns, "route", "add", "local", src.String()+"/32", "dev", "lo")
	// Port 8081 is reached through the node, which routes it (a mark
	// beside the agent's bypass mark picks the route).
	if err := netns.EnableIPv4Forwarding(m.node.NS()); err != nil {
		t.Fatal(err)
	}
	gw := netip.AddrFrom4([4]byte{m.subnet[0], m.subnet[1], m.subnet[2], 1})
	nft := exec.Command("ip", "netns", "exec", attacker.ns.Name(), "nft", "-f", "-")
	nft.Stdin = strings.NewReader("table ip attacker { chain out { type route hook output priority mangle; tcp dport 8081 meta mark set meta mark | 0x70000; }; }\n")
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	ipIn(t, attacker.ns, "rule", "add", "fwmark", "0x70000/0x70000", "lookup", "7")
	ipIn(t, attacker.ns, "route", "add", backend.ip.String()+"/32", "via", gw.String(), "table", "7")
	paths := []struct {
		name string
		dst  netip.AddrPort
	}{
		{"bridged", netip.AddrPortFrom(backend.ip, 8080)},
		{"routed by the node", netip.AddrPortFrom(backend.ip, 8081)},
	}
	for _, p := range paths {
		_, err := plaintextFrom(attacker.ns, src, p.dst)
		secRow(t, "pod sends from the kubelet probe source ("+p.name+", answers intercepted)", "dropped by the node",
			fmt.Sprintf("error %v", err), err != nil)
		if err == nil {
			t.Errorf("%s: a pod passed itself off as the kubelet and reached another pod's application", p.name)
		}
	}

	if err := redirect.RemoveNodeProbes(vnetns.NsHandle(m.node.NS().Fd())); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if line, err := plaintextFrom(attacker.ns, src, p.dst); err != nil || !strings.Contains(line, "hello from backend") {
			t.Errorf("control, %s: without the node's rules the attack should get through (the test would prove nothing): %q %v", p.name, line, err)
		}
	}
}

// plaintextFrom sends a plaintext GET to dst from a socket in ns that its
// own pod's agent does not redirect (the bypass mark), with src as its
// source address if valid, and returns the "hello" line of the answer.
func plaintextFrom(ns *netns.NS, src netip.Addr, dst netip.AddrPort) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := netns.DialTCP(ctx, ns, dst, func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, redirect.BypassMark); err != nil {
			return err
		}
		if !src.IsValid() {
			return nil
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_TRANSPARENT, 1); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()})
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
	resp, err := io.ReadAll(c)
	return helloLine(string(resp), err)
}

func ipIn(t *testing.T, ns *netns.NS, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name(), "ip"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v in %s: %v %s", args, ns.Name(), err, out)
	}
}
