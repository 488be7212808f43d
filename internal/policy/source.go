package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"sort"
)

// Document is one policy document that does not live in a file, such as a
// Kubernetes NetworkPolicy object read from the API. Name stands for the
// file in diagnostics ("kubernetes:networkpolicy/shop/allow-web"); Data is
// YAML or JSON, either schema.
type Document struct {
	Name string
	Data []byte
}

// Source is policy from outside the files: a Watcher given one compiles its
// documents together with the files, into the same index, and reloads
// when it signals a change. A reload that fails, whatever input broke it,
// keeps the policy in force.
type Source interface {
	// Documents returns every document the source holds now.
	Documents() []Document
	// Changed receives a value after the documents changed.
	Changed() <-chan struct{}
}

// WithSource adds src's documents to the watcher's inputs.
func WithSource(src Source) WatcherOption {
	return func(w *Watcher) { w.sources = append(w.sources, src) }
}

// sourceDocuments collects the documents of every source, in name order
// so that the digest and the compiled order do not depend on map order.
func sourceDocuments(sources []Source) []Document {
	var docs []Document
	for _, s := range sources {
		docs = append(docs, s.Documents()...)
	}
	sort.SliceStable(docs, func(i, j int) bool { return docs[i].Name < docs[j].Name })
	return docs
}

func digestDocuments(h hash.Hash, docs []Document) {
	for _, d := range docs {
		fmt.Fprintf(h, "document %q %x\n", d.Name, sha256.Sum256(d.Data))
	}
}

// loadWithDocuments is Load of the files plus the documents.
func loadWithDocuments(paths []string, extra []Document) (*Set, Diagnostics) {
	diags, docs := readDocuments(paths)
	for _, d := range extra {
		more, derr := splitDocuments(d.Name, d.Data)
		diags = append(diags, derr...)
		docs = append(docs, more...)
	}
	set, more := compileDocuments(docs)
	diags = append(diags, more...)
	diags.Sort()
	return set, diags
}

// mergeChanged forwards the change signals of every source to one channel
// until ctx ends; signals that find one pending are merged into it.
func mergeChanged(ctx context.Context, sources []Source) <-chan struct{} {
	out := make(chan struct{}, 1)
	for _, s := range sources {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-s.Changed():
					select {
					case out <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	return out
}
