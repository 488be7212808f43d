package redirect

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// This file is the rule set, as data: what Install programs and what Verify
// compares against. README.md explains every rule.

// Allowlist sets, the same in both tables. Each exists twice, generation
// 0 and 1 ("allow_out_0", "allow_out_1"), and the rules look up one
// generation at a time. A new allowlist is written into the idle generation
// in one transaction, and the rules are pointed at it in the next, so no
// transaction ever changes a set that live rules use. Measured on this
// project's 6.18 kernel, with a sender hammering an always-allowed flow:
// deleting and re-adding a table together with its sets in one batch lost
// 1,589 of 167,008 datagrams over 100 re-installs (a set created in a
// transaction gets its elements only after that transaction's rules are
// live), while the same without sets, a rule swap, and a flush-and-refill
// of a live set each lost none. Keeping set writes and rule switches in
// separate transactions makes the no-gap property independent of how a
// kernel's interval-set backend (pipapo) orders its commit.
const (
	setAllowOut = "allow_out"
	setAllowIn  = "allow_in"
)

// setBases are the allowlist sets of a table, without generation.
var setBases = []string{setAllowOut, setAllowIn}

func setName(base string, gen int) string { return fmt.Sprintf("%s_%d", base, gen) }

// parseSetName splits "allow_out_1" into ("allow_out", 1).
func parseSetName(name string) (base string, gen int, ok bool) {
	for _, b := range setBases {
		for g := range 2 {
			if name == setName(b, g) {
				return b, g, true
			}
		}
	}
	return "", 0, false
}

// setKeyType is the element type of both allowlist sets.
var setKeyType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)

// tableSpec, chainSpec, setSpec and ruleSpec describe the desired state of
// one table.
type tableSpec struct {
	family nftables.TableFamily
	name   string
	gen    int // the set generation the rules look up
	sets   []setSpec
	chains []chainSpec
}

// setSpec is one allowlist set of the generation the rules use.
type setSpec struct {
	base  string
	elems []box
}

type chainSpec struct {
	name   string
	typ    nftables.ChainType
	hook   nftables.ChainHook
	prio   nftables.ChainPriority
	policy nftables.ChainPolicy
	rules  []ruleSpec
}

type ruleSpec struct {
	// why is stored as the rule's comment, so that `nft list ruleset` in a
	// pod explains itself. Verify does not compare it.
	why   string
	exprs []expr.Any
}

func (t tableSpec) table() *nftables.Table { return &nftables.Table{Family: t.family, Name: t.name} }

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return "family?"
}

func (t tableSpec) String() string { return "table " + familyName(t.family) + " " + t.name }

// tables builds the rule set for a compiled allowlist, one function per
// table, main table first: each takes the set generation its rules look up.
var tables = [...]func(c compiled, gen int) tableSpec{mainTable, guardTable}

var loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// mainTable is DESIGN §5's proven rule set, plus the two filter chains that
// drop non-TCP traffic not on the allowlist.
func mainTable(c compiled, gen int) tableSpec {
	return tableSpec{
		family: nftables.TableFamilyIPv4,
		name:   TableName,
		gen:    gen,
		sets:   []setSpec{{setAllowOut, c.egress}, {setAllowIn, c.ingress}},
		chains: []chainSpec{
			{
				name: "mangle_prerouting", typ: nftables.ChainTypeFilter, hook: *nftables.ChainHookPrerouting,
				prio: *nftables.ChainPriorityMangle, policy: nftables.ChainPolicyAccept,
				rules: []ruleSpec{
					{"ztcn: remember the agent's own connections (connmark 0x111)",
						cat(markIs(unix.NFT_CMP_EQ, BypassMark), setConnMark())},
				},
			},
			{
				// Type route: changing the mark of a locally generated
				// packet must redo the routing decision, so the
				// application's replies find the policy route to lo.
				name: "mangle_output", typ: nftables.ChainTypeRoute, hook: *nftables.ChainHookOutput,
				prio: *nftables.ChainPriorityMangle, policy: nftables.ChainPolicyAccept,
				rules: []ruleSpec{
					{"ztcn: route replies of agent connections back to the agent",
						cat(ctMarkIs(ConnMark), restoreMark())},
				},
			},
			{
				name: "nat_prerouting", typ: nftables.ChainTypeNAT, hook: *nftables.ChainHookPrerouting,
				prio: *nftables.ChainPriorityNATDest, policy: nftables.ChainPolicyAccept,
				rules: present(
					probeRule(c, "ztcn"),
					ruleSpec{"ztcn: inbound TCP except HBONE to the agent's plaintext listener",
						cat(l4proto(unix.NFT_CMP_EQ, unix.IPPROTO_TCP), addrIs(unix.NFT_CMP_NEQ, offDaddr, loopback),
							dportIs(unix.NFT_CMP_NEQ, InboundHBONEPort), markIs(unix.NFT_CMP_NEQ, BypassMark),
							redirectTo(InboundPlaintextPort))},
				),
			},
			{
				name: "nat_output", typ: nftables.ChainTypeNAT, hook: *nftables.ChainHookOutput,
				prio: *nftables.ChainPriorityNATDest, policy: nftables.ChainPolicyAccept,
				rules: []ruleSpec{
					{"ztcn: leave replies routed to the agent alone",
						cat(l4proto(unix.NFT_CMP_EQ, unix.IPPROTO_TCP), markIs(unix.NFT_CMP_EQ, ConnMark), accept())},
					{"ztcn: the pod talking to itself is not redirected",
						cat(ifname(expr.MetaKeyOIFNAME, "lo"), addrIs(unix.NFT_CMP_NEQ, offDaddr, loopback), accept())},
					{"ztcn: outbound TCP to the agent's outbound listener",
						cat(l4proto(unix.NFT_CMP_EQ, unix.IPPROTO_TCP), addrIs(unix.NFT_CMP_NEQ, offDaddr, loopback),
							markIs(unix.NFT_CMP_NEQ, BypassMark), redirectTo(OutboundPort))},
				},
			},
			{
				name: "filter_input", typ: nftables.ChainTypeFilter, hook: *nftables.ChainHookInput,
				prio: *nftables.ChainPriorityFilter, policy: nftables.ChainPolicyDrop,
				rules: []ruleSpec{
					{"ztcn: loopback inside the pod", cat(ifname(expr.MetaKeyIIFNAME, "lo"), accept())},
					{"ztcn: replies and related ICMP", cat(ctStateIn(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept())},
					{"ztcn: TCP is redirected to the agent", cat(l4proto(unix.NFT_CMP_EQ, unix.IPPROTO_TCP), accept())},
					{"ztcn: allowed non-TCP", allowLookup(offSaddr, false, setName(setAllowIn, gen))},
					{"ztcn: allowed ICMP echo", allowLookup(offSaddr, true, setName(setAllowIn, gen))},
				},
			},
			{
				name: "filter_output", typ: nftables.ChainTypeFilter, hook: *nftables.ChainHookOutput,
				prio: *nftables.ChainPriorityFilter, policy: nftables.ChainPolicyDrop,
				rules: []ruleSpec{
					{"ztcn: loopback inside the pod", cat(ifname(expr.MetaKeyOIFNAME, "lo"), accept())},
					{"ztcn: replies and related ICMP", cat(ctStateIn(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept())},
					{"ztcn: the agent's own sockets", cat(markIs(unix.NFT_CMP_EQ, BypassMark), accept())},
					{"ztcn: TCP is redirected to the agent", cat(l4proto(unix.NFT_CMP_EQ, unix.IPPROTO_TCP), accept())},
					{"ztcn: allowed non-TCP", allowLookup(offDaddr, false, setName(setAllowOut, gen))},
					{"ztcn: allowed ICMP echo", allowLookup(offDaddr, true, setName(setAllowOut, gen))},
				},
			},
		},
	}
}

// guardTable is the backstop: it holds no NAT, so it cannot redirect, but
// it refuses every new TCP connection the main table should have
// redirected and did not (outbound without ct status dnat or the bypass
// mark; inbound to anything but HBONE without ct status dnat). Family inet,
// because the redirection is IPv4 only: IPv6 is refused outright instead of
// leaving the pod unseen. It repeats the non-TCP allowlist, so each table
// on its own is fail-closed.
func guardTable(c compiled, gen int) tableSpec {
	return tableSpec{
		family: nftables.TableFamilyINet,
		name:   GuardTableName,
		gen:    gen,
		sets:   []setSpec{{setAllowOut, c.egress}, {setAllowIn, c.ingress}},
		chains: []chainSpec{
			{
				name: "input", typ: nftables.ChainTypeFilter, hook: *nftables.ChainHookInput,
				prio: *nftables.ChainPriorityFilter, policy: nftables.ChainPolicyDrop,
				rules: present(
					ruleSpec{"ztcn-guard: loopback inside the pod", cat(ifname(expr.MetaKeyIIFNAME, "lo"), accept())},
					ruleSpec{"ztcn-guard: IPv6 is not redirected, so it is refused", cat(nfprotoIsNot(unix.NFPROTO_IPV4), drop())},
					ruleSpec{"ztcn-guard: replies and related ICMP", cat(ctStateIn(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept())},
					ruleSpec{"ztcn-guard: redirected to the agent by table ip ztcn", cat(ctStatusHas(ipsDstNAT), accept())},
					ruleSpec{"ztcn-guard: HBONE", cat(l4proto(unix.NFT_CMP_EQ, unix.IPPROTO_TCP), dportIs(unix.NFT_CMP_EQ, InboundHBONEPort), accept())},
					probeRule(c, "ztcn-guard"),
					ruleSpec{"ztcn-guard: TCP that was not redirected", cat(l4proto(unix.NFT_CMP_EQ, unix.IPPROTO_TCP), rejectTCP())},
					ruleSpec{"ztcn-guard: allowed non-TCP", allowLookup(offSaddr, false, setName(setAllowIn, gen))},
					ruleSpec{"ztcn-guard: allowed ICMP echo", allowLookup(offSaddr, true, setName(setAllowIn, gen))},
				),
			},
			{
				name: "output", typ: nftables.ChainTypeFilter, hook: *nftables.ChainHookOutput,
				prio: *nftables.ChainPriorityFilter, policy: nftables.ChainPolicyDrop,
				rules: []ruleSpec{
					{"ztcn-guard: loopback inside the pod", cat(ifname(expr.MetaKeyOIFNAME, "lo"), accept())},
					{"ztcn-guard: IPv6 is not redirected, so it is refused", cat(nfprotoIsNot(unix.NFPROTO_IPV4), drop())},
					{"ztcn-guard: replies and related ICMP", cat(ctStateIn(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept())},
					{"ztcn-guard: the agent's own sockets", cat(markIs(unix.NFT_CMP_EQ, BypassMark), accept())},
					{"ztcn-guard: redirected to the agent by table ip ztcn", cat(ctStatusHas(ipsDstNAT), accept())},
					{"ztcn-guard: TCP that was not redirected", cat(l4proto(unix.NFT_CMP_EQ, unix.IPPROTO_TCP), rejectTCP())},
					{"ztcn-guard: allowed non-TCP", allowLookup(offDaddr, false, setName(setAllowOut, gen))},
					{"ztcn-guard: allowed ICMP echo", allowLookup(offDaddr, true, setName(setAllowOut, gen))},
				},
			},
		},
	}
}

// Registers. nftables has four 16-byte registers (1-4) that are also
// addressed as sixteen 4-byte ones (8-23): a concatenation loads its fields
// into consecutive 4-byte registers starting at register 1, the layout
// `nft` itself uses (reg 1, reg 9, reg 10).
const (
	reg1   = 1
	reg32b = 9  // second 4-byte word of register 1
	reg32c = 10 // third 4-byte word of register 1
)

// ipsDstNAT is IPS_DST_NAT of linux/netfilter/nf_conntrack_common.h: the
// connection's destination was rewritten (by our redirect).
const ipsDstNAT = 1 << 5

// Offsets in the IPv4 header.
const (
	offSaddr = 12
	offDaddr = 16
)

// probeRule lets inbound TCP from the node's probe source
// (Spec.ProbeSource) through to the application: the node's agent gives
// that source to the node's own TCP to pods (kubelet probes), and drops it
// on anything a pod sends (InstallNodeProbes). Without a probe source it
// is no rule (see present).
func probeRule(c compiled, table string) ruleSpec {
	if !c.probe.IsValid() {
		return ruleSpec{}
	}
	return ruleSpec{table + ": kubelet probes (the node's TCP, source " + c.probe.String() + ") go to the application",
		cat(l4proto(unix.NFT_CMP_EQ, unix.IPPROTO_TCP), addrIs(unix.NFT_CMP_EQ, offSaddr, c.probe), accept())}
}

// present is the rules that are rules (probeRule may give none).
func present(rules ...ruleSpec) []ruleSpec {
	return slices.DeleteFunc(rules, func(r ruleSpec) bool { return r.exprs == nil })
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }
func drop() []expr.Any   { return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}} }

// rejectTCP answers with a TCP reset, so an application whose traffic the
// guard refuses fails at once (connection refused) instead of retrying a
// SYN for minutes.
func rejectTCP() []expr.Any {
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}
}

// l4proto: meta l4proto ==/!= p.
func l4proto(op expr.CmpOp, p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: op, Register: reg1, Data: []byte{p}},
	}
}

