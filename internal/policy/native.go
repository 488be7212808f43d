package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"
)

// This file parses the native policy schema:
//
//	apiVersion: ztcn.io/v1alpha1   # optional
//	kind: Policy                   # optional
//	mode: enforce                  # optional: enforce (default) or audit
//	policies:
//	  - subject: "app:frontend"
//	    mode: audit                # optional, for this policy's rules
//	    allow:
//	      - destination: "app:backend"
//	        ports: [80, 443, "8000-8100", http]
//	        protocols: [tcp, udp]
//	    deny:
//	      - destination: "cidr:10.0.0.0/8"
//	        mode: audit            # optional, for this rule
//	networks:
//	  metrics: ["203.0.113.0/24"]
//
// `mode: audit` stages the rules under it (Rule.Staged): they are compiled
// into the staged view only and change no traffic. The most specific mode
// wins, with one exception: `mode: enforce` under a `mode: audit` is an
// error, so that one `mode: audit` line is enough for a reviewer to know
// that nothing under it is enforced.
//
// The parser walks yaml.Node trees rather than decoding into structs so that
// every diagnostic carries the line and column of the node at fault.

// Accepted values of the optional document header.
const (
	nativeAPIVersion = "ztcn.io/v1alpha1"
	nativeKind       = "Policy"
)

// Keys each level of the schema accepts, in the order messages list them.
var (
	nativeDocumentKeys = []string{"policies", "networks", "mode", "apiVersion", "kind"}
	nativePolicyKeys   = []string{"subject", "allow", "deny", "mode", "name", "description"}
	nativeRuleKeys     = []string{"destination", "ports", "protocols", "mode", "description"}
)

// Values of `mode:`.
const (
	nativeModeEnforce = "enforce"
	nativeModeAudit   = "audit"
)

// nativeSelectorForms lists the selector syntaxes for error messages.
const nativeSelectorForms = "key:value, ns:<namespace>, sa:<namespace>/<name>, spiffe://<trust-domain>/<path>, external:<network>, cidr:<prefix> or *"

// nativePortForms lists the port syntaxes for error messages.
const nativePortForms = `a number 1–65535, a range "lo-hi" or a port name`

// nativeParser reports problems of one native document.
type nativeParser struct {
	d     document
	set   *Set
	diags *Diagnostics
	// errors counts the errors reported, so a caller can tell whether the
	// part it is parsing was clean.
	errors int
}

func (p *nativeParser) errorf(n *yaml.Node, format string, args ...any) {
	p.errors++
	*p.diags = append(*p.diags, Diagnostic{Pos: p.d.pos(n), Severity: SeverityError, Message: fmt.Sprintf(format, args...)})
}

func (p *nativeParser) warnf(n *yaml.Node, format string, args ...any) {
	*p.diags = append(*p.diags, Diagnostic{Pos: p.d.pos(n), Severity: SeverityWarning, Message: fmt.Sprintf(format, args...)})
}

// nativeHeaderOK reports whether the document's apiVersion and kind, if
// present, are the native ones. Only nativePolicies reports a bad header,
// so that it is reported once.
func nativeHeaderOK(root *yaml.Node) bool {
	if v := mappingValue(root, "apiVersion"); v != nil && (v.Kind != yaml.ScalarNode || v.Value != nativeAPIVersion) {
		return false
	}
	if v := mappingValue(root, "kind"); v != nil && (v.Kind != yaml.ScalarNode || v.Value != nativeKind) {
		return false
	}
	return true
}

// nativeNetworks records the document's `networks:` in set.Networks. It runs
// over every native document before any policy is parsed, so a rule may use
// a network defined in another file.
//
// A network that has errors is still recorded, with no prefixes, so that
// rules naming it are dropped quietly instead of each reporting "unknown
// network" on top of the real error.
func nativeNetworks(d document, set *Set, diags *Diagnostics) {
	if !nativeHeaderOK(d.node) {
		return
	}
	n := mappingValue(d.node, "networks")
	if n == nil {
		return
	}
	if set.Networks == nil {
		set.Networks = map[string]Network{}
	}
	p := &nativeParser{d: d, set: set, diags: diags}
	if !p.isMapping(n, "networks", "a mapping of network name to a list of address prefixes") {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		name, ok := p.scalarString(key, "network name")
		if !ok {
			continue
		}
		if !nativeNetworkName(name) {
			p.errorf(key, "invalid network name %q (want letters, digits, '-', '_' and '.')", name)
			continue
		}
		if prev, dup := set.Networks[name]; dup {
			p.errorf(key, "network %q is already defined at %s", name, prev.Pos)
			continue
		}
		set.Networks[name] = Network{Prefixes: p.networkPrefixes(name, val), Pos: d.pos(key)}
	}
}

