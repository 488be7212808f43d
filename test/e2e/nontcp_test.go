package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ztcn/ztcn/internal/dataplane"
	"github.com/ztcn/ztcn/internal/dataplane/redirect"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/policy"
)

// These tests need root (network namespaces, nftables): UDP and ICMP
// between pods are admitted or dropped by the allowlist that
// dataplane.NonTCPAllowlist compiles from the mesh's policy, with real
// datagrams and echo requests.

// nonTCPMesh is a mesh whose pods' non-TCP allowlists are compiled from
// its policy: what the agent does on every policy or pod change.
type nonTCPMesh struct {
	*mesh
	endpoints map[string]*policy.Endpoint // by pod name
}

func newNonTCPMesh(t *testing.T, policyYAML string) *nonTCPMesh {
	return &nonTCPMesh{mesh: newMesh(t, policyYAML), endpoints: map[string]*policy.Endpoint{}}
}

// endpoint is the policy endpoint of pod name at host, exactly as addPod
// describes it to the data plane.
func (n *nonTCPMesh) endpoint(name string, host byte, labels map[string]string) *policy.Endpoint {
	ip := netip.AddrFrom4([4]byte{n.subnet[0], n.subnet[1], n.subnet[2], host})
	ep := &policy.Endpoint{Workload: true, Namespace: "shop", Name: name, ServiceAccount: name, Labels: labels,
		NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "shop"},
		SPIFFEID:        "spiffe://" + n.td.String() + "/ns/shop/sa/" + name, IP: ip}
	n.endpoints[name] = ep
	return ep
}

func (n *nonTCPMesh) peers() []*policy.Endpoint {
	var out []*policy.Endpoint
	for _, ep := range n.endpoints {
		out = append(out, ep)
	}
	return out
}

// allowlist compiles pod name's allowlist from the policy in force.
func (n *nonTCPMesh) allowlist(name string) []redirect.Allow {
	ix := n.snap.Load().Index
	return dataplane.NonTCPAllowlist(ix, ix.Resolve(n.endpoints[name]), n.peers())
}

// attachWithAllowlist is addPod, except that the pod is attached with its
// allowlist already in the Pod: it never runs without it.
func (n *nonTCPMesh) attachWithAllowlist(name string, host byte, labels map[string]string) *meshPod {
	n.t.Helper()
	ep := n.endpoint(name, host, labels)
	np, err := n.node.AddPod(n.prefix+"-"+name, netip.PrefixFrom(ep.IP, 24))
	if err != nil {
		n.t.Fatal(err)
	}
	svid, err := n.ca.IssueSVID(identity.SVIDRequest{ID: spiffeid.RequireFromString(ep.SPIFFEID), TTL: time.Hour,
		Claims: identity.Claims{WorkloadUID: name, Labels: labels}})
	if err != nil {
		n.t.Fatal(err)
	}
	p := &meshPod{name: name, ip: ep.IP, ns: np.NS, nodeVeth: np.NodeVeth}
	p.svid.Store(svid)
	if err := n.dp.Attach(dataplane.Pod{UID: name, IP: ep.IP, NS: np.NS, Endpoint: ep,
		SVID: p.svid.Load, NonTCP: n.allowlist(name)}); err != nil {
		n.t.Fatal(err)
	}
	n.pods[name] = p
	return p
}

// sync recompiles every pod's allowlist, installs it with SetNonTCP and
// checks that the pod reads as healthy against it.
func (n *nonTCPMesh) sync(t *testing.T) {
	t.Helper()
	for name := range n.pods {
		if err := n.dp.SetNonTCP(name, n.allowlist(name)); err != nil {
			t.Fatal(err)
		}
		if h, err := n.dp.Health(name); err != nil || h.State != redirect.Healthy {
			t.Fatalf("pod %s after SetNonTCP: %v %v", name, h, err)
		}
	}
}

