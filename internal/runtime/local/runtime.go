package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ztcn/ztcn/internal/config"
	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/policy"
	"github.com/ztcn/ztcn/internal/runtime/podspec"
	"github.com/ztcn/ztcn/internal/workload"
)

// Files a run directory holds.
const (
	PodsFile    = "pods.yaml"
	PolicyFile  = "policy.yaml"
	RuntimeFile = "runtime.toml"
)

// Options configure a run.
type Options struct {
	// Run names the run: its namespaces are <run>-*, its state is in
	// StateRoot/<run>. Default DefaultRun.
	Run string
	// Dir holds pods.yaml, policy.yaml and optionally runtime.toml.
	Dir string
	// Nodes is how many nodes to spread unplaced pods over (default 1).
	Nodes int
	// Self is the ztcn binary: agents and pod commands are started from it.
	Self string
	Log  *slog.Logger
	// Progress, if set, is told of each step for a human watching.
	Progress func(format string, args ...any)
}

// Runtime is a run in progress, owned by its supervisor process.
type Runtime struct {
	opts   Options
	plan   *Plan
	cfg    *config.Config
	nw     *network
	hosts  string
	mu     sync.Mutex
	state  *State
	agents []*exec.Cmd
	procs  sync.WaitGroup
}

// Up validates everything, then creates the run: the underlay, the nodes
// with their agents (each with a node CA of one shared root), the pods'
// namespaces, registers every pod with its node's agent (identity issued,
// redirection attached), tells every agent about the other nodes' pods,
// and only then starts the pods' commands. On any error it removes what it
// created.
func Up(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.Run == "" {
		opts.Run = DefaultRun
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Progress == nil {
		opts.Progress = func(string, ...any) {}
	}
	start := time.Now()
	r := &Runtime{opts: opts}
	if err := r.load(); err != nil {
		return nil, err
	}
	if err := prepareRun(opts.Run); err != nil {
		return nil, err
	}
	r.state = &State{Run: opts.Run, Dir: r.opts.Dir, PolicyPath: filepath.Join(r.opts.Dir, PolicyFile),
		Supervisor: os.Getpid(), StartedAt: start}
	if err := r.state.save(); err != nil {
		return nil, err
	}
	r.nw = newNetwork(opts.Run, r.plan, func(ns string) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.state.Namespaces = append(r.state.Namespaces, ns)
		return r.state.save()
	})
	if err := r.create(ctx); err != nil {
		r.fail(err)
		return nil, errors.Join(err, r.Teardown())
	}
	r.mu.Lock()
	r.state.Ready, r.state.ReadyAfter = true, time.Since(start)
	err := r.state.save()
	r.mu.Unlock()
	if err != nil {
		return nil, errors.Join(err, r.Teardown())
	}
	return r, nil
}

// load reads and checks the run directory: nothing is created before the
// input is known to be good.
func (r *Runtime) load() error {
	dir, err := filepath.Abs(r.opts.Dir)
	if err != nil {
		return err
	}
	r.opts.Dir = dir
	spec, err := podspec.Load(filepath.Join(dir, PodsFile))
	if err != nil {
		return err
	}
	policyPath := filepath.Join(dir, PolicyFile)
	if _, err := os.Stat(policyPath); err != nil {
		return fmt.Errorf("%s: %w (the run's policy; without one every flow is denied, write `policies: []` to mean that)", policyPath, err)
	}
	if diags := policy.LintPaths(policyPath); diags.HasErrors() {
		var lines []string
		for _, d := range diags {
			if d.Severity == policy.SeverityError {
				lines = append(lines, d.String())
			}
		}
		return errors.New(strings.Join(lines, "\n"))
	}
	r.cfg = config.Default()
	if tomlPath := filepath.Join(dir, RuntimeFile); fileExists(tomlPath) {
		if r.cfg, err = config.Load(tomlPath); err != nil {
			return err
		}
	}
	r.plan, err = NewPlan(spec, r.opts.Nodes)
	return err
}

func (r *Runtime) create(ctx context.Context) error {
	r.opts.Progress("network: underlay and %d node(s)", len(r.plan.Nodes))
	if err := r.nw.buildRouter(); err != nil {
		return err
	}
	roots, err := r.newRoots()
	if err != nil {
		return err
	}
	for _, np := range r.plan.Nodes {
		if err := r.nw.addNode(np); err != nil {
			return err
		}
		if err := r.startAgent(ctx, np, roots); err != nil {
			return err
		}
	}
	if err := r.writeHosts(); err != nil {
		return err
	}
	for _, pp := range r.plan.Pods {
		if err := r.attachPod(ctx, pp); err != nil {
			return err
		}
	}
	if err := r.publishDirectories(ctx); err != nil {
		return err
	}
	for i, xp := range r.plan.Externals {
		if err := r.startExternal(i, xp); err != nil {
			return err
		}
	}
	for i := range r.plan.Pods {
		if err := r.startPod(i); err != nil {
			return err
		}
	}
	r.waitListening(ctx)
	return nil
}

