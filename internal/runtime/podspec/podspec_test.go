package podspec

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ztcn/ztcn/internal/dataplane/redirect"
)

// y lets a case write its YAML as an indented raw string starting on the
// line after the backquote, so that line 1 of the file is the first line
// shown.
func y(s string) string { return strings.TrimPrefix(s, "\n") }

const fullFile = `---
pods:
  - name: web
    namespace: shop
    serviceAccount: web-sa.v1
    node: node-2
    labels:
      app: web
      app.kubernetes.io/part-of: shop
      tier: "1"
      empty: ""
    ports: {http: 8080, metrics: 9090}
    command: python3 -m http.server 8080
    env:
      LOG_LEVEL: debug
      PORT: "8080"
  - name: db
    node: ""
    labels:
    ports:
      - {name: pg, port: 5432, protocol: tcp}
      - {port: 5432, protocol: udp}
      - name: assoc
        port: 0x50
        protocol: Sctp
      - {port: 14999}
      - {port: 15100}
    command: [postgres, -D, /data, ""]
  - name: cache
    node: node-1
    command:
      - redis-server
externals:
  - name: collector
    address: 203.0.113.10
    ports: {otlp: 4317, admin: 15020}
    command: [otelcol, --config, /etc/otel.yaml]
    env: {OTEL_LOG: info}
  - name: sink
    address: 198.51.100.7
    command: nc -lk 9000
---
`

func TestParseFullFile(t *testing.T) {
	f, err := Parse("pods.yaml", []byte(fullFile))
	if err != nil {
		t.Fatal(err)
	}
	want := &File{
		Path: "pods.yaml",
		Pods: []Pod{{
			Pos:            Position{3, 5},
			Name:           "web",
			Namespace:      "shop",
			ServiceAccount: "web-sa.v1",
			Node:           "node-2",
			Labels:         map[string]string{"app": "web", "app.kubernetes.io/part-of": "shop", "tier": "1", "empty": ""},
			Ports:          []Port{{"http", 8080, TCP}, {"metrics", 9090, TCP}},
			Command:        []string{"/bin/sh", "-c", "python3 -m http.server 8080"},
			Env:            map[string]string{"LOG_LEVEL": "debug", "PORT": "8080"},
		}, {
			Pos:            Position{17, 5},
			Name:           "db",
			Namespace:      DefaultNamespace,
			ServiceAccount: DefaultServiceAccount,
			Ports:          []Port{{"pg", 5432, TCP}, {"", 5432, UDP}, {"assoc", 80, SCTP}, {"", 14999, TCP}, {"", 15100, TCP}},
			Command:        []string{"postgres", "-D", "/data", ""},
		}, {
			Pos:            Position{29, 5},
			Name:           "cache",
			Namespace:      "default",
			ServiceAccount: "default",
			Node:           "node-1",
			Command:        []string{"redis-server"},
		}},
		Externals: []External{{
			Pos:     Position{34, 5},
			Name:    "collector",
			Address: netip.MustParseAddr("203.0.113.10"),
			Ports:   []Port{{"otlp", 4317, TCP}, {"admin", 15020, TCP}},
			Command: []string{"otelcol", "--config", "/etc/otel.yaml"},
			Env:     map[string]string{"OTEL_LOG": "info"},
		}, {
			Pos:     Position{39, 5},
			Name:    "sink",
			Address: netip.MustParseAddr("198.51.100.7"),
			Command: []string{"/bin/sh", "-c", "nc -lk 9000"},
		}},
	}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got\n%+v\nwant\n%+v", f, want)
	}
	if got, want := f.Nodes(), []string{"node-1", "node-2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Nodes() = %q, want %q", got, want)
	}
	if p, ok := f.Pods[1].PortNamed("pg"); !ok || p != (Port{"pg", 5432, TCP}) {
		t.Errorf(`PortNamed("pg") = %v, %v`, p, ok)
	}
	if p, ok := f.Pods[1].PortNamed(""); ok {
		t.Errorf(`PortNamed("") found %v; unnamed ports have no name to find`, p)
	}
	if p, ok := f.Externals[0].PortNamed("otlp"); !ok || p.Port != 4317 {
		t.Errorf(`external PortNamed("otlp") = %v, %v`, p, ok)
	}
}