// networkPrefixes parses a network's list of prefixes; nil if any is bad.
func (p *nativeParser) networkPrefixes(name string, n *yaml.Node) []netip.Prefix {
	items, ok := p.list(n, fmt.Sprintf("network %q", name), "a list of address prefixes")
	if !ok {
		return nil
	}
	if len(items) == 0 {
		p.errorf(n, "network %q lists no prefixes (want at least one address prefix, such as 203.0.113.0/24)", name)
		return nil
	}
	before := p.errors
	var prefixes []netip.Prefix
	for _, item := range items {
		s, ok := p.scalarString(item, fmt.Sprintf("prefix of network %q", name))
		if !ok {
			continue
		}
		pfx, err := nativePrefix(s)
		if err != nil {
			p.errorf(item, "invalid prefix %q in network %q: %v (want an address prefix such as 203.0.113.0/24, or an IP)", s, name, err)
			continue
		}
		if pfx.Masked() != pfx {
			p.warnf(item, "prefix %s in network %q has host bits set; it means %s", s, name, nativeCanonicalPrefix(pfx))
		}
		prefixes = append(prefixes, nativeCanonicalPrefix(pfx))
	}
	if p.errors > before {
		return nil
	}
	return prefixes
}

// nativeNetworkName keeps network names simple enough to read unambiguously
// inside `external:<name>`.
func nativeNetworkName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// nativePolicies checks the document's keys and compiles its `policies:`
// into set. A policy with any error adds nothing (dropping only its broken
// deny rule would widen what it allows); other policies are still compiled
// so that every problem is reported in one pass, and the caller refuses a
// Set with errors anyway.
func nativePolicies(d document, set *Set, diags *Diagnostics) {
	p := &nativeParser{d: d, set: set, diags: diags}
	// The header decides whether the document is ours at all; a foreign
	// one (say, a Deployment) gets one error rather than one per key.
	for _, h := range []struct{ key, want, or string }{
		{"kind", nativeKind, ", or NetworkPolicy for a Kubernetes network policy"},
		{"apiVersion", nativeAPIVersion, ""},
	} {
		v := mappingValue(d.node, h.key)
		if v == nil {
			continue
		}
		if s, ok := p.scalarString(v, h.key); !ok || s != h.want {
			if ok {
				p.errorf(v, "unsupported %s %q (want %s%s)", h.key, s, h.want, h.or)
			}
			return
		}
	}
	fields := p.fields(d.node, "document", nativeDocumentKeys)
	mode := p.mode(fields["mode"], nativeMode{}, "document")
	policies := fields["policies"]
	if policies == nil {
		switch {
		case fields["networks"] == nil && p.errors == 0:
			p.warnf(d.node, "document defines no policies and no networks")
		case mode.staged:
			p.warnf(mode.node, "mode: audit has no effect: the document has no policies (networks are not staged; every document may use them)")
		}
		return
	}
	items, ok := p.list(policies, "policies", "a list of policies")
	if !ok {
		return
	}
	for _, item := range items {
		p.policy(item, mode)
	}
}

// nativeMode is the mode in effect at a level of a document.
type nativeMode struct {
	staged bool
	// node is the `mode: audit` value that stages, and what carries it
	// ("document", "policy"), for messages.
	node *yaml.Node
	what string
	// broken says a `mode:` at this level or above has an error: nothing
	// under it is added, so that a misspelt audit cannot enforce.
	broken bool
}

