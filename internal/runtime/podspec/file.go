package podspec

import (
	"slices"

	"gopkg.in/yaml.v3"
)

var fileFields = []string{"pods", "externals"}

// file decodes the root mapping; nil root (already reported) gives an empty
// File.
func (d *decoder) file(root *yaml.Node) *File {
	f := &File{}
	if root == nil || !d.mapping(root, "", "the file", "a mapping with a pods: list") {
		return f
	}
	fields := d.fields(root, "", fileFields)
	var names []workloadName

	pods := present(fields, "pods")
	switch {
	case pods == nil:
		at := root
		if e, ok := fields["pods"]; ok {
			at = e.value
		}
		d.errorf(at, "pods", "no pods (want a list with at least one pod)")
	case pods.Kind == yaml.SequenceNode && len(pods.Content) == 0:
		d.errorf(pods, "pods", "no pods (want a list with at least one pod)")
	case d.list(pods, "pods", "pods", "a list of pods"):
		for i, n := range pods.Content {
			p, name := d.pod(n, index("pods", i))
			f.Pods = append(f.Pods, p)
			names = appendName(names, name, "pod")
		}
	}

	if externals := present(fields, "externals"); externals != nil && d.list(externals, "externals", "externals", "a list of external workloads") {
		for i, n := range externals.Content {
			x, name := d.external(n, index("externals", i))
			f.Externals = append(f.Externals, x)
			names = appendName(names, name, "external")
		}
	}

	d.uniqueNames(names)
	return f
}

// list checks that n is a sequence.
func (d *decoder) list(n *yaml.Node, path, what, want string) bool {
	if d.alias(n, path) {
		return false
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "%s must be %s, got %s", what, want, describe(n))
		return false
	}
	return true
}

// workloadName is where a valid pod or external name is written.
type workloadName struct {
	node *yaml.Node
	path string
	kind string // "pod" or "external"
}

func appendName(names []workloadName, n nameAt, kind string) []workloadName {
	if n.node == nil {
		return names
	}
	return append(names, workloadName{n.node, n.path, kind})
}

// uniqueNames reports every name used before, pods and externals together
// since both become network namespaces named after them. The later one in
// the file is reported, pointing back at the first.
func (d *decoder) uniqueNames(names []workloadName) {
	slices.SortStableFunc(names, func(a, b workloadName) int {
		if a.node.Line != b.node.Line {
			return a.node.Line - b.node.Line
		}
		return a.node.Column - b.node.Column
	})
	first := map[string]workloadName{}
	for _, n := range names {
		if f, dup := first[n.node.Value]; dup {
			d.errorf(n.node, n.path, "duplicate name %q: already used by the %s at line %d", n.node.Value, f.kind, f.node.Line)
			continue
		}
		first[n.node.Value] = n
	}
}
