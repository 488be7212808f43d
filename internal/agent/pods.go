package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/dataplane"
	"github.com/ztcn/ztcn/internal/dataplane/redirect"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/policy"
	"github.com/ztcn/ztcn/internal/telemetry"
	"github.com/ztcn/ztcn/internal/workload"
)

// attachedPod is the data plane side of a registered pod.
type attachedPod struct {
	ns       *netns.NS
	endpoint *policy.Endpoint
	health   control.Redirection
}

// RunPod registers a pod, issues its identity and, with a data plane,
// attaches its redirection, in that order, before returning: a runtime
// adapter holds the pod's start until then. Any failure undoes what was
// done, so no pod runs half-secured.
//
// Registering the same pod again (a runtime retrying, or re-attach after a
// restart racing the runtime) returns its current SVID; a different pod
// under the same UID is a conflict.
func (a *Agent) RunPod(p workload.Pod) (*identity.SVID, error) {
	a.podsMu.Lock()
	defer a.podsMu.Unlock()
	return a.runPodLocked(p)
}

func (a *Agent) runPodLocked(p workload.Pod) (*identity.SVID, error) {
	if old, ok := a.registry.Get(p.UID); ok {
		if samePod(old, p) {
			if svid, ok := a.identities.SVID(p.UID); ok {
				return svid, nil
			}
		}
		return nil, fmt.Errorf("%w: pod %s is already registered with another record; stop it first", control.ErrConflict, p.UID)
	}
	var ip netip.Addr
	if a.dp != nil {
		var err error
		if ip, err = podIPv4(p); err != nil {
			return nil, err
		}
	}
	if err := a.registry.RunPodSandbox(p); err != nil {
		return nil, fmt.Errorf("%w: %v", control.ErrConflict, err)
	}
	svid, err := a.identities.Start(workloadOf(p))
	if err != nil {
		_ = a.registry.StopPodSandbox(p.UID)
		return nil, err
	}
	if a.dp != nil {
		if err := a.attach(p, ip, svid); err != nil {
			_ = a.identities.Stop(p.UID)
			_ = a.registry.StopPodSandbox(p.UID)
			return nil, err
		}
	}
	if err := a.state.save(p); err != nil {
		// Without a record the pod would be lost at the next restart:
		// refuse it now rather than fail open later.
		a.stopPodLocked(p.UID)
		return nil, fmt.Errorf("pod %s: %w", p.UID, err)
	}
	a.log.Info("workload identity issued", "pod", p.Namespace+"/"+p.Name, "uid", p.UID, "spiffe_id", svid.ID.String(), "not_after", svid.NotAfter())
	return svid, nil
}

// attach opens the pod's namespace and hands the pod to the data plane.
func (a *Agent) attach(p workload.Pod, ip netip.Addr, svid *identity.SVID) error {
	ns, err := netns.Open(p.NetnsPath)
	if err != nil {
		return fmt.Errorf("%w: %v", control.ErrInvalid, err)
	}
	if shared, err := a.isNodeNetns(ns); err != nil || shared {
		ns.Close()
		if err == nil {
			// Redirecting the node's own namespace would capture every
			// process on the node, the agent's peers included.
			err = fmt.Errorf("%w: pod %s shares the node's network namespace (hostNetwork); ztcn cannot secure it", control.ErrInvalid, p.UID)
		}
		return err
	}
	ep := endpointOf(p, ip, svid.ID.String())
	uid := p.UID
	err = a.dp.Attach(dataplane.Pod{
		UID: uid, IP: ip, NS: ns, Endpoint: ep,
		// The pod's non-TCP filter is right from its first packet.
		NonTCP: a.nonTCPFor(a.Policy(), ep),
		SVID: func() *identity.SVID {
			// The manager rotates the SVID in place; the data plane reads
			// it per handshake.
			s, _ := a.identities.SVID(uid)
			return s
		},
	})
	if err != nil {
		ns.Close()
		return err
	}
	a.attached[uid] = &attachedPod{ns: ns, endpoint: ep, health: control.Redirection{State: control.RedirectionHealthy, CheckedAt: time.Now()}}
	// The other pods may now exchange packets with this one.
	a.syncNonTCPLocked()
	return nil
}

// StopPod revokes a pod's identity, detaches it and forgets it.
func (a *Agent) StopPod(uid string) error {
	a.podsMu.Lock()
	defer a.podsMu.Unlock()
	if _, ok := a.registry.Get(uid); !ok {
		return fmt.Errorf("%w: %s", control.ErrNotFound, uid)
	}
	return a.stopPodLocked(uid)
}

