package redirect

// These tests program real network namespaces and need root (see
// requireRoot). Each builds its own pod and peer namespaces joined by a
// veth pair: pod 10.99.0.2, peer 10.99.0.1.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// refusedFast is how quickly a refused connection must fail: the kernel
// answers a SYN to a closed local port, or the guard's reject, with a reset
// in well under a millisecond; 100 ms leaves room for a loaded CI machine.
const refusedFast = 100 * time.Millisecond

func install(t *testing.T, ns netns.NsHandle, spec Spec) {
	t.Helper()
	if err := Install(ns, spec); err != nil {
		t.Fatalf("Install: %v", err)
	}
}

func mustVerify(t *testing.T, ns netns.NsHandle, spec Spec) Health {
	t.Helper()
	h, err := Verify(ns, spec)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return h
}

func (tp *topology) peerAddr(port uint16) string { return netip.AddrPortFrom(tp.peerIP, port).String() }
func (tp *topology) podAddr(port uint16) string  { return netip.AddrPortFrom(tp.podIP, port).String() }

// wantOriginalDst checks SO_ORIGINAL_DST of an accepted connection.
func wantOriginalDst(t *testing.T, c *net.TCPConn, want string) {
	t.Helper()
	got, err := OriginalDst(c)
	if err != nil {
		t.Fatalf("OriginalDst: %v", err)
	}
	if got.String() != want {
		t.Errorf("OriginalDst = %s, want %s", got, want)
	}
}

