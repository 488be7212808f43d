package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/ztcn/ztcn/internal/policy"
)

// NetworkPolicies is a policy.Source holding every NetworkPolicy of the
// cluster, kept current by an informer.
type NetworkPolicies struct {
	mu      sync.Mutex
	docs    map[string]policy.Document // by namespace/name
	changed chan struct{}
}

// WatchNetworkPolicies starts an informer on NetworkPolicies and returns
// the source once its first list is in (so the agent's first policy
// already holds them), or an error if that takes longer than timeout.
func WatchNetworkPolicies(ctx context.Context, client kubernetes.Interface, timeout time.Duration) (*NetworkPolicies, error) {
	s := &NetworkPolicies{docs: map[string]policy.Document{}, changed: make(chan struct{}, 1)}
	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Networking().V1().NetworkPolicies().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.put(obj) },
		UpdateFunc: func(_, obj any) { s.put(obj) },
		DeleteFunc: s.delete,
	}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cache.WaitForCacheSync(wctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("kubernetes: NetworkPolicies not listed within %s (RBAC: list/watch networkpolicies.networking.k8s.io?)", timeout)
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
	// The policy parser reads the object as a file would hold it: JSON is
	// YAML. Only what decides traffic is kept (no managedFields, status).
	data, err := json.Marshal(struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        metav1.ObjectMeta              `json:"metadata"`
		Spec            networkingv1.NetworkPolicySpec `json:"spec"`
	}{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		Metadata: metav1.ObjectMeta{Name: np.Name, Namespace: np.Namespace},
		Spec:     np.Spec,
	})
	if err != nil {
		return
	}
	s.mu.Lock()
	s.docs[np.Namespace+"/"+np.Name] = policy.Document{Name: DocumentName(np.Namespace, np.Name), Data: data}
	s.mu.Unlock()
	s.signal()
}

func (s *NetworkPolicies) delete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	np, ok := obj.(*networkingv1.NetworkPolicy)
	if !ok {
		return
	}
	s.mu.Lock()
	delete(s.docs, np.Namespace+"/"+np.Name)
	s.mu.Unlock()
	s.signal()
}

func (s *NetworkPolicies) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Documents implements policy.Source.
func (s *NetworkPolicies) Documents() []policy.Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]policy.Document, 0, len(s.docs))
	for _, d := range s.docs {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Changed implements policy.Source.
func (s *NetworkPolicies) Changed() <-chan struct{} { return s.changed }