func (a *Agent) stopPodLocked(uid string) error {
	var errs []error
	if ap, ok := a.attached[uid]; ok {
		errs = append(errs, a.dp.Detach(uid))
		ap.ns.Close()
		delete(a.attached, uid)
		// Its address may be reused by the next pod: withdraw what the
		// others allowed it.
		a.syncNonTCPLocked()
	}
	idErr := a.identities.Stop(uid)
	errs = append(errs, idErr, a.registry.StopPodSandbox(uid), a.state.remove(uid))
	if idErr == nil {
		a.log.Info("workload identity revoked", "uid", uid)
	}
	return errors.Join(errs...)
}

// reattach re-registers the pods recorded in the state dir by an earlier
// run of the agent. Their rules stayed in place while no agent ran, so
// their traffic was refused, not let through; attaching again re-opens
// the listeners. A record whose namespace is gone is dropped.
func (a *Agent) reattach() {
	records, bad := a.state.load()
	for path, err := range bad {
		a.log.Error("unreadable pod record in the state dir; removing it", "path", path, "error", err)
		_ = os.Remove(path)
	}
	for _, r := range records {
		if err := r.still(); err != nil {
			a.log.Info("pod from the state dir is gone; forgetting it", "uid", r.Pod.UID, "reason", err)
			_ = a.state.remove(r.Pod.UID)
			continue
		}
		if _, err := a.RunPod(r.Pod); err != nil {
			a.log.Error("pod from the state dir not re-attached; its traffic stays blocked", "uid", r.Pod.UID, "error", err)
			continue
		}
		a.log.Info("pod re-attached from the state dir", "pod", r.Pod.Namespace+"/"+r.Pod.Name, "uid", r.Pod.UID)
	}
}

// reconcile re-verifies every attached pod's redirection and repairs drift
// (a table deleted by hand, a rule flushed by another tool). The guard
// table refuses the pod's TCP while the main table is missing, so traffic
// is blocked, never plaintext, until the repair.
//
// The kernel is read pod by pod without holding podsMu, so that a check of
// many pods never holds up a pod's registration; the data plane serializes
// each pod's checks with its own changes.
func (a *Agent) reconcile() {
	a.podsMu.Lock()
	uids := make([]string, 0, len(a.attached))
	for uid := range a.attached {
		uids = append(uids, uid)
	}
	a.podsMu.Unlock()
	for _, uid := range uids {
		a.reconcilePod(uid)
	}
	// The node's probe rules are rewritten whole, drifted or not: one
	// small transaction, and a flushed ruleset gets them back.
	if err := a.dp.RepairProbes(); err != nil {
		a.log.Error("kubelet probe rules", "error", err)
	}
}

func (a *Agent) reconcilePod(uid string) {
	h, err := a.dp.Health(uid)
	healthy := err == nil && h.State == redirect.Healthy
	var drift []string
	repaired := false
	if !healthy {
		drift = driftText(h)
		a.log.Warn("pod redirection drifted; repairing", "uid", uid, "state", h.State.String(), "drift", drift, "error", err)
		h, err = a.dp.Repair(uid)
		repaired = true
		healthy = err == nil && h.State == redirect.Healthy
	}
	a.podsMu.Lock()
	defer a.podsMu.Unlock()
	ap, ok := a.attached[uid]
	if !ok {
		return // stopped meanwhile
	}
	ap.health.CheckedAt = time.Now()
	if repaired {
		ap.health.Repairs++
		ap.health.Drift = drift
	}
	switch {
	case healthy:
		ap.health.State, ap.health.Error = control.RedirectionHealthy, ""
		if !repaired {
			ap.health.Drift = nil
		} else {
			a.log.Info("pod redirection repaired", "uid", uid)
		}
	default:
		ap.health.State = control.RedirectionFailed
		if err != nil {
			ap.health.Error = err.Error()
		}
		a.log.Error("pod redirection not repaired; its traffic stays blocked", "uid", uid, "error", err)
	}
}

func driftText(h redirect.Health) []string {
	out := make([]string, 0, len(h.Drift))
	for _, d := range h.Drift {
		out = append(out, d.String())
	}
	return out
}

