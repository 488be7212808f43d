package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Index is a compiled, immutable policy: the thing every connection's
// decision is looked up in. It is built once per policy version and
// replaced as a whole (see Watcher), never changed in place, so readers
// need no lock.
//
// The work is split by how often it happens:
//   - Compile (per policy version) dedups selectors and groups grants by the
//     selector of their subject.
//   - Resolve (per endpoint: once when a pod is attached, once per
//     authenticated peer) matches the endpoint against every selector and
//     builds, for each direction, its own table: the peer selectors that
//     appear in grants for it, sorted, each with its allowed and denied ports.
//   - Decide (per connection) intersects the source's and destination's small
//     sorted selector lists and checks ports: no scan over rules, no
//     allocation.
type Index struct {
	mode      IsolationMode
	rules     []Rule
	selectors []Selector
	grants    []compiledGrant
	// bySubject[dir][selector ID] lists the grants whose subject is that
	// selector.
	bySubject [2][][]int32
	// isolators[dir] are the selectors that isolate their subjects (only
	// consulted in IsolateSelected mode).
	isolators [2][]int32
	// isPeer[selector ID] says whether the selector is the peer of any
	// grant: only those matter when the endpoint is the other side.
	isPeer []bool
	// stagedView says the index was compiled with the staged rules
	// (CompileStaged); inForce and staged count the rules it compiled.
	stagedView      bool
	inForce, staged int
}

type compiledGrant struct {
	dir     Direction
	action  Action
	subject int32
	peer    int32
	ports   []PortRange
	rule    int32
}

// Compile builds the decision index of the policy in force: the set's
// enforced rules. Staged rules (Rule.Staged) are left out, as if they were
// not written; CompileStaged builds the view that has them. It fails only
// on a set that refers to rules that do not exist, which parsers never
// produce.
func Compile(set *Set, mode IsolationMode) (*Index, error) {
	return compile(set, mode, false)
}

