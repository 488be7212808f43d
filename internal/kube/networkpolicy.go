package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/ztcn/ztcn/internal/policy"
)

// NetworkPolicies is a policy.Source holding every NetworkPolicy of the
// cluster, kept current by informers on NetworkPolicies and on namespaces.
//
// The policy index matches a namespaceSelector against the labels of a
// workload's namespace, but what ztcn knows of a workload's namespace is
// its name (from its registration, or from the SPIFFE ID a peer proved),
// and that name is the kubernetes.io/metadata.name label the API server
// gives every namespace. So a namespaceSelector on other labels is
// resolved here, against the namespaces as the API has them, into the
// names it selects now; a namespace labelled or relabelled later changes
// the documents and so reloads the policy, like an edited NetworkPolicy.
type NetworkPolicies struct {
	mu         sync.Mutex
	policies   map[string]*networkingv1.NetworkPolicy // by namespace/name
	namespaces map[string]map[string]string           // labels by namespace name
	changed    chan struct{}
}

// WatchNetworkPolicies starts informers on NetworkPolicies and namespaces
// and returns the source once their first lists are in (so the agent's
// first policy already holds them), or an error if that takes longer than
// timeout.
func WatchNetworkPolicies(ctx context.Context, client kubernetes.Interface, timeout time.Duration) (*NetworkPolicies, error) {
	s := &NetworkPolicies{policies: map[string]*networkingv1.NetworkPolicy{}, namespaces: map[string]map[string]string{},
		changed: make(chan struct{}, 1)}
	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Networking().V1().NetworkPolicies().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.put(obj) },
		UpdateFunc: func(_, obj any) { s.put(obj) },
		DeleteFunc: s.delete,
	}); err != nil {
		return nil, err
	}
	nsInf := factory.Core().V1().Namespaces().Informer()
	if _, err := nsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.putNamespace(obj) },
		UpdateFunc: func(_, obj any) { s.putNamespace(obj) },
		DeleteFunc: s.deleteNamespace,
	}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cache.WaitForCacheSync(wctx.Done(), inf.HasSynced, nsInf.HasSynced) {
		return nil, fmt.Errorf("kubernetes: NetworkPolicies and namespaces not listed within %s (RBAC: list/watch networkpolicies.networking.k8s.io and namespaces?)", timeout)
	}
	return s, nil
}

// DocumentName is how diagnostics name a NetworkPolicy from the API.
func DocumentName(namespace, name string) string {
	return "kubernetes:networkpolicy/" + namespace + "/" + name
}

func (s *NetworkPolicies) put(obj any) {
	np, ok := obj.(*networkingv1.NetworkPolicy)
	if !ok {
		return
	}
	s.mu.Lock()
	s.policies[np.Namespace+"/"+np.Name] = np
	s.mu.Unlock()
	s.signal()
}

func (s *NetworkPolicies) delete(obj any) {
	np, ok := deleted(obj).(*networkingv1.NetworkPolicy)
	if !ok {
		return
	}
	s.mu.Lock()
	delete(s.policies, np.Namespace+"/"+np.Name)
	s.mu.Unlock()
	s.signal()
}

// putNamespace records a namespace's labels; only a change of them can
// change what a selector picks.
func (s *NetworkPolicies) putNamespace(obj any) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return
	}
	s.mu.Lock()
	old, had := s.namespaces[ns.Name]
	same := had && maps.Equal(old, ns.Labels)
	s.namespaces[ns.Name] = maps.Clone(ns.Labels)
	s.mu.Unlock()
	if !same {
		s.signal()
	}
}

func (s *NetworkPolicies) deleteNamespace(obj any) {
	ns, ok := deleted(obj).(*corev1.Namespace)
	if !ok {
		return
	}
	s.mu.Lock()
	delete(s.namespaces, ns.Name)
	s.mu.Unlock()
	s.signal()
}

// deleted is the object of an informer's delete event, also when the
// informer missed the deletion and only knows the last state it saw.
func deleted(obj any) any {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return obj
}

func (s *NetworkPolicies) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Documents implements policy.Source: each NetworkPolicy as a file would
// hold it (JSON is YAML), with only what decides traffic (no
// managedFields, no status), and its namespaceSelectors resolved.
func (s *NetworkPolicies) Documents() []policy.Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]policy.Document, 0, len(s.policies))
	for _, np := range s.policies {
		data, err := json.Marshal(struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        metav1.ObjectMeta              `json:"metadata"`
			Spec            networkingv1.NetworkPolicySpec `json:"spec"`
		}{
			TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			Metadata: metav1.ObjectMeta{Name: np.Name, Namespace: np.Namespace},
			Spec:     resolveNamespaceSelectors(np.Spec, s.namespaces),
		})
		if err != nil {
			continue
		}
		out = append(out, policy.Document{Name: DocumentName(np.Namespace, np.Name), Data: data})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Changed implements policy.Source.
func (s *NetworkPolicies) Changed() <-chan struct{} { return s.changed }

// noNamespace is a label value no namespace name can be (namespace names
// are DNS labels: no dot), for a selector that picks no namespace now.
const noNamespace = "none.ztcn.io"

// resolveNamespaceSelectors returns spec with every namespaceSelector that
// tests labels other than kubernetes.io/metadata.name replaced by the
// names of the namespaces it selects in namespaces: "kubernetes.io/
// metadata.name In (names)", which the policy index matches exactly. An
// empty selector (every namespace), one on the name alone, and one the
// API would have refused (left for the loader to report) stay as they are.
func resolveNamespaceSelectors(spec networkingv1.NetworkPolicySpec, namespaces map[string]map[string]string) networkingv1.NetworkPolicySpec {
	resolve := func(peers []networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer {
		var out []networkingv1.NetworkPolicyPeer
		for i, p := range peers {
			if !testsNamespaceLabels(p.NamespaceSelector) {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
			if err != nil {
				continue
			}
			var names []string
			for name, l := range namespaces {
				if sel.Matches(labels.Set(l)) {
					names = append(names, name)
				}
			}
			if len(names) == 0 {
				names = []string{noNamespace}
			}
			slices.Sort(names)
			if out == nil {
				out = slices.Clone(peers)
			}
			out[i].NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: names},
			}}
		}
		if out == nil {
			return peers
		}
		return out
	}
	spec.Ingress = slices.Clone(spec.Ingress)
	for i := range spec.Ingress {
		spec.Ingress[i].From = resolve(spec.Ingress[i].From)
	}
	spec.Egress = slices.Clone(spec.Egress)
	for i := range spec.Egress {
		spec.Egress[i].To = resolve(spec.Egress[i].To)
	}
	return spec
}

// testsNamespaceLabels reports whether a namespaceSelector tests a label
// other than kubernetes.io/metadata.name.
func testsNamespaceLabels(ls *metav1.LabelSelector) bool {
	if ls == nil {
		return false
	}
	for k := range ls.MatchLabels {
		if k != corev1.LabelMetadataName {
			return true
		}
	}
	for _, r := range ls.MatchExpressions {
		if r.Key != corev1.LabelMetadataName {
			return true
		}
	}
	return false
}
