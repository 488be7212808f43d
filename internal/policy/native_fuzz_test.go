package policy

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoadNative checks that no input makes the loader panic, and that a
// Set without errors is well formed: a grant with an empty selector would
// match nothing at best, and a bad rule index would break explanations.
// The seeds (every test input and testdata/native) run in the normal suite.
func FuzzLoadNative(f *testing.F) {
	f.Add([]byte(missionPolicy))
	for _, tc := range nativeSemanticCases {
		f.Add([]byte(tc.src))
	}
	for _, tc := range nativeErrorCases {
		f.Add([]byte(tc.src))
	}
	for _, tc := range lintCases {
		f.Add([]byte(tc.src))
	}
	err := filepath.WalkDir("testdata/native", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err == nil {
			f.Add(data)
		}
		return err
	})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		set, diags := LoadBytes("f.yaml", data)
		lint := Lint(set)
		for _, d := range append(diags, lint...) {
			if d.Pos.File != "f.yaml" || d.Message == "" {
				t.Fatalf("diagnostic without a position in the file or a message: %#v", d)
			}
		}
		if _, again := LoadBytes("f.yaml", data); !reflect.DeepEqual(ntDiags(again), ntDiags(diags)) {
			t.Fatalf("diagnostics differ between two loads:\n%q\n%q", ntDiags(diags), ntDiags(again))
		}
		if diags.HasErrors() {
			return
		}
		for _, g := range set.Grants {
			if len(g.Subject.Terms) == 0 || len(g.Peer.Terms) == 0 {
				t.Fatalf("grant with an empty selector: %+v", g)
			}
			if g.Rule < 0 || g.Rule >= len(set.Rules) {
				t.Fatalf("grant of rule %d, have %d rules", g.Rule, len(set.Rules))
			}
		}
		for _, iso := range set.Isolations {
			if len(iso.Subject.Terms) == 0 || iso.Rule < 0 || iso.Rule >= len(set.Rules) {
				t.Fatalf("bad isolation: %+v", iso)
			}
		}
	})
}
