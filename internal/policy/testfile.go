package policy

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// TestFile is a set of workloads and the flows expected between them: the
// input of `ztcn policy test`, `explain` and `matrix`.
//
//	isolation: selected                 # optional, overrides the policy's
//	trustDomain: cluster.local          # optional, for spiffe:// selectors
//	namespaces:
//	  x: {labels: {ns: x}}
//	workloads:
//	  - name: x/a                       # <namespace>/<name>
//	    serviceAccount: default         # optional
//	    labels: {pod: a}
//	    ips: [10.0.0.11]
//	    ports: [{name: serve-80-tcp, port: 80, protocol: TCP}]
//	tests:
//	  - name: a to b                    # optional
//	    from: x/a                       # a workload, or an IP outside the cluster
//	    to: y/b
//	    port: 80                        # a number, or a named port of the destination
//	    protocol: TCP                   # TCP (default) | UDP | SCTP
//	    expect: allow                   # allow | deny
type TestFile struct {
	File        string
	Isolation   IsolationMode
	TrustDomain string
	Namespaces  map[string]map[string]string // namespace → labels
	Workloads   []*Endpoint
	Tests       []TestCase
	byName      map[string]*Endpoint
}

// TestCase is one expected flow.
type TestCase struct {
	Pos      Position
	Name     string
	From, To string
	// Port is a number or a named port of the destination.
	Port     string
	Protocol Protocol
	Expect   bool // true: allow
}

// Label names the case for output: its name, or "from -> to:port/proto".
func (c TestCase) Label() string {
	if c.Name != "" {
		return c.Name
	}
	return fmt.Sprintf("%s -> %s:%s/%s", c.From, c.To, c.Port, c.Protocol)
}

type testFileYAML struct {
	Isolation   string                   `yaml:"isolation"`
	TrustDomain string                   `yaml:"trustDomain"`
	Namespaces  map[string]namespaceYAML `yaml:"namespaces"`
	Workloads   []yaml.Node              `yaml:"workloads"`
	Tests       []yaml.Node              `yaml:"tests"`
	Extra       map[string]any           `yaml:",inline"`
}

type namespaceYAML struct {
	Labels map[string]string `yaml:"labels"`
}

type workloadYAML struct {
	Name           string            `yaml:"name"`
	ServiceAccount string            `yaml:"serviceAccount"`
	Labels         map[string]string `yaml:"labels"`
	IPs            []string          `yaml:"ips"`
	Ports          []struct {
		Name     string `yaml:"name"`
		Port     int    `yaml:"port"`
		Protocol string `yaml:"protocol"`
	} `yaml:"ports"`
}

type testCaseYAML struct {
	Name     string `yaml:"name"`
	From     string `yaml:"from"`
	To       string `yaml:"to"`
	Port     string `yaml:"port"`
	Protocol string `yaml:"protocol"`
	Expect   string `yaml:"expect"`
}

