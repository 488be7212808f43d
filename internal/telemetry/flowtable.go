package telemetry

import (
	"context"
	"sort"
	"strings"
	"sync"

	"github.com/ztcn/ztcn/internal/feed"
)

// DefaultFlowsKept bounds the table of finished flows: at a few hundred
// bytes each, 4,096 flows cost about a megabyte.
const DefaultFlowsKept = 4096

// FlowTable holds the open flows and the most recent finished ones, and
// tells subscribers (`ztcn flows --follow`) of every change.
type FlowTable struct {
	mu   sync.Mutex
	open map[uint64]*Flow
	ring []Flow
	next int
	full bool
	feed feed.Feed[Flow]
}

// NewFlowTable keeps up to kept finished flows (DefaultFlowsKept if 0).
func NewFlowTable(kept int) *FlowTable {
	if kept <= 0 {
		kept = DefaultFlowsKept
	}
	return &FlowTable{open: map[uint64]*Flow{}, ring: make([]Flow, kept)}
}

// Opened records a flow that is now carried.
func (t *FlowTable) Opened(f Flow) {
	t.mu.Lock()
	c := f
	t.open[f.ID] = &c
	t.mu.Unlock()
	t.feed.Publish(f)
}

// Finished records a flow that ended or was refused. A flow opened before
// is moved from the open set.
func (t *FlowTable) Finished(f Flow) {
	t.mu.Lock()
	if f.ID != 0 {
		delete(t.open, f.ID)
	}
	t.ring[t.next] = f
	t.next = (t.next + 1) % len(t.ring)
	t.full = t.full || t.next == 0
	t.mu.Unlock()
	t.feed.Publish(f)
}

// FlowFilter selects flows; zero fields match everything.
type FlowFilter struct {
	// Pod matches "name" or "namespace/name" on either side.
	Pod       string
	Namespace string
	// Verdict is "allow" or "deny".
	Verdict string
}

// Match reports whether f passes the filter.
func (ff FlowFilter) Match(f Flow) bool {
	if ff.Verdict != "" && f.Verdict != ff.Verdict {
		return false
	}
	if ff.Namespace != "" && f.Source.Namespace != ff.Namespace && f.Dest.Namespace != ff.Namespace {
		return false
	}
	if ff.Pod != "" && !peerIs(f.Source, ff.Pod) && !peerIs(f.Dest, ff.Pod) {
		return false
	}
	return true
}

func peerIs(p Peer, pod string) bool {
	if ns, name, ok := strings.Cut(pod, "/"); ok {
		return p.Namespace == ns && p.Name == name
	}
	return p.Name == pod
}

// List returns the open flows and the finished ones that match, oldest
// first by start time.
func (t *FlowTable) List(ff FlowFilter) []Flow {
	t.mu.Lock()
	var out []Flow
	n := t.next
	if t.full {
		n = len(t.ring)
	}
	for i := range n {
		f := t.ring[(t.next-n+i+len(t.ring))%len(t.ring)]
		if ff.Match(f) {
			out = append(out, f)
		}
	}
	for _, f := range t.open {
		if ff.Match(*f) {
			out = append(out, *f)
		}
	}
	t.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Subscribe delivers every flow recorded from now on until ctx is done.
func (t *FlowTable) Subscribe(ctx context.Context) <-chan Flow { return t.feed.Subscribe(ctx) }
