package agent

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/dataplane"
	"github.com/ztcn/ztcn/internal/netns"
)

// eventCounters counts data plane events by kind. The set of kinds is
// small and fixed, so the map only grows to that size.
type eventCounters struct {
	m sync.Map // dataplane.EventKind → *atomic.Uint64
}

func (c *eventCounters) add(kind dataplane.EventKind) {
	v, ok := c.m.Load(kind)
	if !ok {
		v, _ = c.m.LoadOrStore(kind, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

func (c *eventCounters) snapshot() map[string]uint64 {
	out := map[string]uint64{}
	c.m.Range(func(k, v any) bool {
		out[string(k.(dataplane.EventKind))] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// onEvent counts and logs what the data plane reports. Every refusal is
// logged with the deciding rule or reason, so "why was this blocked?" has
// an answer in the agent log (the audit log has its own issue).
func (a *Agent) onEvent(e dataplane.Event) {
	a.record(e)
	if e.Kind == dataplane.EventFlowOpened {
		return // its flow_closed follows; the flow table has it meanwhile
	}
	a.events.add(e.Kind)
	a.recent.add(e)
	attrs := []any{"kind", string(e.Kind), "direction", string(e.Direction), "pod", e.Pod,
		"source", addrText(e.Source), "destination", addrText(e.Dest)}
	if e.SourceID != "" {
		attrs = append(attrs, "source_id", e.SourceID)
	}
	if e.DestID != "" {
		attrs = append(attrs, "destination_id", e.DestID)
	}
	switch e.Kind {
	case dataplane.EventFlowClosed:
		a.log.Debug("flow closed", append(attrs, "bytes_out", e.BytesOut, "bytes_in", e.BytesIn, "duration", e.Duration)...)
	default:
		if e.Reason != "" {
			attrs = append(attrs, "reason", e.Reason)
		}
		if e.Rule != "" {
			attrs = append(attrs, "rule", e.Rule)
		}
		if e.Err != "" {
			attrs = append(attrs, "error", e.Err)
		}
		if !e.Enforced && e.Kind == dataplane.EventDenied {
			attrs = append(attrs, "enforced", false)
		}
		msg := map[dataplane.EventKind]string{
			dataplane.EventDenied:           "flow denied by policy",
			dataplane.EventPlaintextRefused: "plaintext connection refused",
			dataplane.EventHandshakeFailed:  "HBONE handshake failed",
			dataplane.EventFlowRevoked:      "open flow closed: the new policy denies it",
			dataplane.EventUpstreamFailed:   "destination unreachable",
		}[e.Kind]
		if msg == "" {
			msg = "data plane event"
		}
		a.log.Warn(msg, attrs...)
	}
}

// isNodeNetns says whether ns is the agent's own network namespace.
func (a *Agent) isNodeNetns(ns *netns.NS) (bool, error) {
	dev, ino, err := netnsID("/proc/self/ns/net")
	if err != nil {
		return false, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(ns.Fd(), &st); err != nil {
		return false, err
	}
	return dev == uint64(st.Dev) && ino == st.Ino, nil
}

// recentEventsKept bounds the recent events `ztcn status` and the `ztcn
// up` view show; the flow table (with its own bounds) is the full record.
const recentEventsKept = 32

// recentEvents is a ring of the latest data plane events.
type recentEvents struct {
	mu   sync.Mutex
	ring [recentEventsKept]control.Event
	next int
	n    int
}

func (r *recentEvents) add(e dataplane.Event) {
	ce := control.Event{
		Time: e.Time, Kind: string(e.Kind), Direction: string(e.Direction), Pod: e.Pod,
		Source: addrText(e.Source), Destination: addrText(e.Dest), SourceID: e.SourceID, DestID: e.DestID,
		Allowed: e.Allowed, Enforced: e.Enforced, Reason: e.Reason, Rule: e.Rule, Error: e.Err,
	}
	r.mu.Lock()
	r.ring[r.next] = ce
	r.next = (r.next + 1) % len(r.ring)
	r.n = min(r.n+1, len(r.ring))
	r.mu.Unlock()
}

// snapshot returns the events oldest first.
func (r *recentEvents) snapshot() []control.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]control.Event, 0, r.n)
	for i := range r.n {
		out = append(out, r.ring[(r.next-r.n+i+len(r.ring))%len(r.ring)])
	}
	return out
}

// addrText is an address for humans: empty when unknown (a handshake that
// failed never said where it was going).
func addrText(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
