// Package dataplane is ztcn's in-pod proxy: for every attached pod it
// installs the redirection rules (package redirect) in the pod's network
// namespace, listens there on 15001 (outbound), 15008 (HBONE inbound) and
// 15006 (plaintext inbound), decides every connection with the policy index,
// and carries allowed pod-to-pod connections over HBONE (package hbone) with
// the source workload's SVID.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	vnetns "github.com/vishvananda/netns"

	"github.com/ztcn/ztcn/internal/dataplane/hbone"
	"github.com/ztcn/ztcn/internal/dataplane/redirect"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/policy"
)

// Mode is how inbound plaintext and denials are handled.
type Mode string

// Modes, as policy.mode in runtime.toml.
const (
	// Strict: only policy-allowed HBONE peers get in; plaintext is refused.
	Strict Mode = "strict"
	// Permissive: plaintext peers get in where policy allows an
	// unauthenticated source (migration).
	Permissive Mode = "permissive"
	// Audit: everything flows; what strict policy would deny is reported.
	Audit Mode = "audit"
)

// Config configures a DataPlane.
type Config struct {
	Mode Mode
	// Policy returns the policy in force (an atomic load: no lock).
	Policy func() *policy.Snapshot
	// Verifier checks HBONE peers (bundles, expiry, revocations).
	Verifier *identity.Verifier
	// OnHandshake, if set, is told of every TLS handshake, as client (the
	// pool, toward another pod) or server (a pod's HBONE listener).
	OnHandshake func(side HandshakeSide, took time.Duration, err error)
	// Directory returns what is known about a workload by its IP (nil for
	// an address outside the mesh).
	Directory func(ip netip.Addr) *policy.Endpoint
	// OnEvent receives denials, refusals and closed flows.
	OnEvent func(Event)
	Log     *slog.Logger
	// ConnectTimeout bounds connects to destinations and applications.
	ConnectTimeout time.Duration
	// Probes, if its Source is valid, lets the node's own TCP (kubelet
	// probes) reach the pods' applications: see Probes.
	Probes Probes
}

// Probes lets kubelet probes through in every mode. The node's own TCP to
// an attached pod leaves the node with Source as its source address, and
// each pod's rules let TCP from Source through to the application in
// plaintext; nothing a pod sends may carry Source (redirect.
// InstallNodeProbes). In strict mode probes are otherwise plaintext from
// outside the mesh, and refused.
type Probes struct {
	// Source is the address probes come from (redirect.DefaultProbeSource);
	// the zero Addr turns probes off.
	Source netip.Addr
	// NodeNS is the node's network namespace, where the kubelet runs; nil
	// is this process's own (the agent runs on the node's network).
	NodeNS *netns.NS
}

// DataPlane proxies the attached pods of one node.
type DataPlane struct {
	cfg  Config
	pool *hbone.Pool

	mu   sync.Mutex
	pods map[string]*podProxy // by UID
	byIP map[netip.Addr]*podProxy

	flowsMu sync.Mutex
	flows   map[*flow]struct{}

	nextFlow atomic.Uint64

	remoteMu sync.Mutex
	// remote caches resolved directory workloads: [0] for the enforced
	// index, [1] for the staged view.
	remote [2]subjectCache

	// probesMu serializes the node probe rules' updates.
	probesMu sync.Mutex

	memoMu sync.Mutex
	memo   map[endpointKey]*policy.Endpoint // see endpointMemo
}

type subjectCache struct {
	index    *policy.Index
	subjects map[*policy.Endpoint]*policy.Subject
}

