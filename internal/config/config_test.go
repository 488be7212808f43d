package config

import (
	"errors"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const file = "runtime.toml"

func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := Parse(file, []byte(doc))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	fromEmptyFile := mustParse(t, "")
	if !reflect.DeepEqual(fromEmptyFile, Default()) {
		t.Fatalf("empty file = %+v, want Default() = %+v", fromEmptyFile, Default())
	}
	for _, tc := range []struct {
		name string
		got  func(*Config) any
		want any
	}{
		{"agent.node_name is empty until resolved", func(c *Config) any { return c.Agent.NodeName }, ""},
		{"agent.control_socket is /run/ztcn/control.sock", func(c *Config) any { return c.Agent.ControlSocket }, "/run/ztcn/control.sock"},
		{"agent.state_dir is /run/ztcn", func(c *Config) any { return c.Agent.StateDir }, "/run/ztcn"},
		{"agent.reconcile_interval is 10s", func(c *Config) any { return c.Agent.ReconcileInterval }, 10 * time.Second},
		{"identity.trust_domain is cluster.local", func(c *Config) any { return c.Identity.TrustDomain }, "cluster.local"},
		{"identity.ca_path is /var/lib/ztcn/ca", func(c *Config) any { return c.Identity.CAPath }, "/var/lib/ztcn/ca"},
		{"identity.cert_ttl is 24h", func(c *Config) any { return c.Identity.CertTTL }, 24 * time.Hour},
		{"identity.renew_before is unset", func(c *Config) any { return c.Identity.RenewBefore }, time.Duration(0)},
		{"identity.key_type is ecdsa-p256", func(c *Config) any { return c.Identity.KeyType }, KeyTypeECDSAP256},
		{"identity.trust_domain_per_namespace is false", func(c *Config) any { return c.Identity.TrustDomainPerNamespace }, false},
		{"identity.workload_api_socket is /run/ztcn/workload.sock", func(c *Config) any { return c.Identity.WorkloadAPISocket }, "/run/ztcn/workload.sock"},
		{"identity.bundle_refresh is 5s", func(c *Config) any { return c.Identity.BundleRefresh }, 5 * time.Second},
		{"identity.namespaces is nil", func(c *Config) any { return c.Identity.Namespaces }, map[string]NamespaceIdentity(nil)},
		{"identity.federation is nil", func(c *Config) any { return c.Identity.Federation }, []Federation(nil)},
		{"policy.config_path is /etc/ztcn/policy.yaml", func(c *Config) any { return c.Policy.ConfigPath }, "/etc/ztcn/policy.yaml"},
		{"policy.mode is strict", func(c *Config) any { return c.Policy.Mode }, ModeStrict},
		{"policy.isolation is all", func(c *Config) any { return c.Policy.Isolation }, IsolationAll},
		{"telemetry.audit_log is /var/log/ztcn/audit.log", func(c *Config) any { return c.Telemetry.AuditLog }, "/var/log/ztcn/audit.log"},
		{"telemetry.admin_address is 127.0.0.1:15020", func(c *Config) any { return c.Telemetry.AdminAddress }, "127.0.0.1:15020"},
		{"network.bridge is ztcn0", func(c *Config) any { return c.Network.Bridge }, "ztcn0"},
		{"network.pod_cidr is 10.89.0.0/24", func(c *Config) any { return c.Network.PodCIDR.String() }, "10.89.0.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.got(fromEmptyFile); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

// TestDocumentedFileIsDefault keeps the annotated runtime.toml in the package
// documentation, which the README quotes, valid and truthful.
func TestDocumentedFileIsDefault(t *testing.T) {
	doc := documentedFile(t)
	if !strings.Contains(doc, "admin_address") {
		t.Fatalf("first code block of the package doc is not runtime.toml:\n%s", doc)
	}
	if c := mustParse(t, doc); !reflect.DeepEqual(c, Default()) {
		t.Errorf("documented file = %+v, want Default() = %+v", c, Default())
	}
}

func documentedFile(t testing.TB) string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	var p comment.Parser
	for _, b := range p.Parse(f.Doc.Text()).Content {
		if code, ok := b.(*comment.Code); ok {
			return code.Text
		}
	}
	t.Fatal("package doc has no code block")
	return ""
}

const fullFile = `[agent]
node_name = "node-1"
control_socket = "/tmp/ztcn/control.sock"
state_dir = "/tmp/ztcn/state"
reconcile_interval = "30s"

[identity]
trust_domain = "prod.example.org"
ca_path = "/tmp/ztcn/ca"
cert_ttl = "12h"
renew_before = "4h"
key_type = "ecdsa-p384"
trust_domain_per_namespace = true
workload_api_socket = "/tmp/ztcn/workload.sock"
bundle_refresh = "1m"

[identity.namespaces.payments]
cert_ttl = "1h"
renew_before = "20m"

[identity.namespaces.batch]
cert_ttl = "2d"

[[identity.federation]]
trust_domain = "partner.example"
bundle_path = "/etc/ztcn/bundles/partner.json"

[[identity.federation]]
trust_domain = "legacy.example"
bundle_path = "/etc/ztcn/bundles/legacy.json"

[policy]
config_path = "/tmp/ztcn/policy.yaml"
mode = "audit"
isolation = "selected"

[telemetry]
audit_log = "/tmp/ztcn/audit.log"
admin_address = "[::1]:9090"

[network]
bridge = "zt-test0"
pod_cidr = "10.123.0.0/20"
`

var fullConfig = &Config{
	Agent: Agent{NodeName: "node-1", ControlSocket: "/tmp/ztcn/control.sock", StateDir: "/tmp/ztcn/state", ReconcileInterval: 30 * time.Second},
	Identity: Identity{
		TrustDomain:             "prod.example.org",
		CAPath:                  "/tmp/ztcn/ca",
		CertTTL:                 12 * time.Hour,
		RenewBefore:             4 * time.Hour,
		KeyType:                 KeyTypeECDSAP384,
		TrustDomainPerNamespace: true,
		WorkloadAPISocket:       "/tmp/ztcn/workload.sock",
		BundleRefresh:           time.Minute,
		Namespaces: map[string]NamespaceIdentity{
			"payments": {CertTTL: time.Hour, RenewBefore: 20 * time.Minute},
			"batch":    {CertTTL: 48 * time.Hour},
		},
		Federation: []Federation{
			{TrustDomain: "partner.example", BundlePath: "/etc/ztcn/bundles/partner.json"},
			{TrustDomain: "legacy.example", BundlePath: "/etc/ztcn/bundles/legacy.json"},
		},
	},
	Policy:    Policy{ConfigPath: "/tmp/ztcn/policy.yaml", Mode: ModeAudit, Isolation: IsolationSelected},
	Telemetry: Telemetry{AuditLog: "/tmp/ztcn/audit.log", AdminAddress: "[::1]:9090"},
	Network:   Network{Bridge: "zt-test0", PodCIDR: netip.MustParsePrefix("10.123.0.0/20")},
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want func(*Config)
	}{
		{"a full file overrides every key", fullFile, func(c *Config) { *c = *fullConfig }},
		{"missing keys keep their defaults", "[identity]\ncert_ttl = \"1h\"\n", func(c *Config) {
			c.Identity.CertTTL = time.Hour
		}},
		{"durations accept a days suffix", "[identity]\ncert_ttl = \"1d12h\"\nrenew_before = \"1d\"\n", func(c *Config) {
			c.Identity.CertTTL = 36 * time.Hour
			c.Identity.RenewBefore = 24 * time.Hour
		}},
		{"cert_ttl accepts its bounds 1m and 30d", "[identity]\ncert_ttl = \"30d\"\nnamespaces.a.cert_ttl = \"1m\"\n", func(c *Config) {
			c.Identity.CertTTL = 720 * time.Hour
			c.Identity.Namespaces = map[string]NamespaceIdentity{"a": {CertTTL: time.Minute}}
		}},
		{"empty renew_before means unset", "[identity]\nrenew_before = \"\"\n", func(*Config) {}},
		{"empty namespace durations inherit", "[identity.namespaces.a]\ncert_ttl = \"\"\nrenew_before = \"\"\n", func(c *Config) {
			c.Identity.Namespaces = map[string]NamespaceIdentity{"a": {}}
		}},
		{"an empty namespaces table is no namespaces", "[identity.namespaces]\n", func(*Config) {}},
		{"an empty federation array is no federation", "[identity]\nfederation = []\n", func(*Config) {}},
		{"inline tables and dotted keys are the same as tables", `
identity = { trust_domain = "a.example", federation = [{ trust_domain = "b.example", bundle_path = "/b" }] }
policy.mode = "permissive"
telemetry."admin_address" = ":0"
`, func(c *Config) {
			c.Identity.TrustDomain = "a.example"
			c.Identity.Federation = []Federation{{TrustDomain: "b.example", BundlePath: "/b"}}
			c.Policy.Mode = ModePermissive
			c.Telemetry.AdminAddress = ":0"
		}},
		{"a namespace may shorten cert_ttl below an inherited renew_before if it sets its own", `
[identity]
renew_before = "8h"
[identity.namespaces.batch]
cert_ttl = "1h"
renew_before = "10m"
`, func(c *Config) {
			c.Identity.RenewBefore = 8 * time.Hour
			c.Identity.Namespaces = map[string]NamespaceIdentity{"batch": {CertTTL: time.Hour, RenewBefore: 10 * time.Minute}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := Default()
			tc.want(want)
			if got := mustParse(t, tc.doc); !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestTOMLRoundTrip(t *testing.T) {
	odd := Default()
	odd.Agent.NodeName = "quote\" backslash\\ tab\t newline\n nul\x00 del\x7f é ☃"
	odd.Identity.Namespaces = map[string]NamespaceIdentity{"empty": {}, "only-renew": {RenewBefore: 90 * time.Second}}
	odd.Identity.BundleRefresh = 1500 * time.Millisecond
	odd.Identity.CertTTL = 61*time.Minute + time.Nanosecond

	for _, tc := range []struct {
		name string
		c    *Config
	}{
		{"defaults", Default()},
		{"a full file", fullConfig},
		{"escapes, empty namespaces and odd durations", odd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.c.TOML()
			if err != nil {
				t.Fatal(err)
			}
			if got := mustParse(t, string(out)); !reflect.DeepEqual(got, tc.c) {
				t.Errorf("round trip of\n%s\ngot  %+v\nwant %+v", out, got, tc.c)
			}
		})
	}

	t.Run("durations are written without zero units", func(t *testing.T) {
		out, err := fullConfig.TOML()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range []string{`cert_ttl = "12h"`, `renew_before = "4h"`, `renew_before = "20m"`, `cert_ttl = "48h"`, `bundle_refresh = "1m"`} {
			if !strings.Contains(string(out), "\n"+line+"\n") {
				t.Errorf("output lacks %s:\n%s", line, out)
			}
		}
	})

	t.Run("invalid UTF-8 is an error naming the key", func(t *testing.T) {
		c := Default()
		c.Policy.ConfigPath = "\xff"
		if _, err := c.TOML(); err == nil || !strings.Contains(err.Error(), "policy.config_path") {
			t.Errorf("err = %v, want one naming policy.config_path", err)
		}
	})
}

// errorCases maps a file to the exact error lines Parse must report.
var errorCases = []struct {
	name string
	doc  string
	want []string
}{
	{"unknown top-level table", "[identiy]\ntrust_domain = \"x\"\n", []string{
		"runtime.toml:1:2: identiy: unknown key",
	}},
	{"unknown top-level key", "\nlog_level = \"debug\"\n", []string{
		"runtime.toml:2:1: log_level: unknown key",
	}},
	{"unknown nested key", "[identity]\ntrust_domain = \"a.example\"\ntrsut_domain = \"b.example\"\n", []string{
		"runtime.toml:3:1: identity.trsut_domain: unknown key",
	}},
	{"unknown key written as a dotted key", "identity.trsut_domain = \"x\"\n", []string{
		"runtime.toml:1:10: identity.trsut_domain: unknown key",
	}},
	{"unknown key inside an inline table", "agent = { node_name = \"n\", socket = \"/s\" }\n", []string{
		"runtime.toml:1:28: agent.socket: unknown key",
	}},
	{"unknown key inside [[identity.federation]]", `[[identity.federation]]
trust_domain = "a.example"
bundle_path = "/a"

[[identity.federation]]
trust_domain = "b.example"
bundle_pth = "/b"
`, []string{
		"runtime.toml:5:12: identity.federation[1].bundle_path: missing required key",
		"runtime.toml:7:1: identity.federation[1].bundle_pth: unknown key",
	}},
	{"unknown key inside [identity.namespaces.x]", "[identity.namespaces.x]\ncert_tll = \"1h\"\n", []string{
		"runtime.toml:2:1: identity.namespaces.x.cert_tll: unknown key",
	}},
	{"bad duration", "[identity]\ncert_ttl = \"24x\"\n", []string{
		`runtime.toml:2:12: identity.cert_ttl: invalid duration "24x" (want e.g. "24h", "90m")`,
	}},
	{"bad duration: fractional days", "[identity]\ncert_ttl = \"1.5d\"\n", []string{
		`runtime.toml:2:12: identity.cert_ttl: invalid duration "1.5d" (want e.g. "24h", "90m")`,
	}},
	{"bad duration: empty cert_ttl", "[identity]\ncert_ttl = \"\"\n", []string{
		`runtime.toml:2:12: identity.cert_ttl: invalid duration "" (want e.g. "24h", "90m")`,
	}},
	{"cert_ttl below 1m", "[identity]\ncert_ttl = \"30s\"\n", []string{
		`runtime.toml:2:12: identity.cert_ttl: must be between 1m and 720h (30d), got "30s"`,
	}},
	{"cert_ttl above 30d", "[identity]\ncert_ttl = \"31d\"\n", []string{
		`runtime.toml:2:12: identity.cert_ttl: must be between 1m and 720h (30d), got "31d"`,
	}},
	{"namespace cert_ttl out of range", "[identity.namespaces.web]\ncert_ttl = \"59s\"\n", []string{
		`runtime.toml:2:12: identity.namespaces.web.cert_ttl: must be between 1m and 720h (30d), got "59s"`,
	}},
	{"renew_before equal to cert_ttl", "[identity]\ncert_ttl = \"12h\"\nrenew_before = \"12h\"\n", []string{
		`runtime.toml:3:16: identity.renew_before: must be less than identity.cert_ttl (12h), got "12h"`,
	}},
	{"renew_before above the default cert_ttl", "[identity]\nrenew_before = \"2d\"\n", []string{
		`runtime.toml:2:16: identity.renew_before: must be less than identity.cert_ttl (24h), got "2d"`,
	}},
	{"renew_before zero", "[identity]\nrenew_before = \"0s\"\n", []string{
		`runtime.toml:2:16: identity.renew_before: must be greater than 0, got "0s"`,
	}},
	{"namespace renew_before not below the namespace cert_ttl", "[identity.namespaces.web]\ncert_ttl = \"1h\"\nrenew_before = \"90m\"\n", []string{
		`runtime.toml:3:16: identity.namespaces.web.renew_before: must be less than identity.namespaces.web.cert_ttl (1h), got "90m"`,
	}},
	{"namespace renew_before not below the inherited cert_ttl", "[identity.namespaces.web]\nrenew_before = \"24h\"\n", []string{
		`runtime.toml:2:16: identity.namespaces.web.renew_before: must be less than identity.cert_ttl (24h), got "24h"`,
	}},
	{"namespace cert_ttl not above the inherited renew_before", "[identity]\nrenew_before = \"8h\"\n[identity.namespaces.batch]\ncert_ttl = \"1h\"\n", []string{
		`runtime.toml:4:12: identity.namespaces.batch.cert_ttl: must be greater than the inherited identity.renew_before (8h), got "1h"`,
	}},
	{"bundle_refresh zero", "[identity]\nbundle_refresh = \"0s\"\n", []string{
		`runtime.toml:2:18: identity.bundle_refresh: must be greater than 0, got "0s"`,
	}},
	{"wrong type: integer for string", "[identity]\ntrust_domain = 5\n", []string{
		"runtime.toml:2:16: identity.trust_domain: expected a string, got integer",
	}},
	{"wrong type: string for bool", "[identity]\ntrust_domain_per_namespace = \"yes\"\n", []string{
		"runtime.toml:2:30: identity.trust_domain_per_namespace: expected a boolean, got string",
	}},
	{"wrong type: integer for duration", "[identity]\ncert_ttl = 24\n", []string{
		"runtime.toml:2:12: identity.cert_ttl: expected a duration string, got integer",
	}},
	{"wrong type: array for string", "[policy]\nconfig_path = [\"/a\", \"/b\"]\n", []string{
		"runtime.toml:2:15: policy.config_path: expected a string, got array",
	}},
	{"wrong type: string for table", "policy = \"strict\"\n", []string{
		"runtime.toml:1:10: policy: expected a table, got string",
	}},
	{"wrong type: table for string", "[agent.node_name]\n", []string{
		"runtime.toml:1:8: agent.node_name: expected a string, got table",
	}},
	{"wrong type: federation not an array of tables", "[identity]\nfederation = \"a.example\"\n", []string{
		"runtime.toml:2:14: identity.federation: expected an array of tables, got string",
	}},
	{"wrong type: federation entry not a table", "[identity]\nfederation = [\n  { trust_domain = \"a.example\", bundle_path = \"/a\" },\n  1979-05-27,\n]\n", []string{
		"runtime.toml:4:3: identity.federation[1]: expected a table, got local date",
	}},
	{"bad enum: policy.mode", "[policy]\nmode = \"lax\"\n", []string{
		`runtime.toml:2:8: policy.mode: must be one of strict, permissive, audit, got "lax"`,
	}},
	{"bad enum: policy.isolation", "[policy]\nisolation = \"some\"\n", []string{
		`runtime.toml:2:13: policy.isolation: must be one of all, selected, got "some"`,
	}},
	{"bad enum: identity.key_type", "[identity]\nkey_type = \"rsa-2048\"\n", []string{
		`runtime.toml:2:12: identity.key_type: must be one of ecdsa-p256, ecdsa-p384, got "rsa-2048"`,
	}},
	{"bad trust domain: uppercase", "[identity]\ntrust_domain = \"Cluster.Local\"\n", []string{
		`runtime.toml:2:16: identity.trust_domain: invalid trust domain "Cluster.Local": only lowercase letters, digits, '.', '-' and '_' are allowed`,
	}},
	{"bad trust domain: spiffe:// prefix", "[identity]\ntrust_domain = \"spiffe://cluster.local\"\n", []string{
		`runtime.toml:2:16: identity.trust_domain: invalid trust domain "spiffe://cluster.local": only lowercase letters, digits, '.', '-' and '_' are allowed (leave out "spiffe://")`,
	}},
	{"bad trust domain: empty", "[identity]\ntrust_domain = \"\"\n", []string{
		`runtime.toml:2:16: identity.trust_domain: must not be empty`,
	}},
	{"bad trust domain: longer than 255", "[identity]\ntrust_domain = \"" + strings.Repeat("a", 256) + "\"\n", []string{
		`runtime.toml:2:16: identity.trust_domain: must be at most 255 characters, got 256`,
	}},
	{"bad admin_address: no port", "[telemetry]\nadmin_address = \"localhost\"\n", []string{
		`runtime.toml:2:17: telemetry.admin_address: invalid address "localhost" (want host:port, e.g. "127.0.0.1:15020")`,
	}},
	{"bad admin_address: port out of range", "[telemetry]\nadmin_address = \"127.0.0.1:65536\"\n", []string{
		`runtime.toml:2:17: telemetry.admin_address: invalid port "65536" in "127.0.0.1:65536" (want 0-65535)`,
	}},
	{"bad admin_address: named port", "[telemetry]\nadmin_address = \"localhost:http\"\n", []string{
		`runtime.toml:2:17: telemetry.admin_address: invalid port "http" in "localhost:http" (want 0-65535)`,
	}},
	{"bad network.bridge: too long", "[network]\nbridge = \"abcdefghijklmnop\"\n", []string{
		`runtime.toml:2:10: network.bridge: invalid interface name "abcdefghijklmnop" (want 1-15 characters, no '/', ':' or whitespace)`,
	}},
	{"bad network.pod_cidr: IPv6", "[network]\npod_cidr = \"fd00::/64\"\n", []string{
		`runtime.toml:2:12: network.pod_cidr: invalid IPv4 range "fd00::/64" (want e.g. "10.89.0.0/24")`,
	}},
	{"bad network.pod_cidr: too small", "[network]\npod_cidr = \"10.89.0.0/30\"\n", []string{
		`runtime.toml:2:12: network.pod_cidr: range "10.89.0.0/30" must be a /16 to a /29`,
	}},
	{"bad network.pod_cidr: host bits", "[network]\npod_cidr = \"10.89.0.1/24\"\n", []string{
		`runtime.toml:2:12: network.pod_cidr: range "10.89.0.1/24" has host bits set (did you mean "10.89.0.0/24"?)`,
	}},
	{"duplicate federation domain", `[[identity.federation]]
trust_domain = "a.example"
bundle_path = "/a"

[[identity.federation]]
trust_domain = "a.example"
bundle_path = "/a2"
`, []string{
		`runtime.toml:6:16: identity.federation[1].trust_domain: duplicate trust domain "a.example", already federated at line 2`,
	}},
	{"federation domain equal to the own trust domain", "[[identity.federation]]\ntrust_domain = \"cluster.local\"\nbundle_path = \"/a\"\n", []string{
		`runtime.toml:2:16: identity.federation[0].trust_domain: must differ from identity.trust_domain, got "cluster.local"`,
	}},
	{"federation without trust_domain, with an empty bundle_path", "[[identity.federation]]\nbundle_path = \"\"\n", []string{
		"runtime.toml:1:12: identity.federation[0].trust_domain: missing required key",
		"runtime.toml:2:15: identity.federation[0].bundle_path: must not be empty",
	}},
	{"namespace name not a DNS-1123 label", "[identity.namespaces.Payments]\ncert_ttl = \"1h\"\n[identity.namespaces.\"a.b\"]\n", []string{
		"runtime.toml:1:22: identity.namespaces.Payments: invalid namespace name: want a DNS-1123 label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)",
		`runtime.toml:3:22: identity.namespaces."a.b": invalid namespace name: want a DNS-1123 label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)`,
	}},
	{"syntax error: missing value", "[identity]\ncert_ttl =\n", []string{
		"runtime.toml:2:11: syntax error: unexpected character U+000A at start of value",
	}},
	{"syntax error: unclosed table header", "[agent]\nnode_name = \"n\"\n[identity\n", []string{
		"runtime.toml:3:10: syntax error: expected ']' to close table name",
	}},
	{"syntax error: unterminated string at end of file", "[policy]\nmode = \"strict", []string{
		"runtime.toml:2:14: syntax error: unterminated basic string",
	}},
	{"duplicate key", "[identity]\ncert_ttl = \"1h\"\ncert_ttl = \"2h\"\n", []string{
		"runtime.toml:3:1: identity.cert_ttl: key cert_ttl is already defined",
	}},
	{"table defined twice", "[policy]\nmode = \"audit\"\n\n[policy]\n", []string{
		"runtime.toml:4:2: policy: table policy already exists",
	}},
	{"several errors in one file are all reported, in file order", `[agent]
node_name = 7

[identity]
trust_domain = "Bad"
cert_ttl = "24x"
renew_before = "1h"
colour = "blue"

[[identity.federation]]
trust_domain = "x.example"

[policy]
mode = "lax"

[telemetry]
admin_address = "nope"
`, []string{
		"runtime.toml:2:13: agent.node_name: expected a string, got integer",
		`runtime.toml:5:16: identity.trust_domain: invalid trust domain "Bad": only lowercase letters, digits, '.', '-' and '_' are allowed`,
		`runtime.toml:6:12: identity.cert_ttl: invalid duration "24x" (want e.g. "24h", "90m")`,
		"runtime.toml:8:1: identity.colour: unknown key",
		"runtime.toml:10:12: identity.federation[0].bundle_path: missing required key",
		`runtime.toml:14:8: policy.mode: must be one of strict, permissive, audit, got "lax"`,
		`runtime.toml:17:17: telemetry.admin_address: invalid address "nope" (want host:port, e.g. "127.0.0.1:15020")`,
	}},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(file, []byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v", c)
			}
			if c != nil {
				t.Errorf("Parse returned a config along with the error")
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *Errors", err)
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestErrorsExposeEachProblem(t *testing.T) {
	_, err := Parse(file, []byte("[policy]\nmode = \"lax\"\n"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(%v, *Error) failed", err)
	}
	want := Error{File: file, Line: 2, Col: 8, Key: "policy.mode", Msg: `must be one of strict, permissive, audit, got "lax"`}
	if *e != want {
		t.Errorf("got %+v, want %+v", *e, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()

	t.Run("a missing file is a plain error naming the path", func(t *testing.T) {
		path := filepath.Join(dir, "missing.toml")
		_, err := Load(path)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("err = %v, want a not-exist error naming %s", err, path)
		}
		var errs *Errors
		if errors.As(err, &errs) {
			t.Errorf("err is an *Errors, want a plain error")
		}
	})

	t.Run("errors name the path", func(t *testing.T) {
		path := filepath.Join(dir, "bad.toml")
		if err := os.WriteFile(path, []byte("[policy]\nmode = \"lax\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if want := path + ":2:8: policy.mode: "; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("err = %v, want prefix %q", err, want)
		}
	})

	t.Run("an empty node_name becomes the hostname", func(t *testing.T) {
		host, err := os.Hostname()
		if err != nil || host == "" {
			t.Skipf("no hostname: %v", err)
		}
		path := filepath.Join(dir, "empty.toml")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		want := Default()
		want.Agent.NodeName = host
		if !reflect.DeepEqual(c, want) {
			t.Errorf("got %+v, want %+v", c, want)
		}
	})

	t.Run("a set node_name is kept", func(t *testing.T) {
		path := filepath.Join(dir, "named.toml")
		if err := os.WriteFile(path, []byte("agent.node_name = \"node-7\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Agent.NodeName != "node-7" {
			t.Errorf("node name = %q, want node-7", c.Agent.NodeName)
		}
	})
}

func TestRotationFor(t *testing.T) {
	c := mustParse(t, `
[identity]
cert_ttl = "24h"
[identity.namespaces.short]
cert_ttl = "1h"
[identity.namespaces.early]
renew_before = "20h"
[identity.namespaces.both]
cert_ttl = "2h"
renew_before = "30m"
`)
	withRenew := mustParse(t, "[identity]\ncert_ttl = \"24h\"\nrenew_before = \"6h\"\nnamespaces.short.cert_ttl = \"12h\"\n")

	for _, tc := range []struct {
		name      string
		c         *Config
		namespace string
		ttl, renw time.Duration
	}{
		{"a namespace without overrides renews at half the global ttl", c, "default", 24 * time.Hour, 12 * time.Hour},
		{"a namespace overriding cert_ttl renews at half its own ttl", c, "short", time.Hour, 30 * time.Minute},
		{"a namespace overriding renew_before keeps the global ttl", c, "early", 24 * time.Hour, 20 * time.Hour},
		{"a namespace overriding both uses both", c, "both", 2 * time.Hour, 30 * time.Minute},
		{"a global renew_before applies to namespaces without overrides", withRenew, "other", 24 * time.Hour, 6 * time.Hour},
		{"a global renew_before is inherited by a namespace overriding cert_ttl", withRenew, "short", 12 * time.Hour, 6 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ttl, renew := tc.c.RotationFor(tc.namespace)
			if ttl != tc.ttl || renew != tc.renw {
				t.Errorf("RotationFor(%q) = %v, %v; want %v, %v", tc.namespace, ttl, renew, tc.ttl, tc.renw)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90m", 90 * time.Minute, true},
		{"30d", 720 * time.Hour, true},
		{"1d12h30m", 36*time.Hour + 30*time.Minute, true},
		{"0d", 0, true},
		{"-5m", -5 * time.Minute, true},
		{"1.5d", 0, false},
		{"d", 0, false},
		{"-1d", 0, false},
		{"+1d", 0, false},
		{"1d-2h", 0, false},
		{"1d2d", 0, false},
		{"106751d", 106751 * 24 * time.Hour, true},
		{"106752d", 0, false},
		{"106751d24h", 0, false},
		{"99999999999999999999d", 0, false},
	} {
		got, ok := parseDuration(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte(fullFile))
	f.Add([]byte(documentedFile(f)))
	for _, tc := range errorCases {
		f.Add([]byte(tc.doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(file, data)
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) || len(*errs) == 0 {
				t.Fatalf("error %T %q is not a non-empty *Errors", err, err)
			}
			lines := strings.Count(string(data), "\n") + 1
			for _, e := range *errs {
				if e.File != file || e.Line < 1 || e.Line > lines || e.Col < 1 || e.Msg == "" {
					t.Fatalf("malformed error %+v in a %d-line file", e, lines)
				}
			}
			return
		}
		out, err := c.TOML()
		if err != nil {
			t.Fatalf("TOML of a parsed config: %v", err)
		}
		again, err := Parse(file, out)
		if err != nil {
			t.Fatalf("Parse of TOML output:\n%v\noutput:\n%s", err, out)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip changed the config\ngot  %+v\nwant %+v\noutput:\n%s", again, c, out)
		}
	})
}
