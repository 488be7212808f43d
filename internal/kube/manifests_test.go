package kube

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/ztcn/ztcn/internal/config"
	"github.com/ztcn/ztcn/internal/policy"
)

// deployObjects decodes every object of deploy/kubernetes/ as the API
// server would (strict types, known kinds).
func deployObjects(t *testing.T) []runtime.Object {
	t.Helper()
	files, err := filepath.Glob("../../deploy/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var objs []runtime.Object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if err != nil {
				break
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			json, err := utilyaml.ToJSON(doc)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(json, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			objs = append(objs, obj)
		}
	}
	return objs
}

// TestDeployManifests keeps deploy/kubernetes/ consistent with the code:
// the ConfigMap's runtime.toml and policy parse, the DaemonSet runs the
// agent and the NRI plugin unprivileged with exactly the capabilities the
// agent uses, mounts the state directory from the node (re-attachment
// after a restart) and the NRI socket, and RBAC only reads.
func TestDeployManifests(t *testing.T) {
	var ds *appsv1.DaemonSet
	var cm *corev1.ConfigMap
	var role *rbacv1.ClusterRole
	for _, o := range deployObjects(t) {
		switch o := o.(type) {
		case *appsv1.DaemonSet:
			ds = o
		case *corev1.ConfigMap:
			cm = o
		case *rbacv1.ClusterRole:
			role = o
		}
	}
	if ds == nil || cm == nil || role == nil {
		t.Fatal("deploy/kubernetes lacks the DaemonSet, ConfigMap or ClusterRole")
	}
	cfg, err := config.Parse("runtime.toml", []byte(cm.Data["runtime.toml"]))
	if err != nil {
		t.Fatalf("ConfigMap runtime.toml: %v", err)
	}
	if _, diags := policy.LoadBytes("policy.yaml", []byte(cm.Data["policy.yaml"])); diags.HasErrors() {
		t.Fatalf("ConfigMap policy.yaml: %v", diags)
	}

	spec := ds.Spec.Template.Spec
	var names []string
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for _, c := range spec.Containers {
		names = append(names, c.Name)
		sc := c.SecurityContext
		if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil {
			t.Fatalf("container %s: not an explicit unprivileged security context", c.Name)
		}
		want := []corev1.Capability{"NET_ADMIN", "SYS_ADMIN", "NET_RAW", "SYS_PTRACE"}
		if !slices.Equal(sc.Capabilities.Add, want) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Fatalf("container %s: capabilities %+v", c.Name, sc.Capabilities)
		}
		mounted := map[string]string{}
		for _, m := range c.VolumeMounts {
			mounted[m.MountPath] = m.Name
		}
		if hostPaths[mounted[cfg.Agent.StateDir]] != cfg.Agent.StateDir {
			t.Fatalf("container %s: agent.state_dir %s is not the node's (hostPath)", c.Name, cfg.Agent.StateDir)
		}
	}
	if !slices.Equal(names, []string{"agent", "nri"}) || !spec.HostNetwork || !spec.HostPID || spec.ServiceAccountName != "ztcn" {
		t.Fatalf("DaemonSet pod: containers %v, hostNetwork %v, hostPID %v, sa %q", names, spec.HostNetwork, spec.HostPID, spec.ServiceAccountName)
	}
	watched := map[string]bool{}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if !slices.Contains([]string{"get", "list", "watch"}, v) {
				t.Fatalf("ClusterRole may %s %v", v, r.Resources)
			}
		}
		if slices.Contains(r.Verbs, "list") && slices.Contains(r.Verbs, "watch") {
			for _, res := range r.Resources {
				watched[res] = true
			}
		}
	}
	// What the informers of this package list and watch.
	for _, res := range []string{"pods", "namespaces", "networkpolicies"} {
		if !watched[res] {
			t.Errorf("ClusterRole does not let the agent list and watch %s", res)
		}
	}
}