// udpEchoIn answers every datagram to port inside the pod with itself, and
// hands each payload to the returned channel: what arrived, whatever
// happened to the answer.
func udpEchoIn(t *testing.T, ns *netns.NS, port int) <-chan string {
	t.Helper()
	var pc net.PacketConn
	if err := netns.Do(ns, func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	ch := make(chan string, 64)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return ch
}

// arrived reports whether payload reached a server within wait; other
// payloads (of earlier checks) are skipped.
func arrived(ch <-chan string, payload string, wait time.Duration) bool {
	deadline := time.After(wait)
	for {
		select {
		case got := <-ch:
			if got == payload {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// udpConn opens a UDP socket inside ns connected to dst. A socket keeps
// the namespace it was made in, so it can be used from any thread.
func udpConn(t *testing.T, ns *netns.NS, dst netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := netns.Do(ns, func() (err error) {
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoed sends payload on c and reports whether the same payload came back
// within half a second. EPERM on send is the pod's own filter dropping the
// datagram on its way out.
func echoed(t *testing.T, c *net.UDPConn, payload string) bool {
	t.Helper()
	if _, err := c.Write([]byte(payload)); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return false
		}
		t.Fatalf("send %q: %v", payload, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 1500)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return false // timeout, or ICMP unreachable reported on the socket
		}
		if string(buf[:n]) == payload {
			return true
		}
	}
}

// udpAllowed sends one datagram from ns to dst on a fresh socket (a new
// flow) and reports whether it reached the server (ch) and came back.
func udpAllowed(t *testing.T, ns *netns.NS, dst netip.AddrPort, ch <-chan string, payload string) bool {
	t.Helper()
	back := echoed(t, udpConn(t, ns, dst), payload)
	got := arrived(ch, payload, 100*time.Millisecond)
	if back && !got {
		t.Fatalf("%q came back without reaching the server", payload)
	}
	return got
}

// pingFrom sends one ICMP echo request from ns to dst on a raw socket (the
// ping binary is not needed) and reports whether the reply came within
// half a second.
func pingFrom(t *testing.T, ns *netns.NS, dst netip.Addr) bool {
	t.Helper()
	var fd int
	if err := netns.Do(ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(500 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	id := uint16(time.Now().UnixNano()) // tells this ping's reply from others'
	msg := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'z', 't', 'c', 'n'}
	var sum uint32
	for i := 0; i < len(msg); i += 2 {
		sum += uint32(msg[i])<<8 | uint32(msg[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	msg[2], msg[3] = byte(^sum>>8), byte(^sum)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
		if errors.Is(err, unix.EPERM) {
			return false // dropped on the way out
		}
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return false // timeout
		}
		ihl := int(buf[0]&0x0f) * 4
		if n >= ihl+8 && buf[ihl] == 0 && buf[ihl+4] == byte(id>>8) && buf[ihl+5] == byte(id) {
			return true
		}
	}
	return false
}

const udpPolicyV1 = `policies:
  - subject: "app:a"
    allow:
      - destination: "app:b"
        ports: [5353]
        protocols: [udp]
`

// udpPolicyV2 moves a's permission from 5353 to 5454.
const udpPolicyV2 = `policies:
  - subject: "app:a"
    allow:
      - destination: "app:b"
        ports: [5454]
        protocols: [udp]
`

func TestAttackUDPEvasion(t *testing.T) {
	m := newNonTCPMesh(t, udpPolicyV1)
	// Every pod's endpoint is known before the first is attached, as the
	// agent knows the cluster's pods, so every list names every peer.
	m.endpoint("a", 2, map[string]string{"app": "a"})
	m.endpoint("c", 4, map[string]string{"app": "c"})
	b := m.attachWithAllowlist("b", 3, map[string]string{"app": "b"})
	a := m.addPod("a", 2, map[string]string{"app": "a"})
	c := m.addPod("c", 4, map[string]string{"app": "c"})
	m.sync(t)
	if got := m.dp.Pods(); fmt.Sprint(got) != "[a b c]" {
		t.Fatalf("Pods() = %v", got)
	}

	at5353, at5454 := udpEchoIn(t, b.ns, 5353), udpEchoIn(t, b.ns, 5454)
	atA := udpEchoIn(t, a.ns, 5353)
	b5353, b5454 := netip.AddrPortFrom(b.ip, 5353), netip.AddrPortFrom(b.ip, 5454)

	t.Run("a reaches b on the allowed port and the answer comes back", func(t *testing.T) {
		if !udpAllowed(t, a.ns, b5353, at5353, "a->b:5353") {
			t.Fatal("allowed datagram did not arrive")
		}
	})
	t.Run("a may not use another port of b", func(t *testing.T) {
		got := udpAllowed(t, a.ns, b5454, at5454, "a->b:5454")
		secRow(t, "UDP to a port policy does not name", "dropped", fmt.Sprintf("arrived=%v", got), !got)
	})
	t.Run("c may not send to b", func(t *testing.T) {
		got := udpAllowed(t, c.ns, b5353, at5353, "c->b:5353")
		secRow(t, "UDP from a pod without permission", "dropped", fmt.Sprintf("arrived=%v", got), !got)
	})
	t.Run("b may not start a flow to a", func(t *testing.T) {
		if udpAllowed(t, b.ns, netip.AddrPortFrom(a.ip, 5353), atA, "b->a:5353") {
			t.Fatal("datagram in the direction policy does not allow arrived")
		}
	})
	t.Run("b's own filter drops what c's does not", func(t *testing.T) {
		// A sender whose filter lets everything out (the node namespace
		// has none; c with a wide list stands for a pod whose rules were
		// tampered with): b's ingress entries still decide.
		if udpAllowed(t, m.node.NS(), b5353, at5353, "node->b:5353") {
			t.Fatal("datagram from outside the mesh arrived")
		}
		wide := []redirect.Allow{{Direction: redirect.Egress, Protocol: redirect.UDP, Peer: netip.MustParsePrefix("0.0.0.0/0")}}
		if err := m.dp.SetNonTCP("c", wide); err != nil {
			t.Fatal(err)
		}
		defer m.sync(t)
		if udpAllowed(t, c.ns, b5353, at5353, "wide c->b:5353") {
			t.Fatal("b admitted a datagram its policy does not allow")
		}
	})

	t.Run("a policy change withdraws the permission, open flows included", func(t *testing.T) {
		open := udpConn(t, a.ns, b5353)
		if !echoed(t, open, "open flow before") {
			t.Fatal("flow allowed by the first policy does not work")
		}
		m.setPolicy(udpPolicyV2)
		m.sync(t)
		if echoed(t, open, "open flow after") || arrived(at5353, "open flow after", 100*time.Millisecond) {
			t.Fatal("a flow opened under the old policy still passes")
		}
		if udpAllowed(t, a.ns, b5353, at5353, "a->b:5353 after") {
			t.Fatal("a new flow on the withdrawn port arrived")
		}
		if !udpAllowed(t, a.ns, b5454, at5454, "a->b:5454 after") {
			t.Fatal("the port the new policy allows does not work")
		}
	})

	t.Run("Repair restores the allowlist last set", func(t *testing.T) {
		// Someone empties b's allowlist behind the data plane's back.
		nsh := vnetns.NsHandle(b.ns.Fd())
		if err := redirect.SetNonTCPAllowlist(nsh, redirect.Spec{}); err != nil {
			t.Fatal(err)
		}
		h, err := m.dp.Health("b")
		if err != nil || h.State != redirect.Drifted || !h.Has(redirect.SetMismatch) {
			t.Fatalf("Health after tampering = %v, %v; want drifted with a set mismatch", h, err)
		}
		if udpAllowed(t, a.ns, b5454, at5454, "a->b:5454 tampered") {
			t.Fatal("b admitted a datagram with an empty allowlist")
		}
		if h, err := m.dp.Repair("b"); err != nil || h.State != redirect.Healthy {
			t.Fatalf("Repair = %v, %v", h, err)
		}
		if !udpAllowed(t, a.ns, b5454, at5454, "a->b:5454 repaired") {
			t.Fatal("the allowed flow does not work after Repair")
		}
	})
}

// icmpPolicy allows a and b to exchange anything, ICMP included, with
// Kubernetes rules that name no port; native rules always name a protocol
// and never grant ICMP.
const icmpPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: shop}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-to-b, namespace: shop}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: b}}}]
`

func TestNonTCPAllowlistEnforcesPolicyOnICMP(t *testing.T) {
	m := newNonTCPMesh(t, icmpPolicy)
	m.endpoint("a", 2, map[string]string{"app": "a"})
	m.endpoint("b", 3, map[string]string{"app": "b"})
	m.endpoint("c", 4, map[string]string{"app": "c"})
	a := m.addPod("a", 2, map[string]string{"app": "a"})
	b := m.addPod("b", 3, map[string]string{"app": "b"})
	c := m.addPod("c", 4, map[string]string{"app": "c"})

	// Before any allowlist, nothing gets through: the control case that
	// shows the pings below can fail.
	if pingFrom(t, a.ns, b.ip) {
		t.Fatal("ping passed with an empty allowlist")
	}
	m.sync(t)

	t.Run("a may ping b", func(t *testing.T) {
		if !pingFrom(t, a.ns, b.ip) {
			t.Fatal("allowed echo request got no reply")
		}
	})
	t.Run("c may not ping b", func(t *testing.T) {
		if pingFrom(t, c.ns, b.ip) {
			t.Fatal("echo request from a pod without permission was answered")
		}
	})
	t.Run("b may not ping a", func(t *testing.T) {
		if pingFrom(t, b.ns, a.ip) {
			t.Fatal("echo request in the direction policy does not allow was answered")
		}
	})
	t.Run("a rule that names UDP does not allow ICMP", func(t *testing.T) {
		m.setPolicy(udpPolicyV1)
		m.sync(t)
		if pingFrom(t, a.ns, b.ip) {
			t.Fatal("echo request answered under a UDP-only policy")
		}
	})
	t.Run("a native rule with protocols [icmp] allows ping", func(t *testing.T) {
		m.setPolicy("policies:\n  - subject: \"app:c\"\n    allow:\n      - destination: \"app:b\"\n        protocols: [icmp]\n")
		m.sync(t)
		if !pingFrom(t, c.ns, b.ip) {
			t.Fatal("echo request allowed by a native icmp rule got no reply")
		}
		if pingFrom(t, a.ns, b.ip) {
			t.Fatal("echo request from a pod the icmp rule does not name was answered")
		}
	})
}
