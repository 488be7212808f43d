package config

import (
	"fmt"
	"strings"
)

// Error is one problem in a configuration file.
type Error struct {
	// File is the name given to Parse, or the path given to Load.
	File string
	// Line and Col locate the problem, counting from 1; Col counts bytes.
	Line, Col int
	// Key is the full dotted key, such as identity.federation[0].bundle_path;
	// empty for TOML syntax errors.
	Key string
	// Msg describes the problem.
	Msg string
}

// Error formats e as "file:line:col: key: msg", leaving out the key when
// there is none.
func (e Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", e.File, e.Line, e.Col, e.Key, e.Msg)
}

// Errors is every problem found in a configuration file, in file order.
type Errors []Error

// Error formats the problems one per line.
func (e *Errors) Error() string {
	lines := make([]string, len(*e))
	for i, err := range *e {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each problem as a *Error to errors.As.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(*e))
	for i := range *e {
		errs[i] = &(*e)[i]
	}
	return errs
}
