package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Lint reports rules that parse but are probably not what their author
// meant: duplicates, rules shadowed by wider ones, allows that a deny
// overrides, and over-broad rules. Every finding is a warning; schema
// errors come from Load.
//
// Lint works on grants grouped by rule. A native rule has two grants that
// mirror each other (the source's egress and the destination's ingress),
// so only its egress grant speaks for it, and each rule is reported at
// most once per kind of finding.
//
// Staged rules (Rule.Staged) are linted as the staged view sees them: a
// staged rule may be shadowed or overridden by any rule, an enforced rule
// only by enforced ones (a staged deny over an enforced allow is the
// tightening being staged, not a mistake). A staged rule that an enforced
// one already covers changes nothing even once enforced, and is reported
// as such. Every warning at a staged rule says that it is staged.
func Lint(set *Set) Diagnostics {
	l := newLinter(set)
	l.redundant()
	l.conflicts()
	l.overBroad()
	l.broadNetworks()
	l.diags.Sort()
	return l.diags
}

// lintUnit is one grant as lint compares it.
type lintUnit struct {
	g          *Grant
	native     bool
	staged     bool
	primary    bool // speaks for its rule (false for a native ingress mirror)
	subj, peer string
	ports      []PortRange // AllPorts when the grant lists none
	norm       []PortRange // ports as lintPortsCover wants its outer set
}

// lintBucket groups grants that may cover each other.
type lintBucket struct {
	dir        Direction
	action     Action
	subj, peer string
}

type linter struct {
	set      *Set
	units    []lintUnit // in the order of their rules' positions
	byRule   map[int][]int
	buckets  map[lintBucket][]int
	reported map[string]bool
	diags    Diagnostics
}

func newLinter(set *Set) *linter {
	l := &linter{set: set, byRule: map[int][]int{}, buckets: map[lintBucket][]int{}, reported: map[string]bool{}}
	for i := range set.Grants {
		g := &set.Grants[i]
		if g.Rule < 0 || g.Rule >= len(set.Rules) {
			continue
		}
		native := set.Rules[g.Rule].Origin == "native"
		ports := g.Ports
		if len(ports) == 0 {
			ports = AllPorts
		}
		l.units = append(l.units, lintUnit{
			g: g, native: native, staged: set.Rules[g.Rule].Staged, primary: !native || g.Direction == Egress,
			subj: g.Subject.Key(), peer: g.Peer.Key(), ports: ports, norm: lintNormalize(ports),
		})
	}
	sort.SliceStable(l.units, func(i, j int) bool { return l.ruleBefore(l.units[i].g.Rule, l.units[j].g.Rule) })
	for i, u := range l.units {
		if u.primary {
			l.byRule[u.g.Rule] = append(l.byRule[u.g.Rule], i)
		}
		b := lintBucket{u.g.Direction, u.g.Action, u.subj, u.peer}
		l.buckets[b] = append(l.buckets[b], i)
	}
	return l
}

// ruleBefore orders rules by where they are written, which is what
// "earlier" means to a reader (rule indexes follow the loader's order).
func (l *linter) ruleBefore(a, b int) bool {
	pa, pb := l.set.Rules[a].Pos, l.set.Rules[b].Pos
	if pa.File != pb.File {
		return pa.File < pb.File
	}
	if pa.Line != pb.Line {
		return pa.Line < pb.Line
	}
	if pa.Col != pb.Col {
		return pa.Col < pb.Col
	}
	return a < b
}

// rules returns the indexes of rules that have primary grants, in order.
func (l *linter) rules() []int {
	out := make([]int, 0, len(l.byRule))
	for r := range l.byRule {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return l.ruleBefore(out[i], out[j]) })
	return out
}

func (l *linter) warn(rule int, kind, format string, args ...any) {
	key := fmt.Sprintf("%d %s", rule, kind)
	if l.reported[key] {
		return
	}
	l.reported[key] = true
	msg := fmt.Sprintf(format, args...)
	if l.set.Rules[rule].Staged && !strings.HasPrefix(msg, lintStaged) {
		// A warning must not read as if the rule acted on traffic.
		msg = lintStaged + ": " + msg
	}
	l.diags = append(l.diags, Diagnostic{Pos: l.set.Rules[rule].Pos, Severity: SeverityWarning, Message: msg})
}

