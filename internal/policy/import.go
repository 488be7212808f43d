package policy

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Import translates Kubernetes NetworkPolicies into the native schema
// (`ztcn policy import`), keeping only what it can translate exactly and
// explaining everything else in notes.
//
// # What "exact" means
//
// The output, loaded with `isolation: all`, allows the same flows as the
// input NetworkPolicies loaded with `isolation: all` — not with upstream
// Kubernetes semantics, which leave pods that no policy selects open, and
// which no native policy under `isolation: all` can reproduce.
//
// Under `isolation: all` every workload is isolated both ways, so a flow
// between two workloads needs an egress grant of the source AND an ingress
// grant of the destination; a flow from or to an address outside the
// cluster needs only the workload's side (an outside address has no policy
// of its own). A NetworkPolicy rule is one grant: one side. A native rule
// is always two: the source's egress and the destination's ingress. So:
//
//  1. A rule whose peer is outside the cluster translates alone: the
//     native rule's other half is the outside address's, which nothing
//     ever checks. ingress from an ipBlock becomes
//     `subject: external:<net>` allowing the policy's pods; egress to an
//     ipBlock becomes a rule of the policy's pods to `external:<net>`.
//     An ipBlock's `except` is folded into the network: the network lists
//     the CIDR minus the exceptions, which is the same set of addresses.
//     An empty from/to (every endpoint) has an outside part too: the
//     network `any-address` (0.0.0.0/0 and ::/0; an endpoint outside the
//     cluster is always known by its address).
//  2. A rule between pods translates only together with its mirror: an
//     ingress rule "D from S on P" and an egress rule "S to D on P" (same
//     selectors, same ports) in the input are, together, exactly the
//     native rule "S → D on P". Alone, either would widen: the native rule
//     would also grant the missing side.
//  3. An ipBlock also matches pods whose IP is in the range, and an empty
//     from/to matches every pod; `external:` matches only outside
//     addresses. That pod part is not translated (native rules cannot
//     name pods by address, nor "every pod"); with WithPodCIDRs the
//     importer can prove that a range holds no pod, and then there is no
//     pod part.
//
// Nothing else can be written natively: native selectors name a
// namespace and test pod labels for equality, so namespaceSelectors on
// labels, matchExpressions (but In with one value) and "every pod of every
// namespace" are left out. A namespaceSelector on the label
// kubernetes.io/metadata.name is the namespace itself and becomes `ns:`.
//
// A pod rule that is left out but could never take effect anyway (no rule
// of the input grants the other side of any flow it allows) changes
// nothing; its note says so and is not marked Dropped.
//
// Hence the guarantee: the output never allows a flow the input does not
// (every native grant is one of the input's grants, or part of one, or is
// never checked), and if no note is Dropped, it allows exactly the same
// flows. Dropped notes mark where the output allows less.
//
// Only allow rules exist in NetworkPolicy, and isolation has no effect
// under `isolation: all` (everything is isolated), so isolation-only
// policies (default deny) translate to nothing; a note says so. Nothing is
// claimed for the output under `isolation: selected`, where a native rule
// isolates the pods it names and a NetworkPolicy those it selects.
func Import(paths []string, opts ...ImportOption) (native []byte, notes []ImportNote, diags Diagnostics) {
	set, diags := Load(paths...)
	return importLoaded(set, diags, opts)
}

// ImportBytes is Import of one file's content; name is used in positions.
func ImportBytes(name string, data []byte, opts ...ImportOption) (native []byte, notes []ImportNote, diags Diagnostics) {
	set, diags := LoadBytes(name, data)
	return importLoaded(set, diags, opts)
}

// ImportOption configures Import.
type ImportOption func(*importer)

// WithPodCIDRs gives the address ranges every workload's IP is in (the
// cluster's pod CIDRs). An ipBlock outside all of them holds no pod, so
// it translates to `external:` exactly; without them, the importer must
// assume any range may hold pods.
func WithPodCIDRs(prefixes ...netip.Prefix) ImportOption {
	return func(im *importer) {
		for _, p := range prefixes {
			im.podCIDRs = append(im.podCIDRs, p.Masked())
		}
	}
}

