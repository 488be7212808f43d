package redirect

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// tableState is what the kernel holds for one of our tables.
type tableState struct {
	exists bool
	chains map[string]*nftables.Chain
	rules  map[string][]*nftables.Rule // of the chains the rule set defines
	sets   map[string]*nftables.Set
	// gen is the set generation the present rules look up, -1 if none do.
	gen int
}

// inspect reads one table back. want names the table and its chains (its
// generation does not matter).
func inspect(conn *nftables.Conn, want tableSpec) (tableState, error) {
	st := tableState{gen: -1}
	tables, err := conn.ListTablesOfFamily(want.family)
	if err != nil {
		return st, fmt.Errorf("redirect: list %s tables: %w", familyName(want.family), err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == want.name }) {
		return st, nil
	}
	st.exists = true
	// The chain dump covers every table of the family; keep ours.
	all, err := conn.ListChainsOfTableFamily(want.family)
	if err != nil {
		return st, fmt.Errorf("redirect: list chains of %s: %w", want, err)
	}
	st.chains = map[string]*nftables.Chain{}
	for _, ch := range all {
		if ch.Table != nil && ch.Table.Name == want.name {
			st.chains[ch.Name] = ch
		}
	}
	st.rules = map[string][]*nftables.Rule{}
	for _, cs := range want.chains {
		ch, ok := st.chains[cs.name]
		if !ok {
			continue
		}
		rules, err := conn.GetRules(want.table(), ch)
		if err != nil {
			return st, fmt.Errorf("redirect: list rules of %s chain %s: %w", want, cs.name, err)
		}
		st.rules[cs.name] = rules
		for _, r := range rules {
			for _, e := range r.Exprs {
				if l, ok := e.(*expr.Lookup); ok && st.gen < 0 {
					if _, g, ok := parseSetName(l.SetName); ok {
						st.gen = g
					}
				}
			}
		}
	}
	sets, err := conn.GetSets(want.table())
	if err != nil {
		return st, fmt.Errorf("redirect: list sets of %s: %w", want, err)
	}
	st.sets = map[string]*nftables.Set{}
	for _, s := range sets {
		st.sets[s.Name] = s
	}
	return st, nil
}

// setProblem says what is wrong with a set that has one of our names, ""
// if it is the set Install makes.
func setProblem(s *nftables.Set) string {
	if s.Interval && s.Concatenation && !s.IsMap && s.KeyType.Name == setKeyType.Name && s.KeyType.Bytes == setKeyType.Bytes {
		return ""
	}
	return fmt.Sprintf("type %q (%d bytes) interval=%v concat=%v map=%v, want %q interval concat",
		s.KeyType.Name, s.KeyType.Bytes, s.Interval, s.Concatenation, s.IsMap, setKeyType.Name)
}

// chainShape is what of a chain cannot change without deleting it.
func chainShape(c *nftables.Chain) string {
	hook, prio := "none", "none"
	if c.Hooknum != nil {
		hook = hookName(*c.Hooknum)
	}
	if c.Priority != nil {
		prio = fmt.Sprint(int32(*c.Priority))
	}
	return fmt.Sprintf("type %s hook %s priority %s", c.Type, hook, prio)
}

func specShape(c chainSpec) string {
	return fmt.Sprintf("type %s hook %s priority %d", c.typ, hookName(c.hook), int32(c.prio))
}

func chainPolicy(c *nftables.Chain) string {
	if c.Policy == nil {
		return "none"
	}
	return policyName(*c.Policy)
}

// activeList reads back the allowlist the table's rules use now; ok is
// false when that cannot be known (no table, no lookup rules, a missing or
// unreadable set).
func activeList(conn *nftables.Conn, st tableState) (c compiled, ok bool) {
	if !st.exists || st.gen < 0 {
		return compiled{}, false
	}
	for _, base := range setBases {
		s, found := st.sets[setName(base, st.gen)]
		if !found || setProblem(s) != "" {
			return compiled{}, false
		}
		elems, err := conn.GetSetElements(s)
		if err != nil {
			return compiled{}, false
		}
		boxes := make([]box, 0, len(elems))
		for _, e := range elems {
			b, err := boxFromKeys(e.Key, e.KeyEnd)
			if err != nil {
				return compiled{}, false
			}
			boxes = append(boxes, b)
		}
		if base == setAllowOut {
			c.egress = boxes
		} else {
			c.ingress = boxes
		}
	}
	return c, true
}