// newRoots makes the run's root CAs, in memory only: one for the trust
// domain, and one per namespace with trust_domain_per_namespace. Each node
// gets an intermediate of them; the root keys never touch the disk.
func (r *Runtime) newRoots() (map[string]*identity.CA, error) {
	kt, err := identity.ParseKeyType(string(r.cfg.Identity.KeyType))
	if err != nil {
		return nil, err
	}
	domains := []string{r.cfg.Identity.TrustDomain}
	if r.cfg.Identity.TrustDomainPerNamespace {
		seen := map[string]bool{}
		for _, p := range r.plan.Pods {
			if !seen[p.Spec.Namespace] {
				seen[p.Spec.Namespace] = true
				domains = append(domains, p.Spec.Namespace+"."+r.cfg.Identity.TrustDomain)
			}
		}
	}
	roots := map[string]*identity.CA{}
	for _, d := range domains {
		td, err := identity.ParseTrustDomain(d)
		if err != nil {
			return nil, err
		}
		if roots[d], err = identity.NewRootCA(td, identity.DefaultRootTTL, identity.WithKeyType(kt)); err != nil {
			return nil, err
		}
	}
	return roots, nil
}

func (r *Runtime) nodeDir(node string) string {
	return filepath.Join(RunDir(r.opts.Run), "nodes", node)
}

// startAgent writes the node's CA and runtime.toml and starts its agent,
// returning once the agent is ready.
func (r *Runtime) startAgent(ctx context.Context, np NodePlan, roots map[string]*identity.CA) error {
	dir := r.nodeDir(np.Name)
	caDir := filepath.Join(dir, "ca")
	for d, root := range roots {
		nodeCA, err := root.NewNodeCA(np.Name, identity.DefaultNodeTTL)
		if err != nil {
			return err
		}
		out := caDir
		if d != r.cfg.Identity.TrustDomain {
			out = filepath.Join(caDir, d) // tenants' CAs: a subdirectory per domain
		}
		if err := identity.WriteNodeCA(out, nodeCA, true); err != nil {
			return err
		}
	}
	cfg := *r.cfg
	cfg.Agent.NodeName = np.Name
	cfg.Agent.ControlSocket = filepath.Join(dir, "control.sock")
	cfg.Agent.StateDir = filepath.Join(dir, "state")
	cfg.Identity.CAPath = caDir
	cfg.Identity.WorkloadAPISocket = filepath.Join(dir, "workload.sock")
	cfg.Policy.ConfigPath = filepath.Join(r.opts.Dir, PolicyFile)
	cfg.Telemetry.AuditLog = filepath.Join(dir, "audit.log")
	if cfg.Telemetry.AdminAddress == config.Default().Telemetry.AdminAddress {
		// Several agents share the host's namespace: each takes a free
		// port, and `ztcn status` says which.
		cfg.Telemetry.AdminAddress = "127.0.0.1:0"
	}
	toml, err := cfg.TOML()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "runtime.toml")
	if err := os.WriteFile(cfgPath, toml, 0o600); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "agent.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(r.opts.Self, "agent", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: a Ctrl-C at the supervisor's terminal is the
	// supervisor's to handle, in order (pods first, agents last).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	r.agents = append(r.agents, cmd)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	ns := NodeState{Name: np.Name, Netns: r.nw.nodeName(np.Name), Subnet: np.Subnet(), AgentPID: cmd.Process.Pid,
		ControlSocket: cfg.Agent.ControlSocket, AgentLog: logPath}
	r.mu.Lock()
	r.state.Nodes = append(r.state.Nodes, ns)
	err = r.state.save()
	r.mu.Unlock()
	if err != nil {
		return err
	}
	r.opts.Progress("agent of %s: pid %d, log %s", np.Name, cmd.Process.Pid, logPath)
	st, err := waitAgentReady(ctx, cfg.Agent.ControlSocket, exited)
	if err != nil {
		return fmt.Errorf("agent of %s: %w\n%s", np.Name, err, tail(logPath, 20))
	}
	r.mu.Lock()
	r.state.Nodes[len(r.state.Nodes)-1].AdminAddress = st.AdminAddress
	err = r.state.save()
	r.mu.Unlock()
	return err
}

func waitAgentReady(ctx context.Context, socket string, exited <-chan struct{}) (control.Status, error) {
	c := control.NewClient(socket)
	deadline := time.Now().Add(30 * time.Second)
	for {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.Status(qctx)
		cancel()
		if err == nil && st.Ready {
			return st, nil
		}
		select {
		case <-exited:
			return control.Status{}, errors.New("exited at start")
		case <-ctx.Done():
			return control.Status{}, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return control.Status{}, fmt.Errorf("not ready after 30s: %v", err)
		}
	}
}

