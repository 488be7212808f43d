// Package suggest proposes the least-privilege native policy for observed
// traffic (`ztcn policy suggest`): the policy that, loaded with isolation
// "all", allows every observed flow and, between the endpoints that were
// observed, nothing else.
//
// # Evidence
//
// A flow is evidence when policy decided it (a verdict of allow or deny;
// failed handshakes and refused plaintext are not decisions), at least one
// side is a workload and the other a workload or an address, and it was
// either allowed or let through although denied (enforced false: audit
// mode, where would-be denials are exactly what a policy is missing).
// Denials that were enforced (strict mode) may be unwanted traffic; they
// are evidence only WithDenied.
//
// Workloads the input knows only by SPIFFE ID (the audit log names no
// namespace, pod or service account) get the namespace and service
// account of a spiffe://<td>/ns/<ns>/sa/<sa> ID, as the data plane reads
// them; comments then name them by SPIFFE ID.
//
// # How the policy is built
//
// Endpoints are grouped into units that no native selector can tell apart
// (same namespace, labels, service account and SPIFFE ID: the replicas of
// a deployment), and units into roles: units with exactly the same flows,
// peer unit by peer unit, protocol and port. Every workload role gets the
// most readable selector that matches all of its units and no other
// observed workload — app:, then ns: with app:, then the fewest other
// labels, then sa:, then the SPIFFE ID — and outside addresses with the
// same flows become one network of /32 (or /128) prefixes. One rule per
// pair of roles and protocol then lists exactly the ports observed between
// them, consecutive ports merged into a range. Because every selector
// matches its role only, and a role's units all have the same flows, the
// rules allow between observed endpoints exactly what was observed.
//
// Where no native selector can exclude an observed workload (its labels
// are a superset of the role's, with the same service account), the
// suggestion says so in a warning: the rules then also apply to it.
//
// Before returning, Suggest loads its output, compiles it with isolation
// "all", checks that every evidence flow is allowed (an error otherwise: a
// bug) and reports as warnings any flow between observed endpoints that
// it allows but that was not observed.
package suggest

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ztcn/ztcn/internal/policy"
	"github.com/ztcn/ztcn/internal/telemetry"
)

// Option configures Suggest.
type Option func(*options)

type options struct {
	withDenied bool
	namespace  string
}

// WithDenied takes enforced denials as evidence too. In strict mode they
// may be traffic that should stay denied; in audit mode they are not
// enforced and are evidence anyway.
func WithDenied() Option { return func(o *options) { o.withDenied = true } }

// InNamespace keeps only flows with a workload of namespace ns on either
// side. Selectors are still checked against every observed workload.
func InNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// Suggestion is a proposed policy and what it was made from.
type Suggestion struct {
	// YAML is the native policy, with one comment per rule saying its
	// evidence; JSON is the same policy, the evidence in each rule's
	// description. Both load with policy.LoadBytes.
	YAML, JSON []byte
	// Flows counts the evidence: connections, each counted once even if
	// both of its sides recorded it.
	Flows int
	// Workloads counts the workloads (namespace/name) in the evidence.
	Workloads int
	// Rules counts the policy's rules (allow entries).
	Rules int
	// Skipped counts the flows that are not evidence, by reason.
	Skipped map[string]int
	// Warnings say where the policy allows more than was observed.
	Warnings []string
}

// Summary is "N flows from M workloads → K rules".
func (s *Suggestion) Summary() string {
	return fmt.Sprintf("%d flows from %d workloads → %d rules", s.Flows, s.Workloads, s.Rules)
}

// Reasons a flow is not evidence, the keys of Suggestion.Skipped.
const (
	SkipNoDecision = "no policy decision (failed handshake, refused plaintext)"
	SkipDenied     = "denied and enforced (strict mode: evidence only if denials are included)"
	SkipNoWorkload = "no workload on either side"
	SkipNoEndpoint = "an endpoint with neither identity nor address"
	SkipNamespace  = "outside the namespace"
	SkipProtocol   = "unknown protocol"
	SkipNoPort     = "no destination port"
	SkipDuplicate  = "another record of a connection already counted"
	SkipUnnamed    = "a workload no selector can name"
)

