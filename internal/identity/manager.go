package identity

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztcn/ztcn/internal/feed"
)

// Workload is what the manager needs to know to issue an identity.
type Workload struct {
	// UID is the pod UID or container ID: the key of the workload.
	UID            string
	Namespace      string
	ServiceAccount string
	Labels         map[string]string
	// ID overrides the default spiffe://<td>/ns/<ns>/sa/<sa>. Its trust
	// domain must be the one the manager assigns the namespace.
	ID spiffeid.ID
}

// EventKind says what happened to a workload's identity.
type EventKind string

// Identity events, named as they appear in audit logs.
const (
	EventIssued  EventKind = "issued"
	EventRotated EventKind = "rotated"
	EventRevoked EventKind = "revoked"
)

// Event tells subscribers about an identity change.
type Event struct {
	Kind EventKind
	UID  string
	// SVID is the workload's new SVID; for EventRevoked, the revoked one.
	SVID *SVID
	// Reason says why it rotated: "expiry" or "labels".
	Reason string
}

// Rotation returns the lifetime of a namespace's leaves and how long before
// expiry they are replaced.
type Rotation func(namespace string) (ttl, renewBefore time.Duration)

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	// TrustDomain is the cluster's trust domain.
	TrustDomain spiffeid.TrustDomain
	// TrustDomainPerNamespace gives each namespace its own trust domain,
	// "<namespace>.<TrustDomain>", and so its own CA.
	TrustDomainPerNamespace bool
	Authorities             *Authorities
	Revocations             *Revocations
	Rotation                Rotation
	// Jitter is the fraction of the renew window by which rotation is
	// brought forward at random, so that workloads started together do not
	// all rotate in the same instant. Default 0.1.
	Jitter float64
	// Now is the clock; default time.Now.
	Now func() time.Time
	// MaxWait is the longest the rotation loop sleeps before it looks at
	// the clock again (default 1 minute). Timers run on the monotonic
	// clock, but certificates expire by the wall clock: after a step of
	// the wall clock (NTP, resume from suspend) an SVID can be expired in
	// its peers' eyes although its timer has hours to go. Waking up at
	// least this often bounds how long that lasts.
	MaxWait time.Duration
}

// Manager owns the identities of the workloads on this node: it issues an
// SVID when a workload starts, rotates it before it expires or when the
// workload's labels change, and revokes it when the workload stops.
type Manager struct {
	cfg     ManagerConfig
	mu      sync.Mutex
	entries map[string]*entry
	events  feed.Feed[Event]
	kick    chan struct{} // wakes the rotation loop when the schedule changes
}

type entry struct {
	workload Workload
	svid     *SVID
	rotateAt time.Time
}

// NewManager returns a manager; call Run to rotate.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = 0.1
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = time.Minute
	}
	if cfg.Revocations == nil {
		cfg.Revocations = NewRevocations()
	}
	return &Manager{cfg: cfg, entries: make(map[string]*entry), kick: make(chan struct{}, 1)}
}

// Subscribe returns every identity event from now on, in order.
func (m *Manager) Subscribe(ctx context.Context) <-chan Event { return m.events.Subscribe(ctx) }

// TrustDomainOf is the trust domain a namespace's workloads belong to.
func (m *Manager) TrustDomainOf(namespace string) (spiffeid.TrustDomain, error) {
	if !m.cfg.TrustDomainPerNamespace {
		return m.cfg.TrustDomain, nil
	}
	return NamespaceTrustDomain(m.cfg.TrustDomain, namespace)
}

