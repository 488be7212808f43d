package redirect

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
)

// Install programs the pod's redirection into the network namespace ns:
// both nftables tables, then the policy route. It is also how drift is
// repaired: installing over an existing rule set converges it to spec.
//
// No packet ever sees a half-installed rule set. Two nftables
// transactions do the work: the first writes the allowlist into the idle
// generation of the sets (which no rule uses yet), the second replaces, in
// one commit, every rule and chain of both tables with rules that use it.
// Tables that do not exist yet are created by the same two steps. Only a
// table whose allowlist sets were recreated with another type by someone
// else is deleted and added back in a single transaction; that replacement
// can drop (never leak) a few packets of allowed non-TCP flows while the
// kernel commits the new sets.
//
// Connections already open keep their conntrack entries and their
// redirection, except non-TCP flows the allowlist no longer admits, whose
// entries are deleted (see SetNonTCPAllowlist).
//
// The caller serializes Install, Repair, SetNonTCPAllowlist and Remove for
// one pod; different pods may be programmed concurrently.
func Install(ns netns.NsHandle, spec Spec) error {
	c, err := compileSpec(spec)
	if err != nil {
		return err
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("redirect: open nftables: %w", err)
	}
	type plan struct {
		want    tableSpec
		st      tableState
		replace bool
	}
	var plans []plan
	prune := false
	for _, build := range tables {
		st, err := inspect(conn, build(c, 0))
		if err != nil {
			return err
		}
		if old, ok := activeList(conn, st); !ok || !covers(c, old) {
			prune = true
		}
		p := plan{want: build(c, idleGen(st.gen)), st: st}
		for name, s := range st.sets {
			if _, _, ours := parseSetName(name); ours && setProblem(s) != "" {
				p.replace, p.want = true, build(c, 0)
			}
		}
		plans = append(plans, p)
	}

	var ids uint32
	for _, p := range plans {
		if !p.replace {
			if err := fillIdleSets(conn, p.want, p.st, &ids); err != nil {
				return err
			}
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("redirect: write allowlist sets: %w", err)
	}
	for _, p := range plans {
		var err error
		if p.replace {
			err = replaceTable(conn, p.want, &ids)
		} else {
			rewriteTable(conn, p.want, p.st)
		}
		if err != nil {
			return err
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("redirect: install nftables rules: %w", err)
	}
	if err := installRouting(ns); err != nil {
		return err
	}
	if !prune {
		return nil
	}
	return pruneFlows(ns, c)
}

// SetNonTCPAllowlist replaces the non-TCP allowlist of both tables, for a
// policy change: the new list goes into the idle set generation, then the
// filter chains are switched to it in one commit, so a flow allowed before
// and after is never dropped and a flow allowed by neither never passes.
// Then the conntrack entries of flows the new list no longer admits are
// deleted, so that withdrawing a permission also ends the flows already
// open under it. It fails if the rule set is not installed (Install, or
// Repair, first). spec is the pod's whole Spec (its NonTCP the new list):
// the chains rewritten hold other rules of it too.
func SetNonTCPAllowlist(ns netns.NsHandle, spec Spec) error {
	c, err := compileSpec(spec)
	if err != nil {
		return err
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("redirect: open nftables: %w", err)
	}
	var (
		wants            []tableSpec
		states           []tableState
		unchanged, prune = true, false
	)
	for _, build := range tables {
		st, err := inspect(conn, build(c, 0))
		if err != nil {
			return err
		}
		want := build(c, idleGen(st.gen))
		if !st.exists {
			return fmt.Errorf("redirect: replace non-TCP allowlist: %s is missing; Install first", want)
		}
		for name, s := range st.sets {
			if _, _, ours := parseSetName(name); ours && setProblem(s) != "" {
				return fmt.Errorf("redirect: replace non-TCP allowlist: %s set %s: %s; Repair first", want, name, setProblem(s))
			}
		}
		old, ok := activeList(conn, st)
		unchanged = unchanged && ok && sameList(old, c)
		prune = prune || !ok || !covers(c, old)
		wants, states = append(wants, want), append(states, st)
	}
	if unchanged {
		// A policy reload touches every pod; most keep their list, and
		// each write costs milliseconds of kernel commit.
		return nil
	}
	var ids uint32
	for i, want := range wants {
		if err := fillIdleSets(conn, want, states[i], &ids); err != nil {
			return err
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("redirect: write allowlist sets: %w", err)
	}
	for _, want := range wants {
		tbl := want.table()
		for _, cs := range want.chains {
			if !slices.ContainsFunc(cs.rules, usesSet) {
				continue
			}
			ch := &nftables.Chain{Table: tbl, Name: cs.name}
			conn.FlushChain(ch) // fails the batch if the chain is gone: that is drift, for Repair
			addRules(conn, tbl, ch, cs.rules, nil)
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("redirect: switch to the new non-TCP allowlist: %w", err)
	}
	if !prune {
		return nil // nothing was withdrawn, so no open flow lost its permission
	}
	return pruneFlows(ns, c)
}

// Repair verifies the pod's redirection and re-installs it when it has
// drifted (or is absent). It returns the health found before repairing, and
// an error if the rules could not be read, could not be installed, or still
// differ afterwards.
func Repair(ns netns.NsHandle, spec Spec) (Health, error) {
	before, err := Verify(ns, spec)
	if err != nil || before.State == Healthy {
		return before, err
	}
	if err := Install(ns, spec); err != nil {
		return before, err
	}
	after, err := Verify(ns, spec)
	if err != nil {
		return before, err
	}
	if after.State != Healthy {
		return before, fmt.Errorf("redirect: still %s after repair", after)
	}
	return before, nil
}

// Remove deletes both tables, the policy rule and the local route. Removing
// what is not there is not an error. After Remove the pod's traffic flows
// unredirected and unfiltered: call it only when the pod is gone or leaves
// the mesh.
func Remove(ns netns.NsHandle) error {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("redirect: open nftables: %w", err)
	}
	for _, build := range tables {
		tbl := build(compiled{}, 0).table()
		conn.AddTable(tbl) // so that deleting a missing table is no error
		conn.DelTable(tbl)
	}
	var errs []error
	if err := conn.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("redirect: delete nftables tables: %w", err))
	}
	if err := removeRouting(ns); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// idleGen is the set generation not in use by rules of generation gen (-1:
// no rules, so generation 0 is the first one written).
func idleGen(gen int) int {
	if gen == 0 {
		return 1
	}
	return 0
}

// fillIdleSets queues the first transaction: the table and all four sets
// exist, and the generation want's rules will use holds the allowlist.
func fillIdleSets(conn *nftables.Conn, want tableSpec, st tableState, ids *uint32) error {
	tbl := want.table()
	conn.AddTable(tbl) // no-op if it exists
	for _, ss := range want.sets {
		for g := range 2 {
			name := setName(ss.base, g)
			var elems []box
			if g == want.gen {
				elems = ss.elems
			}
			set := allowSet(tbl, name)
			if _, ok := st.sets[name]; !ok {
				// Our own IDs (unique within the batch) rather than the
				// library's package-level counter, which is not safe for
				// concurrent installs into different pods.
				*ids++
				set.ID = *ids
				if err := conn.AddSet(set, elements(elems)); err != nil {
					return fmt.Errorf("redirect: %s set %s: %w", want, name, err)
				}
				continue
			}
			if g != want.gen {
				continue
			}
			conn.FlushSet(set)
			if len(elems) > 0 {
				if err := conn.SetAddElements(set, elements(elems)); err != nil {
					return fmt.Errorf("redirect: %s set %s: %w", want, name, err)
				}
			}
		}
	}
	return nil
}

// rewriteTable queues the second transaction for a table that exists (or
// was just created with its sets): every rule is replaced, chains nobody
// asked for and chains of the wrong shape are deleted, ours are added or
// their policy updated.
func rewriteTable(conn *nftables.Conn, want tableSpec, st tableState) {
	tbl := want.table()
	conn.FlushTable(tbl) // all rules, so that any chain or set can go below
	names := make([]string, 0, len(st.chains))
	for name := range st.chains {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		i := slices.IndexFunc(want.chains, func(cs chainSpec) bool { return cs.name == name })
		if i < 0 || chainShape(st.chains[name]) != specShape(want.chains[i]) {
			// A base chain's type, hook and priority cannot be updated:
			// delete it; AddChain below creates it again.
			conn.DelChain(&nftables.Chain{Table: tbl, Name: name})
		}
	}
	for name := range st.sets {
		if _, _, ours := parseSetName(name); !ours {
			conn.DelSet(&nftables.Set{Table: tbl, Name: name})
		}
	}
	for _, cs := range want.chains {
		addRules(conn, tbl, addChain(conn, tbl, cs), cs.rules, nil)
	}
}

// replaceTable queues a single-transaction delete and re-add of a table,
// for when its sets cannot be reused.
func replaceTable(conn *nftables.Conn, want tableSpec, ids *uint32) error {
	tbl := want.table()
	conn.AddTable(tbl) // makes the delete valid
	conn.DelTable(tbl)
	conn.AddTable(tbl)
	setIDs := map[string]uint32{}
	for _, ss := range want.sets {
		for g := range 2 {
			name := setName(ss.base, g)
			var elems []box
			if g == want.gen {
				elems = ss.elems
			}
			*ids++
			set := allowSet(tbl, name)
			set.ID = *ids
			setIDs[name] = *ids
			if err := conn.AddSet(set, elements(elems)); err != nil {
				return fmt.Errorf("redirect: %s set %s: %w", want, name, err)
			}
		}
	}
	for _, cs := range want.chains {
		addRules(conn, tbl, addChain(conn, tbl, cs), cs.rules, setIDs)
	}
	return nil
}

func addChain(conn *nftables.Conn, tbl *nftables.Table, cs chainSpec) *nftables.Chain {
	policy := cs.policy
	return conn.AddChain(&nftables.Chain{
		Name: cs.name, Table: tbl, Type: cs.typ,
		Hooknum: nftables.ChainHookRef(cs.hook), Priority: nftables.ChainPriorityRef(cs.prio),
		Policy: &policy,
	})
}

// addRules queues a chain's rules. setIDs, when not nil, names the sets
// created in the same batch, which lookups must reference by ID.
func addRules(conn *nftables.Conn, tbl *nftables.Table, ch *nftables.Chain, rules []ruleSpec, setIDs map[string]uint32) {
	for _, r := range rules {
		conn.AddRule(&nftables.Rule{
			Table: tbl, Chain: ch,
			Exprs:    withSetIDs(r.exprs, setIDs),
			UserData: userdata.AppendString(nil, userdata.TypeComment, r.why),
		})
	}
}

func usesSet(r ruleSpec) bool {
	return slices.ContainsFunc(r.exprs, func(e expr.Any) bool { _, ok := e.(*expr.Lookup); return ok })
}

// allowSet is an allowlist set: interval, concatenated, so that address
// prefixes and port ranges are single elements.
func allowSet(t *nftables.Table, name string) *nftables.Set {
	return &nftables.Set{
		Table: t, Name: name,
		KeyType:       setKeyType,
		Interval:      true,
		Concatenation: true,
	}
}

func elements(boxes []box) []nftables.SetElement {
	out := make([]nftables.SetElement, len(boxes))
	for i, b := range boxes {
		out[i].Key, out[i].KeyEnd = b.keys()
	}
	return out
}

// withSetIDs copies a rule's expressions with each lookup pointing at the
// set created in the same batch.
func withSetIDs(exprs []expr.Any, ids map[string]uint32) []expr.Any {
	if ids == nil {
		return exprs
	}
	out := make([]expr.Any, len(exprs))
	for i, e := range exprs {
		if l, ok := e.(*expr.Lookup); ok {
			cp := *l
			cp.SetID = ids[l.SetName]
			e = &cp
		}
		out[i] = e
	}
	return out
}
