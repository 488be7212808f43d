package netns

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// Node is a simulated node: a namespace holding a bridge that carries the
// gateway address, with pod namespaces attached to it by veth pairs. The
// bridge and the node ends of the veths live in the node namespace, so
// building a node never adds a link or a route to the host.
type Node struct {
	ns      *NS
	h       *Handle
	bridge  string
	gateway netip.Prefix

	mu       sync.Mutex
	pods     map[string]*Pod
	nextVeth int
}

// Pod is a namespace attached to a Node.
type Pod struct {
	NS *NS // owned by the Node: RemovePod and Teardown close it
	// Addr is the pod's address on eth0, e.g. 10.251.7.2/24.
	Addr netip.Prefix
	// NodeVeth is the node-side end of the pod's veth, attached to the
	// bridge in the node namespace.
	NodeVeth string
}

// NodeOption adjusts NewNode.
type NodeOption func(*Node)

// WithBridge names the node's bridge (default "br0").
func WithBridge(name string) NodeOption { return func(n *Node) { n.bridge = name } }

// NewNode creates the namespace name with a bridge addressed as gateway
// (e.g. 10.251.7.1/24: pods get addresses in 10.251.7.0/24 and their
// default route via 10.251.7.1). On error nothing is left behind.
func NewNode(name string, gateway netip.Prefix, opts ...NodeOption) (*Node, error) {
	n := &Node{bridge: "br0", gateway: gateway, pods: map[string]*Pod{}}
	for _, opt := range opts {
		opt(n)
	}
	if !gateway.IsValid() {
		return nil, fmt.Errorf("netns: node %q: invalid gateway prefix", name)
	}
	ns, err := Create(name)
	if err != nil {
		return nil, err
	}
	n.ns = ns
	if n.h, err = NewHandle(ns); err == nil {
		if err = n.h.AddBridge(n.bridge); err == nil {
			err = n.h.AddAddr(n.bridge, gateway)
		}
	}
	if err != nil {
		return nil, errors.Join(err, n.Teardown())
	}
	return n, nil
}

// NS is the node namespace.
func (n *Node) NS() *NS { return n.ns }

// AddPod creates the pod namespace name, connects it to the bridge with a
// veth whose pod end is eth0, gives eth0 addr and routes everything via
// the gateway. addr must be in the gateway's subnet. On error the pod is
// removed again.
func (n *Node) AddPod(name string, addr netip.Prefix) (*Pod, error) {
	if addr.Masked() != n.gateway.Masked() || addr.Addr() == n.gateway.Addr() {
		return nil, fmt.Errorf("netns: pod %q: address %s is not a free address in %s", name, addr, n.gateway.Masked())
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h == nil {
		return nil, fmt.Errorf("netns: pod %q: node is torn down", name)
	}
	if _, ok := n.pods[name]; ok {
		return nil, fmt.Errorf("netns: pod %q already exists on node %s", name, n.ns)
	}
	ns, err := Create(name)
	if err != nil {
		return nil, err
	}
	// A counter, not the pod name, names the node end: pod names may be
	// longer than an interface name can be.
	p := &Pod{NS: ns, Addr: addr, NodeVeth: fmt.Sprintf("veth%d", n.nextVeth)}
	n.nextVeth++
	if err := n.attach(p); err != nil {
		return nil, errors.Join(err, n.removePod(p))
	}
	n.pods[name] = p
	return p, nil
}

func (n *Node) attach(p *Pod) error {
	if err := n.h.AddVeth(p.NodeVeth, p.NS, "eth0", WithMaster(n.bridge)); err != nil {
		return err
	}
	ph, err := NewHandle(p.NS)
	if err != nil {
		return err
	}
	defer ph.Close()
	if err := ph.AddAddr("eth0", p.Addr); err != nil {
		return err
	}
	return ph.SetDefaultRoute(n.gateway.Addr())
}

// RemovePod deletes the pod's veth and namespace. Removing a pod that is
// not on the node is not an error.
func (n *Node) RemovePod(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.pods[name]
	if !ok {
		return nil
	}
	delete(n.pods, name)
	return n.removePod(p)
}

// removePod deletes the veth explicitly rather than waiting for the
// namespace to go: something else (a process, a socket) may keep the pod
// namespace alive after its name is gone.
func (n *Node) removePod(p *Pod) error {
	name := p.NS.Name()
	return errors.Join(n.h.DeleteLink(p.NodeVeth), p.NS.Close(), Delete(name))
}

// Teardown removes every pod, the bridge and the node namespace. It is
// safe to call more than once.
func (n *Node) Teardown() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for name, p := range n.pods {
		errs = append(errs, n.removePod(p))
		delete(n.pods, name)
	}
	if n.h != nil {
		n.h.Close()
		n.h = nil
	}
	if n.ns != nil {
		errs = append(errs, n.ns.Close(), Delete(n.ns.Name()))
		n.ns = nil
	}
	return errors.Join(errs...)
}
