package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/ztcn/ztcn/internal/kube"
)

// kubeFlags select the Kubernetes API: in a pod (the DaemonSet) it is used
// by default, from the pod's service account; elsewhere only with
// --kubeconfig.
type kubeFlags struct {
	enabled    bool
	kubeconfig string
}

func (k *kubeFlags) register(cmd *cobra.Command, what string) {
	cmd.Flags().BoolVar(&k.enabled, "kubernetes", kube.InCluster(), what+" (default: true when running in a Kubernetes pod)")
	cmd.Flags().StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (implies --kubernetes; default: the pod's service account)")
}

// client returns nil when the API is not to be used.
func (k *kubeFlags) client() (kubernetes.Interface, error) {
	if !k.enabled && k.kubeconfig == "" {
		return nil, nil
	}
	return kube.NewClient(k.kubeconfig)
}

// informerSyncTimeout bounds the first list from the API server at start.
const informerSyncTimeout = 30 * time.Second

// nodeNameFrom is --node-name, else $NODE_NAME (the DaemonSet sets it from
// spec.nodeName), else the agent's node name.
func nodeNameFrom(flag, fromConfig string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("NODE_NAME"); env != "" {
		return env
	}
	return fromConfig
}