// ParseTestFile reads a test file; name is used in positions. Every
// problem is returned, each with file:line.
func ParseTestFile(name string, data []byte) (*TestFile, Diagnostics) {
	var diags Diagnostics
	errAt := func(line int, format string, args ...any) {
		diags = append(diags, Diagnostic{Pos: Position{File: name, Line: line}, Severity: SeverityError, Message: fmt.Sprintf(format, args...)})
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Diagnostics{yamlError(name, err)}
	}
	var raw testFileYAML
	if len(root.Content) > 0 {
		if err := root.Content[0].Decode(&raw); err != nil {
			return nil, Diagnostics{{Pos: Position{File: name, Line: root.Content[0].Line}, Severity: SeverityError, Message: stripYAMLLine(err.Error())}}
		}
	}
	keyLine := func(key string) int {
		if len(root.Content) == 0 {
			return 0
		}
		m := root.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i].Line
			}
		}
		return m.Line
	}
	for k := range raw.Extra {
		errAt(keyLine(k), "unknown key %q (want isolation, trustDomain, namespaces, workloads, tests)", k)
	}
	tf := &TestFile{File: name, TrustDomain: raw.TrustDomain, Namespaces: map[string]map[string]string{}, byName: map[string]*Endpoint{}}
	if tf.TrustDomain == "" {
		tf.TrustDomain = "cluster.local"
	}
	if raw.Isolation != "" {
		m, err := ParseIsolationMode(raw.Isolation)
		if err != nil {
			errAt(keyLine("isolation"), "isolation: %v", err)
		}
		tf.Isolation = m
	}
	for ns, n := range raw.Namespaces {
		tf.Namespaces[ns] = n.Labels
	}
	for i := range raw.Workloads {
		node := &raw.Workloads[i]
		var w workloadYAML
		if err := decodeStrict(node, &w); err != nil {
			errAt(node.Line, "workload: %v", err)
			continue
		}
		ep, err := tf.endpointOf(w)
		if err != nil {
			errAt(node.Line, "workload %q: %v", w.Name, err)
			continue
		}
		if _, dup := tf.byName[w.Name]; dup {
			errAt(node.Line, "workload %q is defined twice", w.Name)
			continue
		}
		tf.byName[w.Name] = ep
		tf.Workloads = append(tf.Workloads, ep)
	}
	for i := range raw.Tests {
		node := &raw.Tests[i]
		var c testCaseYAML
		if err := decodeStrict(node, &c); err != nil {
			errAt(node.Line, "test: %v", err)
			continue
		}
		tc := TestCase{Pos: Position{File: name, Line: node.Line, Col: node.Column}, Name: c.Name, From: c.From, To: c.To, Port: c.Port, Protocol: TCP}
		if c.Protocol != "" {
			p, err := ParseProtocol(c.Protocol)
			if err != nil {
				errAt(node.Line, "test %q: %v", tc.Label(), err)
				continue
			}
			tc.Protocol = p
		}
		switch strings.ToLower(c.Expect) {
		case "allow":
			tc.Expect = true
		case "deny":
		default:
			errAt(node.Line, "test %q: expect must be allow or deny, got %q", tc.Label(), c.Expect)
			continue
		}
		if c.From == "" || c.To == "" || c.Port == "" {
			errAt(node.Line, "test %q: from, to and port are required", tc.Label())
			continue
		}
		if _, err := tf.Endpoint(c.From); err != nil {
			errAt(node.Line, "test %q: from: %v", tc.Label(), err)
			continue
		}
		if _, err := tf.Endpoint(c.To); err != nil {
			errAt(node.Line, "test %q: to: %v", tc.Label(), err)
			continue
		}
		tf.Tests = append(tf.Tests, tc)
	}
	diags.Sort()
	return tf, diags
}

func decodeStrict(node *yaml.Node, v any) error {
	// yaml.Node.Decode has no KnownFields switch: re-encode and decode.
	data, err := yaml.Marshal(node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		// Line numbers of the re-encoded node are meaningless; the caller
		// reports the node's own line.
		msg := err.Error()
		if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "yaml: ") && i >= 0 {
			msg = msg[i+2:]
		}
		return errors.New(stripYAMLLine(msg))
	}
	return nil
}

func stripYAMLLine(msg string) string {
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	msg = strings.TrimSpace(msg)
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ": "); i >= 0 {
			msg = rest[i+2:]
		}
	}
	// "field x not found in type policy.workloadYAML" names our Go type;
	// the user wants the key.
	if rest, ok := strings.CutPrefix(msg, "field "); ok {
		if key, _, ok := strings.Cut(rest, " not found in type "); ok {
			return fmt.Sprintf("unknown key %q", key)
		}
	}
	return msg
}

func (tf *TestFile) endpointOf(w workloadYAML) (*Endpoint, error) {
	ns, name, ok := strings.Cut(w.Name, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("name must be <namespace>/<name>")
	}
	sa := w.ServiceAccount
	if sa == "" {
		sa = "default"
	}
	ep := &Endpoint{
		Workload: true, Namespace: ns, Name: name, ServiceAccount: sa,
		Labels:          w.Labels,
		NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": ns},
		SPIFFEID:        "spiffe://" + tf.TrustDomain + "/ns/" + ns + "/sa/" + sa,
	}
	for k, v := range tf.Namespaces[ns] {
		ep.NamespaceLabels[k] = v
	}
	if len(w.IPs) > 0 {
		ip, err := netip.ParseAddr(w.IPs[0])
		if err != nil {
			return nil, fmt.Errorf("ips: %v", err)
		}
		ep.IP = ip
	}
	for _, p := range w.Ports {
		proto := TCP
		if p.Protocol != "" {
			var err error
			if proto, err = ParseProtocol(p.Protocol); err != nil {
				return nil, fmt.Errorf("port %q: %v", p.Name, err)
			}
		}
		if p.Port < 1 || p.Port > 65535 {
			return nil, fmt.Errorf("port %q: %d outside 1–65535", p.Name, p.Port)
		}
		ep.Ports = append(ep.Ports, NamedPort{Name: p.Name, Port: uint16(p.Port), Protocol: proto})
	}
	return ep, nil
}