// mode reads the `mode:` n of a what (nil when absent) under the parent's
// mode, and returns the mode in effect there. On error it returns the
// parent's, marked broken, so that one mistake is reported once.
func (p *nativeParser) mode(n *yaml.Node, parent nativeMode, what string) nativeMode {
	if n == nil {
		return parent
	}
	broken := parent
	broken.broken = true
	if p.isAlias(n) {
		return broken
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n, "mode is %s (want %s or %s)", nativeDescribe(n), nativeModeAudit, nativeModeEnforce)
		return broken
	}
	switch n.Value {
	case nativeModeAudit:
		return nativeMode{staged: true, node: n, what: what, broken: parent.broken}
	case nativeModeEnforce:
		if parent.staged {
			p.errorf(n, "mode: enforce in a %s staged by the mode: audit at %s; nothing under mode: audit is enforced (move this %s out, or remove that mode: audit)",
				parent.what, p.d.pos(parent.node), what)
			return broken
		}
		return nativeMode{broken: parent.broken}
	}
	p.errorf(n, "unknown mode %q (want %s to stage the rules or %s, the default, to enforce them)", n.Value, nativeModeAudit, nativeModeEnforce)
	return broken
}

// parsedNativeRule is a parsed allow or deny rule waiting for its policy
// to be found clean.
type parsedNativeRule struct {
	node     *yaml.Node
	action   Action
	dest     Selector
	destText string
	ports    []PortRange
	staged   bool
}

// policy compiles one entry of `policies:` of a document in docMode.
func (p *nativeParser) policy(n *yaml.Node, docMode nativeMode) {
	if !p.isMapping(n, "policy", "a mapping with subject and allow or deny") {
		return
	}
	before := p.errors
	fields := p.fields(n, "policy", nativePolicyKeys)
	mode := p.mode(fields["mode"], docMode, "policy")
	for _, k := range []string{"name", "description"} {
		if v := fields[k]; v != nil {
			p.scalarString(v, k)
		}
	}
	var subject Selector
	var subjectText string
	if v := fields["subject"]; v == nil {
		p.errorf(n, `policy has no subject (want a selector such as "app:web")`)
	} else {
		subject, subjectText, _ = p.selector(v, "subject")
	}
	var rules []parsedNativeRule
	count := 0
	for _, action := range []Action{Allow, Deny} {
		v := fields[action.String()]
		if v == nil {
			continue
		}
		items, ok := p.list(v, action.String(), "a list of rules")
		if !ok {
			continue
		}
		for _, item := range items {
			count++
			if r, ok := p.rule(item, action, mode); ok {
				rules = append(rules, r)
			}
		}
	}
	if count == 0 && p.errors == before {
		p.warnf(n, "policy has no allow or deny rules; it does nothing")
	}
	// A selector that names a network with errors fails without an error
	// of its own, so a clean count alone does not prove every rule parsed.
	if p.errors > before || mode.broken || len(subject.Terms) == 0 || len(rules) != count {
		return
	}
	for _, r := range rules {
		p.add(subject, subjectText, r)
	}
}

// rule parses one entry of an allow or deny list of a policy in
// policyMode; ok only if it is clean.
func (p *nativeParser) rule(n *yaml.Node, action Action, policyMode nativeMode) (parsedNativeRule, bool) {
	if !p.isMapping(n, action.String()+" rule", "a mapping with destination and optional ports and protocols") {
		return parsedNativeRule{}, false
	}
	before := p.errors
	fields := p.fields(n, "rule", nativeRuleKeys)
	if v := fields["description"]; v != nil {
		p.scalarString(v, "description")
	}
	r := parsedNativeRule{node: n, action: action, staged: p.mode(fields["mode"], policyMode, "rule").staged}
	destOK := false
	if v := fields["destination"]; v == nil {
		p.errorf(n, `rule has no destination (want a selector such as "app:backend")`)
	} else {
		r.dest, r.destText, destOK = p.selector(v, "destination")
	}
	protocols := p.protocols(fields["protocols"])
	r.ports = p.ports(fields["ports"], protocols)
	return r, destOK && p.errors == before
}