type errorCase struct {
	name string
	src  string
	want []string
}

// A valid pod, for cases about what follows it.
const webPod = `
pods:
  - name: web
    command: x`

// The Kubernetes messages, as apimachinery words them.
const (
	dnsLabelMsg     = `a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`
	dnsSubdomainMsg = `a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`
	qualifiedMsg    = `name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName' or 'my.name' or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`
	labelValueMsg   = `a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue' or 'my_value' or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`
	envNameMsg      = `a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_' (e.g. 'my_name' or 'MY_NAME' or 'MyName', regex used for validation is '[A-Za-z_][A-Za-z0-9_]*')`
	podFieldList    = "name, namespace, serviceAccount, node, labels, ports, command, env"
)

var errorCases = []errorCase{
	// Fields and types.
	{"an unknown pod field is named with the known ones", y(webPod + `
    image: nginx
`), []string{`pods.yaml:4:5: pods[0].image: unknown field "image" (known fields: ` + podFieldList + `)`}},
	{"snake_case suggests the camelCase field", y(webPod + `
    service_account: web
`), []string{`pods.yaml:4:5: pods[0].service_account: unknown field "service_account", did you mean "serviceAccount"? (known fields: ` + podFieldList + `)`}},
	{"only camelCase is accepted", y(webPod + `
    serviceaccount: web
`), []string{`pods.yaml:4:5: pods[0].serviceaccount: unknown field "serviceaccount", did you mean "serviceAccount"? (known fields: ` + podFieldList + `)`}},
	{"a typo suggests the field", y(`
pods:
  - name: web
    comand: x
`), []string{
		`pods.yaml:2:5: pods[0].command: required field is missing`,
		`pods.yaml:3:5: pods[0].comand: unknown field "comand", did you mean "command"? (known fields: ` + podFieldList + `)`,
	}},
	{"an unknown top-level key", y(`
version: 1` + webPod + `
`), []string{`pods.yaml:1:1: version: unknown field "version" (known fields: pods, externals)`}},
	{"an unknown port field", y(webPod + `
    ports:
      - {name: http, containerPort: 80}
`), []string{
		`pods.yaml:5:9: pods[0].ports[0].port: required field is missing`,
		`pods.yaml:5:22: pods[0].ports[0].containerPort: unknown field "containerPort" (known fields: name, port, protocol)`,
	}},
	{"an unknown external field", y(webPod + `
externals:
  - name: col
    address: 203.0.113.1
    command: x
    labels: {a: b}
`), []string{`pods.yaml:8:5: externals[0].labels: unknown field "labels" (known fields: name, address, ports, command, env)`}},
	{"labels as a list", y(webPod + `
    labels: [a]
`), []string{`pods.yaml:4:13: pods[0].labels: labels must be a mapping of label keys to values, got a list`}},
	{"command as a number", y(`
pods:
  - name: web
    command: 5
`), []string{`pods.yaml:3:14: pods[0].command: command must be a list of strings or a shell command string, got an integer`}},
	{"command as a mapping", y(`
pods:
  - name: web
    command: {run: x}
`), []string{`pods.yaml:3:14: pods[0].command: command must be a list of strings or a shell command string, got a mapping`}},
	{"a number in a command list must be quoted", y(`
pods:
  - name: web
    command: [sleep, 3600]
`), []string{`pods.yaml:3:22: pods[0].command[1]: command argument must be a string (quote it)`}},
	{"ports as a string", y(webPod + `
    ports: http
`), []string{`pods.yaml:4:12: pods[0].ports: ports must be a mapping of names to port numbers or a list of ports, got a string`}},
	{"a port entry as a number", y(webPod + `
    ports: [80]
`), []string{`pods.yaml:4:13: pods[0].ports[0]: a port must be a mapping with port and optional name and protocol, got an integer`}},
	{"a pod as a string", y(`
pods:
  - web
`), []string{`pods.yaml:2:5: pods[0]: a pod must be a mapping with name and command, got a string`}},
	{"an empty pod entry", y(`
pods:
  -
`), []string{`pods.yaml:2:4: pods[0]: a pod must be a mapping with name and command, got nothing`}},
	{"pods as a mapping", y(`
pods: {web: x}
`), []string{`pods.yaml:1:7: pods: pods must be a list of pods, got a mapping`}},
	{"externals as a mapping", y(webPod + `
externals: {col: x}
`), []string{`pods.yaml:4:12: externals: externals must be a list of external workloads, got a mapping`}},
	{"the file as a list", y(`
- name: web
`), []string{`pods.yaml:1:1: the file must be a mapping with a pods: list, got a list`}},
	{"a namespace that is a number", y(webPod + `
    namespace: 2024
`), []string{`pods.yaml:4:16: pods[0].namespace: namespace must be a string (quote it)`}},

	// Required fields.
	{"a pod without a name", y(`
pods:
  - command: x
`), []string{`pods.yaml:2:5: pods[0].name: required field is missing`}},
	{"an empty name", y(`
pods:
  - name: ""
    command: x
`), []string{`pods.yaml:2:11: pods[0].name: must not be empty`}},
	{"a name with no value", y(`
pods:
  - name:
    command: x
`), []string{`pods.yaml:2:10: pods[0].name: must not be empty`}},
	{"a pod without a command", y(`
pods:
  - name: web
`), []string{`pods.yaml:2:5: pods[0].command: required field is missing`}},
	{"an empty command string", y(`
pods:
  - name: web
    command: ""
`), []string{`pods.yaml:3:14: pods[0].command: must not be empty`}},
	{"an empty command list", y(`
pods:
  - name: web
    command: []
`), []string{`pods.yaml:3:14: pods[0].command: must not be empty`}},
	{"an empty program", y(`
pods:
  - name: web
    command: ["", x]
`), []string{`pods.yaml:3:15: pods[0].command[0]: program must not be empty`}},
	{"an external without an address", y(webPod + `
externals:
  - name: col
    command: x
`), []string{`pods.yaml:5:5: externals[0].address: required field is missing`}},
	{"an external with an empty address", y(webPod + `
externals:
  - name: col
    address: ""
    command: x
`), []string{`pods.yaml:6:14: externals[0].address: invalid address "" (want an IPv4 address such as 203.0.113.10)`}},
	{"an external without a name or command", y(webPod + `
externals:
  - address: 203.0.113.1
`), []string{
		`pods.yaml:5:5: externals[0].name: required field is missing`,
		`pods.yaml:5:5: externals[0].command: required field is missing`,
	}},

	// Names unique among pods and externals.
	{"a duplicate pod name points at the second and the line of the first", y(webPod + `
  - name: api
    command: x
  - name: web
    command: y
`), []string{`pods.yaml:6:11: pods[2].name: duplicate name "web": already used by the pod at line 2`}},
	{"an external named like a pod", y(webPod + `
externals:
  - name: web
    address: 203.0.113.1
    command: x
`), []string{`pods.yaml:5:11: externals[0].name: duplicate name "web": already used by the pod at line 2`}},
	{"a pod named like an external written before it", y(`
externals:
  - name: web
    address: 203.0.113.1
    command: x` + webPod + `
`), []string{`pods.yaml:6:11: pods[0].name: duplicate name "web": already used by the external at line 2`}},

	// Labels.
	{"a label key with a bad prefix", y(webPod + `
    labels: {Example.com/app: x}
`), []string{`pods.yaml:4:14: pods[0].labels."Example.com/app": invalid label key "Example.com/app": prefix part ` + dnsSubdomainMsg}},
	{"a label key with a space", y(webPod + `
    labels: {"my app": x}
`), []string{`pods.yaml:4:14: pods[0].labels."my app": invalid label key "my app": ` + qualifiedMsg}},
	{"a label key with a name over 63 characters", y(webPod + `
    labels: {` + strings.Repeat("k", 64) + `: x}
`), []string{`pods.yaml:4:14: pods[0].labels.` + strings.Repeat("k", 64) + `: invalid label key "` + strings.Repeat("k", 64) + `": name part must be no more than 63 characters`}},
	{"a label value over 63 characters", y(webPod + `
    labels: {app: ` + strings.Repeat("v", 64) + `}
`), []string{`pods.yaml:4:19: pods[0].labels.app: invalid label value "` + strings.Repeat("v", 64) + `": must be no more than 63 characters`}},
	{"a label value with a space", y(webPod + `
    labels: {app: my web}
`), []string{`pods.yaml:4:19: pods[0].labels.app: invalid label value "my web": ` + labelValueMsg}},
	{"a label value that YAML reads as a number must be quoted", y(webPod + `
    labels:
      tier: 1
      canary: true
`), []string{
		`pods.yaml:5:13: pods[0].labels.tier: label value must be a string (quote it)`,
		`pods.yaml:6:15: pods[0].labels.canary: label value must be a string (quote it)`,
	}},
	{"a label without a value", y(webPod + `
    labels:
      app:
`), []string{`pods.yaml:5:11: pods[0].labels.app: label value must be a string, got nothing`}},
	{"a label key that YAML reads as a number", y(webPod + `
    labels: {80: x}
`), []string{`pods.yaml:4:14: pods[0].labels.80: label key must be a string (quote it)`}},

	// Names.
	{"a pod name with capitals", y(`
pods:
  - name: Web
    command: x
`), []string{`pods.yaml:2:11: pods[0].name: invalid name "Web": ` + dnsLabelMsg}},
	{"a pod name over 63 characters", y(`
pods:
  - name: ` + strings.Repeat("a", 64) + `
    command: x
`), []string{`pods.yaml:2:11: pods[0].name: invalid name "` + strings.Repeat("a", 64) + `": must be no more than 63 characters`}},
	{"a namespace with capitals", y(webPod + `
    namespace: Shop
`), []string{`pods.yaml:4:16: pods[0].namespace: invalid namespace "Shop": ` + dnsLabelMsg}},
	{"an empty namespace", y(webPod + `
    namespace: ""
`), []string{`pods.yaml:4:16: pods[0].namespace: must not be empty`}},
	{"a service account with an underscore", y(webPod + `
    serviceAccount: web_sa
`), []string{`pods.yaml:4:21: pods[0].serviceAccount: invalid service account "web_sa": ` + dnsSubdomainMsg}},
	{"a node name with a dot", y(webPod + `
    node: node.1
`), []string{`pods.yaml:4:11: pods[0].node: invalid node name "node.1": must not contain dots`}},
	{"an external name with an underscore", y(webPod + `
externals:
  - name: my_col
    address: 203.0.113.1
    command: x
`), []string{`pods.yaml:5:11: externals[0].name: invalid name "my_col": ` + dnsLabelMsg}},
	{"a port name in capitals", y(webPod + `
    ports: {HTTP: 80}
`), []string{`pods.yaml:4:13: pods[0].ports.HTTP: invalid port name "HTTP": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-); must contain at least one letter (a-z)`}},
	{"a port name with a double hyphen", y(webPod + `
    ports:
      - {name: my--port, port: 80}
`), []string{`pods.yaml:5:16: pods[0].ports[0].name: invalid port name "my--port": must not contain consecutive hyphens`}},
	{"a port name over 15 characters", y(webPod + `
    ports: {averyverylongname: 80}
`), []string{`pods.yaml:4:13: pods[0].ports.averyverylongname: invalid port name "averyverylongname": must be no more than 15 characters`}},
	{"an empty port name", y(webPod + `
    ports:
      - {name: "", port: 80}
`), []string{`pods.yaml:5:16: pods[0].ports[0].name: must not be empty (leave name out for an unnamed port)`}},
	{"a number as a port name", y(webPod + `
    ports: {8080: 8080}
`), []string{`pods.yaml:4:13: pods[0].ports.8080: port name must be a name such as "http", got a number (list a port without a name as - port: 8080)`}},

	// Ports.
	{"two ports with one name", y(webPod + `
    ports:
      - {name: http, port: 80}
      - {name: http, port: 81}
`), []string{`pods.yaml:6:16: pods[0].ports[1].name: duplicate port name "http" (first at line 5)`}},
	{"two ports with one number", y(webPod + `
    ports:
      http: 80
      web: 80
`), []string{`pods.yaml:6:12: pods[0].ports.web: duplicate port 80/TCP (first at line 5)`}},
	{"two ports with one number and protocol in any case", y(webPod + `
    ports:
      - {port: 53, protocol: udp}
      - {port: 53, protocol: UDP}
`), []string{`pods.yaml:6:16: pods[0].ports[1].port: duplicate port 53/UDP (first at line 5)`}},
	{"port 0", y(webPod + `
    ports: {http: 0}
`), []string{`pods.yaml:4:19: pods[0].ports.http: port 0 is outside 1–65535`}},
	{"port 70000", y(webPod + `
    ports:
      - {port: 70000}
`), []string{`pods.yaml:5:16: pods[0].ports[0].port: port 70000 is outside 1–65535`}},
	{"a port number written as a string", y(webPod + `
    ports:
      - {port: "80"}
`), []string{`pods.yaml:5:16: pods[0].ports[0].port: port must be a number 1–65535, got a string`}},
	{"an agent port in a pod", y(webPod + `
    ports: {proxy: 15001}
`), []string{`pods.yaml:4:20: pods[0].ports.proxy: port 15001 is reserved for the ztcn agent (15000–15099)`}},
	{"the last agent port in a pod", y(webPod + `
    ports:
      - {port: 15099, protocol: UDP}
`), []string{`pods.yaml:5:16: pods[0].ports[0].port: port 15099 is reserved for the ztcn agent (15000–15099)`}},
	{"an unknown protocol", y(webPod + `
    ports:
      - {port: 80, protocol: http}
`), []string{`pods.yaml:5:30: pods[0].ports[0].protocol: unknown protocol "http" (want TCP, UDP or SCTP)`}},

	// External addresses.
	{"an IPv6 external address", y(webPod + `
externals:
  - name: col
    address: "2001:db8::1"
    command: x
`), []string{`pods.yaml:6:14: externals[0].address: invalid address "2001:db8::1" (want an IPv4 address such as 203.0.113.10)`}},
	{"an IPv4-mapped IPv6 external address", y(webPod + `
externals:
  - name: col
    address: "::ffff:203.0.113.1"
    command: x
`), []string{`pods.yaml:6:14: externals[0].address: invalid address "::ffff:203.0.113.1" (want an IPv4 address such as 203.0.113.10)`}},
	{"an external address with a prefix length", y(webPod + `
externals:
  - name: col
    address: 203.0.113.1/24
    command: x
`), []string{`pods.yaml:6:14: externals[0].address: invalid address "203.0.113.1/24" (want an IPv4 address such as 203.0.113.10)`}},
	{"a loopback external address", y(webPod + `
externals:
  - name: col
    address: 127.0.0.2
    command: x
`), []string{`pods.yaml:6:14: externals[0].address: address 127.0.0.2 is a loopback address (want a unicast IPv4 address such as 203.0.113.10)`}},
	{"an unspecified external address", y(webPod + `
externals:
  - name: col
    address: 0.0.0.0
    command: x
`), []string{`pods.yaml:6:14: externals[0].address: address 0.0.0.0 is unspecified (want a unicast IPv4 address such as 203.0.113.10)`}},
	{"a multicast external address", y(webPod + `
externals:
  - name: col
    address: 224.0.0.251
    command: x
`), []string{`pods.yaml:6:14: externals[0].address: address 224.0.0.251 is a multicast address (want a unicast IPv4 address such as 203.0.113.10)`}},
	{"the broadcast address", y(webPod + `
externals:
  - name: col
    address: 255.255.255.255
    command: x
`), []string{`pods.yaml:6:14: externals[0].address: address 255.255.255.255 is the broadcast address (want a unicast IPv4 address such as 203.0.113.10)`}},

	// Env and command content.
	{"an env name starting with a digit", y(webPod + `
    env: {1X: y}
`), []string{`pods.yaml:4:11: pods[0].env.1X: invalid env name "1X": ` + envNameMsg}},
	{"an env name with a dot", y(webPod + `
    env: {my.var: y}
`), []string{`pods.yaml:4:11: pods[0].env."my.var": invalid env name "my.var": ` + envNameMsg}},
	{"an env value that YAML reads as a number", y(webPod + `
    env: {PORT: 8080}
`), []string{`pods.yaml:4:17: pods[0].env.PORT: env value must be a string (quote it)`}},
	{"env as a list", y(webPod + `
    env: [A=1]
`), []string{`pods.yaml:4:10: pods[0].env: env must be a mapping of variable names to values, got a list`}},
	{"a NUL byte in a command", y(`
pods:
  - name: web
    command: "echo \0"
`), []string{`pods.yaml:3:14: pods[0].command: must not contain a NUL byte`}},
	{"a NUL byte in an env value", y(webPod + `
    env: {A: "\0"}
`), []string{`pods.yaml:4:14: pods[0].env.A: must not contain a NUL byte`}},

	// The file as YAML.
	{"a syntax error names the offending line, not the one yaml.v3 names", y(`
pods:
  - name: web
  command: x
`), []string{`pods.yaml:3:1: YAML syntax error: did not find expected '-' indicator`}},
	{"a syntax error yaml.v3 gives no line for", y(webPod + `
    env: a: b
`), []string{`pods.yaml:4:1: YAML syntax error: mapping values are not allowed in this context`}},
	{"a tab in indentation", y(webPod + "\n\tnode: x\n"), []string{`pods.yaml:4:1: YAML syntax error: found a tab character that violates indentation`}},
	{"an unclosed list is reported where it opens", y(`
pods:
  - name: web
    command: [a, b
  - name: api
`), []string{`pods.yaml:3:1: YAML syntax error: did not find expected ',' or ']'`}},
	{"an empty file", "", []string{`pods.yaml:1:1: no pods: the file is empty (want a top-level pods: list)`}},
	{"a file of comments", "# nothing yet\n\n", []string{`pods.yaml:1:1: no pods: the file is empty (want a top-level pods: list)`}},
	{"an empty pods list", "pods: []\n", []string{`pods.yaml:1:7: pods: no pods (want a list with at least one pod)`}},
	{"pods with no value", "pods:\n", []string{`pods.yaml:1:6: pods: no pods (want a list with at least one pod)`}},
	{"externals and no pods", y(`
externals:
  - name: col
    address: 203.0.113.1
    command: x
`), []string{`pods.yaml:1:1: pods: no pods (want a list with at least one pod)`}},
	{"a duplicate key in a pod", y(webPod + `
    name: api
`), []string{`pods.yaml:4:5: pods[0].name: duplicate key "name" (first at line 2)`}},
	{"a duplicate label key", y(webPod + `
    labels:
      app: a
      app: b
`), []string{`pods.yaml:6:7: pods[0].labels.app: duplicate key "app" (first at line 5)`}},
	{"a duplicate pods key", y(webPod + `
pods: []
`), []string{`pods.yaml:4:1: pods: duplicate key "pods" (first at line 1)`}},
	{"an alias", y(`
pods:
  - &web
    name: web
    command: x
  - *web
`), []string{`pods.yaml:5:5: pods[1]: YAML aliases (*web) are not supported; write the value out`}},
	{"a merge key", y(`
pods:
  - &web
    name: web
    command: x
  - <<: *web
    name: api
`), []string{
		`pods.yaml:5:5: pods[1]: YAML merge keys (<<) are not supported; write the fields out`,
		`pods.yaml:5:5: pods[1].command: required field is missing`,
	}},
	{"a second document", y(webPod + `
---
pods: []
`), []string{`pods.yaml:4:1: a second YAML document is not supported (list every pod under the one pods:)`}},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("pods.yaml", []byte(tc.src))
			if f != nil {
				t.Errorf("got a File with an error: %+v", f)
			}
			if err == nil {
				t.Fatalf("no error, want\n%s", strings.Join(tc.want, "\n"))
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", err, strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestEveryProblemIsReportedInFileOrder(t *testing.T) {
	src := y(`
pods:
  - name: Web
    labels: {tier: 1}
    ports: {proxy: 15006, http: 80, web: 80}
    command: [run, 5]
  - name: api
    namespace: shop
    env: {1X: y}
  - name: api
    command: x
unknown: 1
externals:
  - name: api
    address: 127.0.0.1
    command: x
`)
	want := []Diagnostic{
		{Position{2, 11}, "pods[0].name", `invalid name "Web": ` + dnsLabelMsg},
		{Position{3, 20}, "pods[0].labels.tier", "label value must be a string (quote it)"},
		{Position{4, 20}, "pods[0].ports.proxy", "port 15006 is reserved for the ztcn agent (15000–15099)"},
		{Position{4, 42}, "pods[0].ports.web", "duplicate port 80/TCP (first at line 4)"},
		{Position{5, 20}, "pods[0].command[1]", "command argument must be a string (quote it)"},
		{Position{6, 5}, "pods[1].command", "required field is missing"},
		{Position{8, 11}, "pods[1].env.1X", `invalid env name "1X": ` + envNameMsg},
		{Position{9, 11}, "pods[2].name", `duplicate name "api": already used by the pod at line 6`},
		{Position{11, 1}, "unknown", `unknown field "unknown" (known fields: pods, externals)`},
		{Position{13, 11}, "externals[0].name", `duplicate name "api": already used by the pod at line 6`},
		{Position{14, 14}, "externals[0].address", "address 127.0.0.1 is a loopback address (want a unicast IPv4 address such as 203.0.113.10)"},
	}
	_, err := Parse("pods.yaml", []byte(src))
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("error %v is not an *Error", err)
	}
	if perr.File != "pods.yaml" {
		t.Errorf("File = %q", perr.File)
	}
	if !reflect.DeepEqual(perr.Diagnostics, want) {
		t.Errorf("got\n%s\nwant\n%s", diagLines(perr.Diagnostics), diagLines(want))
	}
	var lines []string
	for _, d := range want {
		lines = append(lines, "pods.yaml:"+d.String())
	}
	if got := err.Error(); got != strings.Join(lines, "\n") {
		t.Errorf("Error() =\n%s", got)
	}
}

