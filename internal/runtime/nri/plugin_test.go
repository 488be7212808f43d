package nri

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"
)

type fakeMetadata struct {
	sa     string
	labels map[string]string
	ok     bool
}

func (f fakeMetadata) Pod(context.Context, string, string, string) (string, map[string]string, bool, error) {
	return f.sa, f.labels, f.ok, nil
}

func sandbox() *api.PodSandbox {
	return &api.PodSandbox{
		Id: "sb1", Uid: "uid-1", Name: "web-1", Namespace: "shop", Pid: 4242,
		Labels:      map[string]string{"app": "web", "io.kubernetes.pod.name": "web-1", "io.kubernetes.pod.uid": "uid-1"},
		Annotations: map[string]string{},
		Ips:         []string{"10.244.0.7"},
		Linux: &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{
			{Type: "ipc"}, {Type: "network", Path: "/var/run/netns/cni-1234"},
		}},
	}
}

func TestPodOfSandbox(t *testing.T) {
	p := &Plugin{}
	pod, err := p.podOf(context.Background(), sandbox())
	if err != nil {
		t.Fatal(err)
	}
	// The named path does not exist here: the sandbox process's is used.
	if pod.UID != "uid-1" || pod.Name != "web-1" || pod.Namespace != "shop" || pod.ServiceAccount != "default" ||
		pod.NetnsPath != "/proc/4242/ns/net" || pod.Runtime != Runtime {
		t.Fatalf("pod: %+v", pod)
	}
	if len(pod.Labels) != 1 || pod.Labels["app"] != "web" {
		t.Fatalf("the kubelet's io.kubernetes.* labels were kept: %v", pod.Labels)
	}
	if len(pod.IPs) != 1 || pod.IPs[0] != netip.MustParseAddr("10.244.0.7") {
		t.Fatalf("IPs %v", pod.IPs)
	}
}

func TestPodOfSandboxIdentitySources(t *testing.T) {
	sb := sandbox()
	// The Kubernetes API is authoritative for labels and gives the
	// service account...
	p := &Plugin{Metadata: fakeMetadata{sa: "web", labels: map[string]string{"app": "web", "tier": "front"}, ok: true}}
	pod, err := p.podOf(context.Background(), sb)
	if err != nil || pod.ServiceAccount != "web" || pod.Labels["tier"] != "front" {
		t.Fatalf("with API metadata: %+v %v", pod, err)
	}
	// ...unless the pod names one in its annotation.
	sb.Annotations[AnnotationServiceAccount] = "override"
	if pod, _ = p.podOf(context.Background(), sb); pod.ServiceAccount != "override" {
		t.Fatalf("annotation: %+v", pod)
	}
	// A named path that exists here is used as the runtime names it.
	sb.Linux.Namespaces = []*api.LinuxNamespace{{Type: "network", Path: "/proc/self/ns/net"}}
	if pod, _ = p.podOf(context.Background(), sb); pod.NetnsPath != "/proc/self/ns/net" {
		t.Fatalf("named netns: %q", pod.NetnsPath)
	}
	// No namespace path: the sandbox process's.
	sb.Linux.Namespaces = []*api.LinuxNamespace{{Type: "network"}}
	if pod, _ = p.podOf(context.Background(), sb); pod.NetnsPath != "/proc/4242/ns/net" {
		t.Fatalf("netns fallback: %q", pod.NetnsPath)
	}
	// No UID (crictl): the sandbox ID keys it.
	sb.Uid = ""
	if pod, _ = p.podOf(context.Background(), sb); pod.UID != "sb1" {
		t.Fatalf("uid fallback: %q", pod.UID)
	}
}

func TestPodOfSandboxRejects(t *testing.T) {
	sb := sandbox()
	sb.Ips = []string{"not-an-ip"}
	if _, err := (&Plugin{}).podOf(context.Background(), sb); err == nil || !strings.Contains(err.Error(), `address "not-an-ip"`) {
		t.Fatalf("bad IP: %v", err)
	}
	sb = sandbox()
	sb.Linux.Namespaces, sb.Pid = []*api.LinuxNamespace{{Type: "network"}}, 0
	if _, err := (&Plugin{}).podOf(context.Background(), sb); err == nil || !strings.Contains(err.Error(), "no network namespace") {
		t.Fatalf("no namespace: %v", err)
	}
}

func TestHostNetwork(t *testing.T) {
	sb := sandbox()
	if hostNetwork(sb) {
		t.Fatal("a pod with a network namespace is not host network")
	}
	sb.Linux.Namespaces = []*api.LinuxNamespace{{Type: "ipc"}, {Type: "pid"}}
	if !hostNetwork(sb) {
		t.Fatal("a pod without a network namespace shares the node's")
	}
	sb.Linux = nil
	if hostNetwork(sb) {
		t.Fatal("a sandbox the runtime says nothing about must not be skipped")
	}
}
