// Package agent wires the node agent together: workload registry, identity,
// Workload API and the admin endpoint. It is, with cmd/ztcn, the only place
// that knows about every layer.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztcn/ztcn/internal/config"
	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/dataplane"
	"github.com/ztcn/ztcn/internal/dataplane/redirect"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/policy"
	"github.com/ztcn/ztcn/internal/telemetry"
	"github.com/ztcn/ztcn/internal/workload"
	"github.com/ztcn/ztcn/internal/workloadapi"
)

// Options configure an Agent.
type Options struct {
	Config *config.Config
	// Dev keeps everything in memory: a fresh root CA per trust domain is
	// generated at start and nothing is read from ca_path.
	Dev    bool
	Logger *slog.Logger
	// DataPlane attaches every registered pod's redirection and proxies
	// its traffic. Without it the agent only issues identities: the mode
	// for tests and for nodes where another layer carries the traffic.
	DataPlane bool
	// PolicySources add policy from outside policy.config_path (the
	// Kubernetes API's NetworkPolicies) to the same index.
	PolicySources []PolicySource
}

// PolicySource is a policy.Source with a name for `ztcn status`.
type PolicySource struct {
	Name string
	policy.Source
}

// Agent is the node agent.
type Agent struct {
	cfg           *config.Config
	policySources []PolicySource
	log           *slog.Logger
	registry      *workload.Registry
	bundles       *identity.Bundles
	revocations   *identity.Revocations
	identities    *identity.Manager
	federation    []identity.Federation
	// policy reloads the policy files live; nil in dev mode without a
	// policy file, where the empty (default-deny) policy in fixed applies.
	policy    *policy.Watcher
	fixed     *policy.Snapshot
	ready     atomic.Bool
	adminAddr atomic.Value // net.Addr, once listening
	startedAt time.Time

	// dp is the data plane; nil when Options.DataPlane is false.
	dp    *dataplane.DataPlane
	state *stateStore
	// podsMu serializes pod lifecycle changes and reconciliation: a pod is
	// never repaired while it is being attached or detached.
	podsMu   sync.Mutex
	attached map[string]*attachedPod
	// remote is the directory of workloads on other nodes.
	remote directoryRef
	events eventCounters
	recent recentEvents

	metrics  *telemetry.Metrics
	flows    *telemetry.FlowTable
	auditLog *telemetry.AuditLog
	// lastPolicyErr is the last failed policy reload, cleared by a good one.
	lastPolicyErr atomic.Pointer[string]
	// auditUnwritten counts events that found no open audit log.
	auditUnwritten atomic.Uint64
	// auditMu guards the audit log's opening: events that come before it
	// wait in auditPending.
	auditMu      sync.Mutex
	auditTried   bool
	auditPending []telemetry.AuditEvent
	auditOpenErr atomic.Pointer[string]
}

