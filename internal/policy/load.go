package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// document is one YAML (or JSON) document of a policy file, with the file's
// name for positions.
type document struct {
	file string
	node *yaml.Node // the document's root mapping
}

func (d document) pos(n *yaml.Node) Position {
	return Position{File: d.file, Line: n.Line, Col: n.Column}
}

// maxPolicyFileSize bounds what a single file may hold: a policy is text
// written by people, and the agent must not be made to parse gigabytes.
const maxPolicyFileSize = 16 << 20

// Load reads policy files and directories (every *.yaml, *.yml and *.json
// in a directory, in sorted order; not recursive), each holding one or
// more documents of either kind: the native schema or Kubernetes
// NetworkPolicy. It returns the Set and every problem found; the Set is
// usable only if no diagnostic is an error.
func Load(paths ...string) (*Set, Diagnostics) {
	return loadWithDocuments(paths, nil)
}

// readDocuments reads and splits the documents of every file of paths.
func readDocuments(paths []string) (Diagnostics, []document) {
	var diags Diagnostics
	var docs []document
	for _, path := range paths {
		files, err := policyFiles(path)
		if err != nil {
			diags = append(diags, Diagnostic{Pos: Position{File: path}, Severity: SeverityError, Message: err.Error()})
			continue
		}
		for _, f := range files {
			data, err := readLimited(f)
			if err != nil {
				diags = append(diags, Diagnostic{Pos: Position{File: f}, Severity: SeverityError, Message: err.Error()})
				continue
			}
			d, derr := splitDocuments(f, data)
			diags = append(diags, derr...)
			docs = append(docs, d...)
		}
	}
	return diags, docs
}

// LoadBytes parses one file's content; name is used in positions.
func LoadBytes(name string, data []byte) (*Set, Diagnostics) {
	docs, diags := splitDocuments(name, data)
	set, more := compileDocuments(docs)
	diags = append(diags, more...)
	diags.Sort()
	return set, diags
}

// compileDocuments turns documents into a Set. Networks come first, from
// every native document, because a rule may name a network defined in
// another file.
func compileDocuments(docs []document) (*Set, Diagnostics) {
	set := &Set{Networks: map[string]Network{}}
	var diags Diagnostics
	var native, kube []document
	for _, d := range docs {
		if isNetworkPolicy(d.node) {
			kube = append(kube, d)
		} else {
			native = append(native, d)
		}
	}
	for _, d := range native {
		nativeNetworks(d, set, &diags)
	}
	for _, d := range native {
		nativePolicies(d, set, &diags)
	}
	for _, d := range kube {
		kubeNetworkPolicy(d, set, &diags)
	}
	return set, diags
}

// isNetworkPolicy tells a Kubernetes document by its kind.
func isNetworkPolicy(n *yaml.Node) bool {
	if v := mappingValue(n, "kind"); v != nil && v.Value == "NetworkPolicy" {
		return true
	}
	return false
}

// mappingValue returns the value node of key in mapping n, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func policyFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		// Kubernetes mounts ConfigMaps with hidden ..data/..timestamp
		// entries; the visible names are symlinks into them.
		if strings.HasPrefix(name, ".") {
			continue
		}
		switch strings.ToLower(filepath.Ext(name)) {
		case ".yaml", ".yml", ".json":
		default:
			continue
		}
		p := filepath.Join(path, name)
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			continue
		}
		files = append(files, p)
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("directory holds no *.yaml, *.yml or *.json file")
	}
	return files, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPolicyFileSize {
		return nil, fmt.Errorf("file is larger than %d MiB", maxPolicyFileSize>>20)
	}
	return data, nil
}

// splitDocuments parses every YAML document of a file (JSON is YAML). An
// empty document is skipped; a document that is not a mapping is an error.
func splitDocuments(file string, data []byte) ([]document, Diagnostics) {
	var docs []document
	var diags Diagnostics
	// YAML parsers also read UTF-16 and UTF-32, but then their line and
	// column numbers count decoded characters, not the file's bytes, and
	// an editor shows something else again. A policy is plain text:
	// anything but UTF-8 (after an optional UTF-8 BOM) is refused at once.
	if text := bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")); !utf8.Valid(text) || bytes.HasPrefix(data, []byte("\xff\xfe")) || bytes.HasPrefix(data, []byte("\xfe\xff")) {
		return nil, Diagnostics{{Pos: Position{File: file, Line: 1, Col: 1}, Severity: SeverityError,
			Message: "the file is not UTF-8 text (UTF-16, UTF-32 or binary?); save it as UTF-8"}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			diags = append(diags, yamlError(file, err))
			break
		}
		if len(n.Content) == 0 {
			continue
		}
		root := n.Content[0]
		if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
			continue
		}
		if root.Kind != yaml.MappingNode {
			diags = append(diags, Diagnostic{Pos: Position{File: file, Line: root.Line, Col: root.Column}, Severity: SeverityError,
				Message: "a policy document must be a mapping (native: policies/networks; or a Kubernetes NetworkPolicy)"})
			continue
		}
		if v := mappingValue(root, "kind"); v != nil && v.Value == "List" {
			// `kubectl get networkpolicy -A -o yaml` wraps its objects in
			// a List; each item is a document of its own.
			items := mappingValue(root, "items")
			if items == nil || items.Kind != yaml.SequenceNode {
				diags = append(diags, Diagnostic{Pos: Position{File: file, Line: root.Line, Col: root.Column}, Severity: SeverityError, Message: "a List needs an items sequence"})
				continue
			}
			for _, item := range items.Content {
				if item.Kind != yaml.MappingNode {
					diags = append(diags, Diagnostic{Pos: Position{File: file, Line: item.Line, Col: item.Column}, Severity: SeverityError, Message: "a List item must be a mapping"})
					continue
				}
				docs = append(docs, document{file: file, node: item})
			}
			continue
		}
		docs = append(docs, document{file: file, node: root})
	}
	return docs, diags
}

// yamlError turns a yaml.v3 error ("yaml: line 3: …") into a diagnostic
// with the line in its position.
func yamlError(file string, err error) Diagnostic {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if _, scanErr := fmt.Sscanf(rest[:i], "%d", &line); scanErr == nil {
				msg = strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return Diagnostic{Pos: Position{File: file, Line: line}, Severity: SeverityError, Message: "YAML syntax: " + msg}
}