// writeHosts writes the hosts file every pod sees as /etc/hosts: each pod
// by name and by name.namespace (and the Kubernetes-style
// name.namespace.svc.cluster.local), each external workload by name.
func (r *Runtime) writeHosts() error {
	var b strings.Builder
	b.WriteString("# ztcn up: the run's workloads by name\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, p := range r.plan.Pods {
		fmt.Fprintf(&b, "%s\t%s %s.%s %s.%s.svc.cluster.local\n", p.Addr.Addr(), p.Spec.Name, p.Spec.Name, p.Spec.Namespace, p.Spec.Name, p.Spec.Namespace)
	}
	for _, x := range r.plan.Externals {
		fmt.Fprintf(&b, "%s\t%s\n", x.Spec.Address, x.Spec.Name)
	}
	r.hosts = filepath.Join(RunDir(r.opts.Run), "hosts")
	return os.WriteFile(r.hosts, []byte(b.String()), 0o644)
}

func (r *Runtime) agentOf(node string) *control.Client {
	for _, n := range r.state.Nodes {
		if n.Name == node {
			return control.NewClient(n.ControlSocket)
		}
	}
	return nil
}

// attachPod creates the pod's namespace and registers it: when this
// returns, the pod has its SVID and its traffic can only go through the
// agent.
func (r *Runtime) attachPod(ctx context.Context, pp PodPlan) error {
	p, err := r.nw.addPod(pp)
	if err != nil {
		return err
	}
	spec := pp.Spec
	ports := map[string]uint16{}
	for _, port := range spec.Ports {
		if port.Name != "" {
			ports[port.Name] = port.Port
		}
	}
	uid := r.opts.Run + "-" + spec.Name
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	st, err := r.agentOf(pp.Node).RunPod(rctx, workload.Pod{
		UID: uid, Name: spec.Name, Namespace: spec.Namespace, ServiceAccount: spec.ServiceAccount,
		Labels: spec.Labels, NetnsPath: p.NS.Path(), IPs: []netip.Addr{pp.Addr.Addr()}, Ports: ports, Runtime: "ztcn-up",
	})
	cancel()
	if err != nil {
		return fmt.Errorf("pod %s: register with the agent of %s: %w", spec.Name, pp.Node, err)
	}
	took := time.Since(start)
	r.opts.Progress("pod %s on %s: %s, %s (attached in %s)", spec.Name, pp.Node, pp.Addr.Addr(), st.SPIFFEID, took.Round(time.Microsecond))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state.Pods = append(r.state.Pods, PodState{Name: spec.Name, Namespace: spec.Namespace, UID: uid, Node: pp.Node,
		Netns: p.NS.Path(), IP: pp.Addr.Addr(), AttachTime: took, Log: r.logPath(spec.Name)})
	return r.state.save()
}