// New builds an agent and loads its CA. A CA that cannot be loaded is an
// error here, before anything listens: an agent without identity would
// only fail every workload later.
func New(opts Options) (*Agent, error) {
	cfg := opts.Config
	if cfg == nil {
		cfg = config.Default()
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.ResolveNodeName(); err != nil {
		return nil, err
	}
	td, err := identity.ParseTrustDomain(cfg.Identity.TrustDomain)
	if err != nil {
		return nil, err
	}
	keyType, err := identity.ParseKeyType(string(cfg.Identity.KeyType))
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:         cfg,
		log:         log,
		registry:    workload.NewRegistry(),
		bundles:     identity.NewBundles(),
		revocations: identity.NewRevocations(),
		state:       newStateStore(cfg.Agent.StateDir),
		attached:    map[string]*attachedPod{},
		metrics:     telemetry.NewMetrics(),
		flows:       telemetry.NewFlowTable(0),
	}
	for _, f := range cfg.Identity.Federation {
		ftd, err := identity.ParseTrustDomain(f.TrustDomain)
		if err != nil {
			return nil, err
		}
		a.federation = append(a.federation, identity.Federation{TrustDomain: ftd, BundlePath: f.BundlePath})
	}

	nodeName := cfg.Agent.NodeName
	var create func(spiffeid.TrustDomain) (*identity.CA, error)
	if opts.Dev {
		// One root per trust domain for the agent's lifetime; node CAs are
		// re-made from it as they age (Authorities.For).
		roots := make(map[spiffeid.TrustDomain]*identity.CA)
		create = func(td spiffeid.TrustDomain) (*identity.CA, error) {
			root, ok := roots[td]
			if !ok {
				var err error
				if root, err = identity.NewRootCA(td, identity.DefaultRootTTL, identity.WithKeyType(keyType)); err != nil {
					return nil, err
				}
				roots[td] = root
				log.Info("generated in-memory root CA (dev mode)", "trust_domain", td.Name(), "fingerprint", identity.Fingerprint(root.Certificate()))
			}
			return root.NewNodeCA(nodeName, identity.DefaultNodeTTL)
		}
	} else {
		create = func(ctd spiffeid.TrustDomain) (*identity.CA, error) {
			dir := cfg.Identity.CAPath
			if ctd != td {
				// Tenants' CAs live in subdirectories named after their domain.
				dir = filepath.Join(dir, ctd.Name())
			}
			return loadSigningCA(dir, nodeName, keyType)
		}
	}
	authorities := identity.NewAuthorities(a.bundles, create)
	// The node's own trust domain must have a CA now, not at the first pod.
	if _, err := authorities.For(td); err != nil {
		return nil, err
	}
	a.policySources = opts.PolicySources
	if err := a.loadPolicy(opts.Dev); err != nil {
		return nil, err
	}
	a.identities = identity.NewManager(identity.ManagerConfig{
		TrustDomain:             td,
		TrustDomainPerNamespace: cfg.Identity.TrustDomainPerNamespace,
		Authorities:             authorities,
		Revocations:             a.revocations,
		Rotation:                cfg.RotationFor,
	})
	if opts.DataPlane {
		var probes dataplane.Probes
		if cfg.Network.KubeletProbes {
			probes.Source = redirect.DefaultProbeSource
		}
		dp, err := dataplane.New(dataplane.Config{
			Probes:    probes,
			Mode:      dataplane.Mode(cfg.Policy.Mode),
			Policy:    a.Policy,
			Verifier:  a.Verifier(),
			OnEvent:   a.onEvent,
			Log:       log,
			Directory: a.lookup,
			OnHandshake: func(side dataplane.HandshakeSide, took time.Duration, err error) {
				a.metrics.Handshake(string(side), took, err)
			},
		})
		if err != nil {
			return nil, err
		}
		a.dp = dp
	}
	sources := telemetry.Sources{NearestExpiry: a.nearestExpiry, Pods: func() int {
		a.podsMu.Lock()
		defer a.podsMu.Unlock()
		return len(a.attached)
	}, Audit: a.auditCounts}
	if a.dp != nil {
		sources.Active = a.dp.Active
	}
	if err := a.metrics.Observe(sources); err != nil {
		return nil, err
	}
	return a, nil
}

// auditCounts are the audit log's counters for the metrics. Without a log
// (it could not be opened) every event counts as an error.
func (a *Agent) auditCounts() (written, dropped, failed uint64) {
	st := a.auditStats()
	return st.Written, st.Dropped, st.WriteErrors + a.auditUnwritten.Load()
}

func (a *Agent) auditStats() telemetry.AuditStats {
	a.auditMu.Lock()
	l := a.auditLog
	a.auditMu.Unlock()
	if l == nil {
		return telemetry.AuditStats{}
	}
	return l.Stats()
}

// loadPolicy starts watching policy.config_path. Only dev mode may run
// without the file, and then with the empty policy: default deny.
func (a *Agent) loadPolicy(dev bool) error {
	path := a.cfg.Policy.ConfigPath
	mode := policy.IsolationMode(a.cfg.Policy.Isolation)
	if _, err := os.Stat(path); err != nil && dev && len(a.policySources) == 0 {
		ix, err := policy.Compile(&policy.Set{}, mode)
		if err != nil {
			return err
		}
		a.fixed = &policy.Snapshot{Index: ix, Version: 1, LoadedAt: time.Now()}
		a.log.Warn("no policy file; every flow is denied (dev mode)", "path", path)
		return nil
	}
	var sources []policy.WatcherOption
	for _, src := range a.policySources {
		sources = append(sources, policy.WithSource(src.Source))
	}
	w, err := policy.NewWatcher([]string{path}, mode, append(sources,
		policy.WithLinter(policy.Lint),
		policy.WithOnReload(func(r policy.ReloadResult) {
			if r.Changed || !r.OK {
				a.metrics.PolicyReload(r.OK)
				var snap *policy.Snapshot
				if a.policy != nil {
					snap = a.policy.Current()
				}
				a.audit(auditOfReload(r, snap))
			}
			switch {
			case !r.OK:
				msg := r.Err.Error()
				a.lastPolicyErr.Store(&msg)
				a.log.Error("policy reload failed; the last good policy stays in force", "error", r.Err)
			case r.Changed:
				a.lastPolicyErr.Store(nil)
				a.log.Info("policy loaded", "version", r.Version, "warnings", len(r.Diagnostics))
			default:
				a.lastPolicyErr.Store(nil)
			}
		}))...)
	if err != nil {
		return fmt.Errorf("agent: policy: %w", err)
	}
	a.policy = w
	return nil
}