// New returns a data plane with no pod attached.
func New(cfg Config) (*DataPlane, error) {
	if cfg.Policy == nil || cfg.Verifier == nil {
		return nil, errors.New("dataplane: Policy and Verifier are required")
	}
	if cfg.Mode == "" {
		cfg.Mode = Strict
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.Directory == nil {
		cfg.Directory = func(netip.Addr) *policy.Endpoint { return nil }
	}
	dp := &DataPlane{cfg: cfg, pods: map[string]*podProxy{}, byIP: map[netip.Addr]*podProxy{}, flows: map[*flow]struct{}{},
		memo: map[endpointKey]*policy.Endpoint{}}
	pool, err := hbone.NewPool(hbone.PoolConfig{Verifier: cfg.Verifier, OnHandshake: func(e hbone.ClientHandshakeEvent) {
		dp.handshake(HandshakeClient, e.Duration, e.Err)
	}})
	if err != nil {
		return nil, err
	}
	dp.pool = pool
	if cfg.Probes.Source.IsValid() {
		if err := dp.syncProbes(); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return dp, nil
}

// RepairProbes rewrites the node's kubelet probe rules (Config.Probes) for
// the pods attached now, whatever state they are in; without probes it
// does nothing.
func (dp *DataPlane) RepairProbes() error { return dp.syncProbes() }

// syncProbes writes the node's probe rules for the pods attached now.
func (dp *DataPlane) syncProbes() error {
	if !dp.cfg.Probes.Source.IsValid() {
		return nil
	}
	dp.probesMu.Lock()
	defer dp.probesMu.Unlock()
	dp.mu.Lock()
	ips := slices.Collect(maps.Keys(dp.byIP))
	dp.mu.Unlock()
	return withNodeNS(dp.cfg.Probes.NodeNS, func(nsh vnetns.NsHandle) error {
		if err := redirect.InstallNodeProbes(nsh, dp.cfg.Probes.Source, ips); err != nil {
			return fmt.Errorf("dataplane: kubelet probes: %w", err)
		}
		return nil
	})
}

// withNodeNS calls fn with a handle of ns, or of this process's own
// namespace when ns is nil.
func withNodeNS(ns *netns.NS, fn func(vnetns.NsHandle) error) error {
	if ns != nil {
		return fn(vnetns.NsHandle(ns.Fd()))
	}
	own, err := vnetns.Get()
	if err != nil {
		return fmt.Errorf("dataplane: open the node's network namespace: %w", err)
	}
	defer own.Close()
	return fn(own)
}

// Pod is a workload to attach.
type Pod struct {
	UID      string
	IP       netip.Addr
	NS       *netns.NS
	Endpoint *policy.Endpoint
	// SVID returns the pod's current SVID (rotation needs no re-attach).
	SVID func() *identity.SVID
	// NonTCP is the pod's non-TCP allowlist (NonTCPAllowlist), installed
	// with the redirection so that the pod never runs with a wider one;
	// nil drops every UDP, SCTP and ICMP flow until SetNonTCP.
	NonTCP []redirect.Allow
}

type podProxy struct {
	dp     *DataPlane
	server *hbone.Server
	pod    Pod
	in     InNetns
	cancel context.CancelFunc
	lns    []net.Listener
	wg     sync.WaitGroup
	// subject caches the pod resolved against the policy in force;
	// stagedSubject against its staged view.
	subject, stagedSubject atomic.Pointer[cachedSubject]

	// nsMu serializes everything that programs or reads the pod's rules
	// (Install, SetNonTCPAllowlist, Verify, Repair, Remove), as package
	// redirect requires for one pod, and guards the fields below.
	nsMu sync.Mutex
	// nonTCP is the allowlist last asked for. applied says that the
	// namespace is known to hold it: after a failed switch it is false, so
	// that asking again for the same list retries instead of being a no-op.
	nonTCP   []redirect.Allow
	applied  bool
	detached bool
}

type cachedSubject struct {
	index *policy.Index
	sub   *policy.Subject
}

// Attach installs the pod's redirection and opens its listeners. The rules
// go in first: from then on the pod's TCP can only reach the agent, and is
// refused while the listeners are not there yet (fail closed).
func (dp *DataPlane) Attach(pod Pod) error {
	if !pod.IP.Is4() {
		return fmt.Errorf("dataplane: pod %s: an IPv4 address is required", pod.UID)
	}
	nsh := vnetns.NsHandle(pod.NS.Fd())
	if err := redirect.Install(nsh, redirect.Spec{NonTCP: pod.NonTCP, ProbeSource: dp.cfg.Probes.Source}); err != nil {
		return fmt.Errorf("dataplane: pod %s: install redirection: %w", pod.UID, err)
	}
	p := &podProxy{dp: dp, pod: pod, in: func(fn func() error) error { return netns.Do(pod.NS, fn) },
		nonTCP: slices.Clone(pod.NonTCP), applied: true}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	if err := p.start(ctx); err != nil {
		cancel()
		p.closeListeners()
		return err
	}
	dp.mu.Lock()
	dp.pods[pod.UID] = p
	dp.byIP[pod.IP] = p
	dp.mu.Unlock()
	if err := dp.syncProbes(); err != nil {
		// The pod is attached and secured; only its probes would fail.
		dp.cfg.Log.Error("kubelet probes not set up for the pod", "pod", pod.UID, "error", err)
	}
	return nil
}

func (p *podProxy) start(ctx context.Context) error {
	out, err := listen(p.in, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), redirect.OutboundPort))
	if err != nil {
		return err
	}
	p.lns = append(p.lns, out)
	plain, err := listen(p.in, netip.AddrPortFrom(netip.IPv4Unspecified(), redirect.InboundPlaintextPort))
	if err != nil {
		return err
	}
	p.lns = append(p.lns, plain)
	hb, err := listen(p.in, netip.AddrPortFrom(p.pod.IP, redirect.InboundHBONEPort))
	if err != nil {
		return err
	}
	p.lns = append(p.lns, hb)
	srv, err := hbone.NewServer(hbone.ServerConfig{
		SVID:      p.pod.SVID,
		Verifier:  p.dp.cfg.Verifier,
		Authorize: p.authorizeHBONE,
		OnHandshake: func(e hbone.HandshakeEvent) {
			p.dp.handshake(HandshakeServer, e.Duration, e.Err)
			if e.Err != nil {
				p.emit(Event{Kind: EventHandshakeFailed, Direction: Inbound, Source: e.Remote, DestEP: p.pod.Endpoint,
					Reason: "TLS handshake failed", Err: e.Err.Error()})
			}
		},
		OnStream: p.inboundStreamEnded,
	})
	if err != nil {
		return err
	}
	p.server = srv
	p.wg.Add(3)
	go func() { defer p.wg.Done(); p.acceptLoop(out, p.outbound) }()
	go func() { defer p.wg.Done(); p.acceptLoop(plain, p.plaintext) }()
	go func() { defer p.wg.Done(); _ = srv.Serve(ctx, hb) }()
	return nil
}

