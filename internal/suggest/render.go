package suggest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ztcn/ztcn/internal/policy"
)

// The native document header.
const (
	apiVersion = "ztcn.io/v1alpha1"
	kind       = "Policy"
)

// header is the comment at the top of the YAML output.
func (s *suggester) header() string {
	var all evidence
	for _, r := range s.rulesOut {
		all.merge(&r.ev)
	}
	when := ""
	if t := timeRange(all.first, all.last); t != "" {
		when = ", " + t + " UTC"
	}
	return fmt.Sprintf("Suggested by `ztcn policy suggest` from %d flows%s.\n"+
		"Load it with isolation: all. It allows every observed flow and, between the\n"+
		"observed workloads and addresses, nothing else: review it before enforcing.", len(s.evidence), when)
}

// policyGroups splits the sorted rules by subject.
func (s *suggester) policyGroups() [][]*rule {
	var out [][]*rule
	for _, r := range s.rulesOut {
		if n := len(out); n > 0 && out[n-1][0].subj.key() == r.subj.key() {
			out[n-1] = append(out[n-1], r)
			continue
		}
		out = append(out, []*rule{r})
	}
	return out
}

// protocols is a rule's `protocols:`, omitted for TCP (the default).
func (r *rule) protocols() []string {
	if r.proto == policy.TCP {
		return nil
	}
	return []string{strings.ToLower(r.proto.String())}
}

func (s *suggester) renderYAML() ([]byte, error) {
	// Tagged as strings, so that the encoder quotes a value that would
	// otherwise read as another type.
	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	flow := func(items []string, tag func(string) string) *yaml.Node {
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, it := range items {
			c := str(it)
			if tag != nil {
				c.Tag = tag(it)
			}
			n.Content = append(n.Content, c)
		}
		return n
	}
	// Selectors, ranges and prefixes are quoted, as the schema's own
	// examples write them.
	quoted := func(n *yaml.Node) *yaml.Node {
		n.Style = yaml.DoubleQuotedStyle
		if n.Kind == yaml.SequenceNode {
			n.Style = yaml.FlowStyle
			for _, c := range n.Content {
				if c.Tag == "!!str" {
					c.Style = yaml.DoubleQuotedStyle
				}
			}
		}
		return n
	}
	selector := func(sel *selector) *yaml.Node {
		if len(sel.texts) == 1 {
			return quoted(str(sel.texts[0]))
		}
		return quoted(flow(sel.texts, nil))
	}
	portTag := func(p string) string {
		if _, err := strconv.Atoi(p); err == nil {
			return "!!int"
		}
		return "!!str"
	}

	doc := &yaml.Node{Kind: yaml.MappingNode, HeadComment: s.header()}
	doc.Content = append(doc.Content, str("apiVersion"), str(apiVersion), str("kind"), str(kind))
	policies := &yaml.Node{Kind: yaml.SequenceNode}
	for _, group := range s.policyGroups() {
		allow := &yaml.Node{Kind: yaml.SequenceNode}
		for _, r := range group {
			entry := &yaml.Node{Kind: yaml.MappingNode, HeadComment: r.comment()}
			entry.Content = append(entry.Content, str("destination"), selector(r.dest))
			if len(r.ports) > 0 {
				entry.Content = append(entry.Content, str("ports"), quoted(flow(portItems(r.ports), portTag)))
			}
			if p := r.protocols(); p != nil {
				entry.Content = append(entry.Content, str("protocols"), flow(p, nil))
			}
			allow.Content = append(allow.Content, entry)
		}
		policies.Content = append(policies.Content, &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			str("subject"), selector(group[0].subj), str("allow"), allow,
		}})
	}
	doc.Content = append(doc.Content, str("policies"), policies)
	if len(s.networks) > 0 {
		networks := &yaml.Node{Kind: yaml.MappingNode}
		for _, nw := range s.networks {
			networks.Content = append(networks.Content, str(nw.name), quoted(flow(prefixTexts(nw), nil)))
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

func prefixTexts(nw network) []string {
	out := make([]string, len(nw.prefixes))
	for i, p := range nw.prefixes {
		out[i] = p.String()
	}
	return out
}

// The JSON form of the native schema, in the order a reader expects.
type (
	jsonDocument struct {
		APIVersion string              `json:"apiVersion"`
		Kind       string              `json:"kind"`
		Policies   []jsonPolicy        `json:"policies"`
		Networks   map[string][]string `json:"networks,omitempty"`
	}
	jsonPolicy struct {
		Subject any        `json:"subject"`
		Allow   []jsonRule `json:"allow"`
	}
	jsonRule struct {
		Destination any      `json:"destination"`
		Ports       []any    `json:"ports,omitempty"`
		Protocols   []string `json:"protocols,omitempty"`
		Description string   `json:"description"`
	}
)

// renderJSON writes the policy as JSON (which is YAML, so it loads as a
// policy), each rule's evidence in its description.
func (s *suggester) renderJSON() ([]byte, error) {
	selector := func(sel *selector) any {
		if len(sel.texts) == 1 {
			return sel.texts[0]
		}
		return sel.texts
	}
	doc := jsonDocument{APIVersion: apiVersion, Kind: kind, Policies: []jsonPolicy{}}
	for _, group := range s.policyGroups() {
		p := jsonPolicy{Subject: selector(group[0].subj)}
		for _, r := range group {
			jr := jsonRule{Destination: selector(r.dest), Protocols: r.protocols(), Description: r.comment()}
			for _, item := range portItems(r.ports) {
				if n, err := strconv.Atoi(item); err == nil {
					jr.Ports = append(jr.Ports, n)
				} else {
					jr.Ports = append(jr.Ports, item)
				}
			}
			p.Allow = append(p.Allow, jr)
		}
		doc.Policies = append(doc.Policies, p)
	}
	if len(s.networks) > 0 {
		doc.Networks = map[string][]string{}
		for _, nw := range s.networks {
			doc.Networks[nw.name] = prefixTexts(nw)
		}
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
