// Package kube connects ztcn to the Kubernetes API when it runs in a
// cluster: NetworkPolicy objects feed the policy index as a policy.Source
// (their namespaceSelectors resolved against the namespaces' labels), and
// the pods of this node supply what a pod sandbox does not carry (its
// service account, its labels as the API has them) to the NRI plugin.
//
// All are client-go informers: one list and then a watch, answered from
// a local cache, so a pod start costs no API round trip.
package kube

import (
	"errors"
	"os"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// InCluster reports whether the process runs in a Kubernetes pod (the
// kubelet sets these variables in every container).
func InCluster() bool {
	return os.Getenv("KUBERNETES_SERVICE_HOST") != "" && os.Getenv("KUBERNETES_SERVICE_PORT") != ""
}

// NewClient returns a client from kubeconfig, or from the pod's service
// account when kubeconfig is empty.
func NewClient(kubeconfig string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		if !InCluster() {
			return nil, errors.New("kubernetes: not in a cluster and no kubeconfig given")
		}
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "ztcn"
	return kubernetes.NewForConfig(cfg)
}
