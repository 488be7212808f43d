package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// This file compiles Kubernetes NetworkPolicy (networking.k8s.io/v1)
// documents into the IR with the upstream semantics:
//
//   - the API server's defaults are applied first (policyTypes, protocol),
//     then its validation, so a document the API server would refuse is an
//     error here too, with the file position of the offending field;
//   - the policy's podSelector, within its namespace, is the subject; every
//     policyType isolates the subject in that direction (an Isolation), even
//     with no rules;
//   - every peer of a rule is one allow Grant (peers are OR'ed); the
//     selectors inside a peer are AND'ed; an empty from/to matches every
//     endpoint, in the cluster or not;
//   - ports: absent means every port of every protocol, a protocol alone all
//     of its ports, a named port is resolved against the destination.
//
// NetworkPolicy never denies: it only allows, and isolation decides what
// happens to the rest.
//
// The annotation `ztcn.io/mode: audit` stages the whole policy (every rule
// it adds is Rule.Staged, its isolation included); `ztcn.io/mode: enforce`
// is the default. Any other value, and any other ztcn.io/ annotation, is an
// error: a misspelt annotation must not enforce a policy meant to be
// staged.

// kubeModeAnnotation is the annotation that stages a NetworkPolicy, and
// kubeAnnotationPrefix the prefix of the annotations ztcn reads.
const (
	kubeModeAnnotation   = "ztcn.io/mode"
	kubeAnnotationPrefix = "ztcn.io/"
)

// kubeAPIVersion is the one NetworkPolicy version there is (the beta
// versions were removed in Kubernetes 1.16).
const kubeAPIVersion = "networking.k8s.io/v1"

// kubeNetworkPolicy compiles one NetworkPolicy document into set. A policy
// with any error adds nothing, so a broken document cannot half-apply.
func kubeNetworkPolicy(d document, set *Set, diags *Diagnostics) {
	np, nodes, ok := decodeNetworkPolicy(d, diags)
	if !ok {
		return
	}
	setNetworkPolicyDefaults(np)
	errs, warnings := validateNetworkPolicy(np)
	staged, modeErrs := kubeMode(np)
	errs = append(errs, modeErrs...)
	for _, e := range errs {
		*diags = append(*diags, Diagnostic{Pos: nodes.pos(e.Field), Severity: SeverityError, Message: e.Error()})
	}
	for _, w := range warnings {
		*diags = append(*diags, Diagnostic{Pos: nodes.pos(w.Field), Severity: SeverityWarning, Message: w.Error()})
	}
	if len(errs) > 0 {
		return
	}
	compileNetworkPolicy(np, nodes, set, staged)
}

// kubeMode reads the ztcn.io/ annotations of a policy: whether it is
// staged, and the errors of annotations it does not know.
func kubeMode(np *networkingv1.NetworkPolicy) (staged bool, errs field.ErrorList) {
	path := field.NewPath("metadata", "annotations")
	for _, k := range slices.Sorted(maps.Keys(np.Annotations)) {
		if !strings.HasPrefix(k, kubeAnnotationPrefix) {
			continue
		}
		v := np.Annotations[k]
		switch {
		case k != kubeModeAnnotation:
			errs = append(errs, field.Forbidden(path.Key(k), "unknown ztcn.io annotation; the one there is is "+kubeModeAnnotation+" (audit or enforce)"))
		case v == nativeModeAudit:
			staged = true
		case v != nativeModeEnforce:
			errs = append(errs, field.NotSupported(path.Key(k), v, []string{nativeModeAudit, nativeModeEnforce}))
		}
	}
	return staged, errs
}

