package policy

import (
	"fmt"
	"time"
)

// Build loads and compiles a policy: what the agent, the watcher and the
// CLI all do with policy files. Diagnostics hold parse errors and lint
// warnings; when any is an error, no index is returned and the caller must
// keep whatever policy it had. The index is the policy in force; staged
// rules are not in it (BuildSnapshot gives the staged view too).
func Build(mode IsolationMode, paths ...string) (*Index, Diagnostics, error) {
	set, diags, err := buildSet(paths)
	if err != nil {
		return nil, diags, err
	}
	ix, err := Compile(set, mode)
	if err != nil {
		return nil, diags, err
	}
	return ix, diags, nil
}

// BuildSnapshot is Build with both views: a Snapshot whose Index is the
// policy in force and whose Staged is the staged view (nil when no rule is
// staged), with the lint warnings in Warnings. Version and Digest are left
// zero: they number and identify a Watcher's policies.
//
// For a command that can show either view (say, a --staged flag), pick
// the index with Snapshot.View.
func BuildSnapshot(mode IsolationMode, paths ...string) (*Snapshot, Diagnostics, error) {
	set, diags, err := buildSet(paths)
	if err != nil {
		return nil, diags, err
	}
	ix, staged, err := compileViews(set, mode)
	if err != nil {
		return nil, diags, err
	}
	return &Snapshot{Index: ix, Staged: staged, LoadedAt: time.Now(), Warnings: diags}, diags, nil
}

// buildSet loads and lints paths.
func buildSet(paths []string) (*Set, Diagnostics, error) {
	set, diags := Load(paths...)
	if diags.HasErrors() {
		return nil, diags, fmt.Errorf("policy: %d errors", countErrors(diags))
	}
	diags = append(diags, Lint(set)...)
	diags.Sort()
	return set, diags, nil
}

// compileViews compiles the policy in force and, if any rule is staged,
// the staged view.
func compileViews(set *Set, mode IsolationMode) (enforced, staged *Index, err error) {
	if enforced, err = Compile(set, mode); err != nil {
		return nil, nil, err
	}
	if staged, err = CompileStaged(set, mode); err != nil {
		return nil, nil, err
	}
	return enforced, staged, nil
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
