package redirect

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
)

// Verify reads the pod's rule set back from the kernel and compares it,
// semantically, with what Install(ns, spec) programs: tables, chains (type,
// hook, priority, policy), every rule's expressions, the allowlist sets and
// the elements of the generation the rules use, the policy rule and the
// local route. Differences are drift, reported in the Health; the error is
// for failing to read.
func Verify(ns netns.NsHandle, spec Spec) (Health, error) {
	c, err := compileSpec(spec)
	if err != nil {
		return Health{}, err
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return Health{}, fmt.Errorf("redirect: open nftables: %w", err)
	}
	var drift []Drift
	present := 0
	for _, build := range tables {
		st, err := inspect(conn, build(c, 0))
		if err != nil {
			return Health{}, err
		}
		want := build(c, max(st.gen, 0))
		if !st.exists {
			drift = append(drift, Drift{Kind: MissingTable, Object: want.String()})
			continue
		}
		present++
		d, err := compareTable(conn, want, st)
		if err != nil {
			return Health{}, err
		}
		drift = append(drift, d...)
	}
	d, n, err := verifyRouting(ns)
	if err != nil {
		return Health{}, err
	}
	drift = append(drift, d...)
	present += n

	h := Health{State: Healthy, Drift: drift}
	switch {
	case present == 0:
		h.State = Absent
	case len(drift) > 0:
		h.State = Drifted
	}
	return h, nil
}