// Policy is the policy in force.
func (a *Agent) Policy() *policy.Snapshot {
	if a.policy != nil {
		return a.policy.Current()
	}
	return a.fixed
}

// loadSigningCA loads the CA in dir. A root alone is enough: the agent then
// makes its own node intermediate in memory, so the root key signs one
// certificate per agent start and every leaf names this node.
func loadSigningCA(dir, node string, kt identity.KeyType) (*identity.CA, error) {
	ca, err := identity.LoadCA(dir, identity.WithKeyType(kt))
	if err != nil {
		return nil, err
	}
	if ca.IsRoot() {
		return ca.NewNodeCA(node, identity.DefaultNodeTTL)
	}
	return ca, nil
}

// Registry is the node's workload registry.
func (a *Agent) Registry() *workload.Registry { return a.registry }

// Identities is the node's identity manager.
func (a *Agent) Identities() *identity.Manager { return a.identities }

// Bundles are the trust bundles this node verifies peers with.
func (a *Agent) Bundles() *identity.Bundles { return a.bundles }

// Verifier checks peers against this node's bundles and revocations.
func (a *Agent) Verifier() *identity.Verifier {
	return identity.NewVerifier(a.bundles, a.revocations)
}

func workloadOf(p workload.Pod) identity.Workload {
	return identity.Workload{UID: p.UID, Namespace: p.Namespace, ServiceAccount: p.ServiceAccount, Labels: p.Labels}
}

// AdminAddr is the admin endpoint's address once Run listens, else nil.
func (a *Agent) AdminAddr() net.Addr {
	if v, ok := a.adminAddr.Load().(net.Addr); ok {
		return v
	}
	return nil
}