func diagLines(diags []Diagnostic) string {
	var lines []string
	for _, d := range diags {
		lines = append(lines, d.String())
	}
	return strings.Join(lines, "\n")
}

func TestLoadNamesThePathAsGiven(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pods.yaml")
	if err := os.WriteFile(path, []byte("pods:\n  - name: web\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + ":2:5: pods[0].command: required field is missing"; err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %s", err, want)
	}

	if err := os.WriteFile(path, []byte(fullFile), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil || f.Path != path || len(f.Pods) != 3 {
		t.Errorf("Load = %+v, %v", f, err)
	}

	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want fs.ErrNotExist", err)
	}
}

func TestAgentPortsAreReserved(t *testing.T) {
	for _, p := range []int{redirect.OutboundPort, redirect.InboundPlaintextPort, redirect.InboundHBONEPort} {
		if p < AgentPortsFirst || p > AgentPortsLast {
			t.Errorf("agent port %d is outside the reserved %d–%d", p, AgentPortsFirst, AgentPortsLast)
		}
	}
}

// FuzzParse checks that no input makes Parse panic, that problems are
// reported with a place and in order, and that a File it returns holds only
// valid values. The seeds (every test input) run in the normal suite.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fullFile))
	for _, tc := range errorCases {
		f.Add([]byte(tc.src))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("f.yaml", data)
		if (file == nil) == (err == nil) {
			t.Fatalf("want a File or an error: %v, %v", file, err)
		}
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) || perr.File != "f.yaml" || len(perr.Diagnostics) == 0 {
				t.Fatalf("error is not a non-empty *Error for f.yaml: %#v", err)
			}
			for i, d := range perr.Diagnostics {
				if d.Pos.Line < 1 || d.Pos.Col < 1 || d.Message == "" {
					t.Fatalf("diagnostic without a place or message: %#v", d)
				}
				if i > 0 {
					p := perr.Diagnostics[i-1].Pos
					if p.Line > d.Pos.Line || p.Line == d.Pos.Line && p.Col > d.Pos.Col {
						t.Fatalf("diagnostics out of order:\n%s", err)
					}
				}
			}
			return
		}
		checkValid(t, file)
	})
}