// CompileStaged builds the staged view of set: the index of every rule,
// staged and enforced alike, which is what the cluster would enforce were
// the staged rules switched to `mode: enforce`. It returns nil (and no
// error) when the set has no staged rule, since the view would then be the
// policy in force.
//
// The view's Rules are the set's Rules, as the enforced index's are, so a
// Verdict of either names its rule by the same number. Subjects are not
// shared: an endpoint must be resolved against each index it is decided
// with.
func CompileStaged(set *Set, mode IsolationMode) (*Index, error) {
	if !set.HasStaged() {
		if _, err := compileMode(mode); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return compile(set, mode, true)
}

func compileMode(mode IsolationMode) (IsolationMode, error) {
	if mode == "" {
		return IsolateAll, nil
	}
	return ParseIsolationMode(string(mode))
}

// compile builds the index of the set's enforced rules, and of its staged
// ones too if withStaged.
func compile(set *Set, mode IsolationMode, withStaged bool) (*Index, error) {
	mode, err := compileMode(mode)
	if err != nil {
		return nil, err
	}
	ix := &Index{mode: mode, rules: slices.Clone(set.Rules), stagedView: withStaged}
	for i := range set.Rules {
		switch {
		case !set.Rules[i].Staged:
			ix.inForce++
		case withStaged:
			ix.inForce++
			ix.staged++
		}
	}
	// skip leaves out what the index does not enforce.
	skip := func(rule int) bool { return !withStaged && set.staged(rule) }
	ids := make(map[string]int32)
	intern := func(s Selector) int32 {
		key := s.Key()
		if id, ok := ids[key]; ok {
			return id
		}
		id := int32(len(ix.selectors))
		ids[key] = id
		ix.selectors = append(ix.selectors, s)
		return id
	}
	for _, g := range set.Grants {
		if g.Rule < 0 || g.Rule >= len(set.Rules) {
			return nil, fmt.Errorf("policy: grant refers to rule %d of %d", g.Rule, len(set.Rules))
		}
		if skip(g.Rule) {
			continue
		}
		ports := g.Ports
		if len(ports) == 0 {
			ports = AllPorts
		}
		ix.grants = append(ix.grants, compiledGrant{
			dir: g.Direction, action: g.Action,
			subject: intern(g.Subject), peer: intern(g.Peer),
			ports: ports, rule: int32(g.Rule),
		})
	}
	seenIsolator := [2]map[int32]bool{{}, {}}
	for _, iso := range set.Isolations {
		if skip(iso.Rule) {
			// In IsolateSelected mode a staged policy isolates what it
			// selects in the staged view only: that it would cut off
			// the rest of those workloads' traffic is what staging shows.
			continue
		}
		id := intern(iso.Subject)
		if !seenIsolator[iso.Direction][id] {
			seenIsolator[iso.Direction][id] = true
			ix.isolators[iso.Direction] = append(ix.isolators[iso.Direction], id)
		}
	}
	n := len(ix.selectors)
	ix.isPeer = make([]bool, n)
	for d := range ix.bySubject {
		ix.bySubject[d] = make([][]int32, n)
	}
	for i, g := range ix.grants {
		ix.bySubject[g.dir][g.subject] = append(ix.bySubject[g.dir][g.subject], int32(i))
		ix.isPeer[g.peer] = true
	}
	return ix, nil
}

// Mode is the isolation mode the index was compiled for.
func (ix *Index) Mode() IsolationMode { return ix.mode }

// StagedView reports whether the index is a staged view (CompileStaged),
// whose verdicts are would-be verdicts, not the policy in force.
func (ix *Index) StagedView() bool { return ix.stagedView }

// Rules are the source rules; a Verdict's Rule indexes them. They are
// every rule of the set, staged ones included in an enforced index too
// (where no verdict names them), so that the enforced index and the staged
// view number rules alike.
func (ix *Index) Rules() []Rule { return ix.rules }

// Rule returns rule i, for explaining a Verdict.
func (ix *Index) Rule(i int) (Rule, bool) {
	if i < 0 || i >= len(ix.rules) {
		return Rule{}, false
	}
	return ix.rules[i], true
}

// Stats counts what the index holds.
type Stats struct {
	// Rules counts the rules the index decides with: the enforced ones,
	// and in a staged view the staged ones too.
	Rules int
	// Staged counts the staged rules among Rules: zero in an enforced
	// index.
	Staged            int
	Grants, Selectors int
}

// Stats counts rules, grants and distinct selectors.
func (ix *Index) Stats() Stats {
	return Stats{Rules: ix.inForce, Staged: ix.staged, Grants: len(ix.grants), Selectors: len(ix.selectors)}
}

// Subject is an endpoint resolved against one Index: what Decide needs,
// computed once. A Subject is valid only with the Index that made it.
type Subject struct {
	ix *Index
	ep Endpoint
	// peerOf lists, sorted, the peer-role selectors this endpoint matches.
	peerOf []int32
	side   [2]sideTable
}

// Endpoint is the endpoint the subject was resolved from.
func (s *Subject) Endpoint() *Endpoint { return &s.ep }

// sideTable is one direction of one endpoint's policy.
type sideTable struct {
	isolated bool
	// peers are the peer selectors of the grants for this endpoint and
	// direction, sorted, with their ports in the parallel slice.
	peers []int32
	ports []peerPorts
}

type peerPorts struct {
	allow, deny []portRule
}

type portRule struct {
	PortRange
	rule int32
}

// Resolve matches ep against the index. Call it once per endpoint (and
// again for each new Index), not per connection.
func (ix *Index) Resolve(ep *Endpoint) *Subject {
	s := &Subject{ix: ix, ep: *ep}
	matched := make([]bool, len(ix.selectors))
	for id := range ix.selectors {
		if ix.selectors[id].Matches(ep) {
			matched[id] = true
			if ix.isPeer[id] {
				s.peerOf = append(s.peerOf, int32(id))
			}
		}
	}
	if !ep.Workload {
		// Only workloads have policy of their own; an outside address is
		// only ever a peer.
		return s
	}
	for dir := range s.side {
		t := &s.side[dir]
		t.isolated = ix.mode == IsolateAll
		for _, id := range ix.isolators[dir] {
			if matched[id] {
				t.isolated = true
				break
			}
		}
		byPeer := map[int32]*peerPorts{}
		for id, grants := range ix.bySubject[dir] {
			if !matched[id] {
				continue
			}
			for _, gi := range grants {
				g := &ix.grants[gi]
				pp := byPeer[g.peer]
				if pp == nil {
					pp = &peerPorts{}
					byPeer[g.peer] = pp
				}
				for _, pr := range g.ports {
					r := portRule{PortRange: pr, rule: g.rule}
					if g.action == Deny {
						pp.deny = append(pp.deny, r)
					} else {
						pp.allow = append(pp.allow, r)
					}
				}
			}
		}
		t.peers = make([]int32, 0, len(byPeer))
		for id := range byPeer {
			t.peers = append(t.peers, id)
		}
		slices.Sort(t.peers)
		t.ports = make([]peerPorts, len(t.peers))
		for i, id := range t.peers {
			t.ports[i] = *byPeer[id]
			// Lowest rule first, so the verdict names the first rule in
			// source order and explanations are stable.
			sortPortRules(t.ports[i].allow)
			sortPortRules(t.ports[i].deny)
		}
	}
	return s
}

func sortPortRules(rs []portRule) {
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].rule < rs[j].rule })
}