// publishDirectories tells each agent about the pods of the other nodes,
// so that it can decide flows to them and carry them over HBONE.
func (r *Runtime) publishDirectories(ctx context.Context) error {
	if len(r.plan.Nodes) < 2 {
		return nil
	}
	for _, n := range r.plan.Nodes {
		var d control.Directory
		for _, p := range r.state.Pods {
			if p.Node == n.Name {
				continue
			}
			spec := r.specOf(p.Name)
			ports := map[string]uint16{}
			for _, port := range spec.Ports {
				if port.Name != "" {
					ports[port.Name] = port.Port
				}
			}
			d.Pods = append(d.Pods, control.RemotePod{Node: p.Node, Pod: workload.Pod{UID: p.UID, Name: p.Name, Namespace: spec.Namespace,
				ServiceAccount: spec.ServiceAccount, Labels: spec.Labels, IPs: []netip.Addr{p.IP}, Ports: ports}})
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := r.agentOf(n.Name).SetDirectory(dctx, d)
		cancel()
		if err != nil {
			return fmt.Errorf("directory of %s: %w", n.Name, err)
		}
	}
	return nil
}

func (r *Runtime) specOf(name string) podspec.Pod {
	for _, p := range r.plan.Pods {
		if p.Spec.Name == name {
			return p.Spec
		}
	}
	return podspec.Pod{}
}

func (r *Runtime) logPath(name string) string {
	return filepath.Join(RunDir(r.opts.Run), "logs", name+".log")
}

// startPod runs the pod's command inside its namespace.
func (r *Runtime) startPod(i int) error {
	pp := r.plan.Pods[i]
	env := map[string]string{"POD_NAME": pp.Spec.Name, "POD_NAMESPACE": pp.Spec.Namespace, "POD_IP": pp.Addr.Addr().String(), "NODE_NAME": pp.Node}
	pid, err := r.run(pp.Spec.Name, podNetnsPath(r.nw.podName(pp.Spec.Name)), pp.Spec.Command, pp.Spec.Env, env, false)
	if err != nil {
		return err
	}
	r.opts.Progress("pod %s: started %q (pid %d)", pp.Spec.Name, strings.Join(pp.Spec.Command, " "), pid)
	return nil
}

// startExternal creates an external workload and runs its command.
func (r *Runtime) startExternal(i int, xp ExternalPlan) error {
	ns, err := r.nw.addExternal(i, xp)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.state.Externals = append(r.state.Externals, PodState{Name: xp.Spec.Name, Netns: ns.Path(), IP: xp.Spec.Address, Log: r.logPath(xp.Spec.Name)})
	err = r.state.save()
	r.mu.Unlock()
	if err != nil {
		return err
	}
	env := map[string]string{"POD_NAME": xp.Spec.Name, "POD_IP": xp.Spec.Address.String()}
	pid, err := r.run(xp.Spec.Name, ns.Path(), xp.Spec.Command, xp.Spec.Env, env, true)
	if err != nil {
		return err
	}
	r.opts.Progress("external %s: %s, started %q (pid %d)", xp.Spec.Name, xp.Spec.Address, strings.Join(xp.Spec.Command, " "), pid)
	return nil
}

// run starts argv in the namespace at nsPath, its output appended to the
// workload's log, and records its pid and, later, its exit.
func (r *Runtime) run(name, nsPath string, argv []string, userEnv, podEnv map[string]string, external bool) (int, error) {
	logPath := r.logPath(name)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return 0, err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logFile.Close()
	cmd := PodCommand(r.opts.Self, nsPath, r.hosts, argv)
	cmd.Dir = r.opts.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr.Setpgid = true
	cmd.Env = podEnviron(r.opts.Self, podEnv, userEnv)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%s: start %q: %w", name, argv[0], err)
	}
	pid := cmd.Process.Pid
	r.setProcess(name, external, func(p *PodState) { p.PID = pid })
	r.procs.Add(1)
	go func() {
		defer r.procs.Done()
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		r.opts.Log.Info("workload command exited", "pod", name, "exit_code", code)
		r.setProcess(name, external, func(p *PodState) { p.Exited, p.ExitCode = true, code })
	}()
	return pid, nil
}

func (r *Runtime) setProcess(name string, external bool, f func(*PodState)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.state.Pods
	if external {
		list = r.state.Externals
	}
	for i := range list {
		if list[i].Name == name {
			f(&list[i])
		}
	}
	if err := r.state.save(); err != nil {
		r.opts.Log.Error("state not saved", "error", err)
	}
}

// podEnviron is the environment of a workload's command: the host's, the
// ztcn binary's directory first on PATH (so pods can run `ztcn demo …`
// even from `go run`), the pod's identity variables and its own env.
func podEnviron(self string, podEnv, userEnv map[string]string) []string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	env["PATH"] = filepath.Dir(self) + string(os.PathListSeparator) + env["PATH"]
	for k, v := range podEnv {
		env[k] = v
	}
	for k, v := range userEnv {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// State is a copy of the run's state.
func (r *Runtime) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := *r.state
	s.Nodes = append([]NodeState(nil), s.Nodes...)
	s.Pods = append([]PodState(nil), s.Pods...)
	s.Externals = append([]PodState(nil), s.Externals...)
	return s
}

func (r *Runtime) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state.Error = err.Error()
	_ = r.state.save()
}

// Teardown removes the run: the pods' commands are stopped and their
// identities revoked, then the agents stop, then every namespace goes.
// It is safe to call more than once.
func (r *Runtime) Teardown() error {
	st := r.State()
	var errs []error
	for _, p := range append(st.Pods, st.Externals...) {
		errs = append(errs, stopProcess(p.PID, 2*time.Second))
	}
	for _, p := range st.Pods {
		if c := r.agentOf(p.Node); c != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = c.StopPod(ctx, p.UID) // revocation; the agent may already be gone
			cancel()
		}
	}
	for _, a := range r.agents {
		errs = append(errs, stopProcess(a.Process.Pid, 5*time.Second))
	}
	r.procs.Wait()
	if r.nw != nil {
		r.nw.close()
	}
	errs = append(errs, removeNamespaces(st.Namespaces))
	errs = append(errs, os.RemoveAll(RunDir(r.opts.Run)))
	return errors.Join(errs...)
}

// Wait supervises the run until ctx is done (Ctrl-C, `ztcn down`), then
// tears it down.
func (r *Runtime) Wait(ctx context.Context) error {
	<-ctx.Done()
	return r.Teardown()
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