// wantRefusedFast dials and expects a fast ECONNREFUSED.
func wantRefusedFast(t *testing.T, ns netns.NsHandle, addr, what string) {
	t.Helper()
	start := time.Now()
	c, err := dial(ns, addr, dialOpts{})
	elapsed := time.Since(start)
	if err == nil {
		c.Close()
		t.Fatalf("%s: connect to %s succeeded, want refused", what, addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("%s: connect to %s: %v, want connection refused", what, addr, err)
	}
	if elapsed > refusedFast {
		t.Errorf("%s: refused after %v, want < %v", what, elapsed, refusedFast)
	}
}

func TestRedirection(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t)
	install(t, tp.pod, Spec{})
	outbound := listen(t, tp.pod, fmt.Sprintf("127.0.0.1:%d", OutboundPort))
	inbound := listen(t, tp.pod, fmt.Sprintf("0.0.0.0:%d", InboundPlaintextPort))
	hbone := listen(t, tp.pod, tp.podAddr(InboundHBONEPort))
	app := listen(t, tp.pod, tp.podAddr(8080))
	local := listen(t, tp.pod, "127.0.0.1:9000")
	peer := listen(t, tp.peer, tp.peerAddr(80))

	t.Run("outbound TCP of the app lands on 15001 with its original destination", func(t *testing.T) {
		c, err := dial(tp.pod, tp.peerAddr(80), dialOpts{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a := accepted(t, outbound, "outbound listener")
		if a.RemoteAddr().String() != c.LocalAddr().String() {
			t.Errorf("accepted %s, dialled from %s", a.RemoteAddr(), c.LocalAddr())
		}
		wantOriginalDst(t, a, tp.peerAddr(80))
		noneAccepted(t, peer, 50*time.Millisecond, "peer")
	})
	t.Run("a socket with the bypass mark reaches the peer directly", func(t *testing.T) {
		c, err := dial(tp.pod, tp.peerAddr(80), dialOpts{mark: BypassMark})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a := accepted(t, peer, "peer")
		if got := a.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != tp.podIP {
			t.Errorf("peer sees %s, want the pod %s", got, tp.podIP)
		}
		noneAccepted(t, outbound, 50*time.Millisecond, "outbound listener")
	})
	t.Run("inbound TCP to the pod lands on 15006 with its original destination", func(t *testing.T) {
		c, err := dial(tp.peer, tp.podAddr(8080), dialOpts{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a := accepted(t, inbound, "inbound plaintext listener")
		wantOriginalDst(t, a, tp.podAddr(8080))
		noneAccepted(t, app, 50*time.Millisecond, "app")
	})
	t.Run("inbound HBONE on 15008 is not redirected", func(t *testing.T) {
		c, err := dial(tp.peer, tp.podAddr(InboundHBONEPort), dialOpts{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		accepted(t, hbone, "HBONE listener")
		noneAccepted(t, inbound, 50*time.Millisecond, "inbound plaintext listener")
	})
	t.Run("loopback and the pod's own address inside the pod are untouched", func(t *testing.T) {
		c, err := dial(tp.pod, "127.0.0.1:9000", dialOpts{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		accepted(t, local, "127.0.0.1:9000")
		c2, err := dial(tp.pod, tp.podAddr(8080), dialOpts{})
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		accepted(t, app, "app on the pod's own address")
		noneAccepted(t, outbound, 50*time.Millisecond, "outbound listener")
	})
	t.Run("the app sees the client's address and its replies come back to the agent", func(t *testing.T) {
		// What the agent does for an allowed inbound connection: accept
		// on 15006, then connect to the app from the client's address.
		client, err := dial(tp.peer, tp.podAddr(8080), dialOpts{})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		a := accepted(t, inbound, "inbound plaintext listener")
		clientIP := a.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
		up, err := dial(tp.pod, tp.podAddr(8080), dialOpts{mark: BypassMark, transparent: clientIP})
		if err != nil {
			t.Fatalf("transparent dial to the app: %v", err)
		}
		defer up.Close()
		b := accepted(t, app, "app")
		if got := b.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != tp.peerIP {
			t.Errorf("app sees %s, want the client %s", got, tp.peerIP)
		}
		exchange(t, up, b)
	})
}

// exchange sends a line each way: the handshake alone would not show
// that the app's data packets are routed back to the agent.
func exchange(t *testing.T, x, y net.Conn) {
	t.Helper()
	for _, p := range []struct{ from, to net.Conn }{{x, y}, {y, x}} {
		if _, err := p.from.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		_ = p.to.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(p.to, buf); err != nil {
			t.Fatalf("read from %s: %v", p.to.RemoteAddr(), err)
		}
	}
}

func TestFailClosedWhileTheAgentIsDown(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t)
	install(t, tp.pod, Spec{})
	peer := listen(t, tp.peer, tp.peerAddr(80))
	app := listen(t, tp.pod, tp.podAddr(8080))

	// Nothing listens on 15001 or 15006: the redirected SYN meets a
	// closed local port and the kernel answers with a reset at once.
	wantRefusedFast(t, tp.pod, tp.peerAddr(80), "outbound")
	wantRefusedFast(t, tp.peer, tp.podAddr(8080), "inbound")
	noneAccepted(t, peer, 100*time.Millisecond, "peer")
	noneAccepted(t, app, 0, "app")
}

// nftConn opens nftables in ns, for tests that tamper with the rules.
func nftConn(t *testing.T, ns netns.NsHandle) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var (
	mainTbl  = &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
	guardTbl = &nftables.Table{Family: nftables.TableFamilyINet, Name: GuardTableName}
)

func deleteTable(t *testing.T, ns netns.NsHandle, tbl *nftables.Table) {
	t.Helper()
	c := nftConn(t, ns)
	c.DelTable(tbl)
	if err := c.Flush(); err != nil {
		t.Fatalf("delete %s: %v", tbl.Name, err)
	}
}

func TestGuardKeepsThePodClosedWithoutTheMainTable(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t)
	spec := Spec{NonTCP: []Allow{{Direction: Egress, Protocol: UDP, Peer: netip.PrefixFrom(tp.peerIP, 32), Port: 53}}}
	install(t, tp.pod, spec)
	peer := listen(t, tp.peer, tp.peerAddr(80))
	app := listen(t, tp.pod, tp.podAddr(8080))
	udpAllowed := listenUDP(t, tp.peer, tp.peerAddr(53))
	udpOther := listenUDP(t, tp.peer, tp.peerAddr(54))

	// Whoever deleted it, the main table is gone: nothing redirects.
	deleteTable(t, tp.pod, mainTbl)
	h := mustVerify(t, tp.pod, spec)
	if h.State != Drifted || !h.Has(MissingTable) || len(h.Drift) != 1 {
		t.Fatalf("Verify = %v, want only the main table missing", h)
	}

	t.Run("outbound TCP is refused, not sent in plaintext", func(t *testing.T) {
		wantRefusedFast(t, tp.pod, tp.peerAddr(80), "outbound")
		noneAccepted(t, peer, 100*time.Millisecond, "peer")
	})
	t.Run("inbound TCP does not reach the app", func(t *testing.T) {
		wantRefusedFast(t, tp.peer, tp.podAddr(8080), "inbound")
		noneAccepted(t, app, 100*time.Millisecond, "app")
	})
	t.Run("non-TCP keeps its allowlist", func(t *testing.T) {
		s := udpSocket(t, tp.pod)
		_, _ = s.WriteTo([]byte("allowed"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tp.peerAddr(53))))
		_, _ = s.WriteTo([]byte("other"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tp.peerAddr(54))))
		if !received(udpAllowed, "allowed", time.Second) {
			t.Error("allowed datagram lost")
		}
		if received(udpOther, "other", 200*time.Millisecond) {
			t.Error("datagram to an unlisted port got through")
		}
	})
	t.Run("the agent's own sockets still get out", func(t *testing.T) {
		c, err := dial(tp.pod, tp.peerAddr(80), dialOpts{mark: BypassMark})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		accepted(t, peer, "peer")
	})
	t.Run("Repair restores redirection", func(t *testing.T) {
		before, err := Repair(tp.pod, spec)
		if err != nil {
			t.Fatal(err)
		}
		if !before.Has(MissingTable) {
			t.Errorf("Repair found %v, want the missing table", before)
		}
		if h := mustVerify(t, tp.pod, spec); h.State != Healthy {
			t.Fatalf("after Repair: %v", h)
		}
		outbound := listen(t, tp.pod, fmt.Sprintf("127.0.0.1:%d", OutboundPort))
		c, err := dial(tp.pod, tp.peerAddr(80), dialOpts{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wantOriginalDst(t, accepted(t, outbound, "outbound listener"), tp.peerAddr(80))
		noneAccepted(t, peer, 50*time.Millisecond, "peer")
	})
}

func TestVerifyReportsDriftAndRepairFixesIt(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t)
	spec := Spec{NonTCP: []Allow{{Direction: Egress, Protocol: UDP, Peer: netip.MustParsePrefix("10.99.0.0/24"), Port: 53}}}
	chainOf := func(tbl *nftables.Table, name string) *nftables.Chain { return &nftables.Chain{Table: tbl, Name: name} }

	cases := []struct {
		name   string
		tamper func(t *testing.T, c *nftables.Conn, h *netlink.Handle)
		want   DriftKind
		object string
	}{
		{"deleted main table is a missing table", func(t *testing.T, c *nftables.Conn, _ *netlink.Handle) {
			c.DelTable(mainTbl)
		}, MissingTable, "table ip ztcn"},
		{"deleted guard table is a missing table", func(t *testing.T, c *nftables.Conn, _ *netlink.Handle) {
			c.DelTable(guardTbl)
		}, MissingTable, "table inet ztcn-guard"},
		{"deleted chain is a missing chain", func(t *testing.T, c *nftables.Conn, _ *netlink.Handle) {
			c.DelChain(chainOf(mainTbl, "nat_output"))
		}, MissingChain, "table ip ztcn chain nat_output"},
		{"a chain added to our table is unexpected", func(t *testing.T, c *nftables.Conn, _ *netlink.Handle) {
			c.AddChain(&nftables.Chain{Table: mainTbl, Name: "intruder"})
		}, UnexpectedChain, "table ip ztcn chain intruder"},
		{"a drop policy turned to accept is a chain mismatch", func(t *testing.T, c *nftables.Conn, _ *netlink.Handle) {
			accept := nftables.ChainPolicyAccept
			c.AddChain(&nftables.Chain{Table: mainTbl, Name: "filter_output", Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		}, ChainMismatch, "table ip ztcn chain filter_output"},
		{"a deleted redirect rule is a rule mismatch", func(t *testing.T, c *nftables.Conn, _ *netlink.Handle) {
			rules, err := c.GetRules(mainTbl, chainOf(mainTbl, "nat_output"))
			if err != nil || len(rules) != 3 {
				t.Fatalf("rules: %v, %d", err, len(rules))
			}
			if err := c.DelRule(rules[2]); err != nil {
				t.Fatal(err)
			}
		}, RuleMismatch, "table ip ztcn chain nat_output"},
		{"an accept inserted before the guard's rules is a rule mismatch", func(t *testing.T, c *nftables.Conn, _ *netlink.Handle) {
			c.InsertRule(&nftables.Rule{Table: guardTbl, Chain: chainOf(guardTbl, "output"), Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
		}, RuleMismatch, "table inet ztcn-guard chain output"},
		{"an allowlist element added by hand is a set mismatch", func(t *testing.T, c *nftables.Conn, _ *netlink.Handle) {
			extra := box{span{0, 0xffffffff}, UDP, span{0, 0xffff}}
			st, err := inspect(c, mainTable(compiled{}, 0))
			if err != nil || st.gen < 0 {
				t.Fatalf("inspect: %v, generation %d", err, st.gen)
			}
			if err := c.SetAddElements(allowSet(mainTbl, setName(setAllowOut, st.gen)), elements([]box{extra})); err != nil {
				t.Fatal(err)
			}
		}, SetMismatch, ""},
		{"a set added to our table is a set mismatch", func(t *testing.T, c *nftables.Conn, _ *netlink.Handle) {
			if err := c.AddSet(&nftables.Set{Table: guardTbl, Name: "extra", KeyType: nftables.TypeIPAddr}, nil); err != nil {
				t.Fatal(err)
			}
		}, SetMismatch, "table inet ztcn-guard set extra"},
		{"a base chain recreated without its hook is a chain mismatch", func(t *testing.T, c *nftables.Conn, _ *netlink.Handle) {
			c.FlushChain(chainOf(guardTbl, "output"))
			c.DelChain(chainOf(guardTbl, "output"))
			c.AddChain(&nftables.Chain{Table: guardTbl, Name: "output"})
		}, ChainMismatch, "table inet ztcn-guard chain output"},
		{"a deleted ip rule is reported", func(t *testing.T, _ *nftables.Conn, h *netlink.Handle) {
			if err := h.RuleDel(ipRule()); err != nil {
				t.Fatal(err)
			}
		}, MissingIPRule, ""},
		{"a deleted local route is reported", func(t *testing.T, _ *nftables.Conn, h *netlink.Handle) {
			lo, _ := h.LinkByName("lo")
			if err := h.RouteDel(localRoute(lo.Attrs().Index)); err != nil {
				t.Fatal(err)
			}
		}, MissingRoute, ""},
		{"loopback taken down is reported", func(t *testing.T, _ *nftables.Conn, h *netlink.Handle) {
			lo, _ := h.LinkByName("lo")
			if err := h.LinkSetDown(lo); err != nil {
				t.Fatal(err)
			}
		}, LoopbackDown, "link lo"},
	}
	h, err := netlink.NewHandleAt(tp.pod)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			install(t, tp.pod, spec)
			if got := mustVerify(t, tp.pod, spec); got.State != Healthy {
				t.Fatalf("after Install: %v", got)
			}
			c := nftConn(t, tp.pod)
			tc.tamper(t, c, h)
			if err := c.Flush(); err != nil {
				t.Fatalf("tamper: %v", err)
			}
			got := mustVerify(t, tp.pod, spec)
			if got.State != Drifted || !hasDrift(got, tc.want, tc.object) {
				t.Fatalf("Verify = %v, want %s of %q", got, tc.want, tc.object)
			}
			before, err := Repair(tp.pod, spec)
			if err != nil {
				t.Fatalf("Repair: %v", err)
			}
			if !hasDrift(before, tc.want, tc.object) {
				t.Errorf("Repair found %v", before)
			}
			if after := mustVerify(t, tp.pod, spec); after.State != Healthy {
				t.Fatalf("after Repair: %v", after)
			}
		})
	}
}

func hasDrift(h Health, k DriftKind, object string) bool {
	for _, d := range h.Drift {
		if d.Kind == k && (object == "" || d.Object == object) {
			return true
		}
	}
	return false
}

func TestVerifyComparesTheAllowlist(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t)
	a := Spec{NonTCP: []Allow{{Direction: Egress, Protocol: UDP, Peer: netip.MustParsePrefix("10.99.0.1/32"), Port: 53}}}
	b := Spec{NonTCP: []Allow{{Direction: Egress, Protocol: UDP, Peer: netip.MustParsePrefix("10.99.0.1/32"), Port: 54}}}
	install(t, tp.pod, a)
	if h := mustVerify(t, tp.pod, b); h.State != Drifted || !h.Has(SetMismatch) {
		t.Fatalf("Verify against another allowlist = %v, want a set mismatch", h)
	}
	if err := SetNonTCPAllowlist(tp.pod, b); err != nil {
		t.Fatal(err)
	}
	if h := mustVerify(t, tp.pod, b); h.State != Healthy {
		t.Fatalf("after SetNonTCPAllowlist: %v", h)
	}
}

// The probe exemption is part of the rule set Verify compares: a pod
// installed with it is healthy only against a spec with it, and switching
// the allowlist keeps it.
func TestVerifyComparesTheProbeExemption(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t)
	with := Spec{ProbeSource: DefaultProbeSource}
	install(t, tp.pod, with)
	if h := mustVerify(t, tp.pod, with); h.State != Healthy {
		t.Fatalf("Verify with the probe source: %v", h)
	}
	if h := mustVerify(t, tp.pod, Spec{}); h.State != Drifted || !h.Has(RuleMismatch) {
		t.Fatalf("Verify without the probe source = %v, want a rule mismatch", h)
	}
	with.NonTCP = []Allow{{Direction: Egress, Protocol: UDP, Peer: netip.MustParsePrefix("10.99.0.1/32"), Port: 53}}
	if err := SetNonTCPAllowlist(tp.pod, with); err != nil {
		t.Fatal(err)
	}
	if h := mustVerify(t, tp.pod, with); h.State != Healthy {
		t.Fatalf("after SetNonTCPAllowlist: %v", h)
	}
	if err := Install(tp.pod, Spec{ProbeSource: netip.MustParseAddr("fe80::1")}); err == nil {
		t.Error("an IPv6 probe source was accepted")
	}
}

func TestNonTCPAllowlist(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t)
	peerNet := netip.MustParsePrefix("10.99.0.0/24")
	install(t, tp.pod, Spec{NonTCP: []Allow{
		{Direction: Egress, Protocol: UDP, Peer: netip.PrefixFrom(tp.peerIP, 32), Port: 53},
		{Direction: Ingress, Protocol: UDP, Peer: peerNet, Port: 5000, EndPort: 5001},
	}})
	dns := udpEcho(t, tp.peer, tp.peerAddr(53))
	peer54 := listenUDP(t, tp.peer, tp.peerAddr(54))
	pod5000 := listenUDP(t, tp.pod, tp.podAddr(5000))
	pod5002 := listenUDP(t, tp.pod, tp.podAddr(5002))
	podSock := udpSocket(t, tp.pod)
	peerSock := udpSocket(t, tp.peer)
	to := func(addr string) *net.UDPAddr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)) }

	t.Run("a datagram to an allowed address and port gets through and its reply comes back", func(t *testing.T) {
		if _, err := podSock.WriteTo([]byte("query"), to(tp.peerAddr(53))); err != nil {
			t.Fatal(err)
		}
		if !received(dns, "query", time.Second) {
			t.Fatal("allowed datagram lost")
		}
		_ = podSock.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 64)
		n, _, err := podSock.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "query" {
			t.Fatalf("reply: %q, %v", buf[:n], err)
		}
	})
	t.Run("a datagram to another port is dropped in the pod", func(t *testing.T) {
		_, err := podSock.WriteTo([]byte("leak"), to(tp.peerAddr(54)))
		// Dropped in the output hook, so the sender learns at once.
		if !errors.Is(err, syscall.EPERM) {
			t.Errorf("send to an unlisted port: %v, want EPERM", err)
		}
		if received(peer54, "leak", 200*time.Millisecond) {
			t.Error("datagram to an unlisted port got through")
		}
	})
	t.Run("inbound datagrams are allowed only to listed ports", func(t *testing.T) {
		_, _ = peerSock.WriteTo([]byte("in"), to(tp.podAddr(5000)))
		_, _ = peerSock.WriteTo([]byte("in"), to(tp.podAddr(5002)))
		if !received(pod5000, "in", time.Second) {
			t.Error("allowed inbound datagram lost")
		}
		if received(pod5002, "in", 200*time.Millisecond) {
			t.Error("inbound datagram to an unlisted port got through")
		}
	})
	t.Run("withdrawing an entry ends a flow already established", func(t *testing.T) {
		s := udpSocket(t, tp.pod)
		if _, err := s.WriteTo([]byte("open"), to(tp.peerAddr(53))); err != nil {
			t.Fatal(err)
		}
		_ = s.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := s.ReadFrom(make([]byte, 64)); err != nil {
			t.Fatalf("no reply, the flow is not established: %v", err)
		}
		err := SetNonTCPAllowlist(tp.pod, Spec{NonTCP: []Allow{{Direction: Ingress, Protocol: UDP, Peer: peerNet, Port: 5000}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteTo([]byte("after"), to(tp.peerAddr(53))); !errors.Is(err, syscall.EPERM) {
			t.Errorf("send on the withdrawn flow: %v, want EPERM", err)
		}
	})
	t.Run("ICMP echo only when listed", func(t *testing.T) {
		if ping(t, tp.pod, tp.peerIP) {
			t.Error("ping got an answer without an ICMP entry")
		}
		err := SetNonTCPAllowlist(tp.pod, Spec{NonTCP: []Allow{{Direction: Egress, Protocol: ICMP, Peer: netip.PrefixFrom(tp.peerIP, 32)}}})
		if err != nil {
			t.Fatal(err)
		}
		if !ping(t, tp.pod, tp.peerIP) {
			t.Error("listed ping got no answer")
		}
	})
	t.Run("replacing the allowlist never drops a flow allowed before and after", func(t *testing.T) {
		both := Allow{Direction: Egress, Protocol: UDP, Peer: netip.PrefixFrom(tp.peerIP, 32), Port: 53}
		lists := [2][]Allow{
			{both, {Direction: Egress, Protocol: UDP, Peer: peerNet, Port: 60}},
			{both, {Direction: Egress, Protocol: UDP, Peer: peerNet, Port: 61}, {Direction: Ingress, Protocol: SCTP, Peer: peerNet}},
		}
		var (
			sent, failed atomic.Int64
			firstErr     atomic.Value
			stop         = make(chan struct{})
			wg           sync.WaitGroup
		)
		// The flow must be allowed before the sender starts.
		if err := SetNonTCPAllowlist(tp.pod, Spec{NonTCP: lists[1]}); err != nil {
			t.Fatal(err)
		}
		s := udpSocket(t, tp.pod)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.WriteTo([]byte("steady"), to(tp.peerAddr(53))); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				sent.Add(1)
			}
		}()
		for i := range 50 {
			if err := SetNonTCPAllowlist(tp.pod, Spec{NonTCP: lists[i%2]}); err != nil {
				t.Error(err)
				break
			}
		}
		close(stop)
		wg.Wait()
		if failed.Load() > 0 {
			t.Errorf("%d of %d sends to an always-allowed flow failed during replacement, first: %v", failed.Load(), sent.Load(), firstErr.Load())
		}
		// The last list (index 1) is in force: port 61 open, 60 closed.
		if _, err := s.WriteTo([]byte("x"), to(tp.peerAddr(61))); err != nil {
			t.Errorf("port 61 after the swap: %v", err)
		}
		if _, err := s.WriteTo([]byte("x"), to(tp.peerAddr(60))); !errors.Is(err, syscall.EPERM) {
			t.Errorf("port 60 after the swap: %v, want EPERM", err)
		}
	})
}

