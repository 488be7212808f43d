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

// TestNamespaceSelectorsFollowNamespaceLabels: a NetworkPolicy selecting
// namespaces by a label other than their name allows exactly the pods of
// the namespaces carrying it, and labelling a namespace later changes the
// documents (and so the verdicts) live.
func TestNamespaceSelectorsFollowNamespaceLabels(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := func(name string, labels map[string]string) *corev1.Namespace {
		l := map[string]string{"kubernetes.io/metadata.name": name}
		for k, v := range labels {
			l[k] = v
		}
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
	}
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "from-trusted", Namespace: "shop"},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"trust": "high"}}},
				// Left alone: it names the namespace.
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "ops"}}},
			}}},
		},
	}
	client := fake.NewClientset(np, ns("shop", nil), ns("ops", nil), ns("batch", nil),
		ns("web", map[string]string{"trust": "high"}), ns("api", map[string]string{"trust": "high"}))
	src, err := WatchNetworkPolicies(ctx, client, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := func(ns string) *policy.Endpoint {
		return &policy.Endpoint{Workload: true, Namespace: ns, Name: "p", ServiceAccount: "default",
			Labels: map[string]string{"app": "x"}, NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	}
	allowed := func(from string) bool {
		t.Helper()
		docs := src.Documents()
		if len(docs) != 1 {
			t.Fatalf("documents: %+v", docs)
		}
		set, diags := policy.LoadBytes(docs[0].Name, docs[0].Data)
		if diags.HasErrors() {
			t.Fatalf("%s: %v\n%s", docs[0].Name, diags, docs[0].Data)
		}
		ix, err := policy.Compile(set, policy.IsolateSelected)
		if err != nil {
			t.Fatal(err)
		}
		return ix.Decide(ix.Resolve(endpoint(from)), ix.Resolve(endpoint("shop")), policy.TCP, 80).Allowed
	}
	for from, want := range map[string]bool{"web": true, "api": true, "ops": true, "batch": false, "shop": false} {
		if got := allowed(from); got != want {
			t.Errorf("from %s: allowed %v, want %v", from, got, want)
		}
	}

	// Labelling batch lets it in; removing the label from every namespace
	// leaves a selector that picks nothing, which must not fail to load.
	if _, err := client.CoreV1().Namespaces().Update(ctx, ns("batch", map[string]string{"trust": "high"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitChanged(t, src)
	waitFor(t, "batch to be let in", func() bool { return allowed("batch") })
	for _, name := range []string{"web", "api", "batch"} {
		if _, err := client.CoreV1().Namespaces().Update(ctx, ns(name, nil), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every labelled namespace to be out", func() bool { return !allowed("web") && !allowed("api") && !allowed("batch") })
	if !allowed("ops") {
		t.Error("the namespace named by kubernetes.io/metadata.name lost its access")
	}
	// The informer's objects are never rewritten in place.
	got, _ := client.NetworkingV1().NetworkPolicies("shop").Get(ctx, "from-trusted", metav1.GetOptions{})
	if got.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels["trust"] != "high" {
		t.Errorf("the stored object changed: %+v", got.Spec.Ingress[0].From[0])
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
