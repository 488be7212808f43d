package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/netns"
)

// e2eCache is where test/k8s/build.sh keeps the binaries it built from
// source (containerd, crictl, CNI plugins, Kubernetes).
func e2eCache() string {
	if dir := os.Getenv("ZTCN_E2E_CACHE"); dir != "" {
		return dir
	}
	return "/var/cache/ztcn-e2e"
}

// requireBuilt makes sure test/k8s/build.sh has built components. Building
// containerd from source takes minutes: outside CI a test whose binaries
// are not cached skips and says how to build them; under CI=true it builds
// them (.ci/run has usually done it already).
func requireBuilt(t *testing.T, components ...string) {
	t.Helper()
	requireBuiltEnv(t, nil, components...)
}

// requireBuiltEnv is requireBuilt with extra environment for build.sh
// (ZTCN_E2E_CONTAINERD_VERSION selects another containerd).
func requireBuiltEnv(t *testing.T, env []string, components ...string) {
	t.Helper()
	if os.Getenv("CI") != "true" {
		for _, c := range components {
			pattern := c + "-*"
			for _, kv := range env {
				if v, ok := strings.CutPrefix(kv, "ZTCN_E2E_CONTAINERD_VERSION="); ok && c == "containerd" {
					pattern = c + "-" + v
				}
			}
			if m, _ := filepath.Glob(filepath.Join(e2eCache(), pattern, ".complete")); len(m) == 0 {
				t.Skipf("%s is not built: run %s test/k8s/build.sh %s", c, strings.Join(env, " "), strings.Join(components, " "))
			}
		}
	}
	build := exec.Command("bash", append([]string{"../k8s/build.sh"}, components...)...)
	build.Env = append(os.Environ(), env...)
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("test/k8s/build.sh: %v\n%s", err, out)
	}
}

// containerdRun is a containerd of the test's own (test/k8s/containerd.sh)
// with NRI enabled and a CNI bridge, driven with crictl.
type containerdRun struct {
	t   *testing.T
	dir string
	env []string
}

func startContainerd(t *testing.T, env ...string) *containerdRun {
	t.Helper()
	requireRoot(t, "jq")
	requireBuiltEnv(t, env, "containerd", "cni", "crictl")
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	r := &containerdRun{t: t, dir: "/run/ztcn-e2e-ctrd-" + id}
	base := append(os.Environ(),
		"ZTCN_E2E_RUN="+r.dir,
		"ZTCN_E2E_BRIDGE=cni-zt"+id,
		fmt.Sprintf("ZTCN_E2E_POD_SUBNET=10.246.%d.0/24", rnd[0]),
		"ZTCN_E2E_NRI_SOCKET="+filepath.Join(r.dir, "nri.sock"),
	)
	base = append(base, env...)
	up := exec.Command("bash", "../k8s/containerd.sh", "up")
	up.Env = base
	out, err := up.CombinedOutput()
	t.Cleanup(func() {
		down := exec.Command("bash", "../k8s/containerd.sh", "down")
		down.Env = base
		if out, err := down.CombinedOutput(); err != nil {
			t.Errorf("containerd.sh down: %v\n%s", err, out)
		}
	})
	if err != nil {
		t.Fatalf("containerd.sh up: %v\n%s", err, out)
	}
	r.env = append(base, readEnvFile(t, filepath.Join(r.dir, "env"))...)
	if out, err := r.cmd("bash", "../k8s/images.sh", "import"); err != nil {
		t.Fatalf("images.sh import: %v\n%s", err, out)
	}
	return r
}

// readEnvFile reads the `export K='V'` lines test/k8s writes, expanding
// the one PATH line.
func readEnvFile(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	var env []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		v = strings.Trim(v, `'"`)
		if k == "PATH" {
			v = vars["ZTCN_E2E_BIN"] + ":" + os.Getenv("PATH")
		}
		vars[k] = v
		env = append(env, k+"="+v)
	}
	return env
}

func (r *containerdRun) getenv(key string) string {
	for i := len(r.env) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(r.env[i], "="); k == key {
			return v
		}
	}
	return ""
}

func (r *containerdRun) cmd(name string, args ...string) (string, error) {
	return runWithEnv(r.env, name, args...)
}