// lintStaged starts every warning at a staged rule.
const lintStaged = "staged rule"

// lintAffects reports whether rule v takes part in the view that rule u is
// judged in: u's own view is the staged one if u is staged, the policy in
// force otherwise, and a staged v is not in force.
func lintAffects(u, v *lintUnit) bool { return u.staged || !v.staged }

// candidates returns the grants with u's direction and the given action
// whose selectors are u's or "*", so that they cover at least u's
// endpoints. Units are numbered in position order, so the lowest index is
// the earliest.
func (l *linter) candidates(u *lintUnit, action Action) []int {
	var out []int
	subjs, peers := []string{u.subj}, []string{u.peer}
	if u.subj != "*" {
		subjs = append(subjs, "*")
	}
	if u.peer != "*" {
		peers = append(peers, "*")
	}
	for _, s := range subjs {
		for _, p := range peers {
			out = append(out, l.buckets[lintBucket{u.g.Direction, action, s, p}]...)
		}
	}
	return out
}

// redundant reports rules every grant of which other rules already give:
// "duplicate" when one earlier rule is the same, "shadowed" otherwise.
// Of rules that are the same, only the later ones are reported, so that
// removing every reported rule never removes a flow.
func (l *linter) redundant() {
	for _, r := range l.rules() {
		dupOf := -1
		allDup := true
		var by []int
		for _, ui := range l.byRule[r] {
			cover, exact := l.coverOf(ui)
			if cover < 0 {
				by = nil
				break
			}
			if !exact || (dupOf >= 0 && dupOf != cover) {
				allDup = false
			}
			dupOf = cover
			if !slices.Contains(by, cover) {
				by = append(by, cover)
			}
		}
		if len(by) == 0 {
			continue
		}
		// A staged rule covered by enforced ones alone changes nothing
		// when enforced: staging it shows nothing either.
		pointless := l.set.Rules[r].Staged && !slices.ContainsFunc(by, func(b int) bool { return l.set.Rules[b].Staged })
		verb := lintVerb(l.units[l.byRule[r][0]].g.Action)
		if allDup && l.twins(dupOf, r) {
			if pointless {
				l.warn(r, "redundant", "%s changes nothing: it duplicates %s", lintStaged, l.rulesAt([]int{dupOf}, "enforced "))
				continue
			}
			l.warn(r, "redundant", "duplicate of %s", l.rulesAt([]int{dupOf}, ""))
			continue
		}
		sort.Slice(by, func(i, j int) bool { return l.ruleBefore(by[i], by[j]) })
		if pointless {
			l.warn(r, "redundant", "%s changes nothing: shadowed by %s, which already %s everything it does", lintStaged, l.rulesAt(by, "enforced "), verb)
			continue
		}
		l.warn(r, "redundant", "shadowed by %s, which already %s everything this rule does", l.rulesAt(by, ""), verb)
	}
}

