// Package local is ztcn's own container runtime for development and demos
// (`ztcn up`): pods are network namespaces on one machine, wired to
// simulated nodes, each node secured by its own agent process, with no CNI
// and no container images. It turns a pods file into namespaces, veths,
// addresses and routes, registers every pod with its node's agent before
// the pod's command starts, runs the commands, and removes all of it again.
//
// Topology (all of it in namespaces ztcn creates; the host's own network is
// never touched):
//
//	<run>-net        the underlay: bridge ul0 (10.77.0.254/24) joining the
//	                 nodes, and bridge ext0 carrying the gateways of the
//	                 external networks; it routes between all of them
//	<run>-node-N     one per node: bridge br0 (10.77.N.1/24) for its pods,
//	                 ul0 (10.77.0.N/24) to the underlay
//	<run>-<pod>      one per pod: eth0 (10.77.N.x/24) on its node's bridge
//	<run>-x-<name>   one per external workload, on ext0 with its own address
//
// The agents run in the host's namespace (so their admin endpoints are
// reachable from the host) and enter the pods' namespaces to do their work,
// as a DaemonSet agent does on a real node.
package local

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/ztcn/ztcn/internal/runtime/podspec"
)

// Addressing. 10.77.0.0/16 is private and only ever exists inside the
// run's namespaces, so it cannot clash with the host's networks.
var (
	meshRange      = netip.MustParsePrefix("10.77.0.0/16")
	underlayPrefix = netip.MustParsePrefix("10.77.0.0/24")
	routerUnderlay = netip.MustParseAddr("10.77.0.254")
)

// MaxNodes bounds --nodes: node N uses 10.77.N.0/24 and 10.77.0.N.
const MaxNodes = 200

// maxPodsPerNode: pods get 10.77.N.10 to 10.77.N.250.
const maxPodsPerNode = 241

// Plan is where everything of a run goes: computed before anything is
// created, so that bad input fails before the first namespace exists.
type Plan struct {
	Nodes     []NodePlan
	Pods      []PodPlan
	Externals []ExternalPlan
	// ExternalGateways are the router's addresses on ext0, one per external
	// /24, each an external workload's default gateway.
	ExternalGateways []netip.Prefix
}

// NodePlan is one simulated node.
type NodePlan struct {
	Name  string
	Index int // 1-based
	// Gateway is the node bridge's address: the pods' default route.
	Gateway  netip.Prefix
	Underlay netip.Prefix
}

// Subnet is the node's pod range.
func (n NodePlan) Subnet() netip.Prefix { return n.Gateway.Masked() }

// PodPlan is one pod placed on a node.
type PodPlan struct {
	Spec podspec.Pod
	Node string
	Addr netip.Prefix
}

// ExternalPlan is one workload outside the mesh.
type ExternalPlan struct {
	Spec    podspec.External
	Addr    netip.Prefix
	Gateway netip.Addr
}

// NewPlan places the pods of f on nodes: pods that name a node go there;
// the others are spread round-robin over node-1 … node-N (N = nodes, at
// least 1), in file order.
func NewPlan(f *podspec.File, nodes int) (*Plan, error) {
	if nodes < 1 {
		nodes = 1
	}
	if nodes > MaxNodes {
		return nil, fmt.Errorf("--nodes %d: at most %d nodes", nodes, MaxNodes)
	}
	var names []string
	for i := 1; i <= nodes; i++ {
		names = append(names, fmt.Sprintf("node-%d", i))
	}
	for _, n := range f.Nodes() {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) > MaxNodes {
		return nil, fmt.Errorf("%s: %d nodes named; at most %d", f.Path, len(names), MaxNodes)
	}
	p := &Plan{}
	byName := map[string]*NodePlan{}
	for i, name := range names {
		idx := i + 1
		p.Nodes = append(p.Nodes, NodePlan{
			Name: name, Index: idx,
			Gateway:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(idx), 1}), 24),
			Underlay: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, 0, byte(idx)}), 24),
		})
	}
	for i := range p.Nodes {
		byName[p.Nodes[i].Name] = &p.Nodes[i]
	}
	used := map[string]int{}
	spread := 0
	for _, pod := range f.Pods {
		node := pod.Node
		if node == "" {
			node = names[spread%nodes]
			spread++
		}
		np := byName[node]
		k := used[node]
		if k >= maxPodsPerNode {
			return nil, fmt.Errorf("%s:%d: pod %q: node %s is full (%d pods)", f.Path, pod.Pos.Line, pod.Name, node, maxPodsPerNode)
		}
		used[node]++
		gw := np.Gateway.Addr().As4()
		addr := netip.AddrFrom4([4]byte{gw[0], gw[1], gw[2], byte(10 + k)})
		p.Pods = append(p.Pods, PodPlan{Spec: pod, Node: node, Addr: netip.PrefixFrom(addr, 24)})
	}
	gateways := map[netip.Prefix]netip.Addr{}
	for _, x := range f.Externals {
		if meshRange.Contains(x.Address) {
			return nil, fmt.Errorf("%s:%d: external %q: address %s is inside the mesh range %s", f.Path, x.Pos.Line, x.Name, x.Address, meshRange)
		}
		subnet := netip.PrefixFrom(x.Address, 24).Masked()
		gw, ok := gateways[subnet]
		if !ok {
			// .1 unless an external sits there, then .254.
			a := subnet.Addr().As4()
			a[3] = 1
			gw = netip.AddrFrom4(a)
			for _, other := range f.Externals {
				if other.Address == gw {
					a[3] = 254
					gw = netip.AddrFrom4(a)
				}
			}
			gateways[subnet] = gw
			p.ExternalGateways = append(p.ExternalGateways, netip.PrefixFrom(gw, 24))
		}
		if x.Address == gw {
			return nil, fmt.Errorf("%s:%d: external %q: %s is the gateway of its network; choose another address", f.Path, x.Pos.Line, x.Name, x.Address)
		}
		for _, prev := range p.Externals {
			if prev.Spec.Address == x.Address {
				return nil, fmt.Errorf("%s:%d: external %q: address %s is already used by %q", f.Path, x.Pos.Line, x.Name, x.Address, prev.Spec.Name)
			}
		}
		p.Externals = append(p.Externals, ExternalPlan{Spec: x, Addr: netip.PrefixFrom(x.Address, 24), Gateway: gw})
	}
	return p, nil
}

// Node returns the node named name.
func (p *Plan) Node(name string) (NodePlan, bool) {
	for _, n := range p.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodePlan{}, false
}