// Suggest proposes the policy for flows.
func Suggest(flows []telemetry.Flow, opts ...Option) (*Suggestion, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	s := &suggester{opts: o, units: map[string]*unit{}, edges: map[edgeKey]*evidence{}, skipped: map[string]int{}}
	s.collect(flows)
	if len(s.evidence) == 0 {
		return nil, fmt.Errorf("no flow to suggest a policy from: %s", s.skippedText(len(flows)))
	}
	s.roles()
	s.rules()
	if len(s.rulesOut) == 0 {
		return nil, fmt.Errorf("no flow to suggest a policy from: %s", s.skippedText(len(flows)))
	}
	sg := &Suggestion{Flows: len(s.evidence), Workloads: s.workloads(), Skipped: s.skipped, Warnings: s.warnings}
	var err error
	if sg.YAML, err = s.renderYAML(); err != nil {
		return nil, fmt.Errorf("suggest: rendering the policy: %w", err)
	}
	if sg.JSON, err = s.renderJSON(); err != nil {
		return nil, fmt.Errorf("suggest: rendering the policy: %w", err)
	}
	for _, out := range []struct {
		name string
		doc  []byte
	}{{"suggested.yaml", sg.YAML}, {"suggested.json", sg.JSON}} {
		rules, warnings, err := s.verify(out.name, out.doc)
		if err != nil {
			return nil, err
		}
		if out.name == "suggested.yaml" {
			sg.Rules = rules
			sg.Warnings = append(sg.Warnings, warnings...)
		}
	}
	return sg, nil
}

// suggester holds one suggestion's model.
type suggester struct {
	opts options
	// units are every endpoint observed, evidence or not, by key.
	units map[string]*unit
	// evidence are the evidence flows, deduplicated, in order.
	evidence []evFlow
	edges    map[edgeKey]*evidence
	// workloadUnits are the workload units, in key order: what every
	// selector is checked against.
	workloadUnits []*unit
	rulesOut      []*rule
	networks      []network
	skipped       map[string]int
	warnings      []string
}

// unit is a set of endpoints no native selector tells apart: a workload's
// replicas, or one outside address.
type unit struct {
	key string
	ep  policy.Endpoint
	// names are the endpoints' display names, with their addresses.
	names names
	sel   *selector
}

func (u *unit) String() string { return u.names.list(false, 1) }

// evFlow is one evidence flow.
type evFlow struct {
	src, dst         policy.Endpoint
	srcU, dstU       *unit
	srcName, dstName string
	proto            policy.Protocol
	port             uint16
}

type edgeKey struct {
	src, dst *unit
	proto    policy.Protocol
	port     uint16
}

// evidence sums up the flows behind an edge or a rule.
type evidence struct {
	count       int
	first, last time.Time
	srcs, dsts  names
}

func (e *evidence) add(f *telemetry.Flow, src, dst *policy.Endpoint) {
	e.count++
	if t := f.Start; !t.IsZero() {
		if e.first.IsZero() || t.Before(e.first) {
			e.first = t
		}
		end := f.End
		if end.IsZero() {
			end = t
		}
		if end.After(e.last) {
			e.last = end
		}
	}
	if e.srcs == nil {
		e.srcs, e.dsts = names{}, names{}
	}
	e.srcs.add(displayName(f.Source), src.IP)
	e.dsts.add(displayName(f.Dest), dst.IP)
}

func (e *evidence) merge(o *evidence) {
	e.count += o.count
	if !o.first.IsZero() && (e.first.IsZero() || o.first.Before(e.first)) {
		e.first = o.first
	}
	if o.last.After(e.last) {
		e.last = o.last
	}
	if e.srcs == nil {
		e.srcs, e.dsts = names{}, names{}
	}
	e.srcs.merge(o.srcs)
	e.dsts.merge(o.dsts)
}

// names maps display names to the addresses seen for them.
type names map[string]map[netip.Addr]bool

func (n names) add(name string, ip netip.Addr) {
	if n[name] == nil {
		n[name] = map[netip.Addr]bool{}
	}
	if ip.IsValid() && ip.String() != name {
		n[name][ip] = true
	}
}

func (n names) merge(o names) {
	for name, ips := range o {
		if n[name] == nil {
			n[name] = map[netip.Addr]bool{}
		}
		for ip := range ips {
			n[name][ip] = true
		}
	}
}

