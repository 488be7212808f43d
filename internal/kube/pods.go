package kube

import (
	"context"
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Pods answers what the API knows of this node's pods.
type Pods struct {
	client kubernetes.Interface
	lister func(namespace, name string) (*corev1.Pod, error)
	// wait bounds how long Pod waits for the informer to see a pod the
	// runtime already starts (the watch event may trail the kubelet).
	wait time.Duration
}

// WatchPods starts an informer on the pods scheduled to node.
func WatchPods(ctx context.Context, client kubernetes.Interface, node string, timeout time.Duration) (*Pods, error) {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
		}))
	podInformer := factory.Core().V1().Pods()
	inf := podInformer.Informer()
	factory.Start(ctx.Done())
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cache.WaitForCacheSync(wctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("kubernetes: pods of node %s not listed within %s (RBAC: list/watch pods?)", node, timeout)
	}
	lister := podInformer.Lister()
	return &Pods{
		client: client,
		lister: func(ns, name string) (*corev1.Pod, error) { return lister.Pods(ns).Get(name) },
		wait:   2 * time.Second,
	}, nil
}

// Pod returns the service account and labels of namespace/name, checking
// the UID so a pod recreated under the same name is not confused with its
// predecessor. The cache answers; if it has not seen the pod yet, Pod
// waits briefly and then asks the API server directly.
func (p *Pods) Pod(ctx context.Context, namespace, name, uid string) (string, map[string]string, bool, error) {
	deadline := time.Now().Add(p.wait)
	for {
		pod, err := p.lister(namespace, name)
		if err == nil && (uid == "" || pod.UID == types.UID(uid)) {
			return serviceAccount(pod), maps.Clone(pod.Labels), true, nil
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return "", nil, false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	pod, err := p.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil, false, nil
	case err != nil:
		return "", nil, false, err
	case uid != "" && pod.UID != types.UID(uid):
		return "", nil, false, nil
	}
	return serviceAccount(pod), maps.Clone(pod.Labels), true, nil
}

func serviceAccount(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	return "default"
}
