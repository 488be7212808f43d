// Package nri is ztcn's NRI plugin for containerd and CRI-O: it turns the
// runtime's pod sandbox lifecycle into agent registrations.
//
// RunPodSandbox arrives after the sandbox's network namespace exists (and
// after the CNI plugin, if any, gave it addresses) and before any of the
// pod's containers is created; the runtime waits for the answer. The plugin
// registers the pod and answers only once the agent has issued its SVID and
// redirected its traffic, and an error fails the sandbox, so no container
// of the pod runs unsecured. StopPodSandbox and RemovePodSandbox
// deregister (revocation). Synchronize, which the runtime sends when the
// plugin connects, registers the pods that started while it was away and
// removes those that went.
package nri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/nri/pkg/api"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/runtime/podnet"
	"github.com/ztcn/ztcn/internal/workload"
)

// Runtime is the workload.Pod.Runtime of the pods the plugin registers.
const Runtime = "nri"

// Annotations a pod can carry to set its identity without the Kubernetes API.
const (
	AnnotationServiceAccount = "ztcn.io/service-account"
)

// Metadata supplies what a pod sandbox does not carry: its service account
// (and authoritative labels) from the Kubernetes API.
type Metadata interface {
	// Pod returns the service account and labels of the pod namespace/name
	// with the given UID; ok is false when the pod is unknown.
	Pod(ctx context.Context, namespace, name, uid string) (serviceAccount string, labels map[string]string, ok bool, err error)
}

// Plugin handles the NRI events.
type Plugin struct {
	Control *control.Client
	// Network gives pods a network when no CNI plugin did.
	Network *podnet.Attacher
	// Metadata is nil outside Kubernetes.
	Metadata Metadata
	Log      *slog.Logger
}

// Configure subscribes to the pod sandbox events.
func (p *Plugin) Configure(_ context.Context, _, runtime, version string) (api.EventMask, error) {
	p.Log.Info("connected to the container runtime", "runtime", runtime, "version", version)
	return api.MustParseEventMask("RunPodSandbox,StopPodSandbox,RemovePodSandbox,CreateContainer"), nil
}

// CreateContainer refuses a container whose pod is not secured. Normally
// RunPodSandbox secured it already and this costs one question to the
// agent; a pod that escaped (it started while the plugin was away and could
// not be secured at Synchronize) is secured now or its containers are
// refused. Handling CreateContainer is also what lets containerd >= 2.2's
// NRI validator treat ztcn as a required plugin (required_plugins).
func (p *Plugin) CreateContainer(ctx context.Context, sb *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	if hostNetwork(sb) {
		return nil, nil, nil
	}
	switch _, err := p.Control.Pod(ctx, uidOf(sb)); {
	case err == nil:
		return nil, nil, nil
	case !control.IsNotFound(err):
		return nil, nil, fmt.Errorf("container %s of pod %s/%s: the ztcn agent: %w", ctr.GetName(), sb.GetNamespace(), sb.GetName(), err)
	}
	if _, err := p.register(ctx, sb); err != nil {
		p.Log.Error("container refused: its pod is not secured", "pod", sb.GetNamespace()+"/"+sb.GetName(), "container", ctr.GetName(), "error", err)
		return nil, nil, fmt.Errorf("container %s: its pod is not secured: %w", ctr.GetName(), err)
	}
	p.Log.Info("pod secured at its first container", "pod", sb.GetNamespace()+"/"+sb.GetName())
	return nil, nil, nil
}

// RunPodSandbox registers the pod; an error makes the runtime fail it.
func (p *Plugin) RunPodSandbox(ctx context.Context, sb *api.PodSandbox) error {
	st, err := p.register(ctx, sb)
	if err != nil {
		p.Log.Error("pod not secured: the runtime refuses it", "pod", sb.GetNamespace()+"/"+sb.GetName(), "error", err)
		return err
	}
	p.Log.Info("pod secured", "pod", sb.GetNamespace()+"/"+sb.GetName(), "spiffe_id", st.SPIFFEID, "ips", st.IPs)
	return nil
}

// StopPodSandbox deregisters the pod: the agent revokes its SVID.
func (p *Plugin) StopPodSandbox(ctx context.Context, sb *api.PodSandbox) error {
	return p.deregister(ctx, uidOf(sb))
}

// RemovePodSandbox is StopPodSandbox for a pod removed without a stop
// (idempotent).
func (p *Plugin) RemovePodSandbox(ctx context.Context, sb *api.PodSandbox) error {
	return p.deregister(ctx, uidOf(sb))
}

// Synchronize reconciles the agent with the runtime's pods after the
// plugin (re)connects: pods the agent lacks are registered, pods this
// plugin registered that the runtime no longer has are removed.
func (p *Plugin) Synchronize(ctx context.Context, pods []*api.PodSandbox, _ []*api.Container) ([]*api.ContainerUpdate, error) {
	registered, err := p.Control.Pods(ctx)
	if err != nil {
		return nil, fmt.Errorf("the ztcn agent: %w", err)
	}
	have := map[string]bool{}
	for _, r := range registered {
		have[r.UID] = true
	}
	live := map[string]bool{}
	var errs []error
	for _, sb := range pods {
		uid := uidOf(sb)
		live[uid] = true
		if have[uid] || hostNetwork(sb) {
			continue
		}
		if _, err := p.register(ctx, sb); err != nil {
			// A pod that cannot be secured now stays unregistered: the
			// mesh treats it as an unknown peer (denied both ways).
			errs = append(errs, err)
			continue
		}
		p.Log.Info("pod registered at synchronization", "pod", sb.GetNamespace()+"/"+sb.GetName())
	}
	for _, r := range registered {
		if r.Runtime == Runtime && !live[r.UID] {
			if err := p.deregister(ctx, r.UID); err != nil {
				errs = append(errs, err)
			}
			p.Log.Info("pod gone while the plugin was away: deregistered", "pod", r.Namespace+"/"+r.Name)
		}
	}
	if len(errs) > 0 {
		p.Log.Error("synchronization incomplete", "error", errors.Join(errs...))
	}
	return nil, nil
}

