package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// This file holds the intermediate representation that every input format
// (the native schema, Kubernetes NetworkPolicy) compiles into, and that the
// decision index is built from. Parsers produce a Set; Compile turns a Set
// into an Index.

// Protocol is a transport protocol a rule can name.
type Protocol uint8

// Protocols. The zero value means "any protocol" where a rule allows it.
const (
	AnyProtocol Protocol = iota
	TCP
	UDP
	SCTP
	// ICMP has no ports. Native rules name it in protocols, without ports;
	// Kubernetes cannot name it, but a rule without ports ("all traffic")
	// covers it. The data plane admits echo requests (ping) and, through
	// conntrack, their replies and the errors about allowed flows.
	ICMP
)

// ParseProtocol reads "tcp", "UDP", "sctp" (any case): the protocols that
// have ports. ICMP is only ever named in a native rule's protocols.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	case "sctp":
		return SCTP, nil
	}
	return AnyProtocol, fmt.Errorf("unknown protocol %q (want tcp, udp or sctp)", s)
}

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	case SCTP:
		return "SCTP"
	case ICMP:
		return "ICMP"
	}
	return "any"
}

// Position is a place in a policy source file.
type Position struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
}

func (p Position) String() string {
	if p.Line == 0 {
		return p.File
	}
	if p.Col > 0 {
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// NamedPort is a port a workload names, like a Kubernetes containerPort.
type NamedPort struct {
	Name     string   `json:"name"`
	Port     uint16   `json:"port"`
	Protocol Protocol `json:"protocol"`
}

// Endpoint is one side of a flow: a workload, or an address outside the
// cluster (Workload false, only IP set).
type Endpoint struct {
	Workload        bool
	Namespace       string
	Name            string
	ServiceAccount  string
	Labels          map[string]string
	NamespaceLabels map[string]string
	SPIFFEID        string
	IP              netip.Addr
	Ports           []NamedPort
}

// String names the endpoint for humans: "ns/name" or the IP.
func (e *Endpoint) String() string {
	if e.Workload {
		return e.Namespace + "/" + e.Name
	}
	return e.IP.String()
}

// portNamed returns the number of the endpoint's port called name for proto.
func (e *Endpoint) portNamed(name string, proto Protocol) (uint16, bool) {
	for _, p := range e.Ports {
		if p.Name == name && p.Protocol == proto {
			return p.Port, true
		}
	}
	return 0, false
}

// TermKind says what a Term tests.
type TermKind uint8

// Term kinds.
const (
	// TermAny matches every endpoint, in the cluster or not (`*`).
	TermAny TermKind = iota + 1
	// TermWorkload matches every workload (Kubernetes: any pod).
	TermWorkload
	// TermNamespace matches workloads in namespace Value (`ns:`).
	TermNamespace
	// TermServiceAccount matches workloads whose "<namespace>/<sa>" is Value (`sa:`).
	TermServiceAccount
	// TermSPIFFEID matches workloads whose SPIFFE ID is Value.
	TermSPIFFEID
	// TermLabel tests a workload label (`key:value`, Kubernetes podSelector).
	TermLabel
	// TermNamespaceLabel tests a label of the workload's namespace
	// (Kubernetes namespaceSelector).
	TermNamespaceLabel
	// TermCIDR matches any endpoint whose IP is in Prefixes and not in
	// Except (`cidr:`, Kubernetes ipBlock).
	TermCIDR
	// TermExternal matches endpoints outside the cluster whose IP is in
	// Prefixes (`external:<network>`). Value is the network's name.
	TermExternal
)

// LabelOp is how a label term compares (Kubernetes label selector operators).
type LabelOp uint8

// Label operators.
const (
	OpEquals LabelOp = iota
	OpIn
	OpNotIn
	OpExists
	OpDoesNotExist
)

// Term is one condition of a Selector.
type Term struct {
	Kind TermKind
	// Key is the label key (TermLabel, TermNamespaceLabel).
	Key string
	// Op compares a label; OpEquals uses Value, OpIn/OpNotIn use Values.
	Op     LabelOp
	Value  string
	Values []string
	// Prefixes and Except are the address ranges of TermCIDR/TermExternal.
	Prefixes []netip.Prefix
	Except   []netip.Prefix
}

// Selector picks endpoints: all of its terms must match (AND). A selector
// without terms matches nothing, so a parser bug cannot widen a rule.
type Selector struct {
	Terms []Term
}

// Matches reports whether e satisfies every term.
func (s Selector) Matches(e *Endpoint) bool {
	if len(s.Terms) == 0 {
		return false
	}
	for i := range s.Terms {
		if !s.Terms[i].matches(e) {
			return false
		}
	}
	return true
}

func (t *Term) matches(e *Endpoint) bool {
	switch t.Kind {
	case TermAny:
		return true
	case TermWorkload:
		return e.Workload
	case TermNamespace:
		return e.Workload && e.Namespace == t.Value
	case TermServiceAccount:
		return e.Workload && e.Namespace+"/"+e.ServiceAccount == t.Value
	case TermSPIFFEID:
		return e.Workload && e.SPIFFEID == t.Value
	case TermLabel:
		return e.Workload && matchLabel(e.Labels, t)
	case TermNamespaceLabel:
		return e.Workload && matchLabel(e.NamespaceLabels, t)
	case TermCIDR:
		return inPrefixes(e.IP, t.Prefixes) && !inPrefixes(e.IP, t.Except)
	case TermExternal:
		return !e.Workload && inPrefixes(e.IP, t.Prefixes) && !inPrefixes(e.IP, t.Except)
	}
	return false
}

func matchLabel(labels map[string]string, t *Term) bool {
	v, ok := labels[t.Key]
	switch t.Op {
	case OpEquals:
		return ok && v == t.Value
	case OpIn:
		return ok && contains(t.Values, v)
	case OpNotIn:
		return !ok || !contains(t.Values, v)
	case OpExists:
		return ok
	case OpDoesNotExist:
		return !ok
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func inPrefixes(ip netip.Addr, prefixes []netip.Prefix) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Key is a canonical form of the selector: equal keys select the same
// endpoints, so the index stores each distinct selector once.
func (s Selector) Key() string {
	parts := make([]string, len(s.Terms))
	for i, t := range s.Terms {
		parts[i] = t.key()
	}
	sort.Strings(parts)
	return strings.Join(parts, " & ")
}

// String is the selector in a form close to the native syntax.
func (s Selector) String() string { return s.Key() }

func (t *Term) key() string {
	switch t.Kind {
	case TermAny:
		return "*"
	case TermWorkload:
		return "workload"
	case TermNamespace:
		return "ns:" + t.Value
	case TermServiceAccount:
		return "sa:" + t.Value
	case TermSPIFFEID:
		return t.Value
	case TermLabel, TermNamespaceLabel:
		prefix := ""
		if t.Kind == TermNamespaceLabel {
			prefix = "nslabel "
		}
		switch t.Op {
		case OpEquals:
			return prefix + t.Key + ":" + t.Value
		case OpIn, OpNotIn:
			vals := append([]string(nil), t.Values...)
			sort.Strings(vals)
			op := " in "
			if t.Op == OpNotIn {
				op = " notin "
			}
			return prefix + t.Key + op + "(" + strings.Join(vals, ",") + ")"
		case OpExists:
			return prefix + t.Key
		case OpDoesNotExist:
			return prefix + "!" + t.Key
		}
	case TermCIDR, TermExternal:
		var b strings.Builder
		if t.Kind == TermExternal {
			b.WriteString("external:" + t.Value + "=")
		} else {
			b.WriteString("cidr:")
		}
		b.WriteString(joinPrefixes(t.Prefixes))
		if len(t.Except) > 0 {
			b.WriteString(" except " + joinPrefixes(t.Except))
		}
		return b.String()
	}
	return fmt.Sprintf("term(%d)", t.Kind)
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

// PortRange is a set of destination ports of one protocol. Lo == Hi is a
// single port; Name, if set, is a named port of the destination workload
// and Lo/Hi are unused. Protocol AnyProtocol with Lo 0, Hi 65535 is every
// port of every protocol.
type PortRange struct {
	Protocol Protocol
	Lo, Hi   uint16
	Name     string
}

// AllPorts matches every port of every protocol.
var AllPorts = []PortRange{{Protocol: AnyProtocol, Lo: 0, Hi: 65535}}

func (r PortRange) String() string {
	var p string
	switch {
	case r.Protocol == ICMP:
		return "ICMP"
	case r.Name != "":
		p = r.Name
	case r.Lo == 0 && r.Hi == 65535:
		p = "*"
	case r.Lo == r.Hi:
		p = fmt.Sprint(r.Lo)
	default:
		p = fmt.Sprintf("%d-%d", r.Lo, r.Hi)
	}
	return p + "/" + r.Protocol.String()
}

// Direction is the side of a flow a grant applies to.
type Direction uint8

// Directions.
const (
	Egress Direction = iota
	Ingress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Action is what a grant does to the flows it matches.
type Action uint8

// Actions. Deny wins over Allow.
const (
	Allow Action = iota
	Deny
)

func (a Action) String() string {
	if a == Allow {
		return "allow"
	}
	return "deny"
}

// Rule is a rule as its author wrote it: what explanations and lint point at.
type Rule struct {
	Pos Position
	// Origin names the document: "native" or "NetworkPolicy <ns>/<name>".
	Origin string
	// Text describes the rule in one line, e.g.
	// "app:frontend -> app:backend ports 80/TCP,443/TCP".
	Text string
	// Staged marks a rule written with `mode: audit` (native) or in a
	// NetworkPolicy annotated `ztcn.io/mode: audit`: it is compiled only
	// into the staged view (CompileStaged), never into the policy in force.
	Staged bool `json:",omitempty"`
}

// String is "file:line:col: text", with "[audit] " before the text of a
// staged rule so that every explanation naming it says so.
func (r Rule) String() string {
	if r.Staged {
		return r.Pos.String() + ": [audit] " + r.Text
	}
	return r.Pos.String() + ": " + r.Text
}

// Grant is one side of a rule: flows in Direction of endpoints matching
// Subject, whose other side matches Peer, on Ports, get Action.
// A native allow rule becomes two grants (the source's egress and the
// destination's ingress); a Kubernetes rule becomes one.
type Grant struct {
	Direction Direction
	Action    Action
	Subject   Selector
	Peer      Selector
	// Ports the flow's destination port must be in; empty means AllPorts.
	Ports []PortRange
	// Rule is the index of the source rule in Set.Rules.
	Rule int
}

// Isolation records that a policy selects Subject for Direction. It only
// matters with IsolationSelected, where a workload is isolated in a
// direction only if some policy selects it (Kubernetes semantics).
type Isolation struct {
	Direction Direction
	Subject   Selector
	Rule      int
}

// IsolationMode says which workloads are default-deny.
type IsolationMode string

// Isolation modes.
const (
	// IsolateAll is zero trust: every workload is isolated both ways.
	IsolateAll IsolationMode = "all"
	// IsolateSelected is upstream Kubernetes semantics.
	IsolateSelected IsolationMode = "selected"
)

// ParseIsolationMode reads "all" or "selected".
func ParseIsolationMode(s string) (IsolationMode, error) {
	switch m := IsolationMode(s); m {
	case IsolateAll, IsolateSelected:
		return m, nil
	}
	return "", fmt.Errorf("unknown isolation %q (want all or selected)", s)
}

// Set is a parsed policy: every rule of every input, before compilation.
type Set struct {
	Rules      []Rule
	Grants     []Grant
	Isolations []Isolation
	// Networks are the named external networks (`networks:`), merged over
	// every file.
	Networks map[string]Network
}

// Network is a named set of address ranges.
type Network struct {
	Prefixes []netip.Prefix
	Pos      Position
}

// AddRule appends r and returns its index for grants to refer to.
func (s *Set) AddRule(r Rule) int {
	s.Rules = append(s.Rules, r)
	return len(s.Rules) - 1
}

// HasStaged reports whether any rule of the set is staged, that is whether
// the set has a staged view (CompileStaged) distinct from the policy in
// force.
func (s *Set) HasStaged() bool {
	for i := range s.Rules {
		if s.Rules[i].Staged {
			return true
		}
	}
	return false
}

// staged reports whether rule i is staged. A rule index outside the set is
// not: it is compiled as before staging existed (Compile refuses a grant
// naming one; an isolation naming one isolates in both views).
func (s *Set) staged(i int) bool {
	return i >= 0 && i < len(s.Rules) && s.Rules[i].Staged
}

// Severity grades a diagnostic.
type Severity string

// Severities.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Diagnostic is a problem found in a policy source, printed as
// "file:line:col: error|warning: message".
type Diagnostic struct {
	Pos      Position `json:"position"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
}

func (d Diagnostic) String() string {
	return fmt.Sprintf("%s: %s: %s", d.Pos, d.Severity, d.Message)
}

// Diagnostics is a list of problems.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Sort orders diagnostics by file, line and column.
func (ds Diagnostics) Sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i].Pos, ds[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}
