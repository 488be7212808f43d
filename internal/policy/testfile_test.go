package policy

import (
	"os"
	"strings"
	"testing"
)

func TestMissionExamplePassesItsTests(t *testing.T) {
	ix, diags, err := Build(IsolateAll, "../../examples/policy/policy.yaml")
	if err != nil || len(diags) != 0 {
		t.Fatalf("mission policy: %v %v", err, diags)
	}
	data, err := os.ReadFile("../../examples/policy-tests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tf, diags := ParseTestFile("tests.yaml", data)
	if len(diags) != 0 {
		t.Fatal(diags)
	}
	results := RunTests(ix, tf)
	if len(results) != 10 {
		t.Fatalf("%d results, want 10", len(results))
	}
	for _, r := range results {
		if !r.Passed {
			t.Errorf("%s: %v\n%s", r.Case.Label(), r.Err, r.Explanation)
		}
	}
}

func TestTestFileErrorsNameTheLine(t *testing.T) {
	cases := []struct {
		name, src, want string
	}{
		{"unknown top-level key", "workloads: []\ntestz: []\n", `tests.yaml:2: error: unknown key "testz"`},
		{"unknown workload key", "workloads:\n  - name: a/b\n    lables: {}\n", `tests.yaml:2: error: workload: unknown key "lables"`},
		{"workload name without namespace", "workloads:\n  - name: ab\n", "tests.yaml:2: error: workload \"ab\": name must be <namespace>/<name>"},
		{"bad expectation", "workloads:\n  - name: a/b\ntests:\n  - {from: a/b, to: a/b, port: 80, expect: maybe}\n", "tests.yaml:4: error: test"},
		{"unknown workload in a test", "tests:\n  - {from: a/x, to: 10.0.0.1, port: 80, expect: deny}\n", "neither a workload"},
		{"bad protocol", "workloads:\n  - name: a/b\ntests:\n  - {from: a/b, to: a/b, port: 80, protocol: icmp, expect: deny}\n", "unknown protocol"},
		{"bad isolation", "isolation: some\n", "unknown isolation"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := ParseTestFile("tests.yaml", []byte(tc.src))
			if !diags.HasErrors() {
				t.Fatal("no error")
			}
			var all []string
			for _, d := range diags {
				all = append(all, d.String())
			}
			if !strings.Contains(strings.Join(all, "\n"), tc.want) {
				t.Fatalf("diagnostics %q lack %q", all, tc.want)
			}
		})
	}
}

func TestMatrixRowsAreSourcesAndColumnsDestinations(t *testing.T) {
	ix, _, err := Build(IsolateAll, "../../examples/policy/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile("../../examples/policy-tests.yaml")
	tf, _ := ParseTestFile("tests.yaml", data)
	m := ReachabilityMatrix(ix, tf, TCP, 80)
	// Sorted names: shop/backend, shop/batch, shop/frontend.
	want := [][]bool{{false, false, false}, {false, false, false}, {true, false, false}}
	for i := range want {
		for j := range want[i] {
			if m.Allowed[i][j] != want[i][j] {
				t.Fatalf("matrix:\n%s", m)
			}
		}
	}
	if !strings.Contains(m.String(), "2 shop/frontend") {
		t.Fatalf("matrix:\n%s", m)
	}
}