// udpEcho answers every datagram on addr inside ns with itself, and also
// hands its payload to the returned channel.
func udpEcho(t *testing.T, ns netns.NsHandle, addr string) <-chan string {
	t.Helper()
	var pc net.PacketConn
	if err := inNS(ns, func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	ch := make(chan string, 1024)
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

// ping sends one ICMP echo request from ns to dst on a raw socket and
// reports whether the matching reply arrived within half a second.
func ping(t *testing.T, ns netns.NsHandle, dst netip.Addr) bool {
	t.Helper()
	var fd int
	if err := inNS(ns, func() (err error) {
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
	const id, seq = 0x7a74, 1
	msg := []byte{8, 0, 0, 0, id >> 8, id & 0xff, 0, seq, 'z', 't', 'c', 'n'}
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
		if n >= ihl+8 && buf[ihl] == 0 && buf[ihl+4] == id>>8 && buf[ihl+5] == id&0xff {
			return true
		}
	}
	return false
}

func TestReinstallLeavesNoWindow(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t)
	spec := Spec{NonTCP: []Allow{{Direction: Egress, Protocol: UDP, Peer: netip.PrefixFrom(tp.peerIP, 32), Port: 53}}}
	install(t, tp.pod, spec)
	peer := listen(t, tp.peer, tp.peerAddr(80))
	s := udpSocket(t, tp.pod)
	dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tp.peerAddr(53)))

	var (
		stop          = make(chan struct{})
		wg            sync.WaitGroup
		dials, udpErr atomic.Int64
		tcpOK         atomic.Int64
	)
	wg.Add(2)
	go func() { // outbound TCP with no agent: must never connect
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if c, err := dial(tp.pod, tp.peerAddr(80), dialOpts{}); err == nil {
				tcpOK.Add(1)
				c.Close()
			}
			dials.Add(1)
		}
	}()
	go func() { // an allowed UDP flow: must never be dropped
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.WriteTo([]byte("dns"), dst); err != nil {
				udpErr.Add(1)
			}
		}
	}()
	for range 30 {
		if err := Install(tp.pod, spec); err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
	if tcpOK.Load() > 0 {
		t.Errorf("%d of %d outbound connects succeeded during re-installs", tcpOK.Load(), dials.Load())
	}
	if udpErr.Load() > 0 {
		t.Errorf("%d allowed datagrams were dropped during re-installs", udpErr.Load())
	}
	noneAccepted(t, peer, 50*time.Millisecond, "peer")
	if h := mustVerify(t, tp.pod, spec); h.State != Healthy {
		t.Fatalf("after re-installs: %v", h)
	}
}