// list writes up to max names, sorted, with their addresses if withIPs.
func (n names) list(withIPs bool, max int) string {
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for i, k := range keys {
		if i == max {
			parts[len(parts)-1] += fmt.Sprintf(" and %d more", len(keys)-max)
			break
		}
		s := k
		if withIPs && len(n[k]) > 0 {
			ips := make([]netip.Addr, 0, len(n[k]))
			for ip := range n[k] {
				ips = append(ips, ip)
			}
			slices.SortFunc(ips, netip.Addr.Compare)
			txt := make([]string, len(ips))
			for j, ip := range ips {
				txt[j] = ip.String()
			}
			s += " (" + strings.Join(txt, ", ") + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// displayName names a peer for humans: namespace/name, else its SPIFFE
// ID, else its address.
func displayName(p telemetry.Peer) string {
	switch {
	case p.Workload() && p.Name != "" && p.Namespace != "":
		return p.Namespace + "/" + p.Name
	case p.Workload() && p.Name != "":
		return p.Name
	case p.Workload():
		return p.SPIFFEID
	}
	return p.IP.Unmap().String()
}

// endpointOf is the policy's view of a peer; false if it is neither a
// workload nor an address.
func endpointOf(p telemetry.Peer) (policy.Endpoint, bool) {
	ip := p.IP.Unmap()
	if p.Workload() {
		var labels map[string]string
		if len(p.Labels) > 0 {
			labels = make(map[string]string, len(p.Labels))
			for k, v := range p.Labels {
				labels[k] = v
			}
		}
		ep := policy.Endpoint{Workload: true, Namespace: p.Namespace, Name: p.Name, ServiceAccount: p.ServiceAccount,
			Labels: labels, SPIFFEID: p.SPIFFEID, IP: ip}
		if ep.Namespace == "" && ep.ServiceAccount == "" {
			// The audit log names workloads by SPIFFE ID alone. The data
			// plane reads the namespace and service account of a peer from
			// the ID's Kubernetes layout, spiffe://<td>/ns/<ns>/sa/<sa>, and
			// so does the suggestion, so that ns: and sa: mean the same.
			if id, err := spiffeid.FromString(p.SPIFFEID); err == nil {
				segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
				if len(segs) == 4 && segs[0] == "ns" && segs[2] == "sa" {
					ep.Namespace, ep.ServiceAccount = segs[1], segs[3]
				}
			}
		}
		return ep, true
	}
	if ip.IsValid() {
		return policy.Endpoint{IP: ip}, true
	}
	return policy.Endpoint{}, false
}

// unitKey is equal for endpoints that no native selector tells apart.
func unitKey(ep *policy.Endpoint) string {
	if !ep.Workload {
		return "ip " + ep.IP.String()
	}
	labels := make([]string, 0, len(ep.Labels))
	for k, v := range ep.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	return strings.Join([]string{"workload", ep.Namespace, ep.ServiceAccount, ep.SPIFFEID, strings.Join(labels, "\x01")}, "\x00")
}

func (s *suggester) unitOf(ep *policy.Endpoint, name string) *unit {
	key := unitKey(ep)
	u := s.units[key]
	if u == nil {
		u = &unit{key: key, ep: *ep, names: names{}}
		s.units[key] = u
	}
	u.names.add(name, ep.IP)
	return u
}

// protocolOf reads a flow's protocol; "" is TCP.
func protocolOf(s string) (policy.Protocol, bool) {
	if s == "" {
		return policy.TCP, true
	}
	if strings.EqualFold(s, "icmp") {
		return policy.ICMP, true
	}
	p, err := policy.ParseProtocol(s)
	return p, err == nil
}

// collect registers every observed endpoint and keeps the evidence.
func (s *suggester) collect(in []telemetry.Flow) {
	flows := slices.Clone(in)
	// Sorted, so that which of two records of a connection is kept, and
	// so the output, does not depend on the order of the input.
	slices.SortStableFunc(flows, func(a, b telemetry.Flow) int {
		return cmp.Or(a.Start.Compare(b.Start),
			a.Source.IP.Compare(b.Source.IP), cmp.Compare(a.Source.Port, b.Source.Port),
			a.Dest.IP.Compare(b.Dest.IP), cmp.Compare(a.Dest.Port, b.Dest.Port),
			cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
	})
	type tuple struct {
		src, dst netip.AddrPort
		proto    policy.Protocol
	}
	seen := map[tuple][]time.Time{}
	for i := range flows {
		f := &flows[i]
		src, okSrc := endpointOf(f.Source)
		dst, okDst := endpointOf(f.Dest)
		var srcU, dstU *unit
		if okSrc {
			srcU = s.unitOf(&src, displayName(f.Source))
		}
		if okDst {
			dstU = s.unitOf(&dst, displayName(f.Dest))
		}
		proto, okProto := protocolOf(f.Protocol)
		port := f.Dest.Port
		switch {
		case f.Kind == "handshake_failed" || f.Kind == "plaintext_refused" ||
			f.Verdict != telemetry.VerdictAllow && f.Verdict != telemetry.VerdictDeny:
			s.skipped[SkipNoDecision]++
			continue
		case f.Verdict == telemetry.VerdictDeny && f.Enforced && !s.opts.withDenied:
			s.skipped[SkipDenied]++
			continue
		case !okSrc || !okDst:
			s.skipped[SkipNoEndpoint]++
			continue
		case !src.Workload && !dst.Workload:
			s.skipped[SkipNoWorkload]++
			continue
		case s.opts.namespace != "" && !(src.Workload && src.Namespace == s.opts.namespace) && !(dst.Workload && dst.Namespace == s.opts.namespace):
			s.skipped[SkipNamespace]++
			continue
		case !okProto:
			s.skipped[SkipProtocol]++
			continue
		case proto == policy.ICMP:
			port = 0
		case port == 0:
			s.skipped[SkipNoPort]++
			continue
		}
		// Both sides of a connection may record it (the client's agent
		// outbound, the server's inbound), and inputs may overlap: the
		// same addresses and ports within a second are one connection
		// (an ephemeral port is not reused that fast).
		if f.Source.Port != 0 && src.IP.IsValid() && dst.IP.IsValid() {
			k := tuple{netip.AddrPortFrom(src.IP, f.Source.Port), netip.AddrPortFrom(dst.IP, port), proto}
			dup := false
			for _, t := range seen[k] {
				if d := f.Start.Sub(t); d < time.Second && d > -time.Second {
					dup = true
					break
				}
			}
			if dup {
				s.skipped[SkipDuplicate]++
				continue
			}
			seen[k] = append(seen[k], f.Start)
		}
		s.evidence = append(s.evidence, evFlow{src: src, dst: dst, srcU: srcU, dstU: dstU,
			srcName: displayName(f.Source), dstName: displayName(f.Dest), proto: proto, port: port})
		k := edgeKey{srcU, dstU, proto, port}
		e := s.edges[k]
		if e == nil {
			e = &evidence{}
			s.edges[k] = e
		}
		e.add(f, &src, &dst)
	}
}

func (s *suggester) skippedText(read int) string {
	if read == 0 {
		return "the input holds no flows"
	}
	reasons := make([]string, 0, len(s.skipped))
	for r, n := range s.skipped {
		reasons = append(reasons, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(reasons)
	if read == 1 {
		return fmt.Sprintf("the one flow is not evidence (%s)", strings.Join(reasons, "; "))
	}
	return fmt.Sprintf("none of the %d flows is evidence (%s)", read, strings.Join(reasons, "; "))
}

// workloads counts the workloads named in the evidence.
func (s *suggester) workloads() int {
	seen := map[string]bool{}
	for _, f := range s.evidence {
		if f.src.Workload {
			seen[f.srcName] = true
		}
		if f.dst.Workload {
			seen[f.dstName] = true
		}
	}
	return len(seen)
}

// sortedUnits returns the units in key order.
func (s *suggester) sortedUnits() []*unit {
	us := make([]*unit, 0, len(s.units))
	for _, u := range s.units {
		us = append(us, u)
	}
	slices.SortFunc(us, func(a, b *unit) int { return strings.Compare(a.key, b.key) })
	return us
}

// roles groups the units of the evidence by their flows and gives each
// group a selector.
func (s *suggester) roles() {
	sigs := map[*unit][]string{}
	for k := range s.edges {
		port := fmt.Sprintf("%d/%d", k.proto, k.port)
		sigs[k.src] = append(sigs[k.src], "to "+k.dst.key+" "+port)
		sigs[k.dst] = append(sigs[k.dst], "from "+k.src.key+" "+port)
	}
	for _, u := range s.sortedUnits() {
		if u.ep.Workload {
			s.workloadUnits = append(s.workloadUnits, u)
		}
	}
	byRole := map[string][]*unit{}
	var order []string
	for _, u := range s.sortedUnits() {
		sig, ok := sigs[u]
		if !ok {
			continue
		}
		sort.Strings(sig)
		k := strings.Join(sig, "\n")
		if !u.ep.Workload {
			k = "outside\n" + k
		}
		if byRole[k] == nil {
			order = append(order, k)
		}
		byRole[k] = append(byRole[k], u)
	}
	var outside [][]*unit
	for _, k := range order {
		us := byRole[k]
		if us[0].ep.Workload {
			s.selectRole(us)
		} else {
			outside = append(outside, us)
		}
	}
	s.networksFor(outside)
}

// network is a named group of outside addresses with the same flows.
type network struct {
	name     string
	prefixes []netip.Prefix
}

// networksFor names each group of outside addresses observed-1, … in the
// order of their lowest address.
func (s *suggester) networksFor(groups [][]*unit) {
	for _, g := range groups {
		slices.SortFunc(g, func(a, b *unit) int { return a.ep.IP.Compare(b.ep.IP) })
	}
	slices.SortFunc(groups, func(a, b []*unit) int { return a[0].ep.IP.Compare(b[0].ep.IP) })
	for i, g := range groups {
		nw := network{name: fmt.Sprintf("observed-%d", i+1)}
		for _, u := range g {
			nw.prefixes = append(nw.prefixes, netip.PrefixFrom(u.ep.IP, u.ep.IP.BitLen()))
		}
		sel := &selector{
			terms: []policy.Term{{Kind: policy.TermExternal, Value: nw.name, Prefixes: slices.Clone(nw.prefixes)}},
			texts: []string{"external:" + nw.name},
		}
		for _, u := range g {
			u.sel = sel
		}
		s.networks = append(s.networks, nw)
	}
}

// selector is a native selector: terms to match with, texts to write.
type selector struct {
	terms []policy.Term
	texts []string
}

func (sel *selector) key() string { return strings.Join(sel.texts, " & ") }

// outside is 1 for a network of outside addresses, 0 for workloads: the
// order of rules.
func (sel *selector) outside() int {
	if sel.terms[0].Kind == policy.TermExternal {
		return 1
	}
	return 0
}

func (sel *selector) matches(ep *policy.Endpoint) bool {
	return policy.Selector{Terms: sel.terms}.Matches(ep)
}

// selectRole gives the units of a role the first candidate selector that
// matches all of them and no other observed workload. If none does, each
// unit is tried alone; a unit that no selector isolates gets the one that
// matches the fewest others, and a warning.
func (s *suggester) selectRole(us []*unit) {
	cands := candidates(us)
	if len(cands) == 0 {
		if len(us) > 1 {
			for _, u := range us {
				s.selectRole([]*unit{u})
			}
			return
		}
		s.warnings = append(s.warnings, fmt.Sprintf("%s has no namespace, label, service account or SPIFFE ID a native selector can name: its flows are left out", us[0]))
		return
	}
	var best *selector
	var bestExtra []*unit
	for _, c := range cands {
		extra, ok := s.others(c, us)
		if !ok {
			continue
		}
		if len(extra) == 0 {
			for _, u := range us {
				u.sel = c
			}
			return
		}
		if best == nil || len(extra) < len(bestExtra) {
			best, bestExtra = c, extra
		}
	}
	if len(us) > 1 {
		for _, u := range us {
			s.selectRole([]*unit{u})
		}
		return
	}
	us[0].sel = best
	var names []string
	for _, u := range bestExtra {
		names = append(names, u.String())
	}
	s.warnings = append(s.warnings, fmt.Sprintf("%s also selects %s, which did not make or receive the same flows as %s: no native selector tells them apart (a distinct label or service account would), so the rules of %s apply to %s too",
		best.key(), strings.Join(names, ", "), us[0], best.key(), strings.Join(names, ", ")))
}

// others returns the observed workloads outside us that c matches; ok is
// false if c does not match every unit of us.
func (s *suggester) others(c *selector, us []*unit) ([]*unit, bool) {
	for _, u := range us {
		if !c.matches(&u.ep) {
			return nil, false
		}
	}
	var extra []*unit
	for _, v := range s.workloadUnits {
		if !slices.Contains(us, v) && c.matches(&v.ep) {
			extra = append(extra, v)
		}
	}
	return extra, true
}

// appKeys are the labels that name an application, preferred in selectors.
var appKeys = []string{"app", "app.kubernetes.io/name"}

// volatileKeys are labels that change with every rollout or name a single
// pod: a policy that selects on them breaks on the next deployment.
var volatileKeys = map[string]bool{
	"pod-template-hash":                        true,
	"controller-revision-hash":                 true,
	"pod-template-generation":                  true,
	"statefulset.kubernetes.io/pod-name":       true,
	"apps.kubernetes.io/pod-index":             true,
	"controller-uid":                           true,
	"batch.kubernetes.io/controller-uid":       true,
	"batch.kubernetes.io/job-completion-index": true,
}

// usableLabel reports whether key:value can be written as a native
// selector and is worth selecting on.
func usableLabel(key, value string) bool {
	switch key {
	case "ns", "sa", "cidr", "external":
		// The native syntax reads these as its own selectors.
		return false
	}
	return !volatileKeys[key] && value != "" &&
		len(validation.IsQualifiedName(key)) == 0 && len(validation.IsValidLabelValue(value)) == 0
}

// candidates lists the selectors that match every unit of us, most
// readable first; the last one is the most specific.
func candidates(us []*unit) []*selector {
	first := &us[0].ep
	ns, sa, id := first.Namespace, first.ServiceAccount, first.SPIFFEID
	var labels []string
	for k, v := range first.Labels {
		if usableLabel(k, v) {
			labels = append(labels, k)
		}
	}
	for _, u := range us[1:] {
		if u.ep.Namespace != ns {
			ns = ""
		}
		if u.ep.ServiceAccount != sa || u.ep.Namespace != first.Namespace {
			sa = ""
		}
		if u.ep.SPIFFEID != id {
			id = ""
		}
		labels = slices.DeleteFunc(labels, func(k string) bool { v, ok := u.ep.Labels[k]; return !ok || v != first.Labels[k] })
	}
	rank := func(k string) int {
		if i := slices.Index(appKeys, k); i >= 0 {
			return i
		}
		return len(appKeys)
	}
	slices.SortFunc(labels, func(a, b string) int { return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a, b)) })

	var nsTerm, saTerm, idTerm *selector
	if ns != "" && len(validation.IsDNS1123Label(ns)) == 0 {
		nsTerm = &selector{terms: []policy.Term{{Kind: policy.TermNamespace, Value: ns}}, texts: []string{"ns:" + ns}}
	}
	if sa != "" && nsTerm != nil && len(validation.IsDNS1123Subdomain(sa)) == 0 {
		v := ns + "/" + sa
		saTerm = &selector{terms: []policy.Term{{Kind: policy.TermServiceAccount, Value: v}}, texts: []string{"sa:" + v}}
	}
	if parsed, err := spiffeid.FromString(id); id != "" && err == nil {
		idTerm = &selector{terms: []policy.Term{{Kind: policy.TermSPIFFEID, Value: parsed.String()}}, texts: []string{parsed.String()}}
	}
	label := func(k string) *selector {
		return &selector{terms: []policy.Term{{Kind: policy.TermLabel, Key: k, Op: policy.OpEquals, Value: first.Labels[k]}}, texts: []string{k + ":" + first.Labels[k]}}
	}

	var out []*selector
	seen := map[string]bool{}
	add := func(parts ...*selector) {
		c := &selector{}
		for _, p := range parts {
			if p != nil {
				c.terms = append(c.terms, p.terms...)
				c.texts = append(c.texts, p.texts...)
			}
		}
		if len(c.terms) == 0 || seen[c.key()] {
			return
		}
		seen[c.key()] = true
		out = append(out, c)
	}
	var apps, rest []string
	for _, k := range labels {
		if rank(k) < len(appKeys) {
			apps = append(apps, k)
		} else {
			rest = append(rest, k)
		}
	}
	for _, k := range apps {
		add(label(k))
	}
	if nsTerm != nil {
		for _, k := range apps {
			add(nsTerm, label(k))
		}
	}
	for _, k := range rest {
		add(label(k))
		if nsTerm != nil {
			add(nsTerm, label(k))
		}
	}
	for i, a := range labels {
		for _, b := range labels[i+1:] {
			add(label(a), label(b))
			if nsTerm != nil {
				add(nsTerm, label(a), label(b))
			}
		}
	}
	all := make([]*selector, 0, len(labels)+3)
	for _, k := range labels {
		all = append(all, label(k))
	}
	add(all...)
	add(append([]*selector{nsTerm}, all...)...)
	add(saTerm)
	add(idTerm)
	add(nsTerm)
	add(append(append([]*selector{nsTerm}, all...), saTerm, idTerm)...)
	return out
}

// rule is one allow entry: subject to destination on ports of a protocol.
type rule struct {
	subj, dest *selector
	proto      policy.Protocol
	ports      map[uint16]bool
	ev         evidence
}

// rules merges the evidence of units with the same selectors into rules.
func (s *suggester) rules() {
	byKey := map[string]*rule{}
	for k, e := range s.edges {
		if k.src.sel == nil || k.dst.sel == nil {
			s.skipped[SkipUnnamed] += e.count
			continue
		}
		key := fmt.Sprintf("%s\x00%s\x00%d", k.src.sel.key(), k.dst.sel.key(), k.proto)
		r := byKey[key]
		if r == nil {
			r = &rule{subj: k.src.sel, dest: k.dst.sel, proto: k.proto, ports: map[uint16]bool{}}
			byKey[key] = r
			s.rulesOut = append(s.rulesOut, r)
		}
		if k.proto != policy.ICMP {
			r.ports[k.port] = true
		}
		r.ev.merge(e)
	}
	if s.skipped[SkipUnnamed] > 0 {
		s.evidence = slices.DeleteFunc(s.evidence, func(f evFlow) bool { return f.srcU.sel == nil || f.dstU.sel == nil })
	}
	// Workloads first, outside networks last; then by selector.
	slices.SortFunc(s.rulesOut, func(a, b *rule) int {
		return cmp.Or(cmp.Compare(a.subj.outside(), b.subj.outside()), strings.Compare(a.subj.key(), b.subj.key()),
			cmp.Compare(a.dest.outside(), b.dest.outside()), strings.Compare(a.dest.key(), b.dest.key()),
			cmp.Compare(a.proto, b.proto))
	})
}

// portItems writes ports as native port entries, merging runs of
// consecutive ports into ranges: 8080 and 8081 are "8080-8081", 80 and 443
// stay apart.
func portItems(ports map[uint16]bool) []string {
	list := make([]int, 0, len(ports))
	for p := range ports {
		list = append(list, int(p))
	}
	sort.Ints(list)
	var out []string
	for i := 0; i < len(list); {
		j := i
		for j+1 < len(list) && list[j+1] == list[j]+1 {
			j++
		}
		if i == j {
			out = append(out, fmt.Sprint(list[i]))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", list[i], list[j]))
		}
		i = j + 1
	}
	return out
}

// comment says a rule's evidence: "42 flows, 2026-11-23 14:02–14:20, from
// shop/frontend (10.77.1.10) to shop/backend, ports 80".
func (r *rule) comment() string {
	flows := "1 flow"
	if r.ev.count != 1 {
		flows = fmt.Sprintf("%d flows", r.ev.count)
	}
	var what string
	switch r.proto {
	case policy.ICMP:
		what = "icmp"
	case policy.TCP:
		what = "ports " + strings.Join(portItems(r.ports), ", ")
	default:
		what = strings.ToLower(r.proto.String()) + " ports " + strings.Join(portItems(r.ports), ", ")
	}
	parts := []string{flows}
	if t := timeRange(r.ev.first, r.ev.last); t != "" {
		parts = append(parts, t)
	}
	parts = append(parts, fmt.Sprintf("from %s to %s", r.ev.srcs.list(true, 3), r.ev.dsts.list(false, 3)), what)
	return printable(strings.Join(parts, ", "))
}

// printable replaces what a YAML comment cannot hold (control characters,
// invalid UTF-8) with "?": the names in a comment come from observed
// flows, which an attacker may have shaped (found by FuzzRead).
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == '\ufeff' {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// timeRange writes a span of time in UTC to the minute.
func timeRange(a, b time.Time) string {
	if a.IsZero() {
		return ""
	}
	a, b = a.UTC(), b.UTC()
	const day, minute = "2006-01-02", "15:04"
	from := a.Format(day + " " + minute)
	switch {
	case b.IsZero() || b.Format(day+" "+minute) == from:
		return from
	case b.Format(day) == a.Format(day):
		return from + "–" + b.Format(minute)
	}
	return from + " – " + b.Format(day+" "+minute)
}