// ImportNote says what became of a part of the input that has no native
// rule in the output.
type ImportNote struct {
	Pos Position `json:"position"`
	// Policy is the NetworkPolicy's "namespace/name".
	Policy string `json:"policy"`
	// Dropped is true when the output allows less than the input because
	// of this part; false when the note only explains.
	Dropped bool   `json:"dropped"`
	Message string `json:"message"`
}

func (n ImportNote) String() string {
	return fmt.Sprintf("%s: %s: %s", n.Pos, n.Policy, n.Message)
}

// importAnyAddress is the network standing for every address outside the
// cluster: the outside part of an empty from/to.
const importAnyAddress = "any-address"

// importAllAddresses is every IPv4 and IPv6 address.
func importAllAddresses() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
}

// importer holds one translation.
type importer struct {
	podCIDRs []netip.Prefix
	set      *Set
	// grants are the NetworkPolicy grants of the input.
	grants []*Grant
	notes  []ImportNote
	// policies are the output, by subject, in the order first seen.
	policies []*importPolicy
	bySubj   map[string]*importPolicy
	// networks are the output's networks: name → prefixes, and the name
	// of each prefix list.
	networks  map[string][]netip.Prefix
	netByList map[string]string
}

type importPolicy struct {
	subject []string
	allows  []*importAllow
}

type importAllow struct {
	dest    []string
	ports   []PortRange
	key     string
	sources []string
}

func importLoaded(set *Set, diags Diagnostics, opts []ImportOption) ([]byte, []ImportNote, Diagnostics) {
	if diags.HasErrors() {
		return nil, nil, diags
	}
	im := &importer{set: set, bySubj: map[string]*importPolicy{}, networks: map[string][]netip.Prefix{}, netByList: map[string]string{}}
	for _, o := range opts {
		o(im)
	}
	im.run()
	out, err := im.render()
	if err != nil {
		// Rendering plain strings, lists and maps cannot fail; if it does,
		// say so rather than print half a policy.
		diags = append(diags, Diagnostic{Severity: SeverityError, Message: "rendering the native policy: " + err.Error()})
		return nil, im.notes, diags
	}
	return out, im.notes, diags
}

// importPodPart is the share of a grant whose other side is a workload.
type importPodPart struct {
	g *Grant
	// peer selects the workloads on the other side.
	peer Selector
	// why is set when the part has no native form.
	why string
	// flow is "source -> destination" in native syntax, once known.
	flow string
}