// add compiles a clean rule into the Set.
func (p *nativeParser) add(subject Selector, subjectText string, nr parsedNativeRule) {
	names := make([]string, len(nr.ports))
	for i, r := range nr.ports {
		names[i] = r.String()
	}
	text := fmt.Sprintf("%s -> %s ports %s", subjectText, nr.destText, strings.Join(names, ","))
	if nr.action == Deny {
		text = "deny " + text
	}
	r := p.set.AddRule(Rule{Pos: p.d.pos(nr.node), Origin: "native", Text: text, Staged: nr.staged})
	// The source may send (its egress) and the destination may receive
	// (its ingress): one native rule speaks for both ends.
	p.set.Grants = append(p.set.Grants,
		Grant{Direction: Egress, Action: nr.action, Subject: nativeCloneSelector(subject), Peer: nativeCloneSelector(nr.dest), Ports: slices.Clone(nr.ports), Rule: r},
		Grant{Direction: Ingress, Action: nr.action, Subject: nativeCloneSelector(nr.dest), Peer: nativeCloneSelector(subject), Ports: slices.Clone(nr.ports), Rule: r},
	)
	if nr.action == Allow {
		p.set.Isolations = append(p.set.Isolations,
			Isolation{Direction: Egress, Subject: nativeCloneSelector(subject), Rule: r},
			Isolation{Direction: Ingress, Subject: nativeCloneSelector(nr.dest), Rule: r},
		)
	}
}

// nativeCloneSelector gives each grant its own terms, so that code
// indexing one grant cannot change another through a shared slice.
func nativeCloneSelector(s Selector) Selector {
	terms := slices.Clone(s.Terms)
	for i := range terms {
		terms[i].Values = slices.Clone(terms[i].Values)
		terms[i].Prefixes = slices.Clone(terms[i].Prefixes)
		terms[i].Except = slices.Clone(terms[i].Except)
	}
	return Selector{Terms: terms}
}

// protocols parses `protocols:`; omitted means TCP alone.
func (p *nativeParser) protocols(n *yaml.Node) []Protocol {
	if n == nil {
		return []Protocol{TCP}
	}
	items, ok := p.list(n, "protocols", "a list of tcp, udp, sctp or icmp")
	if !ok {
		return nil
	}
	if len(items) == 0 {
		p.errorf(n, "protocols lists no protocol (want tcp, udp, sctp or icmp; omit protocols to mean tcp)")
		return nil
	}
	var out []Protocol
	for _, item := range items {
		s, ok := p.scalarString(item, "protocol")
		if !ok {
			continue
		}
		proto, err := ParseProtocol(s)
		if strings.EqualFold(s, "icmp") {
			proto, err = ICMP, nil
		}
		if err != nil {
			p.errorf(item, "unknown protocol %q (want tcp, udp, sctp or icmp)", s)
			continue
		}
		if slices.Contains(out, proto) {
			p.warnf(item, "protocol %s is listed twice", strings.ToLower(proto.String()))
			continue
		}
		out = append(out, proto)
	}
	return out
}

// ports parses `ports:` into ranges for each protocol; omitted means every
// port. An empty list is an error rather than "all ports": a list that
// lost its entries must not silently open everything.
func (p *nativeParser) ports(n *yaml.Node, protocols []Protocol) []PortRange {
	if n == nil {
		out := make([]PortRange, len(protocols))
		for i, proto := range protocols {
			out[i] = PortRange{Protocol: proto, Lo: 0, Hi: 65535}
		}
		return out
	}
	if slices.Contains(protocols, ICMP) {
		p.errorf(n, "icmp has no ports: write it in a rule of its own, without ports")
		return nil
	}
	items, ok := p.list(n, "ports", "a list of ports")
	if !ok {
		return nil
	}
	if len(items) == 0 {
		p.errorf(n, "ports lists no port (omit ports to mean all ports)")
		return nil
	}
	var entries []PortRange
	for _, item := range items {
		if e, ok := p.port(item); ok {
			entries = append(entries, e)
		}
	}
	var out []PortRange
	for _, proto := range protocols {
		for _, e := range entries {
			e.Protocol = proto
			out = append(out, e)
		}
	}
	return out
}