// podStatuses lists the registered pods, sorted by namespace and name.
func (a *Agent) podStatuses() []control.PodStatus {
	a.podsMu.Lock()
	defer a.podsMu.Unlock()
	pods := a.registry.List()
	out := make([]control.PodStatus, 0, len(pods))
	for _, p := range pods {
		out = append(out, a.podStatusLocked(p))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func (a *Agent) podStatusLocked(p workload.Pod) control.PodStatus {
	st := control.PodStatus{
		UID: p.UID, Name: p.Name, Namespace: p.Namespace, ServiceAccount: p.ServiceAccount,
		Labels: p.Labels, IPs: p.IPs, NetnsPath: p.NetnsPath, Runtime: p.Runtime,
		Redirection: control.Redirection{State: control.RedirectionNotAttached},
	}
	if svid, ok := a.identities.SVID(p.UID); ok {
		st.SPIFFEID, st.CertNotAfter = svid.ID.String(), svid.NotAfter()
	}
	if ap, ok := a.attached[p.UID]; ok {
		st.Redirection = ap.health
		st.Redirection.Drift = slices.Clone(ap.health.Drift)
	}
	return st
}

// endpointOf is the pod as policy sees it. The namespace carries the label
// Kubernetes gives every namespace, so namespaceSelectors on
// kubernetes.io/metadata.name work the same on every runtime.
func endpointOf(p workload.Pod, ip netip.Addr, spiffeID string) *policy.Endpoint {
	ep := &policy.Endpoint{
		Workload: true, Namespace: p.Namespace, Name: p.Name, ServiceAccount: p.ServiceAccount,
		Labels:          maps.Clone(p.Labels),
		NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": p.Namespace},
		SPIFFEID:        spiffeID, IP: ip,
	}
	for _, name := range slices.Sorted(maps.Keys(p.Ports)) {
		ep.Ports = append(ep.Ports, policy.NamedPort{Name: name, Port: p.Ports[name], Protocol: policy.TCP})
	}
	return ep
}

// podIPv4 is the address the data plane serves the pod on. The rule set
// is IPv4 only (IPv6 is refused by the guard table), so one IPv4 address
// is required.
func podIPv4(p workload.Pod) (netip.Addr, error) {
	for _, ip := range p.IPs {
		if ip.Unmap().Is4() {
			return ip.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%w: pod %s has no IPv4 address", control.ErrInvalid, p.UID)
}

// samePod says whether two registrations are the same pod.
func samePod(a, b workload.Pod) bool {
	return a.NetnsPath == b.NetnsPath && slices.Equal(a.IPs, b.IPs) && a.Namespace == b.Namespace &&
		a.Name == b.Name && a.ServiceAccount == b.ServiceAccount && maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Ports, b.Ports) &&
		a.Runtime == b.Runtime
}

// controlBackend serves the control API from the agent.
type controlBackend struct{ a *Agent }

func (b controlBackend) RunPod(_ context.Context, p workload.Pod) (control.PodStatus, error) {
	if err := validatePod(p); err != nil {
		return control.PodStatus{}, err
	}
	b.a.podsMu.Lock()
	defer b.a.podsMu.Unlock()
	if _, err := b.a.runPodLocked(p); err != nil {
		return control.PodStatus{}, err
	}
	return b.a.podStatusLocked(p), nil
}

func (b controlBackend) StopPod(uid string) error { return b.a.StopPod(uid) }

func (b controlBackend) Pod(uid string) (control.PodStatus, error) {
	b.a.podsMu.Lock()
	defer b.a.podsMu.Unlock()
	p, ok := b.a.registry.Get(uid)
	if !ok {
		return control.PodStatus{}, fmt.Errorf("%w: %s", control.ErrNotFound, uid)
	}
	return b.a.podStatusLocked(p), nil
}

func (b controlBackend) Status() control.Status { return b.a.Status() }

func (b controlBackend) SetDirectory(d control.Directory) error { return b.a.SetDirectory(d) }

func (b controlBackend) Flows(f telemetry.FlowFilter) []telemetry.Flow { return b.a.flows.List(f) }

func (b controlBackend) SubscribeFlows(ctx context.Context) <-chan telemetry.Flow {
	return b.a.flows.Subscribe(ctx)
}

func validatePod(p workload.Pod) error {
	var missing []string
	for field, v := range map[string]string{"uid": p.UID, "name": p.Name, "namespace": p.Namespace, "netns_path": p.NetnsPath} {
		if v == "" {
			missing = append(missing, field)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%w: missing %v", control.ErrInvalid, missing)
	}
	return nil
}