// compareTable lists the drift of a table that exists.
func compareTable(conn *nftables.Conn, want tableSpec, st tableState) ([]Drift, error) {
	var drift []Drift
	for _, cs := range want.chains {
		obj := fmt.Sprintf("%s chain %s", want, cs.name)
		ch, ok := st.chains[cs.name]
		if !ok {
			drift = append(drift, Drift{Kind: MissingChain, Object: obj})
			continue
		}
		if g, w := chainShape(ch)+"; policy "+chainPolicy(ch), specShape(cs)+"; policy "+policyName(cs.policy); g != w {
			drift = append(drift, Drift{Kind: ChainMismatch, Object: obj, Detail: fmt.Sprintf("got %q, want %q", g, w)})
		}
		if d := compareRules(st.rules[cs.name], cs.rules); d != "" {
			drift = append(drift, Drift{Kind: RuleMismatch, Object: obj, Detail: d})
		}
	}
	var names []string
	for name := range st.chains {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, n := range names {
		if !slices.ContainsFunc(want.chains, func(cs chainSpec) bool { return cs.name == n }) {
			drift = append(drift, Drift{Kind: UnexpectedChain, Object: fmt.Sprintf("%s chain %s", want, n)})
		}
	}

	for _, ss := range want.sets {
		for g := range 2 {
			name := setName(ss.base, g)
			obj := fmt.Sprintf("%s set %s", want, name)
			s, ok := st.sets[name]
			if !ok {
				drift = append(drift, Drift{Kind: MissingSet, Object: obj})
				continue
			}
			if p := setProblem(s); p != "" {
				drift = append(drift, Drift{Kind: SetMismatch, Object: obj, Detail: p})
				continue
			}
			if g != want.gen {
				continue // the idle generation holds an old list by design
			}
			elems, err := conn.GetSetElements(s)
			if err != nil {
				return nil, fmt.Errorf("redirect: list elements of %s: %w", obj, err)
			}
			if d := compareElements(elems, ss.elems); d != "" {
				drift = append(drift, Drift{Kind: SetMismatch, Object: obj, Detail: d})
			}
		}
	}
	names = names[:0]
	for name := range st.sets {
		if _, _, ours := parseSetName(name); !ours {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		drift = append(drift, Drift{Kind: SetMismatch, Object: fmt.Sprintf("%s set %s", want, n), Detail: "not made by Install"})
	}
	return drift, nil
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprintf("hook%d", uint32(h))
}

func policyName(p nftables.ChainPolicy) string {
	switch p {
	case nftables.ChainPolicyAccept:
		return "accept"
	case nftables.ChainPolicyDrop:
		return "drop"
	}
	return fmt.Sprintf("policy%d", uint32(p))
}

// compareRules returns "" when the chain's rules are the wanted ones, in
// order, else the first difference.
func compareRules(got []*nftables.Rule, want []ruleSpec) string {
	n := max(len(got), len(want))
	for i := range n {
		var g, w string
		if i < len(got) {
			g = renderExprs(got[i].Exprs)
		}
		if i < len(want) {
			w = renderExprs(want[i].exprs)
		}
		if g == w {
			continue
		}
		prefix := ""
		if len(got) != len(want) {
			prefix = fmt.Sprintf("%d rules, want %d; ", len(got), len(want))
		}
		switch {
		case i >= len(got):
			return fmt.Sprintf("%srule %d missing: want %q", prefix, i+1, w)
		case i >= len(want):
			return fmt.Sprintf("%srule %d unexpected: %q", prefix, i+1, g)
		}
		return fmt.Sprintf("%srule %d: got %q, want %q", prefix, i+1, g, w)
	}
	return ""
}

// compareElements returns "" when the set holds exactly the wanted
// elements, else what is missing and what is extra.
func compareElements(got []nftables.SetElement, want []box) string {
	var g, w []string
	for _, e := range got {
		b, err := boxFromKeys(e.Key, e.KeyEnd)
		if err != nil {
			g = append(g, "undecodable element: "+err.Error())
			continue
		}
		g = append(g, b.String())
	}
	for _, b := range want {
		w = append(w, b.String())
	}
	slices.Sort(g)
	slices.Sort(w)
	if slices.Equal(g, w) {
		return ""
	}
	var missing, extra []string
	for _, x := range w {
		if _, ok := slices.BinarySearch(g, x); !ok {
			missing = append(missing, x)
		}
	}
	for _, x := range g {
		if _, ok := slices.BinarySearch(w, x); !ok {
			extra = append(extra, x)
		}
	}
	return fmt.Sprintf("%d elements, want %d; missing [%s]; extra [%s]", len(g), len(w), strings.Join(missing, ", "), strings.Join(extra, ", "))
}

// renderExprs is the canonical text of a rule: one line per expression in
// the style of `nft --debug=netlink`, with only the fields that decide what
// the rule does. It ignores what the kernel assigns (handles, set IDs) and
// comments, so a rule read back from the kernel renders exactly like the
// rule Install built.
func renderExprs(exprs []expr.Any) string {
	parts := make([]string, len(exprs))
	for i, e := range exprs {
		parts[i] = renderExpr(e)
	}
	return strings.Join(parts, " ; ")
}

func renderExpr(e expr.Any) string {
	switch e := e.(type) {
	case *expr.Meta:
		if e.SourceRegister {
			return fmt.Sprintf("meta set %s with reg %d", metaKeyName(e.Key), e.Register)
		}
		return fmt.Sprintf("meta load %s => reg %d", metaKeyName(e.Key), e.Register)
	case *expr.Ct:
		// google/nftables v0.3.0 does not decode NFTA_CT_SREG: a "ct set"
		// read back has neither SourceRegister nor a register (0 is the
		// verdict register, never a load target). So a set renders without
		// its register on both sides; every rule here sets from reg 1,
		// written by the expression just before it.
		if e.SourceRegister || e.Register == 0 {
			return "ct set " + ctKeyName(e.Key)
		}
		return fmt.Sprintf("ct load %s => reg %d", ctKeyName(e.Key), e.Register)
	case *expr.Cmp:
		return fmt.Sprintf("cmp %s reg %d 0x%s", cmpOpName(e.Op), e.Register, hex.EncodeToString(e.Data))
	case *expr.Bitwise:
		return fmt.Sprintf("bitwise reg %d = (reg %d & 0x%s) ^ 0x%s len %d", e.DestRegister, e.SourceRegister,
			hex.EncodeToString(e.Mask), hex.EncodeToString(e.Xor), e.Len)
	case *expr.Payload:
		if e.OperationType != expr.PayloadLoad {
			return fmt.Sprintf("payload write %+v", *e)
		}
		return fmt.Sprintf("payload load %db @ %s + %d => reg %d", e.Len, payloadBaseName(e.Base), e.Offset, e.DestRegister)
	case *expr.Immediate:
		return fmt.Sprintf("immediate reg %d 0x%s", e.Register, hex.EncodeToString(e.Data))
	case *expr.Verdict:
		if e.Chain != "" {
			return fmt.Sprintf("immediate verdict %d %s", e.Kind, e.Chain)
		}
		return "immediate verdict " + verdictName(e.Kind)
	case *expr.Redir:
		return fmt.Sprintf("redir proto_min reg %d proto_max reg %d flags %#x", e.RegisterProtoMin, e.RegisterProtoMax, e.Flags)
	case *expr.Lookup:
		inv := ""
		if e.Invert {
			inv = " inverted"
		}
		return fmt.Sprintf("lookup reg %d set %s%s", e.SourceRegister, e.SetName, inv)
	case *expr.Reject:
		return fmt.Sprintf("reject type %d code %d", e.Type, e.Code)
	}
	// Anything else is not something Install makes; render it fully so it
	// shows up as a difference.
	return fmt.Sprintf("%T %+v", e, e)
}

func metaKeyName(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyMARK:
		return "mark"
	case expr.MetaKeyL4PROTO:
		return "l4proto"
	case expr.MetaKeyNFPROTO:
		return "nfproto"
	case expr.MetaKeyIIFNAME:
		return "iifname"
	case expr.MetaKeyOIFNAME:
		return "oifname"
	}
	return fmt.Sprintf("meta%d", uint32(k))
}

func ctKeyName(k expr.CtKey) string {
	switch k {
	case expr.CtKeyMARK:
		return "mark"
	case expr.CtKeySTATE:
		return "state"
	case expr.CtKeySTATUS:
		return "status"
	}
	return fmt.Sprintf("ct%d", uint32(k))
}

func cmpOpName(op expr.CmpOp) string {
	switch op {
	case expr.CmpOpEq:
		return "eq"
	case expr.CmpOpNeq:
		return "neq"
	}
	return fmt.Sprintf("op%d", uint32(op))
}

func payloadBaseName(b expr.PayloadBase) string {
	switch b {
	case expr.PayloadBaseNetworkHeader:
		return "network header"
	case expr.PayloadBaseTransportHeader:
		return "transport header"
	case expr.PayloadBaseLLHeader:
		return "link header"
	}
	return fmt.Sprintf("base%d", uint32(b))
}

func verdictName(k expr.VerdictKind) string {
	switch k {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	}
	return fmt.Sprintf("verdict%d", int64(k))
}