func (p *podProxy) acceptLoop(ln net.Listener, handle func(*net.TCPConn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go handle(c.(*net.TCPConn))
	}
}

func (p *podProxy) closeListeners() {
	for _, ln := range p.lns {
		ln.Close()
	}
}

// Detach closes the pod's listeners and removes its rules.
func (dp *DataPlane) Detach(uid string) error {
	err := dp.detach(uid)
	return errors.Join(err, dp.syncProbes())
}

// detach is Detach but for the node's probe rules, which Close removes
// once instead of rewriting them for every pod.
func (dp *DataPlane) detach(uid string) error {
	dp.mu.Lock()
	p, ok := dp.pods[uid]
	delete(dp.pods, uid)
	if ok {
		delete(dp.byIP, p.pod.IP)
	}
	dp.mu.Unlock()
	if !ok {
		return fmt.Errorf("dataplane: pod %s is not attached", uid)
	}
	p.cancel()
	p.closeListeners()
	p.wg.Wait()
	dp.pool.Rotate(uid)
	// A SetNonTCP or Repair that found the pod before it left the map must
	// not program the namespace again after its rules are removed.
	p.nsMu.Lock()
	defer p.nsMu.Unlock()
	p.detached = true
	return redirect.Remove(vnetns.NsHandle(p.pod.NS.Fd()))
}

// attached returns the pod with this UID and locks its namespace; the
// caller unlocks p.nsMu.
func (dp *DataPlane) attached(uid string) (*podProxy, error) {
	dp.mu.Lock()
	p, ok := dp.pods[uid]
	dp.mu.Unlock()
	if ok {
		p.nsMu.Lock()
		if !p.detached {
			return p, nil
		}
		p.nsMu.Unlock()
	}
	return nil, fmt.Errorf("dataplane: pod %s is not attached", uid)
}

// spec is what the pod's rules should be. The caller holds p.nsMu.
func (p *podProxy) spec() redirect.Spec {
	return redirect.Spec{NonTCP: p.nonTCP, ProbeSource: p.dp.cfg.Probes.Source}
}

