package podspec

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder collects the problems of one file while the schema functions
// (file.go, pod.go, ports.go) walk it. They keep going after a problem so
// that one run reports them all.
type decoder struct {
	diags []Diagnostic
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.diags = append(d.diags, Diagnostic{Pos: pos(n), Path: path, Message: fmt.Sprintf(format, args...)})
}

func pos(n *yaml.Node) Position { return Position{Line: n.Line, Col: n.Column} }

// entry is one key and its value in a mapping.
type entry struct{ key, value *yaml.Node }

// entries returns the pairs of mapping n at path, leaving out and reporting
// keys that are aliases, merge keys, not scalars, or repeated: yaml.v3
// keeps both copies of a repeated key in a Node, and the second must not
// silently win.
func (d *decoder) entries(n *yaml.Node, path string) []entry {
	var out []entry
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case d.alias(k, path):
			continue
		case k.Kind != yaml.ScalarNode:
			d.errorf(k, path, "key must be a string, got %s", describe(k))
			continue
		case k.ShortTag() == "!!merge":
			d.errorf(k, path, "YAML merge keys (<<) are not supported; write the fields out")
			continue
		}
		if f := first[k.Value]; f != nil {
			d.errorf(k, child(path, k.Value), "duplicate key %q (first at line %d)", k.Value, f.Line)
			continue
		}
		first[k.Value] = k
		out = append(out, entry{k, v})
	}
	return out
}

// fields returns the entries of mapping n at path by field name, reporting
// fields not in known.
func (d *decoder) fields(n *yaml.Node, path string, known []string) map[string]entry {
	out := map[string]entry{}
	for _, e := range d.entries(n, path) {
		name := e.key.Value
		if !slices.Contains(known, name) {
			msg := fmt.Sprintf("unknown field %q", name)
			if guess := closest(name, known); guess != "" {
				msg += fmt.Sprintf(", did you mean %q?", guess)
			}
			d.errorf(e.key, child(path, name), "%s (known fields: %s)", msg, strings.Join(known, ", "))
			continue
		}
		out[name] = e
	}
	return out
}

// present returns the value of an optional field, nil if it is omitted or
// empty (`labels:`), which YAML writers use interchangeably.
func present(f map[string]entry, name string) *yaml.Node {
	e, ok := f[name]
	if !ok || isNull(e.value) {
		return nil
	}
	return e.value
}

// required returns the value of a field that must be given, reporting its
// absence at the mapping n and its emptiness at the value.
func (d *decoder) required(n *yaml.Node, f map[string]entry, name, path string) *yaml.Node {
	e, ok := f[name]
	switch {
	case !ok:
		d.errorf(n, path, "required field is missing")
		return nil
	case isNull(e.value):
		d.errorf(e.value, path, "must not be empty")
		return nil
	}
	return e.value
}

// alias reports a YAML alias, which this package refuses (see the package
// documentation).
func (d *decoder) alias(n *yaml.Node, path string) bool {
	if n.Kind == yaml.AliasNode {
		d.errorf(n, path, "YAML aliases (*%s) are not supported; write the value out", n.Value)
		return true
	}
	return false
}

// mapping checks that n is a mapping; want describes one for the message.
func (d *decoder) mapping(n *yaml.Node, path, what, want string) bool {
	if d.alias(n, path) {
		return false
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "%s must be %s, got %s", what, want, describe(n))
		return false
	}
	return true
}

// str returns the text of string scalar n. A number or boolean is refused
// with a hint to quote it: Kubernetes refuses them too, and reading `80` as
// "80" here would make the same file mean something else there.
func (d *decoder) str(n *yaml.Node, path, what string) (string, bool) {
	if d.alias(n, path) {
		return "", false
	}
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str":
			return n.Value, true
		case "!!int", "!!float", "!!bool", "!!timestamp":
			d.errorf(n, path, "%s must be a string (quote it)", what)
			return "", false
		}
	}
	d.errorf(n, path, "%s must be a string, got %s", what, describe(n))
	return "", false
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node holds, for the "got" part of messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!bool":
			return "a boolean"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!str":
			return "a string"
		case "!!timestamp":
			return "a date"
		}
		return "a " + n.ShortTag() + " value"
	}
	return "no value"
}

// child names field key of the object at path. A key that is not a plain
// word is quoted, so that pods[0].labels."app.kubernetes.io/name" stays
// one step of the path.
func child(path, key string) string {
	if !isWord(key) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// index names element i of the list at path.
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func isWord(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