// Reason says why a verdict is what it is.
type Reason uint8

// Reasons.
const (
	ReasonAllowed Reason = iota
	// ReasonDenyRule: a deny rule matched (deny wins over allow).
	ReasonDenyRule
	// ReasonNoEgressRule: the source is isolated for egress and no rule
	// allows it to send this flow.
	ReasonNoEgressRule
	// ReasonNoIngressRule: the destination is isolated for ingress and no
	// rule allows it to receive this flow.
	ReasonNoIngressRule
)

func (r Reason) String() string {
	switch r {
	case ReasonAllowed:
		return "allowed"
	case ReasonDenyRule:
		return "denied by rule"
	case ReasonNoEgressRule:
		return "no rule allows egress from the source"
	case ReasonNoIngressRule:
		return "no rule allows ingress to the destination"
	}
	return "unknown"
}

// Verdict is a decision. Rule is the deciding rule — the deny rule that
// matched, or an allow rule that granted the flow — or -1 when none did
// (default deny, or a side that is not isolated).
type Verdict struct {
	Allowed bool
	Reason  Reason
	Rule    int
}

// Decide says whether src may open a connection to dst on proto/port. It
// allocates nothing and reads only the index and the two subjects.
//
// A flow is allowed iff no deny rule matches it, and the source's egress
// allows it (the source is not a workload, is not isolated for egress, or
// an allow rule grants it), and the destination's ingress allows it
// (likewise).
func (ix *Index) Decide(src, dst *Subject, proto Protocol, port uint16) Verdict {
	if src.ix != ix || dst.ix != ix {
		// A subject of another index would be read with the wrong
		// selector IDs: refuse rather than guess.
		return Verdict{Reason: ReasonNoEgressRule, Rule: -1}
	}
	egress, ingress := &src.side[Egress], &dst.side[Ingress]
	if src.ep.Workload {
		if r := egress.find(dst.peerOf, true, &dst.ep, proto, port); r >= 0 {
			return Verdict{Reason: ReasonDenyRule, Rule: int(r)}
		}
	}
	if dst.ep.Workload {
		if r := ingress.find(src.peerOf, true, &dst.ep, proto, port); r >= 0 {
			return Verdict{Reason: ReasonDenyRule, Rule: int(r)}
		}
	}
	rule := int32(-1)
	if src.ep.Workload && egress.isolated {
		r := egress.find(dst.peerOf, false, &dst.ep, proto, port)
		if r < 0 {
			return Verdict{Reason: ReasonNoEgressRule, Rule: -1}
		}
		rule = r
	}
	if dst.ep.Workload && ingress.isolated {
		r := ingress.find(src.peerOf, false, &dst.ep, proto, port)
		if r < 0 {
			return Verdict{Reason: ReasonNoIngressRule, Rule: -1}
		}
		if rule < 0 || r < rule {
			rule = r
		}
	}
	return Verdict{Allowed: true, Reason: ReasonAllowed, Rule: int(rule)}
}

// find returns the lowest rule among the table's allow (or deny) entries
// for the peer selectors in peerOf that match the port, or -1. Both lists
// are sorted: it walks the shorter and binary-searches the longer.
func (t *sideTable) find(peerOf []int32, deny bool, dst *Endpoint, proto Protocol, port uint16) int32 {
	best := int32(-1)
	check := func(i int) {
		rules := t.ports[i].allow
		if deny {
			rules = t.ports[i].deny
		}
		for j := range rules {
			if best >= 0 && rules[j].rule >= best {
				break // sorted by rule: nothing better follows
			}
			if rules[j].matches(dst, proto, port) {
				best = rules[j].rule
				break
			}
		}
	}
	if len(t.peers) <= len(peerOf) {
		for i, id := range t.peers {
			if _, ok := slices.BinarySearch(peerOf, id); ok {
				check(i)
			}
		}
	} else {
		for _, id := range peerOf {
			if i, ok := slices.BinarySearch(t.peers, id); ok {
				check(i)
			}
		}
	}
	return best
}

func (r *portRule) matches(dst *Endpoint, proto Protocol, port uint16) bool {
	if r.Protocol != AnyProtocol && r.Protocol != proto {
		return false
	}
	if r.Name != "" {
		// Named ports are the destination's own names, as in Kubernetes.
		p, ok := dst.portNamed(r.Name, proto)
		return ok && p == port
	}
	return r.Lo <= port && port <= r.Hi
}