// Shutdown is the runtime going away; the stub reconnects.
func (p *Plugin) Shutdown(context.Context) { p.Log.Info("the container runtime is shutting down") }

func (p *Plugin) register(ctx context.Context, sb *api.PodSandbox) (control.PodStatus, error) {
	if hostNetwork(sb) {
		// Such a pod shares the node's namespace: nothing to intercept,
		// and the agent refuses it. It is outside the mesh, like a
		// hostNetwork pod under any CNI.
		p.Log.Info("host-network pod left alone", "pod", sb.GetNamespace()+"/"+sb.GetName())
		return control.PodStatus{}, nil
	}
	pod, err := p.podOf(ctx, sb)
	if err != nil {
		return control.PodStatus{}, err
	}
	ns, err := netns.Open(pod.NetnsPath)
	if err != nil {
		return control.PodStatus{}, err
	}
	defer ns.Close()
	connected := false
	if len(pod.IPs) == 0 {
		if pod.IPs, connected, err = p.Network.Ensure(ns, pod.UID); err != nil {
			return control.PodStatus{}, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
	st, err := p.Control.RunPod(ctx, pod)
	if err != nil {
		err = fmt.Errorf("pod %s/%s: the ztcn agent did not secure it: %w", pod.Namespace, pod.Name, err)
		if connected {
			err = errors.Join(err, p.Network.Disconnect(pod.UID))
		}
	}
	return st, err
}

func (p *Plugin) deregister(ctx context.Context, uid string) error {
	err := p.Control.StopPod(ctx, uid)
	if control.IsNotFound(err) {
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("pod %s: deregister: %w", uid, err)
	}
	return errors.Join(err, p.Network.Disconnect(uid))
}

// podOf builds the workload record of a sandbox.
func (p *Plugin) podOf(ctx context.Context, sb *api.PodSandbox) (workload.Pod, error) {
	pod := workload.Pod{
		UID:            uidOf(sb),
		Name:           sb.GetName(),
		Namespace:      sb.GetNamespace(),
		ServiceAccount: sb.GetAnnotations()[AnnotationServiceAccount],
		Labels:         podLabels(sb.GetLabels()),
		NetnsPath:      netnsPath(sb),
		Runtime:        Runtime,
	}
	if pod.Name == "" || pod.Namespace == "" {
		return workload.Pod{}, fmt.Errorf("sandbox %s: no pod name or namespace", sb.GetId())
	}
	if pod.NetnsPath == "" {
		return workload.Pod{}, fmt.Errorf("pod %s/%s: the runtime gave no network namespace and no pid", pod.Namespace, pod.Name)
	}
	for _, s := range sb.GetIps() {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return workload.Pod{}, fmt.Errorf("pod %s/%s: address %q: %w", pod.Namespace, pod.Name, s, err)
		}
		pod.IPs = append(pod.IPs, ip)
	}
	if p.Metadata != nil {
		sa, labels, ok, err := p.Metadata.Pod(ctx, pod.Namespace, pod.Name, sb.GetUid())
		if err != nil {
			return workload.Pod{}, fmt.Errorf("pod %s/%s: Kubernetes API: %w", pod.Namespace, pod.Name, err)
		}
		if ok {
			if pod.ServiceAccount == "" {
				pod.ServiceAccount = sa
			}
			pod.Labels = labels
		}
	}
	if pod.ServiceAccount == "" {
		pod.ServiceAccount = "default"
	}
	return pod, nil
}

// uidOf keys pods by their Kubernetes UID, falling back to the sandbox ID
// for sandboxes created without one (crictl).
func uidOf(sb *api.PodSandbox) string {
	if uid := sb.GetUid(); uid != "" {
		return uid
	}
	return sb.GetId()
}

// podLabels drops the labels the kubelet adds to every sandbox
// (io.kubernetes.pod.name, ...): they are not the pod's.
func podLabels(in map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		if !strings.HasPrefix(k, "io.kubernetes.") {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// netnsPath is the sandbox's network namespace as the runtime names it
// if that path is visible here, or else its process's: in a DaemonSet only
// the node's /var/run/netns is mounted, and a runtime may keep its
// namespaces elsewhere (containerd's netns_mounts_under_state_dir), while
// hostPID always shows /proc/PID/ns/net.
func netnsPath(sb *api.PodSandbox) string {
	var named string
	for _, ns := range sb.GetLinux().GetNamespaces() {
		if ns.GetType() == "network" && ns.GetPath() != "" {
			named = ns.GetPath()
		}
	}
	if _, err := os.Stat(named); err == nil {
		return named
	}
	if pid := sb.GetPid(); pid > 0 {
		return "/proc/" + strconv.FormatUint(uint64(pid), 10) + "/ns/net"
	}
	return named
}

// hostNetwork reports a sandbox that shares the node's network namespace:
// the runtime lists no network namespace of its own for it.
func hostNetwork(sb *api.PodSandbox) bool {
	if sb.GetLinux() == nil {
		return false // nothing said: treat it as a pod of its own
	}
	for _, ns := range sb.GetLinux().GetNamespaces() {
		if ns.GetType() == "network" {
			return false
		}
	}
	return true
}
