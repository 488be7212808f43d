package redirect

import (
	"testing"

	"github.com/google/nftables/expr"
)

// google/nftables v0.3.0 reads "ct mark set" back as a load into register
// 0; Verify must still see it as the rule Install built.
func TestCtSetReadBackRendersLikeTheBuiltRule(t *testing.T) {
	built := renderExprs(setConnMark())
	readBack := renderExprs([]expr.Any{setConnMark()[0], setConnMark()[1], &expr.Ct{Key: expr.CtKeyMARK}})
	if built != readBack {
		t.Errorf("built %q, read back %q", built, readBack)
	}
}

// The lookup rules must name the generation they use, or Verify could not
// tell a switched allowlist from a stale one.
func TestRulesLookUpOneGeneration(t *testing.T) {
	for gen := range 2 {
		for _, build := range tables {
			spec := build(compiled{}, gen)
			lookups := 0
			for _, cs := range spec.chains {
				for _, r := range cs.rules {
					for _, e := range r.exprs {
						l, ok := e.(*expr.Lookup)
						if !ok {
							continue
						}
						lookups++
						if _, g, ok := parseSetName(l.SetName); !ok || g != gen {
							t.Errorf("%s chain %s looks up %q, want generation %d", spec, cs.name, l.SetName, gen)
						}
					}
				}
			}
			if lookups != 4 {
				t.Errorf("%s: %d lookups, want 4 (in and out, ICMP and not)", spec, lookups)
			}
		}
	}
}