// setNetworkPolicyDefaults does what the API server does before it stores
// a policy (SetDefaults_NetworkPolicy, SetDefaults_NetworkPolicyPort):
// without policyTypes a policy is an ingress policy, and also an egress
// policy if it has egress rules; a port without protocol is TCP.
func setNetworkPolicyDefaults(np *networkingv1.NetworkPolicy) {
	spec := &np.Spec
	if len(spec.PolicyTypes) == 0 {
		spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(spec.Egress) > 0 {
			spec.PolicyTypes = append(spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	defaultProtocols := func(ports []networkingv1.NetworkPolicyPort) {
		for i := range ports {
			if ports[i].Protocol == nil {
				tcp := corev1.ProtocolTCP
				ports[i].Protocol = &tcp
			}
		}
	}
	for i := range spec.Ingress {
		defaultProtocols(spec.Ingress[i].Ports)
	}
	for i := range spec.Egress {
		defaultProtocols(spec.Egress[i].Ports)
	}
}

// validateNetworkPolicy is the API server's validation of a new policy
// (ValidateNetworkPolicy in kubernetes/pkg/apis/networking/validation,
// which is not importable), written against the v1 types. It returns the
// errors and the warnings the API server would return.
func validateNetworkPolicy(np *networkingv1.NetworkPolicy) (errs, warnings field.ErrorList) {
	if np.APIVersion != kubeAPIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), np.APIVersion, []string{kubeAPIVersion}))
	}
	for _, e := range apivalidation.ValidateObjectMeta(&np.ObjectMeta, true, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata")) {
		if e.Field == "metadata.namespace" && e.Type == field.ErrorTypeRequired {
			// kubectl would fill in the context's namespace; a policy file
			// has no context, so it must say where it applies.
			e.Detail = "a policy file must say which namespace the policy applies to"
		}
		errs = append(errs, e)
	}
	spec := &np.Spec
	path := field.NewPath("spec")
	errs = append(errs, validateLabelSelector(&spec.PodSelector, path.Child("podSelector"))...)
	for i, rule := range spec.Ingress {
		rulePath := path.Child("ingress").Index(i)
		for j := range rule.Ports {
			errs = append(errs, validateNetworkPolicyPort(&rule.Ports[j], rulePath.Child("ports").Index(j))...)
		}
		for j := range rule.From {
			e, w := validateNetworkPolicyPeer(&rule.From[j], rulePath.Child("from").Index(j))
			errs, warnings = append(errs, e...), append(warnings, w...)
		}
	}
	for i, rule := range spec.Egress {
		rulePath := path.Child("egress").Index(i)
		for j := range rule.Ports {
			errs = append(errs, validateNetworkPolicyPort(&rule.Ports[j], rulePath.Child("ports").Index(j))...)
		}
		for j := range rule.To {
			e, w := validateNetworkPolicyPeer(&rule.To[j], rulePath.Child("to").Index(j))
			errs, warnings = append(errs, e...), append(warnings, w...)
		}
	}
	typesPath := path.Child("policyTypes")
	if len(spec.PolicyTypes) > 2 {
		errs = append(errs, field.Invalid(typesPath, spec.PolicyTypes, "may not specify more than two policyTypes"))
		return errs, warnings
	}
	for i, t := range spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			errs = append(errs, field.NotSupported(typesPath.Index(i), t, []string{string(networkingv1.PolicyTypeIngress), string(networkingv1.PolicyTypeEgress)}))
		}
	}
	return errs, warnings
}

// validateLabelSelector is metav1validation.ValidateLabelSelector, except
// that a bad matchLabels entry is reported at its own key rather than at
// matchLabels, so the position points at the offending line.
func validateLabelSelector(ls *metav1.LabelSelector, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	labelsPath := path.Child("matchLabels")
	for _, k := range slices.Sorted(maps.Keys(ls.MatchLabels)) {
		errs = append(errs, metav1validation.ValidateLabels(map[string]string{k: ls.MatchLabels[k]}, labelsPath.Key(k))...)
	}
	for i, req := range ls.MatchExpressions {
		errs = append(errs, metav1validation.ValidateLabelSelectorRequirement(req, metav1validation.LabelSelectorValidationOptions{}, path.Child("matchExpressions").Index(i))...)
	}
	return errs
}

func validateNetworkPolicyPort(port *networkingv1.NetworkPolicyPort, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if p := *port.Protocol; p != corev1.ProtocolTCP && p != corev1.ProtocolUDP && p != corev1.ProtocolSCTP {
		errs = append(errs, field.NotSupported(path.Child("protocol"), p, []string{string(corev1.ProtocolSCTP), string(corev1.ProtocolTCP), string(corev1.ProtocolUDP)}))
	}
	switch {
	case port.Port == nil:
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(path.Child("endPort"), *port.EndPort, "may not be specified when `port` is not specified"))
		}
	case port.Port.Type == intstr.Int:
		for _, msg := range validation.IsValidPortNum(int(port.Port.IntVal)) {
			errs = append(errs, field.Invalid(path.Child("port"), port.Port.IntVal, msg))
		}
		if port.EndPort != nil {
			if *port.EndPort < port.Port.IntVal {
				errs = append(errs, field.Invalid(path.Child("endPort"), *port.EndPort, "must be greater than or equal to `port`"))
			}
			for _, msg := range validation.IsValidPortNum(int(*port.EndPort)) {
				errs = append(errs, field.Invalid(path.Child("endPort"), *port.EndPort, msg))
			}
		}
	default:
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(path.Child("endPort"), *port.EndPort, "may not be specified when `port` is non-numeric"))
		}
		for _, msg := range validation.IsValidPortName(port.Port.StrVal) {
			errs = append(errs, field.Invalid(path.Child("port"), port.Port.StrVal, msg))
		}
	}
	return errs
}

