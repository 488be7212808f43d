package redirect

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NodeProbesTableName names the node's tables for kubelet probes (family
// ip and family bridge), in the node's network namespace.
const NodeProbesTableName = "ztcn-node"

const setProbePods = "probe_pods"

// rtnLocal is RTN_LOCAL: fib's address type of an address of this host.
const rtnLocal = 2

// InstallNodeProbes programs the node's side of kubelet probes into ns (the
// node's network namespace), replacing what was there in one transaction:
//
//   - TCP the node itself sends to one of pods leaves with source src, so
//     that the pods' rules (Spec.ProbeSource) let it through to the
//     application in plaintext, in every mode;
//   - a packet from anywhere else with source src is dropped, routed or
//     bridged: a pod must not pass itself off as the node's probes.
//
// "The node itself" is a packet whose source address is one of the node's
// own (fib saddr type local): the kubelet, and anything else that runs on
// the node's network, which can reach every pod anyway.
func InstallNodeProbes(ns netns.NsHandle, src netip.Addr, pods []netip.Addr) error {
	if !src.Is4() {
		return fmt.Errorf("redirect: probe source %s is not an IPv4 address", src)
	}
	conn, err := deleteNodeProbes(ns)
	if err != nil {
		return err
	}
	for _, family := range nodeProbeFamilies {
		conn.AddTable(&nftables.Table{Family: family, Name: NodeProbesTableName})
	}
	ipt := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: NodeProbesTableName}
	set := &nftables.Set{Table: ipt, Name: setProbePods, KeyType: nftables.TypeIPAddr}
	var elems []nftables.SetElement
	for _, ip := range pods {
		if ip.Is4() {
			elems = append(elems, nftables.SetElement{Key: ip.AsSlice()})
		}
	}
	if err := conn.AddSet(set, elems); err != nil {
		return fmt.Errorf("redirect: node probes set: %w", err)
	}
	post := conn.AddChain(&nftables.Chain{Table: ipt, Name: "postrouting", Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	local := make([]byte, 4)
	binary.NativeEndian.PutUint32(local, rtnLocal)
	conn.AddRule(&nftables.Rule{Table: ipt, Chain: post, Exprs: cat(
		[]expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offDaddr, Len: 4},
			&expr.Lookup{SourceRegister: reg1, SetName: set.Name, SetID: set.ID},
		},
		l4proto(unix.NFT_CMP_EQ, unix.IPPROTO_TCP),
		[]expr.Any{
			&expr.Fib{Register: reg1, FlagSADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: local},
			&expr.Immediate{Register: reg1, Data: src.AsSlice()},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1},
		})})
	fwd := conn.AddChain(&nftables.Chain{Table: ipt, Name: "forward", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	conn.AddRule(&nftables.Rule{Table: ipt, Chain: fwd, Exprs: cat(addrIs(unix.NFT_CMP_EQ, offSaddr, src), drop())})
	// Pods on one bridge reach each other without the node routing
	// their packets: the bridge's own hook must drop the spoofed source.
	brt := &nftables.Table{Family: nftables.TableFamilyBridge, Name: NodeProbesTableName}
	brFwd := conn.AddChain(&nftables.Chain{Table: brt, Name: "forward", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	conn.AddRule(&nftables.Rule{Table: brt, Chain: brFwd, Exprs: cat(
		[]expr.Any{
			&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0x08, 0x00}}, // ether type ip
		},
		addrIs(unix.NFT_CMP_EQ, offSaddr, src), drop())})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("redirect: install node probe rules: %w", err)
	}
	return nil
}

// RemoveNodeProbes deletes the node's probe tables; absent ones are not an
// error.
func RemoveNodeProbes(ns netns.NsHandle) error {
	conn, err := deleteNodeProbes(ns)
	if err != nil {
		return err
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("redirect: remove node probe rules: %w", err)
	}
	return nil
}

var nodeProbeFamilies = []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyBridge}

// deleteNodeProbes opens a batch on ns that deletes the node's probe
// tables: added first, then deleted, the idiom that deletes a table
// whether or not it exists. Nothing is sent before the caller's Flush, so
// InstallNodeProbes replaces the tables in one commit.
func deleteNodeProbes(ns netns.NsHandle) (*nftables.Conn, error) {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return nil, fmt.Errorf("redirect: open nftables: %w", err)
	}
	for _, family := range nodeProbeFamilies {
		t := &nftables.Table{Family: family, Name: NodeProbesTableName}
		conn.AddTable(t)
		conn.DelTable(t)
	}
	return conn, nil
}