// port parses one entry of `ports:`: 80, "80", "8000-8100" or "http".
func (p *nativeParser) port(n *yaml.Node) (PortRange, bool) {
	if p.isAlias(n) {
		return PortRange{}, false
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, "port is %s (want %s)", nativeDescribe(n), nativePortForms)
		return PortRange{}, false
	}
	switch n.ShortTag() {
	case "!!int":
		var v int64
		if err := n.Decode(&v); err != nil || v < 1 || v > 65535 {
			p.errorf(n, "port %s outside 1–65535", n.Value)
			return PortRange{}, false
		}
		return PortRange{Lo: uint16(v), Hi: uint16(v)}, true
	case "!!str":
	default:
		p.errorf(n, "port %s is %s (want %s)", n.Value, nativeDescribe(n), nativePortForms)
		return PortRange{}, false
	}
	s := n.Value
	if nativeDigits(s) {
		v, ok := nativePortNumber(s)
		if !ok {
			p.errorf(n, "port %s outside 1–65535", s)
			return PortRange{}, false
		}
		return PortRange{Lo: v, Hi: v}, true
	}
	if los, his, ok := strings.Cut(s, "-"); ok && nativeDigits(los) && nativeDigits(his) {
		lo, okLo := nativePortNumber(los)
		hi, okHi := nativePortNumber(his)
		switch {
		case !okLo:
			p.errorf(n, "port %s outside 1–65535 in range %q", los, s)
		case !okHi:
			p.errorf(n, "port %s outside 1–65535 in range %q", his, s)
		case lo > hi:
			p.errorf(n, "port range %q is reversed (want lo-hi with lo ≤ hi)", s)
		default:
			return PortRange{Lo: lo, Hi: hi}, true
		}
		return PortRange{}, false
	}
	if why := nativeBadPortName(s); why != "" {
		p.errorf(n, "invalid port %q: a port name %s (want %s)", s, why, nativePortForms)
		return PortRange{}, false
	}
	return PortRange{Name: s}, true
}

func nativeDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// nativePortNumber reads a decimal port; false if it is outside 1–65535.
func nativePortNumber(s string) (uint16, bool) {
	v, err := strconv.ParseUint(s, 10, 16)
	if err != nil || v == 0 {
		return 0, false
	}
	return uint16(v), true
}

// selector parses a selector: one string, or a list of strings that must
// all match. It returns the selector, its text for Rule.Text in the
// author's order, and whether it is usable.
func (p *nativeParser) selector(n *yaml.Node, field string) (Selector, string, bool) {
	if p.isAlias(n) {
		return Selector{}, "", false
	}
	var items []*yaml.Node
	switch n.Kind {
	case yaml.ScalarNode:
		items = []*yaml.Node{n}
	case yaml.SequenceNode:
		items = n.Content
		if len(items) == 0 {
			p.errorf(n, "%s lists no selector (want %s)", field, nativeSelectorForms)
			return Selector{}, "", false
		}
	default:
		p.errorf(n, "%s is %s (want a selector string or a list of them, which all must match)", field, nativeDescribe(n))
		return Selector{}, "", false
	}
	before := p.errors
	var terms []Term
	var texts []string
	var anyNode *yaml.Node
	usable := true
	for _, item := range items {
		if p.isAlias(item) {
			continue
		}
		if item.Kind != yaml.ScalarNode || item.ShortTag() != "!!str" {
			p.errorf(item, "%s is %s (want a selector string: %s)", field, nativeDescribe(item), nativeSelectorForms)
			continue
		}
		if item.Value == "" {
			p.errorf(item, "%s is empty (want %s)", field, nativeSelectorForms)
			continue
		}
		t, ok := p.term(item)
		if !ok {
			usable = false
			continue
		}
		if t.Kind == TermAny && len(items) > 1 {
			// `*` AND x is x; dropping it keeps the selector's Key equal
			// to the one without it, which lint relies on.
			if anyNode == nil {
				anyNode = item
			}
			continue
		}
		terms = append(terms, t)
		texts = append(texts, nativeTermText(&t))
	}
	if p.errors > before || !usable {
		return Selector{}, "", false
	}
	if anyNode != nil {
		p.warnf(anyNode, `"*" in a selector list is redundant: the list's selectors must all match, and "*" matches everything`)
		if len(terms) == 0 {
			terms, texts = []Term{{Kind: TermAny}}, []string{"*"}
		}
	}
	if why := nativeNeverMatches(terms); why != "" {
		p.warnf(n, "%s never matches anything: %s", field, why)
	}
	return Selector{Terms: terms}, strings.Join(texts, " & "), true
}

