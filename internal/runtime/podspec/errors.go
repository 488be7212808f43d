package podspec

import (
	"slices"
	"strings"
)

// Error is every problem found in a pods file, in file order.
type Error struct {
	// File is the name given to Parse, or the path given to Load.
	File        string
	Diagnostics []Diagnostic
}

// Diagnostic is one problem.
type Diagnostic struct {
	Pos Position
	// Path names the field at fault, such as pods[1].labels.app or
	// pods[0].ports[2].port; empty for problems of the file as a whole
	// (YAML syntax, an empty file).
	Path    string
	Message string
}

// String formats d as "line:col: path: message", leaving out the path when
// there is none.
func (d Diagnostic) String() string {
	if d.Path == "" {
		return d.Pos.String() + ": " + d.Message
	}
	return d.Pos.String() + ": " + d.Path + ": " + d.Message
}

// Error formats the problems one per line as "file:line:col: path: message",
// the form editors and CI logs link to a place in the file.
func (e *Error) Error() string {
	lines := make([]string, len(e.Diagnostics))
	for i, d := range e.Diagnostics {
		lines[i] = e.File + ":" + d.String()
	}
	return strings.Join(lines, "\n")
}

// sortDiagnostics orders diags by position; problems at one place keep the
// order they were found in, which follows the schema.
func sortDiagnostics(diags []Diagnostic) {
	slices.SortStableFunc(diags, func(a, b Diagnostic) int {
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line - b.Pos.Line
		}
		return a.Pos.Col - b.Pos.Col
	})
}
