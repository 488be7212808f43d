package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/netns"
)

// k8sCluster is the single-node cluster of test/k8s/cluster.sh.
type k8sCluster struct {
	t   *testing.T
	env []string
	dir string
}

func startCluster(t *testing.T) *k8sCluster {
	t.Helper()
	up := exec.Command("bash", "../k8s/cluster.sh", "up")
	out, err := up.CombinedOutput()
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob("/run/ztcn-k8s/logs/*.log")
			t.Logf("component logs: %v", logs)
		}
		if os.Getenv("ZTCN_E2E_K8S_KEEP") == "1" {
			t.Log("ZTCN_E2E_K8S_KEEP=1: the cluster stays up (test/k8s/cluster.sh down)")
			return
		}
		if out, err := exec.Command("bash", "../k8s/cluster.sh", "down").CombinedOutput(); err != nil {
			t.Errorf("cluster.sh down: %v\n%s", err, out)
		}
	})
	if err != nil {
		t.Fatalf("cluster.sh up: %v\n%s", err, out)
	}
	envOut, err := exec.Command("bash", "../k8s/cluster.sh", "env").Output()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(f, envOut, 0o644); err != nil {
		t.Fatal(err)
	}
	return &k8sCluster{t: t, env: append(os.Environ(), readEnvFile(t, f)...), dir: t.TempDir()}
}

func (k *k8sCluster) run(name string, args ...string) (string, error) {
	return runWithEnv(k.env, name, args...)
}

func (k *k8sCluster) kubectl(args ...string) string {
	k.t.Helper()
	out, err := k.run("kubectl", args...)
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// apply applies a manifest given as text.
func (k *k8sCluster) apply(manifest string) {
	k.t.Helper()
	f, err := os.CreateTemp(k.dir, "manifest-*.yaml")
	if err != nil {
		k.t.Fatal(err)
	}
	f.WriteString(manifest)
	f.Close()
	k.kubectl("apply", "-f", f.Name())
}

// ztcnImage builds ztcn statically and imports it as docker.io/library/ztcn:dev,
// the DaemonSet's image, into the cluster's containerd.
func (k *k8sCluster) ztcnImage() {
	k.t.Helper()
	bin := filepath.Join(k.dir, "ztcn")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "../../cmd/ztcn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		k.t.Fatalf("static ztcn: %v\n%s", err, out)
	}
	tar := filepath.Join(k.dir, "ztcn.tar")
	if out, err := k.run("bash", "../k8s/images.sh", "image", "-o", tar, "-name", "docker.io/library/ztcn:dev",
		"-file", bin+"=/ztcn", "-entrypoint", "/ztcn"); err != nil {
		k.t.Fatalf("ztcn image: %v\n%s", err, out)
	}
	if out, err := k.run("bash", "../k8s/images.sh", "import", tar); err != nil {
		k.t.Fatalf("import ztcn image: %v\n%s", err, out)
	}
}

// installZtcn applies deploy/kubernetes/ as a user would, with the CA
// Secret made by `ztcn ca` and the ConfigMap's policy replaced.
func (k *k8sCluster) installZtcn(policyYAML string) {
	k.t.Helper()
	ca := filepath.Join(k.dir, "ca")
	for _, args := range [][]string{
		{"ca", "init", "--trust-domain", "cluster.local", "--out", ca + "/root"},
		{"ca", "issue-node", "--ca", ca + "/root", "--node", "cluster", "--out", ca + "/node"},
	} {
		if out, err := exec.Command(ztcnBin, args...).CombinedOutput(); err != nil {
			k.t.Fatalf("ztcn %v: %v\n%s", args, err, out)
		}
	}
	k.kubectl("apply", "-f", "../../deploy/kubernetes/00-namespace.yaml")
	k.kubectl("-n", "ztcn-system", "create", "secret", "generic", "ztcn-ca",
		"--from-file="+ca+"/node/node.crt", "--from-file="+ca+"/node/node.key", "--from-file="+ca+"/node/root.crt")
	k.kubectl("apply", "-f", "../../deploy/kubernetes/")
	k.setPolicy(policyYAML)
	k.rollout()
}