// nfprotoIsNot: meta nfproto != p (only meaningful in family inet).
func nfprotoIsNot(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{p}},
	}
}

// addrIs: ip saddr/daddr ==/!= a.
func addrIs(op expr.CmpOp, offset uint32, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Cmp{Op: op, Register: reg1, Data: a.AsSlice()},
	}
}

// dportIs: th dport ==/!= port (the transport header's bytes 2-3, the
// destination port of TCP, UDP and SCTP alike).
func dportIs(op expr.CmpOp, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: op, Register: reg1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// markIs: meta mark & 0xfff ==/!= v. Marks are host-endian numbers.
func markIs(op expr.CmpOp, v uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		maskReg1(MarkMask, 0),
		&expr.Cmp{Op: op, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(v)},
	}
}

// ctMarkIs: ct mark & 0xfff == v.
func ctMarkIs(v uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
		maskReg1(MarkMask, 0),
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(v)},
	}
}

// setConnMark: ct mark set ct mark & 0xfffff000 ^ 0x111 — sets ztcn's bits
// of the conntrack mark and keeps the others.
func setConnMark() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
		maskReg1(^uint32(MarkMask), ConnMark),
		&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
	}
}

// restoreMark: meta mark set ct mark.
func restoreMark() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1, SourceRegister: true},
	}
}