// runWithEnv runs name, looked up on env's PATH (test/k8s puts its cache's
// bin directories first there), with env, and returns its trimmed output.
func runWithEnv(env []string, name string, args ...string) (string, error) {
	for i := len(env) - 1; i >= 0; i-- {
		if path, ok := strings.CutPrefix(env[i], "PATH="); ok {
			for _, dir := range filepath.SplitList(path) {
				if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && !fi.IsDir() {
					name = filepath.Join(dir, name)
					break
				}
			}
			break
		}
	}
	c := exec.Command(name, args...)
	c.Env = env
	out, err := c.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// pod runs a one-container pod through the CRI (RunPodSandbox,
// CreateContainer, StartContainer) and returns its sandbox ID; runp fails
// if the NRI plugin fails the sandbox.
func (r *containerdRun) pod(name, app, serviceAccount string, args ...string) (string, error) {
	r.t.Helper()
	dir := filepath.Join(r.dir, "pods", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.t.Fatal(err)
	}
	podCfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "shop", "uid": unique("uid-" + name), "attempt": 0},
		"hostname":      name,
		"labels":        map[string]string{"app": app},
		"annotations":   map[string]string{"ztcn.io/service-account": serviceAccount},
		"log_directory": dir,
		"linux":         map[string]any{"cgroup_parent": "/" + r.getenv("ZTCN_E2E_CGROUP_PARENT") + "/" + name},
	}
	ctrCfg := map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": r.getenv("ZTCN_E2E_TESTAPP_IMAGE")},
		"args":     args,
		"envs":     []map[string]string{{"key": "POD_NAME", "value": name}, {"key": "POD_NAMESPACE", "value": "shop"}},
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
	podPath, ctrPath := filepath.Join(dir, "pod.json"), filepath.Join(dir, "container.json")
	for path, v := range map[string]any{podPath: podCfg, ctrPath: ctrCfg} {
		data, _ := json.Marshal(v)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	sandbox, err := r.cmd("crictl", "runp", podPath)
	if err != nil {
		return "", fmt.Errorf("crictl runp: %v: %s", err, sandbox)
	}
	ctr, err := r.cmd("crictl", "create", sandbox, ctrPath, podPath)
	if err == nil {
		ctr, err = r.cmd("crictl", "start", ctr)
	}
	if err != nil {
		return sandbox, fmt.Errorf("crictl create/start: %v: %s", err, ctr)
	}
	return sandbox, nil
}