func validateNetworkPolicyPeer(peer *networkingv1.NetworkPolicyPeer, path *field.Path) (errs, warnings field.ErrorList) {
	n := 0
	if peer.PodSelector != nil {
		n++
		errs = append(errs, validateLabelSelector(peer.PodSelector, path.Child("podSelector"))...)
	}
	if peer.NamespaceSelector != nil {
		n++
		errs = append(errs, validateLabelSelector(peer.NamespaceSelector, path.Child("namespaceSelector"))...)
	}
	if peer.IPBlock != nil {
		n++
		e, w := validateIPBlock(peer.IPBlock, path.Child("ipBlock"))
		errs, warnings = append(errs, e...), append(warnings, w...)
	}
	if n == 0 {
		errs = append(errs, field.Required(path, "must specify a peer"))
	} else if n > 1 && peer.IPBlock != nil {
		errs = append(errs, field.Forbidden(path, "may not specify both ipBlock and another peer"))
	}
	return errs, warnings
}

func validateIPBlock(b *networkingv1.IPBlock, path *field.Path) (errs, warnings field.ErrorList) {
	cidrPath := path.Child("cidr")
	if b.CIDR == "" {
		return field.ErrorList{field.Required(cidrPath, "")}, nil
	}
	cidr, warn, err := parseKubeCIDR(b.CIDR)
	if err != "" {
		return field.ErrorList{field.Invalid(cidrPath, b.CIDR, err)}, nil
	}
	if warn != "" {
		warnings = append(warnings, field.Invalid(cidrPath, b.CIDR, warn))
	}
	for i, s := range b.Except {
		exceptPath := path.Child("except").Index(i)
		except, warn, err := parseKubeCIDR(s)
		switch {
		case err != "":
			errs = append(errs, field.Invalid(exceptPath, s, err))
			continue
		case warn != "":
			warnings = append(warnings, field.Invalid(exceptPath, s, warn))
		}
		if except.Bits() <= cidr.Bits() || !cidr.Contains(except.Addr()) {
			errs = append(errs, field.Invalid(exceptPath, s, "must be a strict subset of `cidr`"))
		}
	}
	return errs, warnings
}

// parseKubeCIDR reads an ipBlock CIDR and returns it masked. The API
// server accepts some forms only for compatibility (validation of "legacy"
// fields); here the ambiguous ones are errors: leading zeros (read as octal
// by some tools, as decimal by others) and IPv4-mapped IPv6 prefixes (do
// they match IPv4 peers?). Bits set beyond the prefix length are common
// and unambiguous (the API server masks them), so they only warn.
func parseKubeCIDR(s string) (p netip.Prefix, warning, err string) {
	p, perr := netip.ParsePrefix(s)
	switch {
	case perr != nil:
		return netip.Prefix{}, "", "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64), without leading zeros"
	case p.Addr().Is4In6():
		return netip.Prefix{}, "", "must not be an IPv4-mapped IPv6 address; write the IPv4 CIDR"
	case p != p.Masked():
		return p.Masked(), fmt.Sprintf("has bits set beyond the prefix length; it means %s", p.Masked()), ""
	}
	return p, "", ""
}