// Start issues the workload's first SVID. Starting a workload that already
// has one is the same as Update.
func (m *Manager) Start(w Workload) (*SVID, error) {
	if w.UID == "" {
		return nil, fmt.Errorf("identity: workload has no UID")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[w.UID]; ok {
		return m.updateLocked(e, w)
	}
	svid, rotateAt, err := m.issue(w)
	if err != nil {
		return nil, err
	}
	m.entries[w.UID] = &entry{workload: cloneWorkload(w), svid: svid, rotateAt: rotateAt}
	m.events.Publish(Event{Kind: EventIssued, UID: w.UID, SVID: svid})
	m.wake()
	return svid, nil
}

// Update re-issues the SVID if what it attests (ID or labels) changed. The
// superseded leaf is revoked at once: it still names the old labels, and
// label policy must not keep honouring them.
func (m *Manager) Update(w Workload) (*SVID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[w.UID]
	if !ok {
		return nil, fmt.Errorf("identity: workload %q has no identity", w.UID)
	}
	return m.updateLocked(e, w)
}

func (m *Manager) updateLocked(e *entry, w Workload) (*SVID, error) {
	if sameAttestation(e.workload, w) {
		return e.svid, nil
	}
	svid, rotateAt, err := m.issue(w)
	if err != nil {
		return nil, err
	}
	old := e.svid
	e.workload, e.svid, e.rotateAt = cloneWorkload(w), svid, rotateAt
	m.cfg.Revocations.Revoke(old.Leaf())
	m.events.Publish(Event{Kind: EventRotated, UID: w.UID, SVID: svid, Reason: "labels"})
	m.wake()
	return svid, nil
}

// Stop revokes the workload's SVID and forgets its key. Every verifier that
// shares the manager's revocation set refuses the leaf from now on.
func (m *Manager) Stop(uid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[uid]
	if !ok {
		return fmt.Errorf("identity: workload %q has no identity", uid)
	}
	delete(m.entries, uid)
	m.cfg.Revocations.Revoke(e.svid.Leaf())
	m.events.Publish(Event{Kind: EventRevoked, UID: uid, SVID: e.svid})
	return nil
}

// SVID returns the workload's current SVID.
func (m *Manager) SVID(uid string) (*SVID, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[uid]; ok {
		return e.svid, true
	}
	return nil, false
}

// Status describes one workload's identity.
type Status struct {
	UID      string      `json:"uid"`
	ID       spiffeid.ID `json:"spiffe_id"`
	Serial   string      `json:"serial"`
	NotAfter time.Time   `json:"not_after"`
	RotateAt time.Time   `json:"rotate_at"`
}

// Statuses lists every workload's identity by UID.
func (m *Manager) Statuses() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.entries))
	for uid, e := range m.entries {
		out = append(out, Status{UID: uid, ID: e.svid.ID, Serial: e.svid.Serial().Text(16), NotAfter: e.svid.NotAfter(), RotateAt: e.rotateAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// Run rotates SVIDs as they come due until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := m.rotateDue()
		wait := m.cfg.MaxWait
		if !next.IsZero() {
			wait = min(max(next.Sub(m.cfg.Now()), 0), m.cfg.MaxWait)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-m.kick:
		case <-timer.C:
		}
	}
}

// rotateDue rotates every SVID whose time has come and returns the next
// rotation time (zero if none).
func (m *Manager) rotateDue() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	var next time.Time
	for uid, e := range m.entries {
		if !now.Before(e.rotateAt) {
			svid, rotateAt, err := m.issue(e.workload)
			if err != nil {
				// Keep the current SVID and try again shortly: it is still
				// valid until NotAfter, and a retry storm helps nobody.
				e.rotateAt = now.Add(min(time.Second*5, max(e.svid.NotAfter().Sub(now)/4, 10*time.Millisecond)))
			} else {
				e.svid, e.rotateAt = svid, rotateAt
				m.events.Publish(Event{Kind: EventRotated, UID: uid, SVID: svid, Reason: "expiry"})
			}
		}
		if next.IsZero() || e.rotateAt.Before(next) {
			next = e.rotateAt
		}
	}
	return next
}

// issue signs a new SVID for w and picks its rotation time: renewBefore
// ahead of expiry, brought forward by up to Jitter of that window.
func (m *Manager) issue(w Workload) (*SVID, time.Time, error) {
	td, err := m.TrustDomainOf(w.Namespace)
	if err != nil {
		return nil, time.Time{}, err
	}
	id := w.ID
	if id.IsZero() {
		if id, err = WorkloadID(td, w.Namespace, w.ServiceAccount); err != nil {
			return nil, time.Time{}, err
		}
	} else if id.TrustDomain() != td {
		return nil, time.Time{}, fmt.Errorf("identity: workload %q asks for %s, but namespace %q belongs to trust domain %q", w.UID, id, w.Namespace, td.Name())
	}
	ca, err := m.cfg.Authorities.For(td)
	if err != nil {
		return nil, time.Time{}, err
	}
	ttl, renewBefore := m.cfg.Rotation(w.Namespace)
	svid, err := ca.IssueSVID(SVIDRequest{ID: id, TTL: ttl, Claims: Claims{WorkloadUID: w.UID, Labels: w.Labels}})
	if err != nil {
		return nil, time.Time{}, err
	}
	lifetime := svid.NotAfter().Sub(m.cfg.Now())
	if renewBefore <= 0 || renewBefore >= lifetime {
		// Unset, or a leaf shortened by a CA near its own end: rotate at
		// half-life rather than at once.
		renewBefore = lifetime / 2
	}
	jitter := time.Duration(rand.Float64() * m.cfg.Jitter * float64(renewBefore))
	return svid, svid.NotAfter().Add(-renewBefore - jitter), nil
}

func (m *Manager) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func sameAttestation(a, b Workload) bool {
	return a.Namespace == b.Namespace && a.ServiceAccount == b.ServiceAccount && a.ID == b.ID && maps.Equal(a.Labels, b.Labels)
}

func cloneWorkload(w Workload) Workload {
	w.Labels = maps.Clone(w.Labels)
	return w
}