// Run serves until ctx is cancelled, then stops every part and returns.
// Stopping leaves every attached pod's rules in place: while no agent runs
// their traffic is refused (fail closed), and the next Run re-attaches them
// from the state dir.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.startedAt = time.Now()
	if a.dp != nil {
		a.log.Info("file descriptor limit", "nofile", raiseFileLimit())
	}

	if err := a.bundles.WatchFederation(ctx, a.federation, a.cfg.Identity.BundleRefresh, func(err error) {
		a.log.Error("federated bundle not reloaded; the last good bundle stays in force", "error", err)
	}); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", a.cfg.Telemetry.AdminAddress)
	if err != nil {
		return fmt.Errorf("agent: admin endpoint: %w", err)
	}
	a.adminAddr.Store(ln.Addr())
	admin := &http.Server{Handler: a.adminHandler(), ReadHeaderTimeout: 5 * time.Second}

	wapi, err := workloadapi.New(a.cfg.Identity.WorkloadAPISocket, a.registry, a.identities, a.bundles, workloadapi.WithLogger(a.log))
	if err != nil {
		ln.Close()
		return fmt.Errorf("agent: workload API: %w", err)
	}
	ctl := control.NewServer(a.cfg.Agent.ControlSocket, controlBackend{a}, a.log)
	ctlLn, err := ctl.Listen()
	if err != nil {
		ln.Close()
		return fmt.Errorf("agent: %w", err)
	}

	a.openAuditLog()
	defer a.closeAuditLog()

	// Pods of an earlier run come back before anything new is accepted.
	a.reattach()

	var wg sync.WaitGroup
	errc := make(chan error, 8)
	run := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				errc <- fmt.Errorf("agent: %s: %w", name, err)
			}
		}()
	}
	if a.policy != nil {
		run("policy watcher", func() error { return a.policy.Run(ctx) })
		if a.dp != nil {
			run("policy enforcement", func() error { a.enforcePolicyChanges(ctx); return nil })
		}
	}
	run("workload API", func() error { return wapi.Serve(ctx) })
	run("control API", func() error { return ctl.Serve(ctx, ctlLn) })
	run("admin endpoint", func() error {
		if err := admin.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	run("identity manager", func() error { _ = a.identities.Run(ctx); return nil })
	run("identity telemetry", func() error { a.watchIdentities(ctx); return nil })
	if a.dp != nil {
		run("reconcile", func() error { a.reconcileLoop(ctx); return nil })
	}

	// Ready only once workloads can reach the Workload API.
	select {
	case <-wapi.Listening():
		a.ready.Store(true)
		a.log.Info("agent ready", "node", a.cfg.Agent.NodeName, "trust_domain", a.cfg.Identity.TrustDomain,
			"admin", ln.Addr().String(), "workload_api", a.cfg.Identity.WorkloadAPISocket,
			"control", a.cfg.Agent.ControlSocket, "dataplane", a.dp != nil, "mode", a.cfg.Policy.Mode)
	case err := <-errc:
		errc <- err
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	a.ready.Store(false)
	cancel()
	shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = admin.Shutdown(shutdownCtx)
	wg.Wait()
	if a.dp != nil {
		// Close listeners and tunnels, keep the rules: fail closed.
		if err := a.dp.Release(); err != nil {
			a.log.Error("data plane release", "error", err)
		}
	}
	a.log.Info("agent stopped")
	return runErr
}

// enforcePolicyChanges applies each new policy to what is already open:
// TCP flows it no longer allows are closed, and every pod's non-TCP
// allowlist is swapped (which also ends the non-TCP flows it withdraws).
func (a *Agent) enforcePolicyChanges(ctx context.Context) {
	for snap := range a.policy.Subscribe(ctx) {
		if n := a.dp.Recheck(snap); n > 0 {
			a.log.Info("closed open flows the new policy denies", "version", snap.Version, "flows", n)
		}
		a.podsMu.Lock()
		a.syncNonTCPLocked()
		a.podsMu.Unlock()
	}
}

// reconcileLoop checks every attached pod at start and then every
// agent.reconcile_interval.
func (a *Agent) reconcileLoop(ctx context.Context) {
	a.reconcile()
	t := time.NewTicker(a.cfg.Agent.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.reconcile()
		}
	}
}

// Status is the agent's state for the control API and `ztcn status`.
func (a *Agent) Status() control.Status {
	st := control.Status{
		Node: a.cfg.Agent.NodeName, TrustDomain: a.cfg.Identity.TrustDomain,
		Ready: a.ready.Load(), StartedAt: a.startedAt, Mode: string(a.cfg.Policy.Mode),
		DataPlane: a.dp != nil, Pods: a.podStatuses(), Events: a.events.snapshot(),
		Directory: a.directorySize(), Recent: a.recent.snapshot(),
	}
	if addr := a.AdminAddr(); addr != nil {
		st.AdminAddress = addr.String()
		st.MetricsURL = metricsURL(st.AdminAddress)
	}
	st.AuditLog.Path = a.cfg.Telemetry.AuditLog
	st.AuditLog.Written, st.AuditLog.Dropped, st.AuditLog.Errors = a.auditCounts()
	if last := a.auditStats().LastError; last != "" {
		st.AuditLog.LastError = last
	} else if e := a.auditOpenErr.Load(); e != nil {
		st.AuditLog.LastError = *e
	}
	if snap := a.Policy(); snap != nil {
		st.Policy = control.PolicyStatus{Version: snap.Version, Rules: snap.Index.Stats().Rules, LoadedAt: snap.LoadedAt}
	}
	if a.policy != nil {
		st.Policy.Paths = []string{a.cfg.Policy.ConfigPath}
		for _, src := range a.policySources {
			st.Policy.Paths = append(st.Policy.Paths, src.Name)
		}
	}
	if e := a.lastPolicyErr.Load(); e != nil {
		st.Policy.LastError = *e
	}
	return st
}

func (a *Agent) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}