// logs waits for the pod's container to exit and returns its output.
func (r *containerdRun) logs(name string) string {
	r.t.Helper()
	path := filepath.Join(r.dir, "pods", name, name+".log")
	deadline := time.Now().Add(30 * time.Second)
	for {
		ps, _ := r.cmd("crictl", "ps", "-a", "--name", "^"+name+"$", "-o", "json")
		if strings.Contains(ps, "CONTAINER_EXITED") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	data, _ := os.ReadFile(path)
	return string(data)
}

func (r *containerdRun) removePod(sandbox string) {
	r.t.Helper()
	if out, err := r.cmd("crictl", "stopp", sandbox); err != nil {
		r.t.Fatalf("crictl stopp: %v %s", err, out)
	}
	if out, err := r.cmd("crictl", "rmp", sandbox); err != nil {
		r.t.Fatalf("crictl rmp: %v %s", err, out)
	}
}

// startNRIPlugin runs `ztcn nri` against the run's NRI socket until the
// test ends.
func startNRIPlugin(t *testing.T, node *ociNode, socket string) *lockedBuffer {
	t.Helper()
	logs := &lockedBuffer{}
	cmd := exec.Command(ztcnBin, "nri", "--config", node.config, "--socket", socket)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("ztcn nri:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "connected to the container runtime") {
		if time.Now().After(deadline) {
			t.Fatalf("ztcn nri did not connect to containerd:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return logs
}

// TestNRIContainerd: a real containerd 2.x (built from source by
// test/k8s) with NRI enabled and the reference bridge CNI for plain
// connectivity, driven through the CRI by crictl, with `ztcn nri`
// connected. Pods get identities before their containers start (the
// service account from the annotation), traffic between them is mTLS on
// the CNI's bridge and follows policy, and removing a pod revokes its SVID.
func TestNRIContainerd(t *testing.T) {
	node := newOCINode(t)
	rt := startContainerd(t)
	logs := startNRIPlugin(t, node, rt.getenv("ZTCN_E2E_NRI_SOCKET"))

	serverSandbox, err := rt.pod("server", "server", "server", "serve", ":8080")
	if err != nil {
		t.Fatalf("server pod: %v\nplugin:\n%s", err, logs.String())
	}
	var server control.PodStatus
	for _, p := range mustStatus(t, node).Pods {
		if p.Name == "server" {
			server = p
		}
	}
	if server.SPIFFEID != "spiffe://cluster.local/ns/shop/sa/server" || server.Runtime != "nri" || len(server.IPs) != 1 {
		t.Fatalf("server not registered by the NRI plugin: %+v", server)
	}
	url := fmt.Sprintf("http://%s:8080/", server.IPs[0])

	// Frames forwarded between bridge ports do not pass the bridge
	// device itself: capture on the server's port.
	stop := capture(t, hostNS(t), hostPeerOf(t, server.NetnsPath, "eth0"))
	if _, err := rt.pod("client", "client", "client", "get", "-timeout", "5s", "-retry", "5s", url); err != nil {
		t.Fatal(err)
	}
	out := rt.logs("client")
	wire := stop()
	if !strings.Contains(out, "pod=server") {
		t.Fatalf("allowed client did not get the page:\n%s\nplugin:\n%s", out, logs.String())
	}
	if bytes.Contains(wire, []byte("pod=server")) || !bytes.Contains(wire, []byte{0x17, 0x03, 0x03}) {
		t.Fatalf("the page was not carried in TLS on the CNI bridge (%d bytes captured)", len(wire))
	}

	if _, err := rt.pod("intruder", "intruder", "intruder", "get", "-timeout", "3s", url); err != nil {
		t.Fatal(err)
	}
	if out := rt.logs("intruder"); strings.Contains(out, "pod=server") {
		t.Fatalf("a pod policy does not allow got the page:\n%s", out)
	}
	node.waitFor("the intruder's denial", func(st control.Status) bool { return st.Events["denied"] > 0 })

	rt.removePod(serverSandbox)
	for _, p := range mustStatus(t, node).Pods {
		if p.Name == "server" {
			t.Fatal("the server is still registered after crictl stopp/rmp")
		}
	}
	requireRevocationAudited(t, filepath.Join(node.dir, "audit.log"), server.SPIFFEID)
}

// hostPeerOf names the node's end of the veth whose other end is ifname in
// the namespace at nsPath.
func hostPeerOf(t *testing.T, nsPath, ifname string) string {
	t.Helper()
	ns, err := netns.Open(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netns.NewHandle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.Netlink().LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.InterfaceByIndex(l.Attrs().ParentIndex)
	if err != nil {
		t.Fatalf("the node end of %s: %v", ifname, err)
	}
	return peer.Name
}

// TestFaultNRIRequiredPlugin: with containerd 2.2 (NRI v0.11) configured to
// require ztcn, no container starts while `ztcn nri` is away, and pods
// start once it is connected. containerd 2.1, which the rest of the suite
// runs, cannot do this (docs/runtimes.md).
func TestFaultNRIRequiredPlugin(t *testing.T) {
	node := newOCINode(t)
	rt := startContainerd(t, "ZTCN_E2E_CONTAINERD_VERSION=v2.2.9", "ZTCN_E2E_NRI_REQUIRED=ztcn")

	_, err := rt.pod("early", "client", "client", "sleep")
	secRow(t, "NRI (containerd 2.2, ztcn required): container created while ztcn nri is away", "container refused by containerd",
		fmt.Sprintf("%v", err), err != nil && strings.Contains(err.Error(), "required plugin"))

	logs := startNRIPlugin(t, node, rt.getenv("ZTCN_E2E_NRI_SOCKET"))
	if _, err := rt.pod("server", "server", "server", "serve", ":8080"); err != nil {
		t.Fatalf("with ztcn connected the pod did not start: %v\nplugin:\n%s", err, logs.String())
	}
	found := false
	for _, p := range mustStatus(t, node).Pods {
		found = found || p.Name == "server" && p.SPIFFEID == "spiffe://cluster.local/ns/shop/sa/server"
	}
	if !found {
		t.Fatalf("the pod started without being registered:\n%s", logs.String())
	}
}
