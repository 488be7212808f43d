// Package workload is the node's registry of pods: one record per pod, and a
// change feed that the identity, policy and data plane layers subscribe to.
//
// Runtime adapters (the local runtime, the OCI hook, the NRI plugin) are thin
// translations of their lifecycle events into RunPodSandbox, UpdatePodSandbox
// and StopPodSandbox calls here, the vocabulary of containerd's NRI.
package workload

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"syscall"

	"github.com/ztcn/ztcn/internal/feed"
)

// Pod is what the node knows about one workload.
type Pod struct {
	// UID is the pod UID (Kubernetes) or container ID (OCI hook): the key.
	UID            string            `json:"uid"`
	Name           string            `json:"name"`
	Namespace      string            `json:"namespace"`
	ServiceAccount string            `json:"service_account"`
	Labels         map[string]string `json:"labels,omitempty"`
	// NetnsPath is the pod's network namespace, e.g. /var/run/netns/NAME
	// or /proc/PID/ns/net.
	NetnsPath string       `json:"netns_path"`
	IPs       []netip.Addr `json:"ips,omitempty"`
	// Ports are the pod's named ports (name → port number).
	Ports map[string]uint16 `json:"ports,omitempty"`
	// Runtime names the adapter that registered the pod ("oci-hook",
	// "nri", "ztcn-up"), so that an adapter reconciling after a restart
	// removes only the pods it owns.
	Runtime string `json:"runtime,omitempty"`
}

// Clone returns a deep copy, so a record handed out cannot change the registry.
func (p Pod) Clone() Pod {
	p.Labels = maps.Clone(p.Labels)
	p.IPs = slices.Clone(p.IPs)
	p.Ports = maps.Clone(p.Ports)
	return p
}

// EventKind names a lifecycle event.
type EventKind string

// Lifecycle events, as NRI names them.
const (
	RunPodSandbox    EventKind = "RunPodSandbox"
	UpdatePodSandbox EventKind = "UpdatePodSandbox"
	StopPodSandbox   EventKind = "StopPodSandbox"
)

// Event is one change in the registry.
type Event struct {
	Kind EventKind
	Pod  Pod
}

// Registry holds the pods of this node. It is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	pods    map[string]Pod
	byNetns map[netnsKey]string // network namespace → pod UID
	changes feed.Feed[Event]
}

// netnsKey identifies a network namespace by device and inode, which is how
// the kernel itself tells namespaces apart, whatever path names them.
type netnsKey struct{ dev, ino uint64 }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{pods: make(map[string]Pod), byNetns: make(map[netnsKey]string)}
}

// RunPodSandbox records a new pod. A pod's network namespace is its
// identity anchor for attestation, so two pods may not share one.
func (r *Registry) RunPodSandbox(p Pod) error {
	if p.UID == "" {
		return fmt.Errorf("workload: pod %s/%s has no UID", p.Namespace, p.Name)
	}
	key, err := statNetns(p.NetnsPath)
	if err != nil {
		return err
	}
	r.mu.Lock()
	if _, ok := r.pods[p.UID]; ok {
		r.mu.Unlock()
		return fmt.Errorf("workload: pod %s already registered", p.UID)
	}
	if key != (netnsKey{}) {
		if other, ok := r.byNetns[key]; ok {
			r.mu.Unlock()
			return fmt.Errorf("workload: network namespace %s already belongs to pod %s", p.NetnsPath, other)
		}
		r.byNetns[key] = p.UID
	}
	p = p.Clone()
	r.pods[p.UID] = p
	r.mu.Unlock()
	r.changes.Publish(Event{Kind: RunPodSandbox, Pod: p.Clone()})
	return nil
}

// UpdatePodSandbox replaces a pod's labels, ports and IPs. Its namespace,
// service account and network namespace cannot change: that would be a
// different workload.
func (r *Registry) UpdatePodSandbox(p Pod) error {
	r.mu.Lock()
	cur, ok := r.pods[p.UID]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("workload: pod %s is not registered", p.UID)
	}
	if cur.Namespace != p.Namespace || cur.ServiceAccount != p.ServiceAccount || cur.NetnsPath != p.NetnsPath {
		r.mu.Unlock()
		return fmt.Errorf("workload: pod %s: namespace, service account and network namespace cannot change", p.UID)
	}
	p = p.Clone()
	r.pods[p.UID] = p
	r.mu.Unlock()
	r.changes.Publish(Event{Kind: UpdatePodSandbox, Pod: p.Clone()})
	return nil
}

// StopPodSandbox removes a pod.
func (r *Registry) StopPodSandbox(uid string) error {
	r.mu.Lock()
	p, ok := r.pods[uid]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("workload: pod %s is not registered", uid)
	}
	delete(r.pods, uid)
	for k, v := range r.byNetns {
		if v == uid {
			delete(r.byNetns, k)
		}
	}
	r.mu.Unlock()
	r.changes.Publish(Event{Kind: StopPodSandbox, Pod: p})
	return nil
}

// Get returns a pod by UID.
func (r *Registry) Get(uid string) (Pod, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.pods[uid]
	return p.Clone(), ok
}

// List returns every pod, ordered by namespace and name.
func (r *Registry) List() []Pod {
	r.mu.RLock()
	out := make([]Pod, 0, len(r.pods))
	for _, p := range r.pods {
		out = append(out, p.Clone())
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// ByNetns returns the UID of the pod whose network namespace has the given
// device and inode numbers (as stat(2) reports for /proc/PID/ns/net).
func (r *Registry) ByNetns(dev, ino uint64) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	uid, ok := r.byNetns[netnsKey{dev, ino}]
	return uid, ok
}

// Subscribe returns every registry event from now on, in order.
func (r *Registry) Subscribe(ctx context.Context) <-chan Event { return r.changes.Subscribe(ctx) }

func statNetns(path string) (netnsKey, error) {
	if path == "" {
		return netnsKey{}, nil
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return netnsKey{}, fmt.Errorf("workload: network namespace %s: %w", path, err)
	}
	return netnsKey{dev: uint64(st.Dev), ino: st.Ino}, nil
}