// compileNetworkPolicy adds a valid, defaulted policy to set; its rules
// are staged if staged.
func compileNetworkPolicy(np *networkingv1.NetworkPolicy, nodes kubeNodes, set *Set, staged bool) {
	ns, name := np.Namespace, np.Name
	origin := "NetworkPolicy " + ns + "/" + name
	spec := &np.Spec
	subject := Selector{Terms: append([]Term{{Kind: TermNamespace, Value: ns}, {Kind: TermWorkload}}, kubeLabelTerms(TermLabel, &spec.PodSelector)...)}
	subjectText := kubeDescribePods(&spec.PodSelector, ns)

	directions := []struct {
		dir   Direction
		ptype networkingv1.PolicyType
		key   string
		rules int
	}{
		{Ingress, networkingv1.PolicyTypeIngress, "ingress", len(spec.Ingress)},
		{Egress, networkingv1.PolicyTypeEgress, "egress", len(spec.Egress)},
	}
	for _, dir := range directions {
		ti := slices.Index(spec.PolicyTypes, dir.ptype)
		if ti < 0 {
			// A policy that is not of this type leaves the direction
			// alone, even if it has rules for it.
			continue
		}
		isoPos := nodes.pos(field.NewPath("spec", "policyTypes").Index(ti).String())
		if !nodes.has("spec.policyTypes") {
			// Defaulted: point at what the policy selects.
			isoPos = nodes.pos("spec.podSelector")
		}
		r := set.AddRule(Rule{Pos: isoPos, Origin: origin, Staged: staged,
			Text: fmt.Sprintf("%s/%s: %s are isolated for %s", ns, name, subjectText, dir.key)})
		set.Isolations = append(set.Isolations, Isolation{Direction: dir.dir, Subject: kubeCloneSelector(subject), Rule: r})

		for i := 0; i < dir.rules; i++ {
			var peers []networkingv1.NetworkPolicyPeer
			var portSpecs []networkingv1.NetworkPolicyPort
			word := "from"
			if dir.dir == Ingress {
				peers, portSpecs = spec.Ingress[i].From, spec.Ingress[i].Ports
			} else {
				peers, portSpecs, word = spec.Egress[i].To, spec.Egress[i].Ports, "to"
			}
			rulePath := field.NewPath("spec", dir.key).Index(i).String()
			ports := kubePorts(portSpecs)
			peerTexts := make([]string, 0, len(peers))
			for j := range peers {
				peerTexts = append(peerTexts, kubeDescribePeer(&peers[j], ns))
			}
			if len(peers) == 0 {
				peerTexts = append(peerTexts, "anywhere")
			}
			r := set.AddRule(Rule{Pos: nodes.pos(rulePath), Origin: origin, Staged: staged,
				Text: fmt.Sprintf("%s/%s %s[%d]: %s %s %s, %s", ns, name, dir.key, i, subjectText, word,
					strings.Join(peerTexts, " or "), kubeDescribePorts(ports))})
			if len(peers) == 0 {
				set.Grants = append(set.Grants, Grant{Direction: dir.dir, Action: Allow, Subject: kubeCloneSelector(subject),
					Peer: Selector{Terms: []Term{{Kind: TermAny}}}, Ports: slices.Clone(ports), Rule: r})
			}
			for j := range peers {
				set.Grants = append(set.Grants, Grant{Direction: dir.dir, Action: Allow, Subject: kubeCloneSelector(subject),
					Peer: kubePeerSelector(&peers[j], ns), Ports: slices.Clone(ports), Rule: r})
			}
		}
	}
}

// kubeCloneSelector gives each grant its own terms, so that nothing done
// to one grant's selector can change another's.
func kubeCloneSelector(s Selector) Selector {
	terms := slices.Clone(s.Terms)
	for i := range terms {
		terms[i].Values = slices.Clone(terms[i].Values)
	}
	return Selector{Terms: terms}
}

// kubePeerSelector is the IR of one (validated) peer of a policy in namespace ns.
func kubePeerSelector(p *networkingv1.NetworkPolicyPeer, ns string) Selector {
	if b := p.IPBlock; b != nil {
		// Validation has parsed these; were one invalid after all, the
		// zero prefix it would give contains no address: fail closed.
		cidr, _, _ := parseKubeCIDR(b.CIDR)
		t := Term{Kind: TermCIDR, Prefixes: []netip.Prefix{cidr}}
		for _, s := range b.Except {
			e, _, _ := parseKubeCIDR(s)
			t.Except = append(t.Except, e)
		}
		return Selector{Terms: []Term{t}}
	}
	terms := []Term{{Kind: TermWorkload}}
	if p.NamespaceSelector == nil {
		// A podSelector alone selects pods of the policy's own namespace.
		terms = append(terms, Term{Kind: TermNamespace, Value: ns})
	} else {
		terms = append(terms, kubeLabelTerms(TermNamespaceLabel, p.NamespaceSelector)...)
	}
	if p.PodSelector != nil {
		terms = append(terms, kubeLabelTerms(TermLabel, p.PodSelector)...)
	}
	return Selector{Terms: terms}
}

