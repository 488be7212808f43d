package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ztcn/ztcn/internal/policy"
)

func waitChanged(t *testing.T, s *NetworkPolicies) {
	t.Helper()
	select {
	case <-s.Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled")
	}
}

// TestNetworkPoliciesSourceFollowsTheAPI: objects listed at start, then
// created, updated and deleted, are the source's documents, each a
// NetworkPolicy the policy loader reads with its API name in positions.
func TestNetworkPoliciesSourceFollowsTheAPI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-all", Namespace: "shop", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	client := fake.NewClientset(np)
	src, err := WatchNetworkPolicies(ctx, client, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	docs := src.Documents()
	if len(docs) != 1 || docs[0].Name != "kubernetes:networkpolicy/shop/deny-all" || strings.Contains(string(docs[0].Data), "managedFields") {
		t.Fatalf("listed: %+v", docs)
	}
	set, diags := policy.LoadBytes(docs[0].Name, docs[0].Data)
	if diags.HasErrors() || len(set.Rules) == 0 && len(set.Isolations) == 0 {
		t.Fatalf("the document does not load as a NetworkPolicy: %v %+v", diags, set)
	}

	port := networkingv1.NetworkPolicyPort{}
	np2 := np.DeepCopy()
	np2.Name = "web"
	np2.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{port}}}
	if _, err := client.NetworkingV1().NetworkPolicies("shop").Create(ctx, np2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitChanged(t, src)
	if err := client.NetworkingV1().NetworkPolicies("shop").Delete(ctx, "deny-all", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		docs = src.Documents()
		if len(docs) == 1 && docs[0].Name == "kubernetes:networkpolicy/shop/web" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after create+delete: %+v", docs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPodsAnswersFromTheNodesPods: the service account and labels of a pod
// of this node; a pod of another node or with another UID is unknown.
func TestPodsAnswersFromTheNodesPods(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mine := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u1", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "node-a", ServiceAccountName: "web"},
	}
	client := fake.NewClientset(mine)
	pods, err := WatchPods(ctx, client, "node-a", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pods.wait = 100 * time.Millisecond
	sa, labels, ok, err := pods.Pod(ctx, "shop", "web-1", "u1")
	if err != nil || !ok || sa != "web" || labels["app"] != "web" {
		t.Fatalf("Pod = %q %v %v %v", sa, labels, ok, err)
	}
	if _, _, ok, err := pods.Pod(ctx, "shop", "web-1", "another-uid"); ok || err != nil {
		t.Fatalf("a pod of another UID answered: %v %v", ok, err)
	}
	if _, _, ok, err := pods.Pod(ctx, "shop", "nope", ""); ok || err != nil {
		t.Fatalf("an unknown pod answered: %v %v", ok, err)
	}
}