// checkValid fails t unless every value of f obeys the rules Parse
// enforces, checked here directly against apimachinery.
func checkValid(t *testing.T, f *File) {
	t.Helper()
	if len(f.Pods) == 0 {
		t.Fatal("a File without pods")
	}
	names := map[string]bool{}
	name := func(s string) {
		if len(validation.IsDNS1123Label(s)) > 0 || names[s] {
			t.Fatalf("bad or repeated name %q", s)
		}
		names[s] = true
	}
	for _, p := range f.Pods {
		name(p.Name)
		if len(validation.IsDNS1123Label(p.Namespace)) > 0 || len(validation.IsDNS1123Subdomain(p.ServiceAccount)) > 0 {
			t.Fatalf("pod %q: bad namespace %q or service account %q", p.Name, p.Namespace, p.ServiceAccount)
		}
		if p.Node != "" && len(validation.IsDNS1123Label(p.Node)) > 0 {
			t.Fatalf("pod %q: bad node %q", p.Name, p.Node)
		}
		for k, v := range p.Labels {
			if len(validation.IsQualifiedName(k)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
				t.Fatalf("pod %q: bad label %q=%q", p.Name, k, v)
			}
		}
		checkPorts(t, p.Name, p.Ports, true)
		checkProcess(t, p.Name, p.Command, p.Env)
	}
	for _, x := range f.Externals {
		name(x.Name)
		a := x.Address
		if !a.Is4() || a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a == netip.MustParseAddr("255.255.255.255") {
			t.Fatalf("external %q: bad address %v", x.Name, a)
		}
		checkPorts(t, x.Name, x.Ports, false)
		checkProcess(t, x.Name, x.Command, x.Env)
	}
}