// kubeLabelTerms turns a (validated) label selector into terms of kind
// TermLabel or TermNamespaceLabel. An empty selector gives no terms: it
// matches everything, and the caller's other terms say what "everything"
// is.
//
// A namespace selector on kubernetes.io/metadata.name = X becomes
// TermNamespace X: the API server sets that label on every namespace to
// its name and refuses any other value, so the two select the same pods,
// and the namespace name is known for every workload even where its
// namespace labels are not.
func kubeLabelTerms(kind TermKind, ls *metav1.LabelSelector) []Term {
	var terms []Term
	for _, k := range slices.Sorted(maps.Keys(ls.MatchLabels)) {
		v := ls.MatchLabels[k]
		if kind == TermNamespaceLabel && k == corev1.LabelMetadataName {
			terms = append(terms, Term{Kind: TermNamespace, Value: v})
			continue
		}
		terms = append(terms, Term{Kind: kind, Key: k, Op: OpEquals, Value: v})
	}
	for _, req := range ls.MatchExpressions {
		t := Term{Kind: kind, Key: req.Key}
		switch req.Operator {
		case metav1.LabelSelectorOpIn:
			if kind == TermNamespaceLabel && req.Key == corev1.LabelMetadataName && len(req.Values) == 1 {
				terms = append(terms, Term{Kind: TermNamespace, Value: req.Values[0]})
				continue
			}
			t.Op, t.Values = OpIn, slices.Clone(req.Values)
		case metav1.LabelSelectorOpNotIn:
			t.Op, t.Values = OpNotIn, slices.Clone(req.Values)
		case metav1.LabelSelectorOpExists:
			t.Op = OpExists
		case metav1.LabelSelectorOpDoesNotExist:
			t.Op = OpDoesNotExist
		}
		terms = append(terms, t)
	}
	return terms
}

// kubePorts is the IR of a rule's (defaulted, validated) ports. No ports
// means every port of every protocol: nil.
func kubePorts(ports []networkingv1.NetworkPolicyPort) []PortRange {
	var out []PortRange
	for _, p := range ports {
		proto, _ := ParseProtocol(string(*p.Protocol))
		r := PortRange{Protocol: proto, Lo: 0, Hi: 65535}
		switch {
		case p.Port == nil:
		case p.Port.Type == intstr.String:
			r = PortRange{Protocol: proto, Name: p.Port.StrVal}
		default:
			r.Lo = uint16(p.Port.IntVal)
			r.Hi = r.Lo
			if p.EndPort != nil {
				r.Hi = uint16(*p.EndPort)
			}
		}
		out = append(out, r)
	}
	return out
}

// kubeDescribePods says which pods a podSelector picks in namespace ns.
func kubeDescribePods(ls *metav1.LabelSelector, ns string) string {
	if s := kubeSelectorText(ls); s != "" {
		return fmt.Sprintf("pods {%s} in %s", s, ns)
	}
	return "all pods in " + ns
}

func kubeDescribePeer(p *networkingv1.NetworkPolicyPeer, ns string) string {
	switch {
	case p.IPBlock != nil:
		s := p.IPBlock.CIDR
		if len(p.IPBlock.Except) > 0 {
			s += " except " + strings.Join(p.IPBlock.Except, ", ")
		}
		return s
	case p.NamespaceSelector == nil:
		return kubeDescribePods(p.PodSelector, ns)
	}
	pods := "all pods"
	if p.PodSelector != nil {
		if s := kubeSelectorText(p.PodSelector); s != "" {
			pods = "pods {" + s + "}"
		}
	}
	if s := kubeSelectorText(p.NamespaceSelector); s != "" {
		return pods + " in namespaces {" + s + "}"
	}
	return pods + " in all namespaces"
}

// kubeSelectorText is a label selector in kubectl's syntax ("pod=a,env in
// (prod)"); empty for the selector that matches everything.
func kubeSelectorText(ls *metav1.LabelSelector) string {
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return "<invalid>"
	}
	return sel.String()
}