// nativeTermText is a term as the native syntax writes it. It differs
// from the selector Key only for networks, which authors name rather than
// expand.
func nativeTermText(t *Term) string {
	if t.Kind == TermExternal {
		return "external:" + t.Value
	}
	return t.key()
}

// nativeNeverMatches explains why an AND of terms can match no endpoint,
// or returns "". Such a rule is almost certainly a mistake, and it would
// do nothing without saying so.
func nativeNeverMatches(terms []Term) string {
	var external, workload *Term
	seen := map[string]*Term{}
	for i := range terms {
		t := &terms[i]
		var key string
		switch t.Kind {
		case TermExternal:
			external = t
			continue
		case TermNamespace:
			key = "ns"
		case TermServiceAccount:
			key = "sa"
		case TermSPIFFEID:
			key = "spiffe"
		case TermLabel:
			key = "label " + t.Key
		default:
			continue
		}
		workload = t
		if prev := seen[key]; prev != nil && prev.Value != t.Value {
			return fmt.Sprintf("%s and %s cannot both hold", nativeTermText(prev), nativeTermText(t))
		}
		seen[key] = t
	}
	if external != nil && workload != nil {
		return fmt.Sprintf("%s selects addresses outside the cluster, %s selects workloads", nativeTermText(external), nativeTermText(workload))
	}
	return ""
}

// term parses one selector string. Errors have been reported when ok is
// false, except for a reference to a network that had errors of its own.
func (p *nativeParser) term(n *yaml.Node) (Term, bool) {
	s := n.Value
	if s == "*" {
		return Term{Kind: TermAny}, true
	}
	if strings.HasPrefix(s, "spiffe://") {
		id, err := spiffeid.FromString(s)
		if err != nil {
			p.errorf(n, "invalid SPIFFE ID %q: %v (want spiffe://<trust-domain>/<path>)", s, err)
			return Term{}, false
		}
		return Term{Kind: TermSPIFFEID, Value: id.String()}, true
	}
	if pfx, err := nativePrefix(s); err == nil {
		p.errorf(n, "selector %q is an address; write cidr:%s", s, nativeCanonicalPrefix(pfx))
		return Term{}, false
	}
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		p.errorf(n, "unknown selector %q (want %s)", s, nativeSelectorForms)
		return Term{}, false
	}
	switch kind {
	case "ns":
		if why := nativeBadDNSLabel(rest); why != "" {
			p.errorf(n, "invalid namespace %q in selector %q: a namespace %s", rest, s, why)
			return Term{}, false
		}
		return Term{Kind: TermNamespace, Value: rest}, true
	case "sa":
		ns, name, ok := strings.Cut(rest, "/")
		if !ok {
			p.errorf(n, "invalid service account selector %q (want sa:<namespace>/<name>)", s)
			return Term{}, false
		}
		if why := nativeBadDNSLabel(ns); why != "" {
			p.errorf(n, "invalid namespace %q in selector %q: a namespace %s (want sa:<namespace>/<name>)", ns, s, why)
			return Term{}, false
		}
		if why := nativeBadDNSSubdomain(name); why != "" {
			p.errorf(n, "invalid service account name %q in selector %q: a service account name %s (want sa:<namespace>/<name>)", name, s, why)
			return Term{}, false
		}
		return Term{Kind: TermServiceAccount, Value: rest}, true
	case "external":
		nw, ok := p.set.Networks[rest]
		if !ok {
			p.errorf(n, "unknown network %q in selector %q (%s)", rest, s, p.knownNetworks())
			return Term{}, false
		}
		if len(nw.Prefixes) == 0 {
			return Term{}, false // the network's own error says why
		}
		return Term{Kind: TermExternal, Value: rest, Prefixes: slices.Clone(nw.Prefixes)}, true
	case "cidr":
		pfx, err := nativePrefix(rest)
		if err != nil {
			p.errorf(n, "invalid CIDR %q in selector %q: %v (want an address prefix such as 10.0.0.0/8, or an IP)", rest, s, err)
			return Term{}, false
		}
		if pfx.Masked() != pfx {
			p.warnf(n, "selector %q has host bits set; it means cidr:%s", s, nativeCanonicalPrefix(pfx))
		}
		return Term{Kind: TermCIDR, Prefixes: []netip.Prefix{nativeCanonicalPrefix(pfx)}}, true
	}
	if why := nativeBadLabelKey(kind); why != "" {
		p.errorf(n, "invalid label key %q in selector %q: a label key %s (want %s)", kind, s, why, nativeSelectorForms)
		return Term{}, false
	}
	// A misspelt "external" is a valid label key, and the rule would
	// silently match nothing.
	if kind != "external" && nativeEditDistance(kind, "external") <= 1 {
		p.warnf(n, "selector %q is a label selector; if you meant a network, write external:%s", s, rest)
	}
	if rest == "" {
		p.errorf(n, "label selector %q has an empty value (want key:value)", s)
		return Term{}, false
	}
	if why := nativeBadLabelValue(rest); why != "" {
		p.errorf(n, "invalid label value %q in selector %q: a label value %s", rest, s, why)
		return Term{}, false
	}
	return Term{Kind: TermLabel, Key: kind, Op: OpEquals, Value: rest}, true
}