// Pods lists the UIDs of the attached pods, sorted: what a reconcile loop
// walks with Health or Repair.
func (dp *DataPlane) Pods() []string {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return slices.Sorted(maps.Keys(dp.pods))
}

// SetNonTCP replaces a pod's non-TCP allowlist (see NonTCPAllowlist), for a
// policy change or a peer that came, went or changed. The switch is atomic
// and flows the new list no longer admits are ended (see
// redirect.SetNonTCPAllowlist). Asking again for the list in force does
// not touch the kernel: a policy reload asks it of every pod.
func (dp *DataPlane) SetNonTCP(uid string, allow []redirect.Allow) error {
	p, err := dp.attached(uid)
	if err != nil {
		return err
	}
	defer p.nsMu.Unlock()
	if p.applied && slices.Equal(p.nonTCP, allow) {
		return nil
	}
	// Health and Repair compare against the list asked for from now on,
	// whether or not the switch works: it is what the pod should have.
	p.nonTCP, p.applied = slices.Clone(allow), false
	if err := redirect.SetNonTCPAllowlist(vnetns.NsHandle(p.pod.NS.Fd()), p.spec()); err != nil {
		return fmt.Errorf("dataplane: pod %s: set non-TCP allowlist: %w", uid, err)
	}
	p.applied = true
	return nil
}

// Health verifies a pod's redirection rules, its current non-TCP
// allowlist included.
func (dp *DataPlane) Health(uid string) (redirect.Health, error) {
	p, err := dp.attached(uid)
	if err != nil {
		return redirect.Health{}, err
	}
	defer p.nsMu.Unlock()
	return redirect.Verify(vnetns.NsHandle(p.pod.NS.Fd()), p.spec())
}

// Repair re-installs a pod's redirection, with its current non-TCP
// allowlist, if it has drifted or is gone (see redirect.Repair), and
// returns the health the pod is left with: Healthy, or what still differs
// along with the error. Unlike redirect.Repair it reports the state after
// the repair, not before: a reconcile loop has the "before" from Health
// and wants to know whether the repair worked.
func (dp *DataPlane) Repair(uid string) (redirect.Health, error) {
	p, err := dp.attached(uid)
	if err != nil {
		return redirect.Health{}, err
	}
	defer p.nsMu.Unlock()
	nsh := vnetns.NsHandle(p.pod.NS.Fd())
	if _, err := redirect.Repair(nsh, p.spec()); err != nil {
		after, verr := redirect.Verify(nsh, p.spec())
		return after, errors.Join(fmt.Errorf("dataplane: pod %s: repair redirection: %w", uid, err), verr)
	}
	// redirect.Repair verified the result: the namespace holds the spec.
	p.applied = true
	return redirect.Health{State: redirect.Healthy}, nil
}

// Close detaches every pod.
func (dp *DataPlane) Close() error {
	dp.mu.Lock()
	uids := make([]string, 0, len(dp.pods))
	for uid := range dp.pods {
		uids = append(uids, uid)
	}
	dp.mu.Unlock()
	var errs []error
	for _, uid := range uids {
		errs = append(errs, dp.detach(uid))
	}
	errs = append(errs, dp.pool.Close())
	if dp.cfg.Probes.Source.IsValid() {
		errs = append(errs, withNodeNS(dp.cfg.Probes.NodeNS, redirect.RemoveNodeProbes))
	}
	return errors.Join(errs...)
}

// subjectOf resolves an endpoint against the policy in force: attached
// pods from their cache, anything else from the cache of remoteSubject.
// ep must be immutable: an attached pod's, a directory entry, or one of
// peerEndpointOf and outsideEndpointOf.
func (dp *DataPlane) subjectOf(ix *policy.Index, ep *policy.Endpoint) *policy.Subject {
	if ep.Workload {
		dp.mu.Lock()
		p := dp.byIP[ep.IP]
		dp.mu.Unlock()
		if p != nil && p.pod.Endpoint.SPIFFEID == ep.SPIFFEID {
			return p.subjectFor(ix)
		}
	}
	return dp.remoteSubject(ix, ep)
}

// remoteSubjectsKept bounds the caches of resolved endpoints and of the
// endpoints of peers and outside addresses; past it a cache starts over
// (more endpoints than this are resolved more often, never wrongly).
const remoteSubjectsKept = 16384