// Endpoint returns a workload by name, or an outside endpoint for an IP
// address (a workload's own IP names that workload).
func (tf *TestFile) Endpoint(ref string) (*Endpoint, error) {
	if ep, ok := tf.byName[ref]; ok {
		return ep, nil
	}
	ip, err := netip.ParseAddr(ref)
	if err != nil {
		return nil, fmt.Errorf("%q is neither a workload of the test file nor an IP address", ref)
	}
	for _, ep := range tf.Workloads {
		if ep.IP == ip {
			return ep, nil
		}
	}
	return &Endpoint{IP: ip}, nil
}

// ResolvePort turns a test's port (a number, or a named port of the
// destination) into a number.
func ResolvePort(port string, dst *Endpoint, proto Protocol) (uint16, error) {
	if n, err := strconv.Atoi(port); err == nil {
		if n < 1 || n > 65535 {
			return 0, fmt.Errorf("port %d outside 1–65535", n)
		}
		return uint16(n), nil
	}
	if p, ok := dst.portNamed(port, proto); ok {
		return p, nil
	}
	return 0, fmt.Errorf("%s has no %s port named %q", dst, proto, port)
}

// TestResult is the outcome of one TestCase.
type TestResult struct {
	Case        TestCase
	Passed      bool
	Err         error
	Explanation Explanation
}

// RunTests decides every case of tf with ix.
func RunTests(ix *Index, tf *TestFile) []TestResult {
	subjects := map[*Endpoint]*Subject{}
	resolve := func(ep *Endpoint) *Subject {
		if s, ok := subjects[ep]; ok {
			return s
		}
		s := ix.Resolve(ep)
		subjects[ep] = s
		return s
	}
	results := make([]TestResult, 0, len(tf.Tests))
	for _, c := range tf.Tests {
		r := TestResult{Case: c}
		src, err1 := tf.Endpoint(c.From)
		dst, err2 := tf.Endpoint(c.To)
		if err := errors.Join(err1, err2); err != nil {
			r.Err = err
			results = append(results, r)
			continue
		}
		port, err := ResolvePort(c.Port, dst, c.Protocol)
		if err != nil {
			r.Err = err
			results = append(results, r)
			continue
		}
		r.Explanation = ix.Explain(resolve(src), resolve(dst), c.Protocol, port)
		r.Passed = r.Explanation.Allowed == c.Expect
		results = append(results, r)
	}
	return results
}

// Matrix is the reachability of every workload to every other on one port:
// Allowed[i][j] is whether Workloads[i] may connect to Workloads[j].
type Matrix struct {
	Names    []string
	Allowed  [][]bool
	Port     uint16
	Protocol Protocol
}

// ReachabilityMatrix decides every pair of tf's workloads on proto/port.
func ReachabilityMatrix(ix *Index, tf *TestFile, proto Protocol, port uint16) Matrix {
	eps := append([]*Endpoint(nil), tf.Workloads...)
	sort.SliceStable(eps, func(i, j int) bool { return eps[i].String() < eps[j].String() })
	subs := make([]*Subject, len(eps))
	m := Matrix{Port: port, Protocol: proto, Names: make([]string, len(eps)), Allowed: make([][]bool, len(eps))}
	for i, ep := range eps {
		subs[i] = ix.Resolve(ep)
		m.Names[i] = ep.String()
	}
	for i := range eps {
		m.Allowed[i] = make([]bool, len(eps))
		for j := range eps {
			m.Allowed[i][j] = ix.Decide(subs[i], subs[j], proto, port).Allowed
		}
	}
	return m
}

// String renders the matrix with sources as rows and destinations as
// columns, "1" allowed and "." denied.
func (m Matrix) String() string {
	var b strings.Builder
	width := 0
	for _, n := range m.Names {
		width = max(width, len(n))
	}
	fmt.Fprintf(&b, "%-*s", width+2, fmt.Sprintf("%d/%s", m.Port, m.Protocol))
	for j := range m.Names {
		fmt.Fprintf(&b, " %d", j)
	}
	b.WriteByte('\n')
	for i, n := range m.Names {
		fmt.Fprintf(&b, "%-*s", width+2, fmt.Sprintf("%d %s", i, n))
		for j := range m.Names {
			mark := "."
			if m.Allowed[i][j] {
				mark = "1"
			}
			fmt.Fprintf(&b, " %s", mark)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