// nativeEditDistance is the number of single-letter insertions, deletions,
// substitutions and swaps of neighbours that turn a into b (optimal string
// alignment distance), for catching typos.
func nativeEditDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// knownNetworks lists the defined networks for an "unknown network" error.
func (p *nativeParser) knownNetworks() string {
	if len(p.set.Networks) == 0 {
		return "no networks are defined; define it under networks:"
	}
	names := make([]string, 0, len(p.set.Networks))
	for name := range p.set.Networks {
		names = append(names, name)
	}
	sort.Strings(names)
	// Enough to spot a typo without flooding the message.
	const shown = 10
	if len(names) > shown {
		return fmt.Sprintf("defined networks: %s and %d more", strings.Join(names[:shown], ", "), len(names)-shown)
	}
	return "defined networks: " + strings.Join(names, ", ")
}

// nativePrefix reads "10.0.0.0/8" or a bare IP, which means the
// single-address prefix. Zones are refused: a prefix cannot hold them.
func nativePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q has a zone", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// nativeCanonicalPrefix clears host bits and turns an IPv4-mapped IPv6
// prefix into IPv4, because endpoints' addresses are unmapped before
// matching.
func nativeCanonicalPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// fields returns the value of each known key of mapping n, reporting
// unknown and repeated keys (yaml.v3 keeps both copies of a repeated key
// in a Node; the second must not be silently ignored).
func (p *nativeParser) fields(n *yaml.Node, what string, known []string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	keyPos := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if key.Kind != yaml.ScalarNode {
			p.errorf(key, "key in %s is %s (want one of %s)", what, nativeDescribe(key), strings.Join(known, ", "))
			continue
		}
		if !slices.Contains(known, key.Value) {
			p.errorf(key, "unknown key %q in %s (want %s)", key.Value, what, strings.Join(known, ", "))
			continue
		}
		if first := keyPos[key.Value]; first != nil {
			p.errorf(key, "duplicate key %q in %s (first at %s)", key.Value, what, p.d.pos(first))
			continue
		}
		keyPos[key.Value] = key
		out[key.Value] = val
	}
	return out
}

// isAlias reports a YAML alias as an error. Aliases to lists and mappings
// can expand exponentially, and a policy file must not be able to make the
// agent compile billions of rules.
func (p *nativeParser) isAlias(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		p.errorf(n, "YAML alias *%s is not supported in a policy; write the value out", n.Value)
		return true
	}
	return false
}