// SideExplanation is one direction's part of a decision.
type SideExplanation struct {
	// Applies is false when the endpoint is outside the cluster: it has no
	// policy of its own.
	Applies bool `json:"applies"`
	// Isolated: only flows a rule allows are accepted in this direction.
	Isolated bool `json:"isolated"`
	// Allowed and Denied list every matching rule, in source order.
	Allowed []Rule `json:"allowed_by,omitempty"`
	Denied  []Rule `json:"denied_by,omitempty"`
}

// Explanation is a decision with every rule behind it.
type Explanation struct {
	Verdict     Verdict         `json:"-"`
	Allowed     bool            `json:"allowed"`
	Reason      string          `json:"reason"`
	Source      string          `json:"source"`
	Destination string          `json:"destination"`
	Protocol    string          `json:"protocol"`
	Port        uint16          `json:"port"`
	Egress      SideExplanation `json:"egress"`
	Ingress     SideExplanation `json:"ingress"`
	// Staged says the decision is the staged view's (Index.StagedView): a
	// would-be verdict, not what the policy in force decides.
	Staged bool `json:"staged,omitempty"`
}

// Explain decides like Decide and also collects every rule that matched
// on each side. It allocates; use it for humans, not per connection.
func (ix *Index) Explain(src, dst *Subject, proto Protocol, port uint16) Explanation {
	v := ix.Decide(src, dst, proto, port)
	e := Explanation{
		Verdict: v, Allowed: v.Allowed, Reason: v.Reason.String(),
		Source: src.ep.String(), Destination: dst.ep.String(),
		Protocol: proto.String(), Port: port, Staged: ix.stagedView,
	}
	explainSide := func(t *sideTable, peerOf []int32, applies bool) SideExplanation {
		se := SideExplanation{Applies: applies, Isolated: applies && t.isolated}
		if !applies {
			return se
		}
		allowed, denied := map[int32]bool{}, map[int32]bool{}
		for i, id := range t.peers {
			if _, ok := slices.BinarySearch(peerOf, id); !ok {
				continue
			}
			for _, r := range t.ports[i].allow {
				if r.matches(&dst.ep, proto, port) {
					allowed[r.rule] = true
				}
			}
			for _, r := range t.ports[i].deny {
				if r.matches(&dst.ep, proto, port) {
					denied[r.rule] = true
				}
			}
		}
		se.Allowed, se.Denied = ix.rulesOf(allowed), ix.rulesOf(denied)
		return se
	}
	e.Egress = explainSide(&src.side[Egress], dst.peerOf, src.ep.Workload)
	e.Ingress = explainSide(&dst.side[Ingress], src.peerOf, dst.ep.Workload)
	return e
}

func (ix *Index) rulesOf(set map[int32]bool) []Rule {
	ids := make([]int, 0, len(set))
	for id := range set {
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	out := make([]Rule, len(ids))
	for i, id := range ids {
		out[i] = ix.rules[id]
	}
	return out
}

// String renders the explanation for a terminal:
//
//	ALLOW x/a -> y/b 80/TCP
//	  egress of x/a: allowed by policy.yaml:4:7: app:a -> app:b ports 80/TCP
//	  ingress of y/b: allowed by policy.yaml:4:7: app:a -> app:b ports 80/TCP
//
// A staged view's explanation ends its first line with "[staged view]",
// and a staged rule reads "policy.yaml:9:9: [audit] deny app:a -> …".
func (e Explanation) String() string {
	var b strings.Builder
	verdict := "DENY"
	if e.Allowed {
		verdict = "ALLOW"
	}
	view := ""
	if e.Staged {
		view = " [staged view]"
	}
	fmt.Fprintf(&b, "%s %s -> %s %d/%s (%s)%s\n", verdict, e.Source, e.Destination, e.Port, e.Protocol, e.Reason, view)
	side := func(name, who string, s SideExplanation) {
		prefix := fmt.Sprintf("  %s of %s: ", name, who)
		switch {
		case !s.Applies:
			fmt.Fprintf(&b, "%snot a workload, no policy of its own\n", prefix)
			return
		case len(s.Denied) > 0:
			for _, r := range s.Denied {
				fmt.Fprintf(&b, "%sdenied by %s\n", prefix, r)
			}
		case len(s.Allowed) > 0:
			for _, r := range s.Allowed {
				fmt.Fprintf(&b, "%sallowed by %s\n", prefix, r)
			}
		case s.Isolated:
			fmt.Fprintf(&b, "%sno rule allows it (default deny)\n", prefix)
		default:
			fmt.Fprintf(&b, "%snot isolated, allowed\n", prefix)
		}
	}
	side("egress", e.Source, e.Egress)
	side("ingress", e.Destination, e.Ingress)
	return b.String()
}