func kubeDescribePorts(ports []PortRange) string {
	if len(ports) == 0 {
		return "all ports"
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = p.String()
	}
	return "ports " + strings.Join(s, ", ")
}

// kubeNodes maps field paths ("spec.ingress[0].ports[1].port", in the
// syntax of field.Path) to the YAML node to point at: a mapping's key, a
// sequence's item. Diagnostics find their position through it.
type kubeNodes struct {
	file  string
	root  *yaml.Node
	nodes map[string]*yaml.Node
}

func (k kubeNodes) has(path string) bool {
	_, ok := k.nodes[path]
	return ok
}

// pos is the position of path, or of its nearest ancestor that is in the
// document (a required field that is missing is reported at its parent).
func (k kubeNodes) pos(path string) Position {
	for path != "" {
		if n, ok := k.nodes[path]; ok {
			return Position{File: k.file, Line: n.Line, Col: n.Column}
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return Position{File: k.file, Line: k.root.Line, Col: k.root.Column}
}

// maxKubeNodes bounds the nodes one document may expand to. Aliases make
// a YAML document a DAG that can expand exponentially ("billion laughs");
// a real NetworkPolicy has a few hundred nodes.
const maxKubeNodes = 1 << 20

// decodeNetworkPolicy reads a document into the API type. It walks the
// YAML tree along the Go type so that every problem has the position of
// its key: an unknown or misspelt field (the API server's strict field
// validation rejects them; encoding/json would even accept "PodSelector"),
// a duplicate key, a value of the wrong type. Scalars are taken as both
// YAML 1.2 (yaml.v3, this parser) and YAML 1.1 (kubectl's sigs.k8s.io/yaml)
// read them, and a scalar they read differently is an error rather than a
// guess: `namespace: y` is the string "y" to one and the boolean true to
// the other; `version: 1.10` is "1.10" to one and "1.1" to the other.
func decodeNetworkPolicy(d document, diags *Diagnostics) (*networkingv1.NetworkPolicy, kubeNodes, bool) {
	dec := kubeDecoder{
		nodes:  kubeNodes{file: d.file, root: d.node, nodes: map[string]*yaml.Node{}},
		budget: maxKubeNodes,
	}
	v, ok := dec.value(d.node, reflect.TypeFor[networkingv1.NetworkPolicy](), nil)
	*diags = append(*diags, dec.diags...)
	if !ok {
		return nil, dec.nodes, false
	}
	// The tree now holds only known fields with values of the right JSON
	// type, so encoding/json builds the object exactly as the API server
	// would (IntOrString, metav1.Time and the rest decode themselves).
	np := new(networkingv1.NetworkPolicy)
	data, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(data, np)
	}
	if err != nil {
		*diags = append(*diags, Diagnostic{Pos: dec.nodes.pos(""), Severity: SeverityError, Message: "NetworkPolicy: " + err.Error()})
		return nil, dec.nodes, false
	}
	return np, dec.nodes, true
}

type kubeDecoder struct {
	nodes  kubeNodes
	diags  Diagnostics
	budget int
}

func (k *kubeDecoder) errorf(n *yaml.Node, path *field.Path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != nil {
		msg = path.String() + ": " + msg
	}
	k.diags = append(k.diags, Diagnostic{Pos: Position{File: k.nodes.file, Line: n.Line, Col: n.Column}, Severity: SeverityError, Message: msg})
}

var kubeJSONUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// value converts n, to be decoded into a t, into a JSON value (nil, bool,
// string, json.Number, []any, map[string]any). ok is false if n or a node
// below it was reported.
func (k *kubeDecoder) value(n *yaml.Node, t reflect.Type, path *field.Path) (any, bool) {
	if n = k.enter(n, path); n == nil {
		return nil, false
	}
	if kubeIsNull(n) {
		return nil, true
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(kubeJSONUnmarshaler) {
		return k.opaque(n, t, path)
	}
	switch t.Kind() {
	case reflect.Struct:
		return k.object(n, t, path)
	case reflect.Map:
		return k.mapping(n, t, path)
	case reflect.Slice:
		return k.sequence(n, t, path)
	case reflect.String:
		s, ok := k.str(n, path)
		return s, ok
	case reflect.Bool:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
			return strings.EqualFold(n.Value, "true"), true
		}
		k.errorf(n, path, "expected true or false, got %s", kubeDescribeNode(n))
		return nil, false
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" && kubeIsDecimal(n.Value) {
			return k.check(json.Number(n.Value), n, t, path)
		}
		k.errorf(n, path, "expected an integer in decimal, got %s", kubeDescribeNode(n))
		return nil, false
	}
	k.errorf(n, path, "cannot decode into %s", t)
	return nil, false
}