func (p *nativeParser) isMapping(n *yaml.Node, what, want string) bool {
	if p.isAlias(n) {
		return false
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s is %s (want %s)", what, nativeDescribe(n), want)
		return false
	}
	return true
}

// list returns the items of a sequence; a single scalar counts as a list
// of one, so `ports: 80` reads as `ports: [80]`.
func (p *nativeParser) list(n *yaml.Node, what, want string) ([]*yaml.Node, bool) {
	if p.isAlias(n) {
		return nil, false
	}
	switch {
	case n.Kind == yaml.SequenceNode:
		return n.Content, true
	case n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null":
		return []*yaml.Node{n}, true
	case n.Kind == yaml.ScalarNode:
		// `allow:` with nothing under it: an empty list, which each caller
		// judges (an empty allow list is legal, an empty ports list not).
		return nil, true
	}
	p.errorf(n, "%s is %s (want %s)", what, nativeDescribe(n), want)
	return nil, false
}

// scalarString returns the value of a string scalar, reporting anything else.
func (p *nativeParser) scalarString(n *yaml.Node, what string) (string, bool) {
	if p.isAlias(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n, "%s is %s (want a string)", what, nativeDescribe(n))
		return "", false
	}
	return n.Value, true
}

// nativeDescribe names what a node holds, for "got" parts of messages.
func nativeDescribe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "empty"
		case "!!bool":
			return "a boolean"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a float"
		case "!!str":
			return "a string"
		}
		return "a " + n.ShortTag() + " value"
	}
	return "not a value"
}

// Kubernetes name syntax, as k8s.io/apimachinery/pkg/util/validation
// defines it. It is restated here because that package pulls in klog and
// k8s.io/utils, which go.mod does not carry. Each function returns why s
// is invalid, phrased to follow "a <thing> ", or "" if it is valid.
var (
	nativeNameRE      = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	nativeDNSLabelRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	nativePortNameRE  = regexp.MustCompile(`^[-a-z0-9]+$`)
	nativeHasLetterRE = regexp.MustCompile(`[a-z]`)
)

// nativeBadLabelKey checks a qualified name: [dns-subdomain "/"] name.
func nativeBadLabelKey(s string) string {
	name := s
	if prefix, rest, ok := strings.Cut(s, "/"); ok {
		if why := nativeBadDNSSubdomain(prefix); why != "" {
			return "prefix (before '/') " + why
		}
		name = rest
	}
	switch {
	case name == "":
		return "must have a name after the prefix"
	case len(name) > 63:
		return "name must be at most 63 characters"
	case !nativeNameRE.MatchString(name):
		return "must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit, with an optional DNS prefix and '/'"
	}
	return ""
}

func nativeBadLabelValue(s string) string {
	switch {
	case len(s) > 63:
		return "must be at most 63 characters"
	case s != "" && !nativeNameRE.MatchString(s):
		return "must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
	}
	return ""
}

// nativeBadDNSLabel checks an RFC 1123 label (namespace names).
func nativeBadDNSLabel(s string) string {
	switch {
	case len(s) > 63:
		return "must be at most 63 characters"
	case !nativeDNSLabelRE.MatchString(s):
		return "must be lowercase letters, digits and '-', starting and ending with a letter or digit"
	}
	return ""
}

// nativeBadDNSSubdomain checks an RFC 1123 subdomain: dot-separated labels.
func nativeBadDNSSubdomain(s string) string {
	if len(s) > 253 {
		return "must be at most 253 characters"
	}
	for _, label := range strings.Split(s, ".") {
		if !nativeDNSLabelRE.MatchString(label) {
			return "must be lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit"
		}
	}
	return ""
}

// nativeBadPortName checks an IANA service name (Kubernetes named ports).
func nativeBadPortName(s string) string {
	switch {
	case len(s) > 15:
		return "must be at most 15 characters"
	case !nativePortNameRE.MatchString(s):
		return "must be lowercase letters, digits and '-'"
	case !nativeHasLetterRE.MatchString(s):
		return "must contain a letter"
	case strings.Contains(s, "--"):
		return "must not contain \"--\""
	case s[0] == '-' || s[len(s)-1] == '-':
		return "must not start or end with '-'"
	}
	return ""
}