func TestRemove(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t)

	if h := mustVerify(t, tp.pod, Spec{}); h.State != Absent {
		t.Fatalf("before Install: %v, want absent", h)
	}
	if err := Remove(tp.pod); err != nil {
		t.Fatalf("Remove of nothing: %v", err)
	}
	if err := SetNonTCPAllowlist(tp.pod, Spec{}); err == nil {
		t.Error("SetNonTCPAllowlist without Install succeeded")
	}

	install(t, tp.pod, Spec{})
	peer := listen(t, tp.peer, tp.peerAddr(80))
	if err := Remove(tp.pod); err != nil {
		t.Fatal(err)
	}
	h := mustVerify(t, tp.pod, Spec{})
	if h.State != Absent {
		t.Fatalf("after Remove: %v, want absent", h)
	}
	for _, k := range []DriftKind{MissingTable, MissingIPRule, MissingRoute} {
		if !h.Has(k) {
			t.Errorf("after Remove: %v lacks %s", h, k)
		}
	}
	if err := Remove(tp.pod); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	// Nothing redirects any more: the connection reaches the peer.
	c, err := dial(tp.pod, tp.peerAddr(80), dialOpts{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	accepted(t, peer, "peer")
}

func TestMainTableAloneStillEnforces(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t)
	install(t, tp.pod, Spec{})
	peer := listen(t, tp.peer, tp.peerAddr(80))
	udpPeer := listenUDP(t, tp.peer, tp.peerAddr(53))
	deleteTable(t, tp.pod, guardTbl)

	// Still redirected to 15001, where nothing listens: refused.
	wantRefusedFast(t, tp.pod, tp.peerAddr(80), "outbound")
	noneAccepted(t, peer, 100*time.Millisecond, "peer")
	s := udpSocket(t, tp.pod)
	if _, err := s.WriteTo([]byte("leak"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tp.peerAddr(53)))); !errors.Is(err, syscall.EPERM) {
		t.Errorf("unlisted datagram: %v, want EPERM", err)
	}
	if received(udpPeer, "leak", 200*time.Millisecond) {
		t.Error("unlisted datagram got through")
	}
}

