package telemetry

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// absent marks a field that must not be in the line.
const absent = "<absent>"

var testTime = time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.FixedZone("CET", 3600))

// deniedFlow is a frontend → db connection denied by a rule.
func deniedFlow() *Flow {
	return &Flow{
		ID:        7,
		Node:      "node-1",
		Direction: "outbound",
		Source: Peer{IP: netip.MustParseAddr("10.0.1.5"), Port: 43512,
			SPIFFEID: "spiffe://cluster.local/ns/shop/sa/frontend", Labels: map[string]string{"app": "frontend", "tier": "web"}},
		Dest: Peer{IP: netip.MustParseAddr("10.0.2.7"), Port: 5432,
			SPIFFEID: "spiffe://cluster.local/ns/shop/sa/db", Labels: map[string]string{"app": "db"}},
		Protocol: "TCP",
		Verdict:  VerdictDeny,
		Enforced: true,
		Reason:   "db accepts only app=backend",
		Rule:     "policies/shop.yaml:12:5: deny app=frontend -> app=db",
		Kind:     "denied",
	}
}

func TestAuditEventsRenderAsECS(t *testing.T) {
	auditMode := deniedFlow()
	auditMode.Enforced = false

	staged := deniedFlow()
	staged.Verdict, staged.Enforced = VerdictAllow, true
	staged.Rule, staged.Reason = "policies/shop.yaml:3:1: allow any -> app=db", ""
	staged.StagedVerdict, staged.StagedRule, staged.StagedReason = VerdictDeny, "staged/lockdown.yaml:8:3: deny app=frontend -> app=db", "db is locked down"

	handshake := deniedFlow()
	handshake.Direction, handshake.Kind, handshake.Rule, handshake.Reason = "inbound", "handshake_failed", "", ""
	handshake.Error = "remote error: tls: bad certificate"

	plaintext := deniedFlow()
	plaintext.Direction, plaintext.Kind, plaintext.Rule = "inbound", "plaintext_refused", ""
	plaintext.Reason = "plaintext from a workload of the mesh"
	plaintext.Source.SPIFFEID, plaintext.Source.Labels = "", nil

	notAfter := time.Date(2025, 3, 14, 10, 26, 53, 0, time.UTC)
	cert := func(action, reason string) AuditEvent {
		return AuditEvent{Action: action, SPIFFEID: "spiffe://cluster.local/ns/shop/sa/cart", Serial: "5f:3a:09:c1", NotAfter: notAfter, Reason: reason}
	}

	cases := []struct {
		name  string
		event AuditEvent
		want  map[string]string // dotted field → its JSON
	}{
		{"denied flow is an alert naming the deciding rule", AuditEvent{Action: ActionPolicyViolation, Flow: deniedFlow()}, map[string]string{
			"event.kind": `"alert"`, "event.category": `["network"]`, "event.type": `["connection","denied"]`,
			"event.action": `"policy-violation"`, "event.outcome": `"failure"`, "event.reason": `"db accepts only app=backend"`,
			"source.ip": `"10.0.1.5"`, "source.port": `43512`, "destination.ip": `"10.0.2.7"`, "destination.port": `5432`,
			"network.transport": `"tcp"`, "network.type": `"ipv4"`, "network.direction": `"egress"`,
			"rule.name": `"policies/shop.yaml:12:5"`, "rule.description": `"deny app=frontend -> app=db"`,
			"observer.hostname": `"node-1"`, "observer.type": `"ztcn agent"`,
			"ztcn.flow_id":            `7`,
			"ztcn.source.spiffe_id":   `"spiffe://cluster.local/ns/shop/sa/frontend"`,
			"ztcn.source.labels":      `{"app":"frontend","tier":"web"}`,
			"ztcn.destination.labels": `{"app":"db"}`,
			"ztcn.enforced":           `true`, "ztcn.staged_rule": absent, "x509": absent, "error": absent,
		}},
		{"would-be denial in audit mode is an unenforced alert on an allowed connection", AuditEvent{Action: ActionWouldBeViolation, Flow: auditMode}, map[string]string{
			"event.kind": `"alert"`, "event.type": `["connection","allowed"]`, "event.action": `"policy-violation-audit"`,
			"event.outcome": `"success"`, "rule.name": `"policies/shop.yaml:12:5"`, "ztcn.enforced": `false`,
		}},
		{"staged policy's would-be denial names the staged rule", AuditEvent{Action: ActionWouldBeViolation, Flow: staged}, map[string]string{
			"event.kind": `"alert"`, "event.action": `"policy-violation-audit"`, "event.reason": `"db is locked down"`,
			"rule.name": `"staged/lockdown.yaml:8:3"`, "rule.description": `"deny app=frontend -> app=db"`,
			"ztcn.staged_rule": `"staged/lockdown.yaml:8:3: deny app=frontend -> app=db"`, "ztcn.enforced": `false`,
		}},
		{"failed handshake is a denied connection with the TLS error", AuditEvent{Action: ActionHandshakeFailed, Flow: handshake}, map[string]string{
			"event.kind": `"alert"`, "event.category": `["network"]`, "event.type": `["connection","denied"]`,
			"event.action": `"tls-handshake-failed"`, "event.outcome": `"failure"`, "network.direction": `"ingress"`,
			"error.message": `"remote error: tls: bad certificate"`, "rule": absent,
		}},
		{"refused plaintext names the address it came from", AuditEvent{Action: ActionPlaintextRefused, Flow: plaintext}, map[string]string{
			"event.kind": `"alert"`, "event.action": `"plaintext-refused"`, "event.outcome": `"failure"`,
			"event.reason": `"plaintext from a workload of the mesh"`, "source.ip": `"10.0.1.5"`, "ztcn.source": absent,
		}},
		{"issued certificate is an iam creation with its x509 fields", cert(ActionCertIssued, "start"), map[string]string{
			"event.kind": `"event"`, "event.category": `["iam"]`, "event.type": `["creation"]`,
			"event.action": `"certificate-issued"`, "event.outcome": `"success"`, "event.reason": `"start"`,
			"x509.serial_number": `"5F3A09C1"`, "x509.not_after": `"2025-03-14T10:26:53Z"`,
			"x509.alternative_names": `["spiffe://cluster.local/ns/shop/sa/cart"]`,
			"observer.hostname":      `"node-7"`, "source": absent, "network": absent, "ztcn.enforced": absent,
		}},
		{"rotated certificate is an iam change", cert(ActionCertRotated, "expiry"), map[string]string{
			"event.category": `["iam"]`, "event.type": `["change"]`, "event.action": `"certificate-rotated"`, "event.reason": `"expiry"`,
			"x509.serial_number": `"5F3A09C1"`,
		}},
		{"revoked certificate is an iam deletion", cert(ActionCertRevoked, "stop"), map[string]string{
			"event.category": `["iam"]`, "event.type": `["deletion"]`, "event.action": `"certificate-revoked"`, "event.reason": `"stop"`,
			"x509.alternative_names": `["spiffe://cluster.local/ns/shop/sa/cart"]`,
		}},
		{"policy reload records the version and digest in force", AuditEvent{Action: ActionPolicyReload, PolicyVersion: 12, PolicyDigest: "sha256:ab12"}, map[string]string{
			"event.kind": `"event"`, "event.category": `["configuration"]`, "event.type": `["change"]`,
			"event.action": `"policy-reload"`, "event.outcome": `"success"`,
			"ztcn.policy.version": `12`, "ztcn.policy.digest": `"sha256:ab12"`, "error": absent,
		}},
		{"failed policy reload is a failure with the error", AuditEvent{Action: ActionPolicyReload, PolicyVersion: 12, PolicyDigest: "sha256:ab12", Error: "policies/shop.yaml:4:9: unknown label operator \"~\""}, map[string]string{
			"event.outcome": `"failure"`, "error.message": `"policies/shop.yaml:4:9: unknown label operator \"~\""`,
			"ztcn.policy.version": `12`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			tc.event.Time = testTime
			writeEvents(t, path, AuditOptions{Node: "node-7"}, tc.event)
			lines := readLines(t, path)
			if len(lines) != 1 {
				t.Fatalf("%d lines, want 1", len(lines))
			}
			var doc map[string]any
			if err := json.Unmarshal(lines[0], &doc); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, lines[0])
			}
			want := map[string]string{
				"@timestamp": `"2025-03-14T08:26:53.589793Z"`, "ecs.version": `"8.11.0"`, "event.dataset": `"ztcn.audit"`,
				"ztcn.chain.seq": `1`, "ztcn.chain.prev": `"` + genesisPrev + `"`,
			}
			for k, v := range tc.want {
				want[k] = v
			}
			for field, w := range want {
				got, ok := lookup(doc, field)
				if w == absent {
					if ok {
						t.Errorf("%s = %s, want it absent", field, mustJSON(got))
					}
					continue
				}
				if !ok {
					t.Errorf("%s missing from\n%s", field, lines[0])
				} else if g := mustJSON(got); g != w {
					t.Errorf("%s = %s, want %s", field, g, w)
				}
			}
		})
	}
}

