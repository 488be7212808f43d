package podspec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// maxFileSize bounds what Load reads: a pods file is written by people, and
// a mistaken path (a log, a disk image) should fail fast, not fill memory.
const maxFileSize = 4 << 20

// Load reads and parses the pods file at path. Problems with the content
// are reported as an *Error naming path as given; a file that cannot be
// read gives the os error (errors.Is(err, fs.ErrNotExist) works).
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: file is larger than %d MiB", path, maxFileSize>>20)
	}
	return Parse(path, data)
}

// Parse parses and validates the content of a pods file; name is used in
// positions. It returns either a File whose every value is valid or an
// *Error holding every problem found, never both.
func Parse(name string, data []byte) (*File, error) {
	var d decoder
	f := d.file(d.document(data))
	if len(d.diags) > 0 {
		sortDiagnostics(d.diags)
		return nil, &Error{File: name, Diagnostics: d.diags}
	}
	f.Path = name
	return f, nil
}

// document returns the root node of the file's single YAML document, or nil
// if there is none or it cannot be parsed (which is reported).
func (d *decoder) document(data []byte) *yaml.Node {
	docs, err := decodeAll(data)
	if err != nil {
		d.diags = append(d.diags, syntaxError(data, err))
		return nil
	}
	var root *yaml.Node
	for _, doc := range docs {
		if len(doc.Content) == 0 {
			continue
		}
		n := doc.Content[0]
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
			// An empty document, as a stray "---" at the end makes.
			continue
		}
		if root != nil {
			d.errorf(doc, "", "a second YAML document is not supported (list every pod under the one pods:)")
			continue
		}
		root = n
	}
	if root == nil {
		d.diags = append(d.diags, Diagnostic{Pos: Position{1, 1}, Message: "no pods: the file is empty (want a top-level pods: list)"})
	}
	return root
}

// decodeAll parses every document of data.
func decodeAll(data []byte) ([]*yaml.Node, error) {
	var docs []*yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, &doc)
	}
}
