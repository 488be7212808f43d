package redirect

import (
	"fmt"
	"strings"
)

// DriftKind names one way a pod's redirection differs from what Install
// programs.
type DriftKind uint8

const (
	// MissingTable: a whole nftables table is gone.
	MissingTable DriftKind = iota + 1
	// MissingChain: a chain of a present table is gone.
	MissingChain
	// UnexpectedChain: a table holds a chain Install does not make.
	UnexpectedChain
	// ChainMismatch: a chain's type, hook, priority or policy differs.
	ChainMismatch
	// RuleMismatch: a chain holds a different number of rules, or a rule
	// whose expressions differ.
	RuleMismatch
	// MissingSet: an allowlist set is gone.
	MissingSet
	// SetMismatch: an allowlist set has another key type or flags, or
	// other elements than the allowlist asks for.
	SetMismatch
	// MissingIPRule: no "fwmark 0x111/0xfff lookup 100" rule at priority
	// 32764, or a different rule sits there.
	MissingIPRule
	// MissingRoute: table 100 lacks "local 0.0.0.0/0 dev lo".
	MissingRoute
	// LoopbackDown: lo is down, so neither the redirect targets nor the
	// local route can work.
	LoopbackDown
)

func (k DriftKind) String() string {
	switch k {
	case MissingTable:
		return "missing table"
	case MissingChain:
		return "missing chain"
	case UnexpectedChain:
		return "unexpected chain"
	case ChainMismatch:
		return "chain mismatch"
	case RuleMismatch:
		return "rule mismatch"
	case MissingSet:
		return "missing set"
	case SetMismatch:
		return "set mismatch"
	case MissingIPRule:
		return "missing ip rule"
	case MissingRoute:
		return "missing route"
	case LoopbackDown:
		return "loopback down"
	}
	return fmt.Sprintf("drift(%d)", uint8(k))
}

// Drift is one difference between a pod's namespace and the rule set.
type Drift struct {
	Kind DriftKind
	// Object names what drifted, e.g. "table ip ztcn chain nat_output".
	Object string
	// Detail says how, e.g. `rule 3: got "...", want "..."`; may be empty.
	Detail string
}

func (d Drift) String() string {
	if d.Detail == "" {
		return fmt.Sprintf("%s: %s", d.Kind, d.Object)
	}
	return fmt.Sprintf("%s: %s: %s", d.Kind, d.Object, d.Detail)
}

// State summarizes a Health.
type State uint8

const (
	// Healthy: everything Install programs is present and as programmed.
	Healthy State = iota + 1
	// Drifted: some of it is missing or different; Repair fixes it.
	Drifted
	// Absent: none of it is there (never installed, or removed).
	Absent
)

func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Drifted:
		return "drifted"
	case Absent:
		return "absent"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Health is the redirection health of one pod, as Verify found it.
type Health struct {
	State State
	// Drift lists every difference found, in a stable order (tables, then
	// routing). Empty when State is Healthy. When State is Absent it lists
	// the missing pieces.
	Drift []Drift
}

// Has reports whether the health lists a drift of kind k.
func (h Health) Has(k DriftKind) bool {
	for _, d := range h.Drift {
		if d.Kind == k {
			return true
		}
	}
	return false
}

func (h Health) String() string {
	if len(h.Drift) == 0 {
		return h.State.String()
	}
	parts := make([]string, len(h.Drift))
	for i, d := range h.Drift {
		parts[i] = d.String()
	}
	return fmt.Sprintf("%s: %s", h.State, strings.Join(parts, "; "))
}