// ctStateIn: ct state & bits != 0.
func ctStateIn(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
		maskReg1(bits, 0),
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// ctStatusHas: ct status & bits != 0.
func ctStatusHas(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: reg1},
		maskReg1(bits, 0),
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

func maskReg1(mask, xor uint32) *expr.Bitwise {
	return &expr.Bitwise{
		SourceRegister: reg1, DestRegister: reg1, Len: 4,
		Mask: binaryutil.NativeEndian.PutUint32(mask),
		Xor:  binaryutil.NativeEndian.PutUint32(xor),
	}
}

// ifname: iifname/oifname == name (IFNAMSIZ bytes, zero padded).
func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: b},
	}
}

// redirectTo: redirect to :port. The port goes in a register in network
// byte order; the kernel redirects to the primary address of the incoming
// interface (prerouting) or to 127.0.0.1 (output). The flag is the one the
// kernel sets by itself when a port register is given: spelling it out
// makes the rule read back exactly as built.
func redirectTo(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Redir{RegisterProtoMin: reg1, RegisterProtoMax: reg1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	}
}

// allowLookup: the allowlist rule of one direction.
//
//	meta l4proto != icmp  ip addr . meta l4proto . th dport        @set accept
//	meta l4proto icmp     ip addr . meta l4proto . icmp type,code  @set accept
//
// The ICMP rule looks up the first two bytes of the ICMP header where the
// other rule looks up the port; an ICMP element holds 8,0 (echo request)
// there. The first rule excludes ICMP so that an ICMP packet whose
// checksum (bytes 2-3) happened to equal 0x0800 could not match an ICMP
// element.
func allowLookup(addrOffset uint32, icmp bool, set string) []expr.Any {
	op, portOffset := expr.CmpOp(unix.NFT_CMP_NEQ), uint32(2)
	if icmp {
		op, portOffset = unix.NFT_CMP_EQ, 0
	}
	return cat(l4proto(op, unix.IPPROTO_ICMP), []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOffset, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32b},
		&expr.Payload{DestRegister: reg32c, Base: expr.PayloadBaseTransportHeader, Offset: portOffset, Len: 2},
		&expr.Lookup{SourceRegister: reg1, SetName: set},
	}, accept())
}