// remoteSubject resolves an endpoint that is not an attached pod once per
// policy version: Resolve matches every selector, far too slow per
// connection (about 190 µs at 100,000 rules). The endpoint's pointer is
// its key: directory entries are immutable and replaced as a whole, and
// the endpoints of peers and outside addresses come from endpointMemo.
func (dp *DataPlane) remoteSubject(ix *policy.Index, ep *policy.Endpoint) *policy.Subject {
	dp.remoteMu.Lock()
	defer dp.remoteMu.Unlock()
	c := &dp.remote[0]
	if ix.StagedView() {
		c = &dp.remote[1]
	}
	if c.index != ix || len(c.subjects) >= remoteSubjectsKept {
		c.index, c.subjects = ix, map[*policy.Endpoint]*policy.Subject{}
	}
	if s, ok := c.subjects[ep]; ok {
		return s
	}
	s := ix.Resolve(ep)
	c.subjects[ep] = s
	return s
}

func (p *podProxy) subjectFor(ix *policy.Index) *policy.Subject {
	// One cache slot per view, so that deciding each flow with the
	// enforced and the staged index does not resolve the pod twice.
	slot := &p.subject
	if ix.StagedView() {
		slot = &p.stagedSubject
	}
	if c := slot.Load(); c != nil && c.index == ix {
		return c.sub
	}
	sub := ix.Resolve(p.pod.Endpoint)
	slot.Store(&cachedSubject{index: ix, sub: sub})
	return sub
}

// endpointKey is what an endpoint of a peer or an outside address is made
// of: the peer's leaf certificate (its SPIFFE ID and signature, which no
// other certificate shares; empty outside the mesh) and the address.
// Strings, not the peer: a key must not keep the certificate chains of
// connections long gone in memory.
type endpointKey struct {
	cert string
	ip   netip.Addr
}

// peerEndpointOf is peerEndpoint, the same pointer for the same peer
// certificate and address, so that every stream of a pooled connection
// (and of the next connection with the same SVID) is resolved once.
func (dp *DataPlane) peerEndpointOf(peer *identity.Peer, ip netip.Addr) *policy.Endpoint {
	k := endpointKey{cert: peer.ID.String(), ip: ip}
	if len(peer.Chain) > 0 {
		// The endpoint is made from the leaf: its ID and its claims.
		k.cert += "#" + string(peer.Chain[0].Signature)
	}
	return dp.endpointMemo(k, func() *policy.Endpoint { return peerEndpoint(peer, ip) })
}

// outsideEndpointOf is outsideEndpoint, the same pointer for the same
// address.
func (dp *DataPlane) outsideEndpointOf(ip netip.Addr) *policy.Endpoint {
	return dp.endpointMemo(endpointKey{ip: ip}, func() *policy.Endpoint { return outsideEndpoint(ip) })
}

func (dp *DataPlane) endpointMemo(k endpointKey, build func() *policy.Endpoint) *policy.Endpoint {
	dp.memoMu.Lock()
	defer dp.memoMu.Unlock()
	if ep, ok := dp.memo[k]; ok {
		return ep
	}
	if len(dp.memo) >= remoteSubjectsKept {
		clear(dp.memo)
	}
	ep := build()
	dp.memo[k] = ep
	return ep
}

// endpointAt is what is known about the address ip.
func (dp *DataPlane) endpointAt(ip netip.Addr) *policy.Endpoint {
	dp.mu.Lock()
	p := dp.byIP[ip]
	dp.mu.Unlock()
	if p != nil {
		return p.pod.Endpoint
	}
	if ep := dp.cfg.Directory(ip); ep != nil {
		return ep
	}
	return dp.outsideEndpointOf(ip)
}

func (p *podProxy) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Pod = p.pod.Endpoint.String()
	if p.dp.cfg.OnEvent != nil {
		p.dp.cfg.OnEvent(e)
	}
}

func ruleText(ix *policy.Index, v policy.Verdict) string {
	if r, ok := ix.Rule(v.Rule); ok {
		return r.String()
	}
	return ""
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func idOf(s string) spiffeid.ID {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}
	}
	return id
}