func (im *importer) run() {
	withGrants := map[string]bool{}
	// Staged policies are left out whole: they allow nothing in force, so
	// the output still allows what the input does, and a staged grant
	// must not pair with an enforced one into an enforced native rule.
	staged := map[string]bool{}
	for i := range im.set.Rules {
		if r := im.set.Rules[i]; r.Staged && strings.HasPrefix(r.Origin, "NetworkPolicy ") && !staged[r.Origin] {
			staged[r.Origin] = true
			im.note(r, false, "staged ("+kubeModeAnnotation+": "+nativeModeAudit+"): not translated; the import covers enforced policies (import it on its own and add mode: audit to stage the result)")
		}
	}
	for i := range im.set.Grants {
		g := &im.set.Grants[i]
		r := im.set.Rules[g.Rule]
		if !strings.HasPrefix(r.Origin, "NetworkPolicy ") {
			im.note(r, false, "a native rule, not a NetworkPolicy: not part of the import")
			continue
		}
		if staged[r.Origin] {
			continue
		}
		im.grants = append(im.grants, g)
		withGrants[r.Origin] = true
	}
	for _, iso := range im.set.Isolations {
		r := im.set.Rules[iso.Rule]
		if strings.HasPrefix(r.Origin, "NetworkPolicy ") && !withGrants[r.Origin] && !staged[r.Origin] {
			withGrants[r.Origin] = true
			im.note(r, false, "the policy only isolates (default deny); under isolation: all every workload already is, so there is nothing to translate")
		}
	}

	var pods []importPodPart
	for _, g := range im.grants {
		outside, part := im.split(g)
		if outside != nil {
			im.addOutside(g, outside)
		}
		if part != nil {
			pods = append(pods, *part)
		}
	}
	im.pairPods(pods)
	// In source order, which is how a reader goes through them.
	sort.SliceStable(im.notes, func(i, j int) bool {
		a, b := im.notes[i].Pos, im.notes[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// split divides a grant's peer into its outside part (the addresses, or
// nil) and its pod part (or nil).
func (im *importer) split(g *Grant) ([]netip.Prefix, *importPodPart) {
	if len(g.Peer.Terms) == 1 {
		switch t := g.Peer.Terms[0]; t.Kind {
		case TermAny:
			return importAllAddresses(), &importPodPart{g: g, peer: Selector{Terms: []Term{{Kind: TermWorkload}}},
				why: "an empty " + importFromTo(g) + " also matches every pod, and no native selector means every pod of every namespace (* would also match addresses outside the cluster); only the outside part is translated"}
		case TermCIDR:
			var outside []netip.Prefix
			for _, p := range t.Prefixes {
				outside = append(outside, importSubtract(p, t.Except)...)
			}
			if len(im.podCIDRs) > 0 && !importPrefixesOverlap(outside, im.podCIDRs) {
				return outside, nil
			}
			why := "an ipBlock also matches pods whose IP is in it, and external: matches only addresses outside the cluster; only the outside part is translated"
			if len(im.podCIDRs) > 0 {
				why += fmt.Sprintf(" (the range overlaps the pod CIDRs %s)", joinPrefixes(im.podCIDRs))
			} else {
				why += " (give the pod CIDRs to prove that no pod is in the range)"
			}
			return outside, &importPodPart{g: g, peer: Selector{Terms: []Term{{Kind: TermWorkload}, t}}, why: why}
		}
	}
	return nil, &importPodPart{g: g, peer: g.Peer}
}

// addOutside translates a grant's outside part: a rule on its own (case 1
// of Import's comment).
func (im *importer) addOutside(g *Grant, prefixes []netip.Prefix) {
	r := im.set.Rules[g.Rule]
	subject, why := importSelector(g.Subject)
	if why != "" {
		im.note(r, true, fmt.Sprintf("%s %s %s: not translated: the policy's podSelector %s", g.Direction, importFromTo(g), joinPrefixes(prefixes), why))
		return
	}
	net := []string{"external:" + im.network(prefixes)}
	if g.Direction == Ingress {
		im.add(net, subject, g.Ports, r)
	} else {
		im.add(subject, net, g.Ports, r)
	}
}

// pairPods translates pod parts that come in mirror pairs (case 2 of
// Import's comment) and notes the rest.
func (im *importer) pairPods(parts []importPodPart) {
	type side struct{ egress, ingress []*importPodPart }
	pairs := map[string]*side{}
	loose := map[string][]*importPodPart{} // by selectors only, for hints
	var keys []string
	for i := range parts {
		p := &parts[i]
		r := im.set.Rules[p.g.Rule]
		if !im.live(p) {
			im.note(r, false, fmt.Sprintf("%s %s: no effect under isolation: all, since no rule of the input allows %s; nothing to translate",
				p.g.Direction, importDescribePeer(p), im.otherSide(p)))
			continue
		}
		what := fmt.Sprintf("%s %s: ", p.g.Direction, importDescribePeer(p))
		if p.why != "" {
			im.note(r, true, what+p.why)
			continue
		}
		subject, why := importSelector(p.g.Subject)
		if why != "" {
			im.note(r, true, what+"not translated: the policy's podSelector "+why)
			continue
		}
		peer, why := importSelector(p.peer)
		if why != "" {
			im.note(r, true, what+"not translated: the peer "+why)
			continue
		}
		src, dst := subject, peer
		if p.g.Direction == Ingress {
			src, dst = peer, subject
		}
		p.flow = strings.Join(src, ",") + " -> " + strings.Join(dst, ",")
		key := p.flow + " | " + importPortsKey(p.g.Ports)
		s := pairs[key]
		if s == nil {
			s = &side{}
			pairs[key] = s
			keys = append(keys, key)
		}
		if p.g.Direction == Egress {
			s.egress = append(s.egress, p)
		} else {
			s.ingress = append(s.ingress, p)
		}
		loose[p.flow] = append(loose[p.flow], p)
	}
	for _, key := range keys {
		s := pairs[key]
		if len(s.egress) > 0 && len(s.ingress) > 0 {
			e := s.egress[0]
			subject, _ := importSelector(e.g.Subject)
			peer, _ := importSelector(e.peer)
			for _, p := range append(s.egress, s.ingress...) {
				im.add(subject, peer, p.g.Ports, im.set.Rules[p.g.Rule])
			}
			continue
		}
		for _, p := range append(s.egress, s.ingress...) {
			im.note(im.set.Rules[p.g.Rule], true, im.unpaired(p, loose))
		}
	}
}

// unpaired explains why a live pod rule without a mirror is left out.
func (im *importer) unpaired(p *importPodPart, loose map[string][]*importPodPart) string {
	missing, want := "egress", "egress rule of "+importDescribe(p.peer)+" to "+importDescribe(p.g.Subject)
	if p.g.Direction == Egress {
		missing, want = "ingress", "ingress rule of "+importDescribe(p.peer)+" from "+importDescribe(p.g.Subject)
	}
	msg := fmt.Sprintf("%s %s: left out: a native rule grants both the source's egress and the destination's ingress, "+
		"this rule only the %s side, and the input has no %s on the same ports (%s) to pair it with; "+
		"alone, the native rule would also grant the %s side",
		p.g.Direction, importDescribePeer(p), p.g.Direction, want, kubeDescribePorts(p.g.Ports), missing)
	for _, q := range loose[p.flow] {
		if q.g.Direction != p.g.Direction {
			msg += fmt.Sprintf(" (%s has the mirror rule with other ports: %s)", im.set.Rules[q.g.Rule].Pos, kubeDescribePorts(q.g.Ports))
			break
		}
	}
	return msg
}

// live reports whether a pod part could take effect under isolation:
// all: whether some grant of the input could grant the other side of a
// flow it allows. It errs towards true.
func (im *importer) live(p *importPodPart) bool {
	for _, o := range im.grants {
		if o.Direction != p.g.Direction &&
			importMayOverlap(o.Subject, p.peer) && importMayOverlap(o.Peer, p.g.Subject) && importPortsMayOverlap(o.Ports, p.g.Ports) {
			return true
		}
	}
	return false
}

// otherSide names the grant a pod part would need to take effect.
func (im *importer) otherSide(p *importPodPart) string {
	if p.g.Direction == Ingress {
		return "those pods egress to " + importDescribe(p.g.Subject)
	}
	return "those pods ingress from " + importDescribe(p.g.Subject)
}

func importDescribePeer(p *importPodPart) string {
	return importFromTo(p.g) + " " + importDescribe(p.peer)
}

func importFromTo(g *Grant) string {
	if g.Direction == Ingress {
		return "from"
	}
	return "to"
}

// importDescribe is an IR selector for notes.
func importDescribe(s Selector) string {
	var parts []string
	for i := range s.Terms {
		switch t := &s.Terms[i]; {
		case t.Kind == TermWorkload && len(s.Terms) == 1:
			parts = append(parts, "every pod")
		case t.Kind == TermWorkload:
		case t.Kind == TermCIDR:
			parts = append(parts, "pods with an IP in "+strings.TrimPrefix(t.key(), "cidr:"))
		default:
			parts = append(parts, t.key())
		}
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, " & ") + "}"
}

func (im *importer) note(r Rule, dropped bool, msg string) {
	im.notes = append(im.notes, ImportNote{Pos: r.Pos, Policy: strings.TrimPrefix(r.Origin, "NetworkPolicy "), Dropped: dropped, Message: msg})
}

// add records the native rule subject → dest on ports, merging rules that
// are the same.
func (im *importer) add(subject, dest []string, ports []PortRange, from Rule) {
	sk := strings.Join(subject, "\x00")
	pol := im.bySubj[sk]
	if pol == nil {
		pol = &importPolicy{subject: subject}
		im.bySubj[sk] = pol
		im.policies = append(im.policies, pol)
	}
	source := from.Pos.String()
	if label, _, ok := strings.Cut(from.Text, ": "); ok {
		source = label + " (" + source + ")"
	}
	key := strings.Join(dest, "\x00") + " | " + importPortsKey(ports)
	for _, a := range pol.allows {
		if a.key == key {
			if !slices.Contains(a.sources, source) {
				a.sources = append(a.sources, source)
			}
			return
		}
	}
	pol.allows = append(pol.allows, &importAllow{dest: dest, ports: ports, key: key, sources: []string{source}})
}

// network names a list of prefixes, defining it on first use. Names come
// from the addresses so that re-importing gives the same output.
func (im *importer) network(prefixes []netip.Prefix) string {
	list := joinPrefixes(prefixes)
	if name, ok := im.netByList[list]; ok {
		return name
	}
	var name string
	if list == joinPrefixes(importAllAddresses()) {
		name = importAnyAddress
	} else {
		name = "ipblock-" + strings.NewReplacer("/", "-", ":", "-").Replace(prefixes[0].String())
		if len(prefixes) > 1 {
			name += fmt.Sprintf("-and-%d-more", len(prefixes)-1)
		}
	}
	for base, n := name, 2; im.networks[name] != nil; n++ {
		name = fmt.Sprintf("%s-%d", base, n)
	}
	im.netByList[list] = name
	im.networks[name] = slices.Clone(prefixes)
	return name
}

// importSelector writes a workload selector in the native syntax, or
// says why it cannot be.
func importSelector(s Selector) ([]string, string) {
	var ns, labels []string
	for _, t := range s.Terms {
		switch t.Kind {
		case TermWorkload:
		case TermNamespace:
			if len(validation.IsDNS1123Label(t.Value)) > 0 {
				// A namespaceSelector on kubernetes.io/metadata.name may
				// name a namespace that cannot exist.
				return nil, fmt.Sprintf("names the namespace %q, which is not a valid namespace name", t.Value)
			}
			ns = append(ns, "ns:"+t.Value)
		case TermLabel:
			v := t.Value
			switch {
			case t.Op == OpIn && len(t.Values) == 1:
				v = t.Values[0]
			case t.Op != OpEquals:
				return nil, fmt.Sprintf("tests %s, which native selectors cannot (they test key:value only)", t.key())
			}
			switch {
			case slices.Contains([]string{"ns", "sa", "cidr", "external"}, t.Key):
				return nil, fmt.Sprintf("tests the label %q, which the native syntax reads as its own %s: selector", t.Key, t.Key)
			case v == "":
				return nil, fmt.Sprintf("tests the label %s for the empty value, which the native syntax cannot write", t.Key)
			}
			labels = append(labels, t.Key+":"+v)
		case TermNamespaceLabel:
			return nil, fmt.Sprintf("selects namespaces by label (%s); native selectors name a namespace (ns:<name>) but cannot test its labels", strings.TrimPrefix(t.key(), "nslabel "))
		default:
			return nil, fmt.Sprintf("holds %s, which is not a workload selector", t.key())
		}
	}
	if len(ns)+len(labels) == 0 {
		return nil, "means every pod of every namespace, which no native selector means (* would also match addresses outside the cluster)"
	}
	sort.Strings(labels)
	return append(ns, labels...), ""
}

// importPortsKey is a canonical form of a port list: equal keys, equal ports.
func importPortsKey(ports []PortRange) string {
	var parts []string
	for _, e := range importPortEntries(ports) {
		parts = append(parts, strings.Join(e.protocols, ",")+":"+strings.Join(e.ports, ","))
	}
	return strings.Join(parts, " ")
}

// importPortEntry is one native allow entry's ports and protocols (the
// native schema crosses the two lists); no ports means all of them.
type importPortEntry struct {
	ports     []string
	protocols []string
}

// importPortEntries writes IR ports as native entries: per protocol the
// ports listed, protocols with the same ports sharing an entry.
func importPortEntries(ports []PortRange) []importPortEntry {
	if len(ports) == 0 {
		ports = AllPorts
	}
	// A Kubernetes rule without ports allows all traffic, ICMP included;
	// ICMP has no ports, so only such a rule carries it over.
	protos := []Protocol{TCP, UDP, SCTP, ICMP}
	byProto := map[Protocol][]PortRange{}
	all := map[Protocol]bool{}
	for _, r := range ports {
		for _, p := range protos {
			if r.Protocol != AnyProtocol && r.Protocol != p {
				continue
			}
			if p == ICMP && (r.Name != "" || r.Lo != 0 || r.Hi != 65535) {
				continue
			}
			if r.Name == "" && r.Lo == 0 && r.Hi == 65535 {
				all[p] = true
			}
			byProto[p] = append(byProto[p], r)
		}
	}
	var out []importPortEntry
	index := map[string]int{}
	for _, p := range protos {
		rs, ok := byProto[p]
		if !ok {
			continue
		}
		var items []string
		if !all[p] {
			sort.Slice(rs, func(i, j int) bool {
				if (rs[i].Name == "") != (rs[j].Name == "") {
					return rs[i].Name == ""
				}
				if rs[i].Name != rs[j].Name {
					return rs[i].Name < rs[j].Name
				}
				return rs[i].Lo < rs[j].Lo || rs[i].Lo == rs[j].Lo && rs[i].Hi < rs[j].Hi
			})
			for _, r := range rs {
				item := r.Name
				switch {
				case item != "":
				case r.Lo == r.Hi:
					item = strconv.Itoa(int(r.Lo))
				default:
					item = fmt.Sprintf("%d-%d", r.Lo, r.Hi)
				}
				if !slices.Contains(items, item) {
					items = append(items, item)
				}
			}
		}
		k := strings.Join(items, ",")
		if i, ok := index[k]; ok {
			out[i].protocols = append(out[i].protocols, strings.ToLower(p.String()))
			continue
		}
		index[k] = len(out)
		out = append(out, importPortEntry{ports: items, protocols: []string{strings.ToLower(p.String())}})
	}
	return out
}

// render writes the output document.
func (im *importer) render() ([]byte, error) {
	// Tagged as strings, so that the encoder quotes a value such as a
	// port named "true" that would otherwise read as another type.
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
	selector := func(sel []string) *yaml.Node {
		if len(sel) == 1 {
			return str(sel[0])
		}
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, s := range sel {
			n.Content = append(n.Content, str(s))
		}
		return n
	}
	doc := &yaml.Node{Kind: yaml.MappingNode}
	doc.HeadComment = "Translated from Kubernetes NetworkPolicy by `ztcn policy import`.\n" +
		"Load it with isolation: all; it then allows what the NetworkPolicies allow\n" +
		"under isolation: all, except where the import notes say \"dropped\"."
	doc.Content = append(doc.Content, str("apiVersion"), str(nativeAPIVersion), str("kind"), str(nativeKind))
	policies := &yaml.Node{Kind: yaml.SequenceNode}
	for _, pol := range im.policies {
		allows := &yaml.Node{Kind: yaml.SequenceNode}
		for _, a := range pol.allows {
			for i, e := range importPortEntries(a.ports) {
				entry := &yaml.Node{Kind: yaml.MappingNode}
				if i == 0 {
					entry.HeadComment = "from " + strings.Join(a.sources, ", ")
				}
				entry.Content = append(entry.Content, str("destination"), selector(a.dest))
				if len(e.ports) > 0 {
					ports := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
					for _, p := range e.ports {
						pn := str(p)
						if _, err := strconv.Atoi(p); err == nil {
							pn.Tag = "!!int"
						}
						ports.Content = append(ports.Content, pn)
					}
					entry.Content = append(entry.Content, str("ports"), ports)
				}
				protocols := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
				for _, p := range e.protocols {
					protocols.Content = append(protocols.Content, str(p))
				}
				entry.Content = append(entry.Content, str("protocols"), protocols)
				allows.Content = append(allows.Content, entry)
			}
		}
		policies.Content = append(policies.Content, &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			str("subject"), selector(pol.subject), str("allow"), allows,
		}})
	}
	doc.Content = append(doc.Content, str("policies"), policies)
	if len(im.networks) > 0 {
		networks := &yaml.Node{Kind: yaml.MappingNode}
		names := make([]string, 0, len(im.networks))
		for name := range im.networks {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			list := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, p := range im.networks[name] {
				list.Content = append(list.Content, str(p.String()))
			}
			networks.Content = append(networks.Content, str(name), list)
		}
		doc.Content = append(doc.Content, str("networks"), networks)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// importSubtract returns p minus the except prefixes, as prefixes: the
// halves of p that no exception touches, recursively.
func importSubtract(p netip.Prefix, except []netip.Prefix) []netip.Prefix {
	overlaps := false
	for _, e := range except {
		if e.Bits() <= p.Bits() && e.Contains(p.Addr()) {
			return nil
		}
		overlaps = overlaps || e.Overlaps(p)
	}
	if !overlaps {
		return []netip.Prefix{p}
	}
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	hi := netip.PrefixFrom(importSetBit(p.Addr(), p.Bits()), p.Bits()+1)
	return append(importSubtract(lo, except), importSubtract(hi, except)...)
}

// importSetBit sets bit i (0 = most significant) of a.
func importSetBit(a netip.Addr, i int) netip.Addr {
	b := a.AsSlice()
	b[i/8] |= 0x80 >> (i % 8)
	out, _ := netip.AddrFromSlice(b)
	return out
}

func importPrefixesOverlap(a, b []netip.Prefix) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Overlaps(y) {
				return true
			}
		}
	}
	return false
}

// importMayOverlap reports whether some endpoint could match both selectors. It
// finds the contradictions NetworkPolicies produce (two namespaces, two
// values of a label, pods and outside addresses, disjoint ranges) and
// otherwise says yes.
func importMayOverlap(a, b Selector) bool {
	if len(a.Terms) == 0 || len(b.Terms) == 0 {
		return false
	}
	terms := append(slices.Clone(a.Terms), b.Terms...)
	workload, outside := false, false
	namespace := ""
	var ranges [][]netip.Prefix
	for _, t := range terms {
		switch t.Kind {
		case TermNamespace:
			if namespace != "" && namespace != t.Value {
				return false
			}
			namespace = t.Value
			workload = true
		case TermWorkload, TermServiceAccount, TermSPIFFEID, TermLabel, TermNamespaceLabel:
			workload = true
		case TermExternal:
			outside = true
			ranges = append(ranges, t.Prefixes)
		case TermCIDR:
			ranges = append(ranges, t.Prefixes)
		}
	}
	if workload && outside {
		return false
	}
	for i := range ranges {
		for j := i + 1; j < len(ranges); j++ {
			if !importPrefixesOverlap(ranges[i], ranges[j]) {
				return false
			}
		}
	}
	return importLabelsSatisfiable(terms, TermLabel) && importLabelsSatisfiable(terms, TermNamespaceLabel)
}

// importLabelsSatisfiable reports whether some label set satisfies every label
// term of the kind.
func importLabelsSatisfiable(terms []Term, kind TermKind) bool {
	type constraint struct {
		present, absent bool
		allowed         []string // nil: any value
		restricted      bool
		forbidden       []string
	}
	byKey := map[string]*constraint{}
	for _, t := range terms {
		if t.Kind != kind {
			continue
		}
		c := byKey[t.Key]
		if c == nil {
			c = &constraint{}
			byKey[t.Key] = c
		}
		restrict := func(values []string) {
			if !c.restricted {
				c.allowed, c.restricted = slices.Clone(values), true
				return
			}
			c.allowed = slices.DeleteFunc(c.allowed, func(v string) bool { return !slices.Contains(values, v) })
		}
		switch t.Op {
		case OpEquals:
			c.present = true
			restrict([]string{t.Value})
		case OpIn:
			c.present = true
			restrict(t.Values)
		case OpNotIn:
			c.forbidden = append(c.forbidden, t.Values...)
		case OpExists:
			c.present = true
		case OpDoesNotExist:
			c.absent = true
		}
	}
	for _, c := range byKey {
		if c.present && c.absent {
			return false
		}
		if c.restricted && !slices.ContainsFunc(c.allowed, func(v string) bool { return !slices.Contains(c.forbidden, v) }) {
			return false
		}
	}
	return true
}

// importPortsMayOverlap reports whether some flow's protocol and port could be
// in both lists. A named port may be any number.
func importPortsMayOverlap(a, b []PortRange) bool {
	if len(a) == 0 {
		a = AllPorts
	}
	if len(b) == 0 {
		b = AllPorts
	}
	for _, x := range a {
		for _, y := range b {
			if x.Protocol != AnyProtocol && y.Protocol != AnyProtocol && x.Protocol != y.Protocol {
				continue
			}
			if x.Name != "" || y.Name != "" || x.Lo <= y.Hi && y.Lo <= x.Hi {
				return true
			}
		}
	}
	return false
}
