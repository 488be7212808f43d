package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/runtime/podnet"
)

// nriRuntime is the runtime side of NRI as containerd and CRI-O embed it
// (containerd/nri's adaptation package), serving an NRI socket the real
// `ztcn nri` plugin process connects to. Its pods are network namespaces
// the test creates, with no network: the plugin gives them one.
type nriRuntime struct {
	t      *testing.T
	node   *ociNode
	socket string
	nri    *adaptation.Adaptation
	// pods are the sandboxes "running", what Synchronize reports. The
	// runtime's goroutines read them when a plugin connects.
	podsMu sync.Mutex
	pods   map[string]*adaptation.PodSandbox
	plugin *exec.Cmd
	logs   *lockedBuffer
	exited chan struct{}
}

func newNRIRuntime(t *testing.T, node *ociNode) *nriRuntime {
	t.Helper()
	dir := t.TempDir()
	r := &nriRuntime{t: t, node: node, socket: filepath.Join(dir, "nri.sock"), pods: map[string]*adaptation.PodSandbox{}}
	sync := func(ctx context.Context, cb adaptation.SyncCB) error {
		r.podsMu.Lock()
		pods := slices.Collect(maps.Values(r.pods))
		r.podsMu.Unlock()
		_, err := cb(ctx, pods, nil)
		return err
	}
	update := func(context.Context, []*adaptation.ContainerUpdate) ([]*adaptation.ContainerUpdate, error) {
		return nil, nil
	}
	a, err := adaptation.New("e2e-runtime", "v0", sync, update,
		adaptation.WithSocketPath(r.socket), adaptation.WithPluginPath(filepath.Join(dir, "plugins")),
		adaptation.WithPluginConfigPath(filepath.Join(dir, "conf.d")))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	r.nri = a
	t.Cleanup(a.Stop)
	return r
}

// startPlugin runs `ztcn nri` against the runtime's socket and waits until
// it has registered (and been synchronized).
func (r *nriRuntime) startPlugin() {
	r.t.Helper()
	r.logs = &lockedBuffer{}
	cmd := exec.Command(ztcnBin, "nri", "--config", r.node.config, "--socket", r.socket)
	cmd.Stdout, cmd.Stderr = r.logs, r.logs
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.plugin, r.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(r.exited) }()
	r.t.Cleanup(r.stopPlugin)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(r.logs.String(), "connected to the container runtime") {
		if time.Now().After(deadline) {
			r.t.Fatalf("plugin did not connect:\n%s", r.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Synchronize follows Configure; give it its round trip.
	time.Sleep(300 * time.Millisecond)
}

func (r *nriRuntime) stopPlugin() {
	if r.plugin == nil {
		return
	}
	_ = r.plugin.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.t.Error("ztcn nri did not stop on SIGTERM")
		_ = r.plugin.Process.Kill()
		<-r.exited
	}
	r.plugin = nil
}

// newSandbox makes a network namespace with no network, as a runtime does
// before a CNI plugin (here: none) runs, and describes it as NRI does.
func (r *nriRuntime) newSandbox(name, app string) *adaptation.PodSandbox {
	r.t.Helper()
	nsName := unique("ztn-" + name)
	ns, err := netns.Create(nsName)
	if err != nil {
		r.t.Fatal(err)
	}
	ns.Close()
	r.t.Cleanup(func() { _ = netns.Delete(nsName) })
	uid := unique("uid-" + name)
	return &adaptation.PodSandbox{
		Id: unique("sandbox"), Name: name, Uid: uid, Namespace: "shop",
		Labels:      map[string]string{"app": app, "io.kubernetes.pod.name": name},
		Annotations: map[string]string{"ztcn.io/service-account": name},
		Linux: &adaptation.LinuxPodSandbox{Namespaces: []*adaptation.LinuxNamespace{
			{Type: "network", Path: filepath.Join(netns.RunDir, nsName)},
		}},
	}
}

func (r *nriRuntime) run(sb *adaptation.PodSandbox) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.nri.RunPodSandbox(ctx, &adaptation.StateChangeEvent{Pod: sb})
	if err == nil {
		r.setRunning(sb, true)
	}
	return err
}

// setRunning adds sb to the sandboxes Synchronize reports, or removes it.
func (r *nriRuntime) setRunning(sb *adaptation.PodSandbox, running bool) {
	r.podsMu.Lock()
	defer r.podsMu.Unlock()
	if running {
		r.pods[sb.Uid] = sb
	} else {
		delete(r.pods, sb.Uid)
	}
}

func (r *nriRuntime) stop(sb *adaptation.PodSandbox) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.nri.StopPodSandbox(ctx, &adaptation.StateChangeEvent{Pod: sb}); err != nil {
		r.t.Fatal(err)
	}
	if err := r.nri.RemovePodSandbox(ctx, &adaptation.StateChangeEvent{Pod: sb}); err != nil {
		r.t.Fatal(err)
	}
	r.setRunning(sb, false)
}

func (r *nriRuntime) createContainer(sb *adaptation.PodSandbox) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := r.nri.CreateContainer(ctx, &adaptation.CreateContainerRequest{
		Pod:       sb,
		Container: &adaptation.Container{Id: unique("ctr"), PodSandboxId: sb.Id, Name: "app"},
	})
	return err
}

func (n *ociNode) podByUID(uid string) (control.PodStatus, bool) {
	for _, p := range mustStatus(n.t, n).Pods {
		if p.UID == uid {
			return p, true
		}
	}
	return control.PodStatus{}, false
}

