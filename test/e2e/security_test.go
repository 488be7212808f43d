package e2e

import (
	"strings"
	"testing"
)

// secRow states one row of the security table (`make security`): what
// was tried, what must happen, what happened. ok false fails the test.
func secRow(t *testing.T, attack, expected, seen string, ok bool) {
	t.Helper()
	clean := func(s string) string { return strings.NewReplacer("\t", " ", "\n", " ").Replace(s) }
	t.Logf("SECURITY\t%s\t%s\t%s\t%v", clean(attack), clean(expected), clean(seen), ok)
	if !ok {
		t.Errorf("%s: expected %s, saw %s", attack, expected, seen)
	}
}