func checkPorts(t *testing.T, owner string, ports []Port, reserved bool) {
	t.Helper()
	var names, numbers []string
	for _, p := range ports {
		if p.Name != "" {
			if len(validation.IsValidPortName(p.Name)) > 0 || slices.Contains(names, p.Name) {
				t.Fatalf("%s: bad or repeated port name %q", owner, p.Name)
			}
			names = append(names, p.Name)
		}
		key := p.Protocol + "/" + strconv.Itoa(int(p.Port))
		if p.Port == 0 || slices.Contains(numbers, key) || !slices.Contains([]string{TCP, UDP, SCTP}, p.Protocol) {
			t.Fatalf("%s: bad or repeated port %+v", owner, p)
		}
		numbers = append(numbers, key)
		if reserved && p.Port >= AgentPortsFirst && p.Port <= AgentPortsLast {
			t.Fatalf("%s: agent port %d", owner, p.Port)
		}
	}
}

func checkProcess(t *testing.T, owner string, command []string, env map[string]string) {
	t.Helper()
	if len(command) == 0 || command[0] == "" {
		t.Fatalf("%s: empty command %q", owner, command)
	}
	for _, s := range command {
		if strings.Contains(s, "\x00") {
			t.Fatalf("%s: NUL in command %q", owner, command)
		}
	}
	for k, v := range env {
		if len(validation.IsCIdentifier(k)) > 0 || strings.Contains(v, "\x00") {
			t.Fatalf("%s: bad env %q=%q", owner, k, v)
		}
	}
}
