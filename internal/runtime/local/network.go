package local

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/ztcn/ztcn/internal/netns"
)

// network is the run's namespaces and links. Every namespace it creates is
// reported to onCreate first, so that the state file always lists what
// exists and `ztcn down` can remove it after a crash.
type network struct {
	run      string
	plan     *Plan
	onCreate func(ns string) error

	router *netns.NS
	rh     *netns.Handle
	nodes  map[string]*netns.Node
	pods   map[string]*netns.Pod
	extNS  map[string]*netns.NS
}

func newNetwork(run string, plan *Plan, onCreate func(string) error) *network {
	return &network{run: run, plan: plan, onCreate: onCreate,
		nodes: map[string]*netns.Node{}, pods: map[string]*netns.Pod{}, extNS: map[string]*netns.NS{}}
}

func (nw *network) routerName() string           { return nw.run + "-net" }
func (nw *network) nodeName(node string) string  { return nw.run + "-" + node }
func (nw *network) podName(pod string) string    { return nw.run + "-" + pod }
func (nw *network) externalName(x string) string { return nw.run + "-x-" + x }
func podNetnsPath(name string) string            { return netns.RunDir + "/" + name }

// buildRouter creates the underlay namespace: bridge ul0 joining the
// nodes, bridge ext0 holding the gateways of the external networks, and
// forwarding between them.
func (nw *network) buildRouter() error {
	name := nw.routerName()
	if err := nw.onCreate(name); err != nil {
		return err
	}
	ns, err := netns.Create(name)
	if err != nil {
		return err
	}
	nw.router = ns
	if nw.rh, err = netns.NewHandle(ns); err != nil {
		return err
	}
	if err := nw.rh.AddBridge("ul0"); err != nil {
		return err
	}
	if err := nw.rh.AddAddr("ul0", netip.PrefixFrom(routerUnderlay, underlayPrefix.Bits())); err != nil {
		return err
	}
	if err := nw.rh.AddBridge("ext0"); err != nil {
		return err
	}
	for _, gw := range nw.plan.ExternalGateways {
		if err := nw.rh.AddAddr("ext0", gw); err != nil {
			return err
		}
	}
	return netns.EnableIPv4Forwarding(ns)
}

// addNode creates a node namespace with its pod bridge, links it to the
// underlay and routes between its pods and everything else.
func (nw *network) addNode(np NodePlan) error {
	name := nw.nodeName(np.Name)
	if err := nw.onCreate(name); err != nil {
		return err
	}
	node, err := netns.NewNode(name, np.Gateway)
	if err != nil {
		return err
	}
	nw.nodes[np.Name] = node
	if err := netns.EnableIPv4Forwarding(node.NS()); err != nil {
		return err
	}
	routerEnd := fmt.Sprintf("ul-%d", np.Index)
	if err := nw.rh.AddVeth(routerEnd, node.NS(), "ul0", netns.WithMaster("ul0")); err != nil {
		return err
	}
	nh, err := netns.NewHandle(node.NS())
	if err != nil {
		return err
	}
	defer nh.Close()
	if err := nh.AddAddr("ul0", np.Underlay); err != nil {
		return err
	}
	if err := nh.SetDefaultRoute(routerUnderlay); err != nil {
		return err
	}
	// The router reaches the node's pods through the node.
	return addRouteVia(nw.rh, np.Subnet(), np.Underlay.Addr())
}

// addPod creates the pod's namespace on its node's bridge.
func (nw *network) addPod(pp PodPlan) (*netns.Pod, error) {
	name := nw.podName(pp.Spec.Name)
	if err := nw.onCreate(name); err != nil {
		return nil, err
	}
	p, err := nw.nodes[pp.Node].AddPod(name, pp.Addr)
	if err != nil {
		return nil, err
	}
	nw.pods[pp.Spec.Name] = p
	return p, nil
}

// addExternal creates an external workload's namespace on ext0.
func (nw *network) addExternal(i int, xp ExternalPlan) (*netns.NS, error) {
	name := nw.externalName(xp.Spec.Name)
	if err := nw.onCreate(name); err != nil {
		return nil, err
	}
	ns, err := netns.Create(name)
	if err != nil {
		return nil, err
	}
	nw.extNS[xp.Spec.Name] = ns
	if err := nw.rh.AddVeth(fmt.Sprintf("x-%d", i), ns, "eth0", netns.WithMaster("ext0")); err != nil {
		return nil, err
	}
	h, err := netns.NewHandle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if err := h.SetUp("lo"); err != nil {
		return nil, err
	}
	if err := h.AddAddr("eth0", xp.Addr); err != nil {
		return nil, err
	}
	return ns, h.SetDefaultRoute(xp.Gateway)
}

func addRouteVia(h *netns.Handle, dst netip.Prefix, gw netip.Addr) error {
	r := &netlink.Route{
		Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())},
		Gw:  gw.AsSlice(),
	}
	if err := h.Netlink().RouteReplace(r); err != nil {
		return fmt.Errorf("route %s via %s: %w", dst, gw, err)
	}
	return nil
}

// close releases the handles (the namespaces stay until removed).
func (nw *network) close() {
	if nw.rh != nil {
		nw.rh.Close()
		nw.rh = nil
	}
}

// removeNamespaces deletes the named namespaces, last created first, and
// kills every process still inside one of them (a pod's command and
// whatever it started): a namespace whose processes live on would outlive
// its name.
func removeNamespaces(names []string) error {
	var errs []error
	for i := len(names) - 1; i >= 0; i-- {
		name := names[i]
		killProcessesIn(podNetnsPath(name))
		if err := netns.Delete(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
