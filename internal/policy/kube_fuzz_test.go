package policy

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadNetworkPolicy feeds arbitrary files to the parser and the
// importer. Neither may panic; a file that loads must give a Set the index
// accepts, whose NetworkPolicy grants only allow and select something; and
// the importer's output for it must load as a native policy. The seed
// corpus (testdata/kube and the cases below) runs in the normal suite.
func FuzzLoadNetworkPolicy(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "kube", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, seed := range []string{
		kubeHeader + "spec: {podSelector: {}, ingress: [{}], egress: [{}]}\n",
		kubeHeader + "spec: {ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: \"y\"}}}], ports: [{port: http}]}]}\n",
		kubeHeader + "spec: {egress: [{to: [{ipBlock: {cidr: \"2001:db8::/32\", except: [\"2001:db8::/64\"]}}], ports: [{port: 1, endPort: 65535, protocol: SCTP}]}]}\n",
		`{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "x"}, "spec": {"policyTypes": ["Egress"]}}`,
		"kind: NetworkPolicy\nmetadata: &m {name: p}\nspec: *m\n",
		"kind: NetworkPolicy\n? [a]\n: b\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, diags := LoadBytes("fuzz.yaml", data)
		for _, d := range diags {
			if d.Pos.File != "fuzz.yaml" || d.Message == "" {
				t.Errorf("diagnostic without file or message: %#v", d)
			}
		}
		if diags.HasErrors() {
			return
		}
		for _, g := range set.Grants {
			if g.Rule < 0 || g.Rule >= len(set.Rules) {
				t.Fatalf("grant refers to rule %d of %d", g.Rule, len(set.Rules))
			}
			if set.Rules[g.Rule].Origin == "native" {
				continue
			}
			if g.Action != Allow {
				t.Errorf("a NetworkPolicy grant that denies: %+v", g)
			}
			if len(g.Subject.Terms) == 0 || len(g.Peer.Terms) == 0 {
				t.Errorf("a NetworkPolicy grant with an empty selector: %+v", g)
			}
		}
		for _, mode := range []IsolationMode{IsolateSelected, IsolateAll} {
			if _, err := Compile(set, mode); err != nil {
				t.Fatalf("Compile(%s): %v", mode, err)
			}
		}
		out, _, idiags := ImportBytes("fuzz.yaml", data)
		if idiags.HasErrors() {
			t.Fatalf("import of a loadable file failed: %v", idiags)
		}
		if _, ndiags := LoadBytes("imported.yaml", out); ndiags.HasErrors() {
			t.Fatalf("the import does not load: %v\n%s", ndiags, out)
		}
	})
}
