package policy

import "fmt"

// Build loads and compiles a policy: what the agent, the watcher and the
// CLI all do with policy files. Diagnostics hold parse errors and lint
// warnings; when any is an error, no index is returned and the caller must
// keep whatever policy it had.
func Build(mode IsolationMode, paths ...string) (*Index, Diagnostics, error) {
	set, diags := Load(paths...)
	if diags.HasErrors() {
		return nil, diags, fmt.Errorf("policy: %d errors", countErrors(diags))
	}
	diags = append(diags, Lint(set)...)
	diags.Sort()
	ix, err := Compile(set, mode)
	if err != nil {
		return nil, diags, err
	}
	return ix, diags, nil
}

// LintPaths is `ztcn policy lint`: every parse error and lint warning of
// the given files, in file order.
func LintPaths(paths ...string) Diagnostics {
	set, diags := Load(paths...)
	if !diags.HasErrors() {
		diags = append(diags, Lint(set)...)
	}
	diags.Sort()
	return diags
}

func countErrors(ds Diagnostics) int {
	n := 0
	for _, d := range ds {
		if d.Severity == SeverityError {
			n++
		}
	}
	return n
}
