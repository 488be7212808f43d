package local

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/ztcn/ztcn/internal/runtime/podspec"
)

func parse(t *testing.T, src string) *podspec.File {
	t.Helper()
	f, err := podspec.Parse("pods.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPlanSpreadsUnplacedPodsAndHonoursNamedNodes(t *testing.T) {
	f := parse(t, `pods:
  - {name: a, command: [x]}
  - {name: b, command: [x]}
  - {name: c, command: [x], node: edge}
  - {name: d, command: [x]}
externals:
  - {name: m, address: 203.0.113.10, command: [x]}
  - {name: n, address: 203.0.113.1, command: [x]}
`)
	p, err := NewPlan(f, 2)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, n := range p.Nodes {
		nodes = append(nodes, fmt.Sprintf("%s=%s/%s", n.Name, n.Gateway, n.Underlay))
	}
	if got, want := strings.Join(nodes, " "), "node-1=10.77.1.1/24/10.77.0.1/24 node-2=10.77.2.1/24/10.77.0.2/24 edge=10.77.3.1/24/10.77.0.3/24"; got != want {
		t.Errorf("nodes:\n got %s\nwant %s", got, want)
	}
	var pods []string
	for _, pp := range p.Pods {
		pods = append(pods, pp.Spec.Name+"@"+pp.Node+"="+pp.Addr.String())
	}
	if got, want := strings.Join(pods, " "), "a@node-1=10.77.1.10/24 b@node-2=10.77.2.10/24 c@edge=10.77.3.10/24 d@node-1=10.77.1.11/24"; got != want {
		t.Errorf("pods:\n got %s\nwant %s", got, want)
	}
	// .1 is taken by an external, so the network's gateway is .254.
	if len(p.ExternalGateways) != 1 || p.ExternalGateways[0] != netip.MustParsePrefix("203.0.113.254/24") {
		t.Errorf("external gateways = %v", p.ExternalGateways)
	}
	for _, x := range p.Externals {
		if x.Gateway != netip.MustParseAddr("203.0.113.254") {
			t.Errorf("external %s gateway %s", x.Spec.Name, x.Gateway)
		}
	}
}

func TestPlanRefusesWhatCannotBeBuilt(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"external in the mesh range", "pods:\n  - {name: a, command: [x]}\nexternals:\n  - {name: m, address: 10.77.1.5, command: [x]}\n", "pods.yaml:4: external \"m\": address 10.77.1.5 is inside the mesh range"},
		{"two externals on one address", "pods:\n  - {name: a, command: [x]}\nexternals:\n  - {name: m, address: 198.51.100.7, command: [x]}\n  - {name: n, address: 198.51.100.7, command: [x]}\n", "already used by \"m\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPlan(parse(t, tc.src), 1)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewPlan: %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := NewPlan(parse(t, "pods:\n  - {name: a, command: [x]}\n"), MaxNodes+1); err == nil {
		t.Fatal("more nodes than addresses allowed")
	}
}

func TestPodEnvironmentPutsZtcnFirstAndPodValuesLast(t *testing.T) {
	t.Setenv("PATH", "/usr/bin")
	env := podEnviron("/opt/ztcn/bin/ztcn", map[string]string{"POD_NAME": "a"}, map[string]string{"POD_NAME": "override", "X": "1"})
	joined := strings.Join(env, "\n")
	for _, want := range []string{"PATH=/opt/ztcn/bin:/usr/bin", "POD_NAME=override", "X=1"} {
		if !strings.Contains(joined, want) {
			t.Errorf("env lacks %q:\n%s", want, joined)
		}
	}
}
