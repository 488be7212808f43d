package suggest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ztcn/ztcn/internal/policy"
)

// verify loads a rendered policy as the agent would, with isolation "all",
// and checks it against the evidence: every evidence flow must be allowed
// (an error otherwise, which is a bug of this package), and every flow it
// allows between observed endpoints should have been observed (a warning
// otherwise: a workload that no native selector tells apart). It returns
// the number of rules.
func (s *suggester) verify(name string, doc []byte) (int, []string, error) {
	set, diags := policy.LoadBytes(name, doc)
	if diags.HasErrors() {
		return 0, nil, fmt.Errorf("suggest: bug: the suggested policy does not load:\n%s\n%s", diagText(diags), doc)
	}
	var warnings []string
	for _, d := range append(diags, policy.Lint(set)...) {
		warnings = append(warnings, "the suggested policy: "+d.String())
	}
	ix, err := policy.Compile(set, policy.IsolateAll)
	if err != nil {
		return 0, nil, fmt.Errorf("suggest: bug: the suggested policy does not compile: %w", err)
	}
	resolved := map[string]*policy.Subject{}
	resolve := func(ep *policy.Endpoint) *policy.Subject {
		k := unitKey(ep) + "\x00" + ep.Name + "\x00" + ep.IP.String()
		sub := resolved[k]
		if sub == nil {
			sub = ix.Resolve(ep)
			resolved[k] = sub
		}
		return sub
	}

	var denied []string
	for i := range s.evidence {
		f := &s.evidence[i]
		if v := ix.Decide(resolve(&f.src), resolve(&f.dst), f.proto, f.port); !v.Allowed {
			denied = append(denied, fmt.Sprintf("%s -> %s %s (%s)", f.src.String(), f.dst.String(), portText(f.proto, f.port), v.Reason))
		}
	}
	if len(denied) > 0 {
		return 0, nil, fmt.Errorf("suggest: bug: the suggested policy denies %d observed flows: %s", len(denied), firstFew(denied, 5))
	}

	// Between observed endpoints, compare what the policy allows with
	// what was observed.
	var protos []policy.Protocol
	for _, r := range s.rulesOut {
		if !slices.Contains(protos, r.proto) {
			protos = append(protos, r.proto)
		}
	}
	units := s.sortedUnits()
	var extra []string
	for _, a := range units {
		for _, b := range units {
			if !a.ep.Workload && !b.ep.Workload {
				continue
			}
			sa, sb := resolve(&a.ep), resolve(&b.ep)
			for _, proto := range protos {
				if proto == policy.ICMP {
					if ix.Decide(sa, sb, proto, 0).Allowed && s.edges[edgeKey{a, b, proto, 0}] == nil {
						extra = append(extra, fmt.Sprintf("%s -> %s icmp", a, b))
					}
					continue
				}
				ports := map[uint16]bool{}
				for _, pr := range ix.AllowedPorts(sa, sb, proto) {
					for p := int(pr.Lo); p <= int(pr.Hi); p++ {
						if s.edges[edgeKey{a, b, proto, uint16(p)}] == nil {
							ports[uint16(p)] = true
						}
					}
				}
				if len(ports) > 0 {
					extra = append(extra, fmt.Sprintf("%s -> %s %s ports %s", a, b, strings.ToLower(proto.String()), strings.Join(portItems(ports), ",")))
				}
			}
		}
	}
	if len(extra) > 0 {
		what := "1 connection that was"
		if len(extra) > 1 {
			what = fmt.Sprintf("%d connections that were", len(extra))
		}
		warnings = append(warnings, fmt.Sprintf("between observed endpoints the policy also allows %s not observed: %s", what, firstFew(extra, 5)))
	}
	return len(set.Rules), warnings, nil
}

func portText(proto policy.Protocol, port uint16) string {
	if proto == policy.ICMP {
		return "icmp"
	}
	return fmt.Sprintf("%d/%s", port, proto)
}

func firstFew(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(items[:n], "; "), len(items)-n)
}

func diagText(ds policy.Diagnostics) string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}
