package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/runtime/oci"
	"github.com/ztcn/ztcn/internal/runtime/podnet"
)

// ociPolicy lets app=client call app=server on 8080, and nothing else.
const ociPolicy = `policies:
  - subject: "app:client"
    allow:
      - destination: "app:server"
        ports: [8080]
`

// marker is served by the server container: it must cross the bridge only
// inside TLS.
const ociMarker = "hello-from-the-ztcn-oci-server"

// ociNode is a host agent whose [network] bridge and range are unique to
// the test, with the bridge removed at the end.
type ociNode struct {
	*agentNode
	bridge string
	cidr   netip.Prefix
}

func newOCINode(t *testing.T) *ociNode {
	t.Helper()
	requireRoot(t, "go")
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	n := &ociNode{
		bridge: "ztb" + hex.EncodeToString(rnd[:]),
		cidr:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 252, rnd[0], 0}), 24),
	}
	t.Cleanup(func() { deleteHostLink(t, n.bridge) })
	n.agentNode = newHostAgent(t, ociPolicy, fmt.Sprintf("[network]\nbridge = %q\npod_cidr = %q\n", n.bridge, n.cidr))
	return n
}

func deleteHostLink(t *testing.T, name string) {
	host, err := netns.Open("/proc/self/ns/net")
	if err != nil {
		t.Error(err)
		return
	}
	defer host.Close()
	h, err := netns.NewHandle(host)
	if err != nil {
		t.Error(err)
		return
	}
	defer h.Close()
	if err := h.DeleteLink(name); err != nil {
		t.Error(err)
	}
}

// hostNS is the test process's own network namespace (the node's).
func hostNS(t *testing.T) *netns.NS {
	t.Helper()
	host, err := netns.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	return host
}

func hostLinkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// rootfs builds a container root filesystem from Debian's busybox-static:
// the binary, the applets the tests use, and a page to serve.
func rootfs(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "www", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(busybox(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "httpd", "nc", "printf", "sleep", "echo", "cat"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "www", "index.html"), []byte(ociMarker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func busybox(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if out, err := exec.Command("file", "-L", p).Output(); err == nil && bytes.Contains(out, []byte("statically linked")) {
			return p
		}
		if _, err := os.Stat(p); err == nil {
			return p // `file` missing: trust Debian's busybox-static
		}
	}
	requireRoot(t, "busybox")
	return "busybox"
}

// runcHarness runs containers with runc, each from its own bundle, with
// ztcn's hook in config.json as runc takes hooks (runc reads no hooks.d).
type runcHarness struct {
	t    *testing.T
	node *ociNode
	root string // runc --root: the test's own container state
	dir  string
}

func newRuncHarness(t *testing.T, node *ociNode) *runcHarness {
	t.Helper()
	requireRoot(t, "runc")
	dir := t.TempDir()
	return &runcHarness{t: t, node: node, root: filepath.Join(dir, "runc-state"), dir: dir}
}

func (r *runcHarness) runc(args ...string) ([]byte, error) {
	return exec.Command("runc", append([]string{"--root", r.root}, args...)...).CombinedOutput()
}

// bundle writes an OCI bundle: busybox rootfs, a fresh network namespace,
// annotations, and ztcn's createRuntime and poststop hooks.
func (r *runcHarness) bundle(id string, annotations map[string]string, args ...string) string {
	r.t.Helper()
	return r.bundleWith(id, annotations, nil, args...)
}

// bundleWith is bundle with a last change to the spec.
func (r *runcHarness) bundleWith(id string, annotations map[string]string, change func(*specs.Spec), args ...string) string {
	r.t.Helper()
	dir := filepath.Join(r.dir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.t.Fatal(err)
	}
	rootfs(r.t, dir)
	if out, err := exec.Command("runc", "spec", "--bundle", dir).CombinedOutput(); err != nil {
		r.t.Fatalf("runc spec: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		r.t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		r.t.Fatal(err)
	}
	spec.Process.Terminal = false
	spec.Process.Args = args
	spec.Root.Readonly = false
	spec.Hostname = id
	spec.Annotations = annotations
	timeout := 30
	hook := func(stage string) specs.Hook {
		return specs.Hook{Path: ztcnBin, Args: []string{"ztcn", "oci-hook", stage, "--config", r.node.config}, Timeout: &timeout}
	}
	spec.Hooks = &specs.Hooks{
		CreateRuntime: []specs.Hook{hook("createRuntime")},
		Poststop:      []specs.Hook{hook("poststop")},
	}
	if change != nil {
		change(&spec)
	}
	if data, err = json.MarshalIndent(&spec, "", "  "); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
	return dir
}

// start runs a long-lived container in the background (runc run -d) and
// removes it at cleanup, which runs its poststop hook.
func (r *runcHarness) start(id string, annotations map[string]string, args ...string) error {
	r.t.Helper()
	bundle := r.bundle(id, annotations, args...)
	logf, err := os.Create(filepath.Join(r.dir, id+".log"))
	if err != nil {
		r.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("runc", "--root", r.root, "run", "--detach", "--bundle", bundle, id)
	// Files, not pipes: the container keeps its stdio after runc returns.
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Run()
	r.t.Cleanup(func() { r.remove(id) })
	if err != nil {
		out, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("runc run %s: %v\n%s", id, err, out)
	}
	return nil
}

// run runs a container in the foreground and returns its output.
func (r *runcHarness) run(id string, annotations map[string]string, args ...string) (string, error) {
	r.t.Helper()
	bundle := r.bundle(id, annotations, args...)
	r.t.Cleanup(func() { r.remove(id) })
	out, err := r.runc("run", "--bundle", bundle, id)
	return string(out), err
}

func (r *runcHarness) remove(id string) {
	_, _ = r.runc("kill", id, "KILL")
	_, _ = r.runc("delete", "--force", id)
}

func ociAnnotations(name, app string) map[string]string {
	return map[string]string{
		oci.AnnotationNamespace:      "shop",
		oci.AnnotationName:           name,
		oci.AnnotationServiceAccount: name,
		oci.AnnotationLabels:         "app=" + app + ",runtime=runc",
	}
}

func (n *ociNode) pod(name string) (control.PodStatus, bool) {
	st, err := n.status()
	if err != nil {
		n.t.Fatal(err)
	}
	for _, p := range st.Pods {
		if p.Name == name {
			return p, true
		}
	}
	return control.PodStatus{}, false
}

func unique(prefix string) string {
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	return prefix + "-" + hex.EncodeToString(rnd[:])
}

// TestOCIHookRunc: two runc containers in fresh network namespaces, no CNI.
// The hook gives each a veth and an address, registers it before its
// process starts, and its traffic is mTLS between the agent's listeners:
// the allowed client gets the page (nothing of it in clear on the wire),
// another is refused, and deleting the server revokes its SVID and leaves
// no veth and no address grant behind.
func TestOCIHookRunc(t *testing.T) {
	node := newOCINode(t)
	r := newRuncHarness(t, node)

	serverID := unique("ztcn-server")
	if err := r.start(serverID, ociAnnotations("server", "server"), "httpd", "-f", "-p", "8080", "-h", "/www"); err != nil {
		t.Fatalf("%v\nagent:\n%s", err, node.logs.String())
	}
	server, ok := node.pod("server")
	if !ok || len(server.IPs) != 1 || !node.cidr.Contains(server.IPs[0]) {
		t.Fatalf("server not registered with an address from %s: %+v", node.cidr, server)
	}
	if server.SPIFFEID != "spiffe://cluster.local/ns/shop/sa/server" || server.Redirection.State != control.RedirectionHealthy {
		t.Fatalf("server: %+v", server)
	}
	if server.UID != serverID || server.Labels["runtime"] != "runc" || server.Runtime != oci.Runtime {
		t.Fatalf("server record does not come from the container state: %+v", server)
	}
	if out, err := exec.Command(ztcnBin, "status", "--socket", node.socket).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "RUNTIME") || !strings.Contains(string(out), "oci-hook") {
		t.Fatalf("ztcn status does not show the registering runtime: %v\n%s", err, out)
	}
	// Debian's static busybox wget crashes (SIGSEGV) before it connects,
	// so the client speaks HTTP through nc.
	get := []string{"sh", "-c", fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 %s 8080`, server.IPs[0])}

	stop := capture(t, hostNS(t), podnet.HostVethName(serverID))
	out, err := r.run(unique("ztcn-client"), ociAnnotations("client", "client"), get...)
	wire := stop()
	if err != nil || !strings.Contains(out, ociMarker) {
		t.Fatalf("allowed client: %v\n%s\nagent:\n%s", err, out, node.logs.String())
	}
	if bytes.Contains(wire, []byte(ociMarker)) {
		t.Fatal("the page crossed the bridge in clear")
	}
	if !bytes.Contains(wire, []byte{0x17, 0x03, 0x03}) {
		t.Fatalf("no TLS application data on the server's veth (%d bytes captured)", len(wire))
	}

	before := mustStatus(t, node).Events["denied"]
	out, _ = r.run(unique("ztcn-intruder"), ociAnnotations("intruder", "intruder"), get...)
	if strings.Contains(out, ociMarker) {
		t.Fatalf("a container policy does not allow got the page:\n%s", out)
	}
	node.waitFor("the intruder's denial to be counted", func(st control.Status) bool { return st.Events["denied"] > before })

	// The foreground containers are gone: their poststop hooks removed
	// them from the agent already.
	if _, ok := node.pod("client"); ok {
		t.Fatal("the client is still registered after its container stopped")
	}

	r.remove(serverID)
	if _, ok := node.pod("server"); ok {
		t.Fatal("the server is still registered after runc delete")
	}
	if hostLinkExists(podnet.HostVethName(serverID)) {
		t.Fatal("the server's veth is left on the node")
	}
	grants, _ := filepath.Glob(filepath.Join(node.dir, "state", "ipam", node.bridge, "10.*"))
	if len(grants) != 0 {
		t.Fatalf("address grants left behind: %v", grants)
	}
	requireRevocationAudited(t, filepath.Join(node.dir, "audit.log"), server.SPIFFEID)
}

// TestFaultOCIHookFailsClosed: when the agent is down, or the container's
// annotations are wrong, the hook fails and runc does not start the
// container: its process never runs, and nothing the hook made is left.
func TestFaultOCIHookFailsClosed(t *testing.T) {
	node := newOCINode(t)
	r := newRuncHarness(t, node)

	bad := ociAnnotations("badlabels", "x")
	bad[oci.AnnotationLabels] = "app"
	id := unique("ztcn-bad")
	out, err := r.run(id, bad, "sh", "-c", "echo ran > /ran")
	_, ranErr := os.Stat(filepath.Join(r.dir, id, "rootfs", "ran"))
	named := strings.Contains(out, `annotation ztcn.io/labels=\"app\": item \"app\": want key=value`)
	secRow(t, "OCI hook: container with a malformed identity annotation (runc)", "container refused, error names the annotation",
		fmt.Sprintf("runc failed: %v, process ran: %v, annotation named: %v", err != nil, ranErr == nil, named),
		err != nil && ranErr != nil && named)

	node.kill(9)
	id = unique("ztcn-noagent")
	out, err = r.run(id, ociAnnotations("noagent", "client"), "sh", "-c", "echo ran > /ran")
	_, ranErr = os.Stat(filepath.Join(r.dir, id, "rootfs", "ran"))
	secRow(t, "OCI hook: container started while the agent is down (runc)", "container refused (fail closed)",
		fmt.Sprintf("runc failed: %v, process ran: %v, error names the agent: %v", err != nil, ranErr == nil, strings.Contains(out, "the ztcn agent")),
		err != nil && ranErr != nil && strings.Contains(out, "the ztcn agent"))
	if hostLinkExists(podnet.HostVethName(id)) {
		t.Fatal("the failed hook left its veth")
	}
	if list, _ := r.runc("list", "-q"); strings.Contains(string(list), id) {
		t.Fatalf("runc kept the refused container: %s", list)
	}
}

func mustStatus(t *testing.T, n *ociNode) control.Status {
	t.Helper()
	st, err := n.status()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// podmanHarness runs podman with storage and state of the test's own, and
// ztcn's hook from deploy/oci/ztcn-hook.json (its binary path and
// runtime.toml pointed at the test's).
type podmanHarness struct {
	t    *testing.T
	dir  string
	base []string
}

// podmanFlags are what podman needs on this machine kind: crun refuses
// hybrid cgroup hierarchies, and root lacks CAP_SYS_RESOURCE so podman's
// default rlimits (nofile 1M, nproc 4M) cannot be set.
var podmanFlags = []string{"--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "vfs"}

func newPodmanHarness(t *testing.T, node *ociNode) *podmanHarness {
	t.Helper()
	requireRoot(t, "podman", "runc")
	dir := t.TempDir()
	p := &podmanHarness{t: t, dir: dir}
	p.base = append([]string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"), "--tmpdir", filepath.Join(dir, "tmp")}, podmanFlags...)

	shipped, err := os.ReadFile("../../deploy/oci/ztcn-hook.json")
	if err != nil {
		t.Fatal(err)
	}
	hook := strings.NewReplacer(`"/usr/local/bin/ztcn"`, fmt.Sprintf("%q", ztcnBin), `"/etc/ztcn/runtime.toml"`, fmt.Sprintf("%q", node.config)).Replace(string(shipped))
	if hook == string(shipped) {
		t.Fatal("deploy/oci/ztcn-hook.json no longer names /usr/local/bin/ztcn and /etc/ztcn/runtime.toml")
	}
	if err := os.MkdirAll(filepath.Join(dir, "hooks.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hooks.d", "ztcn-hook.json"), []byte(hook), 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs(t, dir)
	t.Cleanup(func() {
		_, _ = p.podman("rm", "--all", "--force", "--time", "0")
		// vfs layers and podman's mounts live under dir; unmount before
		// TempDir removes it.
		_ = exec.Command("umount", "-R", filepath.Join(dir, "runroot")).Run()
	})
	return p
}

func (p *podmanHarness) podman(args ...string) (string, error) {
	cmd := exec.Command("podman", append(append([]string{}, p.base...), args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// run is `podman run` of busybox with the annotations, no network of
// podman's own (the hook gives it one) and this machine's rlimits.
func (p *podmanHarness) run(flags []string, annotations map[string]string, args ...string) (string, error) {
	a := []string{"run", "--network", "none", "--hooks-dir", filepath.Join(p.dir, "hooks.d"),
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"}
	a = append(a, flags...)
	for k, v := range annotations {
		a = append(a, "--annotation", k+"="+v)
	}
	a = append(a, "--rootfs", filepath.Join(p.dir, "rootfs"))
	return p.podman(append(a, args...)...)
}

// TestOCIHookPodman: podman reads ztcn's hooks.d file; a server and two
// clients started with `podman run --network none` are secured before
// they start, policy decides who reaches the server over mTLS, and
// `podman rm` revokes and detaches.
func TestOCIHookPodman(t *testing.T) {
	node := newOCINode(t)
	p := newPodmanHarness(t, node)

	out, err := p.run([]string{"-d", "--name", "server"}, ociAnnotations("server", "server"), "/bin/httpd", "-f", "-p", "8080", "-h", "/www")
	if err != nil {
		t.Fatalf("podman run server: %v\n%s\nagent:\n%s", err, out, node.logs.String())
	}
	serverID := strings.TrimSpace(out)
	server, ok := node.pod("server")
	if !ok || server.UID != serverID || len(server.IPs) != 1 || server.SPIFFEID != "spiffe://cluster.local/ns/shop/sa/server" {
		t.Fatalf("server not registered from podman's container state: %+v (id %s)", server, serverID)
	}
	get := []string{"/bin/sh", "-c", fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 %s 8080`, server.IPs[0])}

	stop := capture(t, hostNS(t), podnet.HostVethName(serverID))
	out, err = p.run([]string{"--rm"}, ociAnnotations("client", "client"), get...)
	wire := stop()
	if err != nil || !strings.Contains(out, ociMarker) {
		t.Fatalf("allowed client: %v\n%s\nagent:\n%s", err, out, node.logs.String())
	}
	if bytes.Contains(wire, []byte(ociMarker)) || !bytes.Contains(wire, []byte{0x17, 0x03, 0x03}) {
		t.Fatal("the page was not carried in TLS on the server's veth")
	}
	before := mustStatus(t, node).Events["denied"]
	out, _ = p.run([]string{"--rm"}, ociAnnotations("intruder", "intruder"), get...)
	if strings.Contains(out, ociMarker) {
		t.Fatalf("a container policy does not allow got the page:\n%s", out)
	}
	node.waitFor("the intruder's denial to be counted", func(st control.Status) bool { return st.Events["denied"] > before })

	if out, err := p.podman("rm", "--force", "--time", "0", "server"); err != nil {
		t.Fatalf("podman rm: %v\n%s", err, out)
	}
	if _, ok := node.pod("server"); ok {
		t.Fatal("the server is still registered after podman rm")
	}
	if hostLinkExists(podnet.HostVethName(serverID)) {
		t.Fatal("the server's veth is left on the node")
	}
	if st := mustStatus(t, node); len(st.Pods) != 0 {
		t.Fatalf("pods left registered: %+v", st.Pods)
	}
}

// withNetwork makes the container join the network namespace at path, or
// the host's (runc's own) if path is empty.
func withNetwork(path string) func(*specs.Spec) {
	return func(spec *specs.Spec) {
		var kept []specs.LinuxNamespace
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type != specs.NetworkNamespace {
				kept = append(kept, ns)
			}
		}
		if path != "" {
			kept = append(kept, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
		}
		spec.Linux.Namespaces = kept
	}
}

// TestOCIHookSkipsSharedNamespaces: a container on the host network, or
// joining the namespace of a registered container (a podman pod's other
// members), starts and is left alone: no second registration, no veth,
// and its stop leaves the registered one in place.
func TestOCIHookSkipsSharedNamespaces(t *testing.T) {
	node := newOCINode(t)
	r := newRuncHarness(t, node)
	serverID := unique("ztcn-server")
	if err := r.start(serverID, ociAnnotations("server", "server"), "httpd", "-f", "-p", "8080", "-h", "/www"); err != nil {
		t.Fatalf("%v\nagent:\n%s", err, node.logs.String())
	}
	state, err := r.runc("state", serverID)
	if err != nil {
		t.Fatalf("runc state: %v %s", err, state)
	}
	var st specs.State
	if err := json.Unmarshal(state, &st); err != nil || st.Pid <= 0 {
		t.Fatalf("runc state: %v %s", err, state)
	}

	for _, c := range []struct{ name, nsPath string }{
		{"sidecar", fmt.Sprintf("/proc/%d/ns/net", st.Pid)},
		{"hostnet", ""},
	} {
		id := unique("ztcn-" + c.name)
		bundle := r.bundleWith(id, ociAnnotations(c.name, "client"), withNetwork(c.nsPath), "echo", "ran")
		r.t.Cleanup(func() { r.remove(id) })
		out, err := r.runc("run", "--bundle", bundle, id)
		if err != nil || !strings.Contains(string(out), "ran") {
			t.Fatalf("%s: a container the hook must leave alone did not run: %v\n%s", c.name, err, out)
		}
		if _, ok := node.pod(c.name); ok {
			t.Fatalf("%s was registered", c.name)
		}
		if hostLinkExists(podnet.HostVethName(id)) {
			t.Fatalf("%s got a veth", c.name)
		}
		r.remove(id) // its poststop must not touch the server
		if _, ok := node.pod("server"); !ok {
			t.Fatalf("stopping %s deregistered the server", c.name)
		}
	}
}