// enter counts n against the budget and follows an alias.
func (k *kubeDecoder) enter(n *yaml.Node, path *field.Path) *yaml.Node {
	if k.budget--; k.budget < 0 {
		if k.budget == -1 {
			k.errorf(n, path, "document expands to more than %d YAML nodes (aliases?)", maxKubeNodes)
		}
		return nil
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// check decodes a converted value into a t to find what only the type
// knows (an int32 out of range, an IntOrString that is neither).
func (k *kubeDecoder) check(v any, n *yaml.Node, t reflect.Type, path *field.Path) (any, bool) {
	data, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(data, reflect.New(t).Interface())
	}
	if err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			k.errorf(n, path, "%s is not a valid %s", kubeDescribeNode(n), t)
		} else {
			k.errorf(n, path, "%s is not a valid %s: %v", kubeDescribeNode(n), t, err)
		}
		return nil, false
	}
	return v, true
}

// object converts a mapping into a JSON object for struct type t.
func (k *kubeDecoder) object(n *yaml.Node, t reflect.Type, path *field.Path) (any, bool) {
	if n.Kind != yaml.MappingNode {
		k.errorf(n, path, "expected a mapping, got %s", kubeDescribeNode(n))
		return nil, false
	}
	fields := kubeJSONFields(t)
	out := make(map[string]any, len(n.Content)/2)
	seen := map[string]*yaml.Node{}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		name, kok := k.key(kn, path, seen)
		if !kok {
			ok = false
			continue
		}
		child := kubeChildPath(path, name)
		ft, known := fields[name]
		if !known {
			k.errorf(kn, child, "unknown field%s", kubeSuggestField(name, fields))
			ok = false
			continue
		}
		k.nodes.nodes[child.String()] = kn
		v, vok := k.value(vn, ft, child)
		ok = ok && vok
		out[name] = v
	}
	return out, ok
}

// mapping converts a mapping into a JSON object for map type t (labels,
// annotations).
func (k *kubeDecoder) mapping(n *yaml.Node, t reflect.Type, path *field.Path) (any, bool) {
	if n.Kind != yaml.MappingNode {
		k.errorf(n, path, "expected a mapping, got %s", kubeDescribeNode(n))
		return nil, false
	}
	out := make(map[string]any, len(n.Content)/2)
	seen := map[string]*yaml.Node{}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		name, kok := k.key(kn, path, seen)
		if !kok {
			ok = false
			continue
		}
		child := path.Key(name)
		k.nodes.nodes[child.String()] = kn
		v, vok := k.value(vn, t.Elem(), child)
		ok = ok && vok
		out[name] = v
	}
	return out, ok
}

// key reads a mapping key as a string, refusing duplicates (the API
// server's strict decoding does) and merge keys (YAML 1.1 only).
func (k *kubeDecoder) key(kn *yaml.Node, path *field.Path, seen map[string]*yaml.Node) (string, bool) {
	if kn = k.enter(kn, path); kn == nil {
		return "", false
	}
	if kn.Kind != yaml.ScalarNode || kn.ShortTag() == "!!merge" {
		k.errorf(kn, path, "a key must be a plain string, got %s", kubeDescribeNode(kn))
		return "", false
	}
	name, ok := k.str(kn, path)
	if !ok {
		return "", false
	}
	if first, dup := seen[name]; dup {
		k.errorf(kn, path, "duplicate key %q (first at line %d)", name, first.Line)
		return "", false
	}
	seen[name] = kn
	return name, true
}

func (k *kubeDecoder) sequence(n *yaml.Node, t reflect.Type, path *field.Path) (any, bool) {
	if n.Kind != yaml.SequenceNode {
		k.errorf(n, path, "expected a list, got %s", kubeDescribeNode(n))
		return nil, false
	}
	out := make([]any, len(n.Content))
	ok := true
	for i, item := range n.Content {
		child := path.Index(i)
		k.nodes.nodes[child.String()] = item
		v, vok := k.value(item, t.Elem(), child)
		ok = ok && vok
		out[i] = v
	}
	return out, ok
}