// The redirection is IPv4 only, so IPv6 must not be a way around it.
func TestIPv6IsRefused(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t)
	pod6, peer6 := netip.MustParseAddr("fd00:99::2"), netip.MustParseAddr("fd00:99::1")
	for _, side := range []struct {
		ns netns.NsHandle
		ip netip.Addr
	}{{tp.pod, pod6}, {tp.peer, peer6}} {
		h, err := netlink.NewHandleAt(side.ns)
		if err != nil {
			t.Fatal(err)
		}
		l, err := h.LinkByName("eth0")
		if err == nil {
			// No duplicate address detection: the address is usable at once.
			err = h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: side.ip.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD})
		}
		h.Close()
		if err != nil {
			t.Skipf("no IPv6 here: %v", err)
		}
	}
	install(t, tp.pod, Spec{})
	peerAddr := netip.AddrPortFrom(peer6, 80).String()
	var ln net.Listener
	if err := inNS(tp.peer, func() (err error) { ln, err = net.Listen("tcp6", peerAddr); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			got <- c
		}
	}()
	var c net.Conn
	err := inNS(tp.pod, func() (err error) {
		c, err = (&net.Dialer{Timeout: 300 * time.Millisecond}).Dial("tcp6", peerAddr)
		return err
	})
	if err == nil {
		c.Close()
		t.Fatal("IPv6 connect from the pod succeeded")
	}
	select {
	case c := <-got:
		c.Close()
		t.Fatal("the peer accepted an IPv6 connection from the pod")
	case <-time.After(100 * time.Millisecond):
	}
}

func TestConcurrentInstallsIntoDifferentPods(t *testing.T) {
	requireRoot(t)
	spec := Spec{NonTCP: []Allow{{Direction: Egress, Protocol: UDP, Peer: netip.MustParsePrefix("10.0.0.0/8"), Port: 53}}}
	pods := make([]netns.NsHandle, 6)
	for i := range pods {
		pods[i] = newNetns(t)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(pods))
	for i, ns := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				if errs[i] = Install(ns, spec); errs[i] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, ns := range pods {
		if errs[i] != nil {
			t.Fatalf("pod %d: %v", i, errs[i])
		}
		if h := mustVerify(t, ns, spec); h.State != Healthy {
			t.Errorf("pod %d: %v", i, h)
		}
	}
}