// TestECSKeysAreNestedAndOrdered: ELK wants objects, not dotted keys, and
// a stable key order makes lines comparable by eye.
func TestECSKeysAreNestedAndOrdered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	writeEvents(t, path, AuditOptions{}, AuditEvent{Time: testTime, Action: ActionPolicyViolation, Flow: deniedFlow()})
	line := string(readLines(t, path)[0])
	if strings.Contains(line, `"event.`) || strings.Contains(line, `"source.`) {
		t.Errorf("dotted key in %s", line)
	}
	order := []string{`"@timestamp":`, `"ecs":{`, `"event":{`, `"observer":{`, `"source":{`, `"destination":{`, `"network":{`, `"rule":{`, `"ztcn":{`, `"chain":{`}
	last := -1
	for _, k := range order {
		i := strings.Index(line, k)
		if i <= last {
			t.Fatalf("%s out of order in %s", k, line)
		}
		last = i
	}
}

func TestSplitRule(t *testing.T) {
	for rule, want := range map[string][2]string{
		"policies/shop.yaml:12:5: deny app=frontend -> app=db": {"policies/shop.yaml:12:5", "deny app=frontend -> app=db"},
		"a.yaml:1:1: allow x: y":                               {"a.yaml:1:1", "allow x: y"},
		"default-deny":                                         {"default-deny", ""},
	} {
		if name, text := splitRule(rule); name != want[0] || text != want[1] {
			t.Errorf("splitRule(%q) = %q, %q; want %q, %q", rule, name, text, want[0], want[1])
		}
	}
}

// lookup follows a dotted path through nested JSON objects.
func lookup(doc map[string]any, dotted string) (any, bool) {
	var cur any = doc
	for _, k := range strings.Split(dotted, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// mustJSON encodes v as the audit log does, without HTML escaping.
func mustJSON(v any) string {
	var b strings.Builder
	if err := newLineEncoder(&b).Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
