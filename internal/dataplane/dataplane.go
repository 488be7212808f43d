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
	"net"
	"net/netip"
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
	// Directory returns what is known about a workload by its IP (nil for
	// an address outside the mesh).
	Directory func(ip netip.Addr) *policy.Endpoint
	// OnEvent receives denials, refusals and closed flows.
	OnEvent func(Event)
	Log     *slog.Logger
	// ConnectTimeout bounds connects to destinations and applications.
	ConnectTimeout time.Duration
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
	pool, err := hbone.NewPool(hbone.PoolConfig{Verifier: cfg.Verifier})
	if err != nil {
		return nil, err
	}
	return &DataPlane{cfg: cfg, pool: pool, pods: map[string]*podProxy{}, byIP: map[netip.Addr]*podProxy{}, flows: map[*flow]struct{}{}}, nil
}

// Pod is a workload to attach.
type Pod struct {
	UID      string
	IP       netip.Addr
	NS       *netns.NS
	Endpoint *policy.Endpoint
	// SVID returns the pod's current SVID (rotation needs no re-attach).
	SVID func() *identity.SVID
}

type podProxy struct {
	dp     *DataPlane
	pod    Pod
	in     InNetns
	cancel context.CancelFunc
	lns    []net.Listener
	wg     sync.WaitGroup
	// subject caches the pod resolved against the policy in force.
	subject atomic.Pointer[cachedSubject]
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
	if err := redirect.Install(nsh, redirect.Spec{}); err != nil {
		return fmt.Errorf("dataplane: pod %s: install redirection: %w", pod.UID, err)
	}
	p := &podProxy{dp: dp, pod: pod, in: func(fn func() error) error { return netns.Do(pod.NS, fn) }}
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
			if e.Err != nil {
				p.emit(Event{Kind: EventHandshakeFailed, Direction: Inbound, Source: e.Remote, Reason: "TLS handshake failed", Err: e.Err.Error()})
			}
		},
	})
	if err != nil {
		return err
	}
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
	return redirect.Remove(vnetns.NsHandle(p.pod.NS.Fd()))
}

// Health verifies a pod's redirection rules.
func (dp *DataPlane) Health(uid string) (redirect.Health, error) {
	dp.mu.Lock()
	p, ok := dp.pods[uid]
	dp.mu.Unlock()
	if !ok {
		return redirect.Health{}, fmt.Errorf("dataplane: pod %s is not attached", uid)
	}
	return redirect.Verify(vnetns.NsHandle(p.pod.NS.Fd()), redirect.Spec{})
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
		errs = append(errs, dp.Detach(uid))
	}
	errs = append(errs, dp.pool.Close())
	return errors.Join(errs...)
}

// subjectOf resolves an endpoint against the policy in force: attached
// pods from their cache, anything else afresh.
func (dp *DataPlane) subjectOf(ix *policy.Index, ep *policy.Endpoint) *policy.Subject {
	if ep.Workload {
		dp.mu.Lock()
		p := dp.byIP[ep.IP]
		dp.mu.Unlock()
		if p != nil && p.pod.Endpoint.SPIFFEID == ep.SPIFFEID {
			return p.subjectFor(ix)
		}
	}
	return ix.Resolve(ep)
}

func (p *podProxy) subjectFor(ix *policy.Index) *policy.Subject {
	if c := p.subject.Load(); c != nil && c.index == ix {
		return c.sub
	}
	sub := ix.Resolve(p.pod.Endpoint)
	p.subject.Store(&cachedSubject{index: ix, sub: sub})
	return sub
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
	return outsideEndpoint(ip)
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