func openSandboxNS(t *testing.T, sb *adaptation.PodSandbox) *netns.NS {
	t.Helper()
	// By name: curl runs through `ip netns exec NAME`.
	ns, err := netns.Open(filepath.Base(sb.Linux.Namespaces[0].Path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// TestNRIPluginSecuresPodSandboxes: the real `ztcn nri` process against the
// NRI runtime library containerd embeds. A pod that existed before the
// plugin connected is registered at Synchronize; RunPodSandbox returns
// only once the pod is secured (the plugin gave it a network, the agent an
// SVID with the service account from its annotation and redirection);
// policy decides between pods over mTLS; Stop/RemovePodSandbox revoke; a
// pod removed while the plugin was away is deregistered when it comes
// back; and with the agent down RunPodSandbox fails, so the runtime does
// not start the pod.
func TestNRIPluginSecuresPodSandboxes(t *testing.T) {
	requireRoot(t, "curl")
	node := newOCINode(t)
	rt := newNRIRuntime(t, node)

	early := rt.newSandbox("server", "server")
	rt.setRunning(early, true) // running before the plugin connects
	rt.startPlugin()
	server, ok := node.podByUID(early.Uid)
	if !ok {
		t.Fatalf("a pod running before the plugin connected was not registered at Synchronize:\n%s", rt.logs.String())
	}
	if server.SPIFFEID != "spiffe://cluster.local/ns/shop/sa/server" || server.Runtime != "nri" || len(server.IPs) != 1 ||
		!node.cidr.Contains(server.IPs[0]) || server.Labels["app"] != "server" || server.Labels["io.kubernetes.pod.name"] != "" {
		t.Fatalf("server: %+v", server)
	}
	serveHTTPIn(t, openSandboxNS(t, early), "server", 8080)
	url := fmt.Sprintf("http://%s:8080/", server.IPs[0])

	client := rt.newSandbox("client", "client")
	if err := rt.run(client); err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, rt.logs.String())
	}
	// RunPodSandbox has returned: the pod must be secured already.
	st, ok := node.podByUID(client.Uid)
	if !ok || st.Redirection.State != control.RedirectionHealthy || st.SPIFFEID != "spiffe://cluster.local/ns/shop/sa/client" {
		t.Fatalf("client not secured when RunPodSandbox returned: %+v", st)
	}
	if body, err := curlIn(openSandboxNS(t, client), url); err != nil || !strings.Contains(body, "server") {
		t.Fatalf("allowed client: %v %q", err, body)
	}
	intruder := rt.newSandbox("intruder", "intruder")
	if err := rt.run(intruder); err != nil {
		t.Fatal(err)
	}
	if body, err := curlIn(openSandboxNS(t, intruder), url); err == nil {
		t.Fatalf("a pod policy does not allow got through: %q", body)
	}

	// A container of a secured pod is let through; a pod that escaped
	// registration (its RunPodSandbox never reached the plugin) is
	// secured at its first container, or the container is refused.
	if err := rt.createContainer(client); err != nil {
		t.Fatalf("CreateContainer in a secured pod: %v", err)
	}
	escaped := rt.newSandbox("escaped", "client")
	if err := rt.createContainer(escaped); err != nil {
		t.Fatalf("CreateContainer in a pod that escaped RunPodSandbox: %v", err)
	}
	if _, ok := node.podByUID(escaped.Uid); !ok {
		t.Fatal("a pod that escaped RunPodSandbox was not secured at its first container")
	}
	broken := rt.newSandbox("broken", "client")
	broken.Linux.Namespaces[0].Path = "/run/netns/does-not-exist"
	err := rt.createContainer(broken)
	secRow(t, "NRI: container created in a pod that cannot be secured", "CreateContainer fails (the runtime refuses the container)",
		fmt.Sprintf("CreateContainer error: %v", err), err != nil)

	rt.stop(client)
	if _, ok := node.podByUID(client.Uid); ok {
		t.Fatal("the client is still registered after Stop/RemovePodSandbox")
	}
	if hostLinkExists(podnet.HostVethName(client.Uid)) {
		t.Fatal("the client's veth is left on the node")
	}

	// The intruder goes while the plugin is down: Synchronize at the
	// reconnection deregisters it; the server, still running, stays.
	rt.stopPlugin()
	rt.setRunning(intruder, false)
	rt.startPlugin()
	if _, ok := node.podByUID(intruder.Uid); ok {
		t.Fatalf("a pod removed while the plugin was away is still registered:\n%s", rt.logs.String())
	}
	if _, ok := node.podByUID(early.Uid); !ok {
		t.Fatal("Synchronize removed a running pod")
	}

	// Fail closed: with the agent down the runtime must not start pods.
	node.kill(syscall.SIGKILL)
	late := rt.newSandbox("late", "client")
	err = rt.run(late)
	secRow(t, "NRI: pod sandbox started while the agent is down", "RunPodSandbox fails (the runtime refuses the pod)",
		fmt.Sprintf("RunPodSandbox error: %v", err), err != nil)

	if hostLinkExists(podnet.HostVethName(late.Uid)) {
		t.Fatal("a refused pod kept the veth the plugin gave it")
	}
	if _, err := os.Stat(filepath.Join(node.dir, "state", "ipam", node.bridge)); err == nil {
		grants, _ := filepath.Glob(filepath.Join(node.dir, "state", "ipam", node.bridge, "10.*"))
		for _, g := range grants {
			if b, _ := os.ReadFile(g); string(b) == late.Uid {
				t.Fatal("a refused pod kept its address grant")
			}
		}
	}
}
