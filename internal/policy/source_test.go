package policy

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// memSource is a Source held in memory, as the Kubernetes API source is.
type memSource struct {
	mu      sync.Mutex
	docs    map[string]string
	changed chan struct{}
}

func newMemSource() *memSource {
	return &memSource{docs: map[string]string{}, changed: make(chan struct{}, 1)}
}

func (m *memSource) Documents() []Document {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Document
	for name, d := range m.docs {
		out = append(out, Document{Name: name, Data: []byte(d)})
	}
	return out
}

func (m *memSource) Changed() <-chan struct{} { return m.changed }

// set changes documents (name, content; empty content deletes) at once,
// then signals.
func (m *memSource) set(nameDocs ...string) {
	m.mu.Lock()
	for i := 0; i+1 < len(nameDocs); i += 2 {
		if name, doc := nameDocs[i], nameDocs[i+1]; doc == "" {
			delete(m.docs, name)
		} else {
			m.docs[name] = doc
		}
	}
	m.mu.Unlock()
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// sourceNetworkPolicy lets app=backend in shop accept app=batch on 9090,
// and sourceEgress lets app=batch send there: with isolation "all" both
// ends must allow a flow, as under default-deny NetworkPolicies.
const sourceEgress = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
"metadata":{"name":"batch-to-backend","namespace":"shop"},
"spec":{"podSelector":{"matchLabels":{"app":"batch"}},"policyTypes":["Egress"],
"egress":[{"to":[{"podSelector":{"matchLabels":{"app":"backend"}}}],"ports":[{"port":9090,"protocol":"TCP"}]}]}}`

const sourceNetworkPolicy = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
"metadata":{"name":"backend-from-batch","namespace":"shop"},
"spec":{"podSelector":{"matchLabels":{"app":"backend"}},"policyTypes":["Ingress"],
"ingress":[{"from":[{"podSelector":{"matchLabels":{"app":"batch"}}}],"ports":[{"port":9090,"protocol":"TCP"}]}]}}`

// TestWatcherCompilesSourceDocumentsWithFiles: documents of a Source (the
// Kubernetes API) and the files end up in one index; a change of the
// source reloads; a broken document keeps the policy in force, with a
// diagnostic naming the document; removing it reloads again.
func TestWatcherCompilesSourceDocumentsWithFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(watchPolicy(8080)), 0o644); err != nil {
		t.Fatal(err)
	}
	src := newMemSource()
	f := newWatchFixture(t, []string{path}, WithSource(src))
	f.run(t)
	batch := watchEndpoint("batch")
	if s := f.w.Current(); !watchAllowed(s, watchFrontend, watchBackend, 8080) || watchAllowed(s, batch, watchBackend, 9090) {
		t.Fatal("version 1 does not hold the file's policy alone")
	}

	src.set("kubernetes:networkpolicy/shop/backend-from-batch", sourceNetworkPolicy,
		"kubernetes:networkpolicy/shop/batch-to-backend", sourceEgress)
	if r := f.next(t); !r.OK || r.Version != 2 {
		t.Fatalf("reload after the source changed: %+v", r)
	}
	s := f.w.Current()
	if !watchAllowed(s, batch, watchBackend, 9090) || !watchAllowed(s, watchFrontend, watchBackend, 8080) {
		t.Fatal("version 2 does not hold both the file's rule and the NetworkPolicy")
	}

	src.set("kubernetes:networkpolicy/shop/broken", `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"broken","namespace":"shop"},"spec":{"podSelector":{"matchLabels":{"app":"backend"}},"ingress":[{"ports":[{"port":"not a port!"}]}]}}`)
	r := f.next(t)
	if r.OK || r.Version != 2 || !strings.Contains(r.Err.Error(), "kubernetes:networkpolicy/shop/broken") {
		t.Fatalf("a broken document: %+v", r)
	}
	if f.w.Current() != s {
		t.Fatal("a broken document replaced the policy in force")
	}

	src.set("kubernetes:networkpolicy/shop/broken", "",
		"kubernetes:networkpolicy/shop/backend-from-batch", "",
		"kubernetes:networkpolicy/shop/batch-to-backend", "")
	// Same inputs as version 1: no new version is needed, but the policy
	// in force must go back to them.
	for {
		r = f.next(t)
		if r.OK {
			break
		}
	}
	if s := f.w.Current(); watchAllowed(s, batch, watchBackend, 9090) || !watchAllowed(s, watchFrontend, watchBackend, 8080) {
		t.Fatalf("after the NetworkPolicy was deleted (version %d), batch is still allowed", s.Version)
	}
}