// twins reports whether every grant of rule a has the same grant in rule b.
func (l *linter) twins(a, b int) bool {
	for _, ai := range l.byRule[a] {
		found := false
		for _, bi := range l.byRule[b] {
			if lintSame(&l.units[ai], &l.units[bi]) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// lintSame reports whether two grants give exactly the same flows.
func lintSame(u, v *lintUnit) bool {
	return u.g.Direction == v.g.Direction && u.g.Action == v.g.Action && u.subj == v.subj && u.peer == v.peer &&
		u.native == v.native && lintPortsCover(u.norm, v.ports) && lintPortsCover(v.norm, u.ports)
}

// coverOf returns the rule whose grant covers unit ui, preferring a wider
// one, then (for a staged unit) an enforced one, then the earliest; exact
// says that grant is the same as ui and from an earlier rule. An exact
// twin written later does not count, the later one is reported, except
// that of a staged and an enforced twin the staged one always is.
func (l *linter) coverOf(ui int) (rule int, exact bool) {
	u := &l.units[ui]
	wider, twin := -1, -1
	// better reports whether vi is a better cover than the best so far.
	better := func(vi, best int) bool {
		if best < 0 {
			return true
		}
		if vs, bs := l.units[vi].staged, l.units[best].staged; vs != bs {
			return !vs
		}
		return vi < best
	}
	for _, vi := range l.candidates(u, u.g.Action) {
		v := &l.units[vi]
		// A native rule also opens the destination's ingress, which only
		// another native rule mirrors.
		if v.g.Rule == u.g.Rule || (u.native && !v.native) || !lintAffects(u, v) || !lintPortsCover(v.norm, u.ports) {
			continue
		}
		switch {
		case !lintSame(u, v):
			if better(vi, wider) {
				wider = vi
			}
		case (vi < ui || u.staged && !v.staged) && better(vi, twin):
			twin = vi
		}
	}
	if wider >= 0 {
		return l.units[wider].g.Rule, false
	}
	if twin >= 0 {
		return l.units[twin].g.Rule, true
	}
	return -1, false
}

// conflicts reports allow rules that a deny overrides on some ports.
func (l *linter) conflicts() {
	for _, r := range l.rules() {
		for _, ui := range l.byRule[r] {
			u := &l.units[ui]
			if u.g.Action != Allow {
				break
			}
			var ports []string
			var by []int
			denies := l.candidates(u, Deny)
			sort.Ints(denies) // report in position order
			for _, vi := range denies {
				v := &l.units[vi]
				if !lintAffects(u, v) {
					continue // a staged deny over an enforced allow is the point of staging it
				}
				overlap := lintPortsOverlap(u.ports, v.ports)
				if len(overlap) == 0 {
					continue
				}
				if !slices.Contains(by, v.g.Rule) {
					by = append(by, v.g.Rule)
				}
				for _, p := range overlap {
					if s := p.String(); !slices.Contains(ports, s) {
						ports = append(ports, s)
					}
				}
			}
			if len(by) > 0 {
				sort.Slice(by, func(i, j int) bool { return l.ruleBefore(by[i], by[j]) })
				l.warn(r, "conflict", "deny wins: %s is never allowed on ports %s (denied by %s)",
					lintFlow(u), strings.Join(ports, ","), l.rulesAt(by, ""))
				break
			}
		}
	}
}

// overBroad reports allow rules that open everything to everything, or to
// every address.
func (l *linter) overBroad() {
	for _, r := range l.rules() {
		for _, ui := range l.byRule[r] {
			u := &l.units[ui]
			if u.g.Action != Allow {
				continue
			}
			if u.subj == "*" && u.peer == "*" {
				l.warn(r, "any-to-any", `over-broad: "*" -> "*" lets every endpoint reach every other on ports %s; name the workloads instead`, lintPortsText(u.ports))
			}
			for _, sel := range []*Selector{&u.g.Subject, &u.g.Peer} {
				for _, t := range sel.Terms {
					// An ipBlock with except is a deliberate carve-out.
					if t.Kind != TermCIDR || len(t.Except) > 0 {
						continue
					}
					for _, p := range t.Prefixes {
						if p.Bits() == 0 {
							l.warn(r, "cidr "+p.String(), "over-broad: cidr:%s matches every %s address, workloads included", p, lintFamily(p.Addr().Is4()))
						}
					}
				}
			}
		}
	}
}

// broadNetworks reports named networks that hold every address, which
// makes external:<name> mean "anything outside the cluster".
func (l *linter) broadNetworks() {
	names := make([]string, 0, len(l.set.Networks))
	for name := range l.set.Networks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		nw := l.set.Networks[name]
		for _, p := range nw.Prefixes {
			if p.Bits() == 0 {
				l.diags = append(l.diags, Diagnostic{Pos: nw.Pos, Severity: SeverityWarning,
					Message: fmt.Sprintf("over-broad: network %q contains %s, so external:%s matches every %s address outside the cluster", name, p, name, lintFamily(p.Addr().Is4()))})
			}
		}
	}
}

func lintFamily(v4 bool) string {
	if v4 {
		return "IPv4"
	}
	return "IPv6"
}

func lintVerb(a Action) string {
	if a == Deny {
		return "denies"
	}
	return "allows"
}

// rulesAt names rules by position and text for a message, the text of a
// staged rule marked "[audit]" as Rule.String marks it; kind ("enforced "
// or "") qualifies them all.
func (l *linter) rulesAt(rules []int, kind string) string {
	parts := make([]string, len(rules))
	for i, r := range rules {
		rule := l.set.Rules[r]
		text := rule.Text
		if rule.Staged {
			text = "[audit] " + text
		}
		parts[i] = fmt.Sprintf("%s (%s)", rule.Pos, text)
	}
	if len(parts) == 1 {
		return "the " + kind + "rule at " + parts[0]
	}
	return "the " + kind + "rules at " + strings.Join(parts, ", ")
}

// lintFlow is a grant's flow, source first.
func lintFlow(u *lintUnit) string {
	if u.g.Direction == Ingress {
		return u.peer + " -> " + u.subj
	}
	return u.subj + " -> " + u.peer
}

func lintPortsText(ps []PortRange) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Port sets. Port 0 carries no traffic, so a range starting at 0 and one
// starting at 1 are the same. A named port resolves to some port of the
// destination, unknown here, so it is covered only by the same name or by
// every port, and overlaps a numeric range only if that range is every port.

// lintLo is a range's first real port.
func lintLo(r PortRange) int { return max(int(r.Lo), 1) }

func lintAllNumbers(r PortRange) bool { return r.Name == "" && lintLo(r) == 1 && r.Hi == 65535 }

// lintProtoCovers reports whether ranges of protocol outer include inner's.
func lintProtoCovers(outer, inner Protocol) bool { return outer == AnyProtocol || outer == inner }

// lintNormalize returns ports as lintPortsCover wants its outer set: the
// named ports, then for each protocol its numeric ranges merged, sorted and
// including the AnyProtocol ones, so that a range is covered exactly when
// one of them contains it. Lint normalizes each grant once, not per
// comparison.
func lintNormalize(ports []PortRange) []PortRange {
	var out []PortRange
	for _, p := range ports {
		if p.Name != "" {
			out = append(out, p)
		}
	}
	for _, proto := range []Protocol{AnyProtocol, TCP, UDP, SCTP, ICMP} {
		var spans []PortRange
		for _, p := range ports {
			if p.Name == "" && lintProtoCovers(p.Protocol, proto) && lintLo(p) <= int(p.Hi) {
				spans = append(spans, PortRange{Protocol: proto, Lo: uint16(lintLo(p)), Hi: p.Hi})
			}
		}
		sort.Slice(spans, func(i, j int) bool { return spans[i].Lo < spans[j].Lo })
		first := len(out)
		for _, s := range spans {
			if n := len(out); n > first && int(s.Lo) <= int(out[n-1].Hi)+1 {
				out[n-1].Hi = max(out[n-1].Hi, s.Hi)
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

// lintPortsCover reports whether every port of inner is in outer, which
// lintNormalize has prepared.
func lintPortsCover(outer, inner []PortRange) bool {
	for _, r := range inner {
		if !lintRangeCovered(outer, r) {
			return false
		}
	}
	return true
}

func lintRangeCovered(outer []PortRange, r PortRange) bool {
	if r.Name != "" {
		for _, o := range outer {
			if lintProtoCovers(o.Protocol, r.Protocol) && (o.Name == r.Name || lintAllNumbers(o)) {
				return true
			}
		}
		return false
	}
	if lintLo(r) > int(r.Hi) {
		return true // only port 0: no port at all
	}
	for _, o := range outer {
		if o.Name == "" && o.Protocol == r.Protocol && int(o.Lo) <= lintLo(r) && o.Hi >= r.Hi {
			return true
		}
	}
	return false
}

// lintPortsOverlap returns the ports that both a and b hold.
func lintPortsOverlap(a, b []PortRange) []PortRange {
	var out []PortRange
	for _, x := range a {
		for _, y := range b {
			if !lintProtoCovers(x.Protocol, y.Protocol) && !lintProtoCovers(y.Protocol, x.Protocol) {
				continue
			}
			proto := x.Protocol
			if proto == AnyProtocol {
				proto = y.Protocol
			}
			switch {
			case x.Name != "" && (x.Name == y.Name || lintAllNumbers(y)):
				out = append(out, PortRange{Protocol: proto, Name: x.Name})
			case y.Name != "" && lintAllNumbers(x):
				out = append(out, PortRange{Protocol: proto, Name: y.Name})
			case x.Name == "" && y.Name == "":
				lo, hi := max(lintLo(x), lintLo(y)), min(x.Hi, y.Hi)
				if lo > int(hi) {
					continue
				}
				if lo == 1 && hi == 65535 {
					lo = 0 // prints as "*"
				}
				out = append(out, PortRange{Protocol: proto, Lo: uint16(lo), Hi: hi})
			}
		}
	}
	return out
}