// rollout waits for the DaemonSet, telling why on failure.
func (k *k8sCluster) rollout() {
	k.t.Helper()
	if out, err := k.run("kubectl", "-n", "ztcn-system", "rollout", "status", "daemonset/ztcn", "--timeout=120s"); err != nil {
		k.t.Fatalf("ztcn DaemonSet not ready: %v\n%s\n%s\n%s", err, out,
			k.kubectlOr("-n", "ztcn-system", "describe", "pods"),
			k.kubectlOr("-n", "ztcn-system", "logs", "-l", "app.kubernetes.io/name=ztcn", "--all-containers", "--tail=50"))
	}
}

// setPolicy replaces policy.yaml in the shipped ConfigMap, and makes the
// kubelet refresh the mounted file now rather than at its next periodic
// sync (up to a minute): an update of the pod's annotations syncs it.
func (k *k8sCluster) setPolicy(policyYAML string) {
	k.t.Helper()
	shipped, err := os.ReadFile("../../deploy/kubernetes/20-config.yaml")
	if err != nil {
		k.t.Fatal(err)
	}
	i := bytes.Index(shipped, []byte("  policy.yaml: |\n"))
	if i < 0 {
		k.t.Fatal("20-config.yaml has no policy.yaml key")
	}
	var b strings.Builder
	b.Write(shipped[:i])
	b.WriteString("  policy.yaml: |\n")
	for _, line := range strings.Split(strings.TrimRight(policyYAML, "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	k.apply(b.String())
	_, _ = k.run("kubectl", "-n", "ztcn-system", "annotate", "pod", "-l", "app.kubernetes.io/name=ztcn",
		"--overwrite", fmt.Sprintf("ztcn.io/config-poke=%d", time.Now().UnixNano()))
}

// agent asks the DaemonSet's agent over its control socket, which is on
// the node (hostPath /run/ztcn).
func (k *k8sCluster) agent() (control.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return control.NewClient("/run/ztcn/control.sock").Status(ctx)
}

func (k *k8sCluster) waitAgent(what string, cond func(control.Status) bool) control.Status {
	k.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, err := k.agent()
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("timed out waiting for %s: %+v (%v)\n%s", what, st, err,
				k.kubectlOr("-n", "ztcn-system", "logs", "-l", "app.kubernetes.io/name=ztcn", "--all-containers", "--tail=40"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (k *k8sCluster) kubectlOr(args ...string) string {
	out, _ := k.run("kubectl", args...)
	return out
}

func podNamed(st control.Status, ns, name string) (control.PodStatus, bool) {
	for _, p := range st.Pods {
		if p.Namespace == ns && p.Name == name {
			return p, true
		}
	}
	return control.PodStatus{}, false
}

// k8sWorkloads: a server and a client in shop (each its own service
// account), a worker in batch; testapp images imported by cluster.sh.
const k8sWorkloads = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: batch}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: server, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: worker, namespace: batch}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: shop, labels: {app: server}}
spec:
  serviceAccountName: server
  terminationGracePeriodSeconds: 1
  containers:
  - name: testapp
    image: ztcn-e2e/testapp:latest
    imagePullPolicy: Never
    args: [serve, ":8080"]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    # The kubelet probes from the node, in plaintext: in strict mode the
    # pod becomes Ready only through kubelet_probes.
    readinessProbe:
      httpGet: {path: /, port: 8080}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec:
  serviceAccountName: client
  terminationGracePeriodSeconds: 1
  containers:
  - {name: testapp, image: ztcn-e2e/testapp:latest, imagePullPolicy: Never, args: [sleep]}
---
apiVersion: v1
kind: Pod
metadata: {name: worker, namespace: batch, labels: {app: worker}}
spec:
  serviceAccountName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - {name: testapp, image: ztcn-e2e/testapp:latest, imagePullPolicy: Never, args: [sleep]}
`

// k8sPolicy lets shop's client call the server; the worker is left to
// NetworkPolicies.
const k8sPolicy = `policies:
  - subject: "spiffe://cluster.local/ns/shop/sa/client"
    allow:
      - destination: "spiffe://cluster.local/ns/shop/sa/server"
        ports: [8080]
`

const k8sPolicyWithoutClient = `policies: []
`

// k8sNetworkPolicies let batch's worker reach shop's server on 8080 (both
// ends, as in a default-deny cluster). The server's side selects the
// namespaces labelled ztcn.io/e2e-role=jobs, which batch is not at first.
const k8sNetworkPolicies = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-from-batch, namespace: shop}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ztcn.io/e2e-role: jobs}}
    ports: [{port: 8080, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: worker-to-shop, namespace: batch}
spec:
  podSelector: {matchLabels: {app: worker}}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}
    ports: [{port: 8080, protocol: TCP}]
`

// reaches dials dst from inside the pod's network namespace, as the pod's
// own process would: through its redirection and the agent.
func reaches(t *testing.T, pod control.PodStatus, dst netip.AddrPort) bool {
	t.Helper()
	ns, err := netns.Open(pod.NetnsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	body, err := httpGetIn(ns, dst)
	return err == nil && strings.Contains(body, "pod=server")
}

// TestKubernetes: a real single-node Kubernetes 1.34 (test/k8s, built from
// source) with containerd's NRI enabled and the bridge CNI. `kubectl apply
// -f deploy/kubernetes/` brings ztcn up from a locally built image; pods in
// two namespaces get SVIDs carrying their real service accounts; their
// traffic is mTLS on the node's bridge and follows the ConfigMap's policy
// and a NetworkPolicy applied with kubectl, editing either changes verdicts
// live; deleting a pod revokes its SVID; deleting the DaemonSet's pod
// fails closed and its replacement re-attaches the running pods.
//
// It runs with `make e2e-k8s` (ZTCN_E2E_K8S=1), also from .ci/run.
func TestKubernetes(t *testing.T) {
	if os.Getenv("ZTCN_E2E_K8S") != "1" {
		t.Skip("set ZTCN_E2E_K8S=1 (make e2e-k8s): starts a Kubernetes cluster built from source")
	}
	requireRoot(t, "jq", "openssl")
	ztcnBinary(t)
	requireBuilt(t, "kubernetes", "etcd", "containerd", "cni", "crictl", "images")
	// The DaemonSet keeps its state and audit log on the node, at the
	// defaults: start from nothing so that nothing of an earlier run can
	// answer for this one, and leave nothing behind.
	if _, err := control.NewClient("/run/ztcn/control.sock").Status(context.Background()); err == nil {
		t.Fatal("a ztcn agent already answers on /run/ztcn/control.sock: stop it first")
	}
	nodeState := func() {
		for _, p := range []string{"/run/ztcn/pods", "/run/ztcn/ipam", "/run/ztcn/control.sock", "/run/ztcn/workload.sock", "/var/log/ztcn"} {
			_ = os.RemoveAll(p)
		}
	}
	nodeState()
	t.Cleanup(nodeState)
	k := startCluster(t)
	k.ztcnImage()
	k.installZtcn(k8sPolicy)
	k.apply(k8sWorkloads)
	k.kubectl("wait", "--for=condition=Ready", "--timeout=120s", "-n", "shop", "pod/server", "pod/client")
	k.kubectl("wait", "--for=condition=Ready", "--timeout=120s", "-n", "batch", "pod/worker")

	// Identities from the API: the service accounts of the pod specs.
	st := k.waitAgent("the three pods registered", func(st control.Status) bool {
		_, a := podNamed(st, "shop", "server")
		_, b := podNamed(st, "shop", "client")
		_, c := podNamed(st, "batch", "worker")
		return a && b && c
	})
	server, _ := podNamed(st, "shop", "server")
	client, _ := podNamed(st, "shop", "client")
	worker, _ := podNamed(st, "batch", "worker")
	for pod, want := range map[*control.PodStatus]string{
		&server: "spiffe://cluster.local/ns/shop/sa/server",
		&client: "spiffe://cluster.local/ns/shop/sa/client",
		&worker: "spiffe://cluster.local/ns/batch/sa/worker",
	} {
		if pod.SPIFFEID != want || pod.Runtime != "nri" || pod.Redirection.State != control.RedirectionHealthy {
			t.Fatalf("%s/%s: %+v, want %s", pod.Namespace, pod.Name, pod, want)
		}
	}
	dst := netip.AddrPortFrom(server.IPs[0], 8080)

	// mTLS on the node's bridge, policy from the ConfigMap.
	stop := capture(t, hostNS(t), hostPeerOf(t, server.NetnsPath, "eth0"))
	if !reaches(t, client, dst) {
		t.Fatal("the client cannot reach the server its policy allows")
	}
	wire := stop()
	if bytes.Contains(wire, []byte("pod=server")) || !bytes.Contains(wire, []byte{0x17, 0x03, 0x03}) {
		t.Fatalf("client→server was not TLS on the bridge (%d bytes captured)", len(wire))
	}
	if reaches(t, worker, dst) {
		t.Fatal("the worker reached the server with no rule allowing it")
	}

	// A NetworkPolicy applied with kubectl joins the index, live; its
	// namespaceSelector follows the namespaces' labels, live too.
	k.apply(k8sNetworkPolicies)
	k.kubectl("label", "namespace", "batch", "ztcn.io/e2e-role=jobs")
	waitFor(t, "the NetworkPolicies to allow the worker", func() bool { return reaches(t, worker, dst) })
	k.kubectl("label", "namespace", "batch", "ztcn.io/e2e-role-")
	waitFor(t, "the unlabelled namespace to lose its access", func() bool { return !reaches(t, worker, dst) })
	k.kubectl("label", "namespace", "batch", "ztcn.io/e2e-role=jobs")
	waitFor(t, "the relabelled namespace to get its access back", func() bool { return reaches(t, worker, dst) })
	k.kubectl("-n", "shop", "delete", "networkpolicy", "server-from-batch")
	waitFor(t, "the deleted NetworkPolicy to deny the worker", func() bool { return !reaches(t, worker, dst) })

	// Editing the ConfigMap's policy changes verdicts live.
	k.setPolicy(k8sPolicyWithoutClient)
	waitFor(t, "the edited ConfigMap policy to deny the client", func() bool { return !reaches(t, client, dst) })
	k.setPolicy(k8sPolicy)
	waitFor(t, "the restored ConfigMap policy to allow the client", func() bool { return reaches(t, client, dst) })

	// Deleting the DaemonSet's pod fails closed; the replacement
	// re-attaches the running pods.
	k.kubectl("-n", "ztcn-system", "delete", "pod", "-l", "app.kubernetes.io/name=ztcn", "--wait=false")
	waitFor(t, "the client to be refused while ztcn is replaced", func() bool { return !reaches(t, client, dst) })
	k.rollout()
	waitFor(t, "the replacement to re-attach the running pods", func() bool { return reaches(t, client, dst) })
	st, _ = k.agent()
	if again, ok := podNamed(st, "shop", "client"); !ok || again.SPIFFEID != client.SPIFFEID {
		t.Fatalf("after the restart the client is %+v", again)
	}

	// Deleting a pod revokes its SVID.
	k.kubectl("-n", "shop", "delete", "pod", "server", "--wait=true", "--timeout=60s")
	k.waitAgent("the server to be deregistered", func(st control.Status) bool { _, ok := podNamed(st, "shop", "server"); return !ok })
	requireRevocationAudited(t, "/var/log/ztcn/audit.log", server.SPIFFEID)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