// str reads a scalar that is to be a string. kubectl turns numbers and
// booleans into strings when the field is a string, so `version: 2` is
// "2"; the result is accepted only where both YAML versions agree on it.
func (k *kubeDecoder) str(n *yaml.Node, path *field.Path) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		k.errorf(n, path, "expected a string, got %s", kubeDescribeNode(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!timestamp":
		// Quoting, block scalars and an explicit !!str all make it a
		// string in both versions.
		if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle|yaml.TaggedStyle) == 0 && kubeIsYAML11Bool(n.Value) {
			k.errorf(n, path, "%s is a boolean to kubectl (YAML 1.1) but a string here; quote it", n.Value)
			return "", false
		}
		return n.Value, true
	case "!!int":
		if kubeIsDecimal(n.Value) && !strings.HasPrefix(n.Value, "+") {
			return n.Value, true
		}
	case "!!bool":
		if n.Value == "true" || n.Value == "false" {
			return n.Value, true
		}
	}
	k.errorf(n, path, "%s is read differently by YAML versions; quote it if it is meant as a string", kubeDescribeNode(n))
	return "", false
}

// opaque converts n for a type that decodes itself (IntOrString,
// metav1.Time, FieldsV1) and checks that it does.
func (k *kubeDecoder) opaque(n *yaml.Node, t reflect.Type, path *field.Path) (any, bool) {
	v, ok := k.generic(n, path)
	if !ok {
		return nil, false
	}
	return k.check(v, n, t, path)
}

// generic converts any YAML tree into JSON values, for the insides of
// opaque types.
func (k *kubeDecoder) generic(n *yaml.Node, path *field.Path) (any, bool) {
	if n = k.enter(n, path); n == nil {
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			name, ok := k.key(n.Content[i], path, seen)
			if !ok {
				return nil, false
			}
			v, ok := k.generic(n.Content[i+1], path)
			if !ok {
				return nil, false
			}
			out[name] = v
		}
		return out, true
	case yaml.SequenceNode:
		out := make([]any, len(n.Content))
		for i, item := range n.Content {
			v, ok := k.generic(item, path)
			if !ok {
				return nil, false
			}
			out[i] = v
		}
		return out, true
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, true
		case "!!bool":
			return strings.EqualFold(n.Value, "true"), true
		case "!!int":
			if kubeIsDecimal(n.Value) {
				return json.Number(strings.TrimPrefix(n.Value, "+")), true
			}
		case "!!float":
			if json.Valid([]byte(n.Value)) {
				return json.Number(n.Value), true
			}
		case "!!str", "!!timestamp":
			return k.str(n, path)
		}
	}
	k.errorf(n, path, "cannot use %s here", kubeDescribeNode(n))
	return nil, false
}

func kubeChildPath(parent *field.Path, name string) *field.Path {
	if parent == nil {
		return field.NewPath(name)
	}
	return parent.Child(name)
}

// kubeJSONFields lists the JSON field names of struct type t and their types,
// as encoding/json sees them (inline embedded structs included).
func kubeJSONFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
			continue
		case name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct:
			for n, ft := range kubeJSONFields(f.Type) {
				out[n] = ft
			}
			continue
		case name == "":
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// kubeSuggestField names the field a misspelt key probably meant, or lists
// the choices.
func kubeSuggestField(name string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		if strings.EqualFold(n, name) {
			return fmt.Sprintf(" (did you mean %q? field names are case-sensitive)", n)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return " (known: " + strings.Join(names, ", ") + ")"
}

func kubeIsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kubeIsDecimal reports whether s is an integer written in decimal, which
// YAML 1.1 and 1.2 read alike (0x10, 0o17, 017 and 1_000 they do not).
func kubeIsDecimal(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// kubeIsYAML11Bool reports whether a plain scalar that YAML 1.2 reads as a
// string is a boolean in YAML 1.1.
func kubeIsYAML11Bool(s string) bool {
	switch s {
	case "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
		"on", "On", "ON", "off", "Off", "OFF":
		return true
	}
	return false
}

// kubeDescribeNode names a node's kind and value for messages.
func kubeDescribeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", v)
		case "!!int", "!!float":
			return "the number " + v
		case "!!bool":
			return "the boolean " + v
		case "!!null":
			return "null"
		}
		return fmt.Sprintf("%s %s", n.ShortTag(), v)
	}
	return "an alias"
}
