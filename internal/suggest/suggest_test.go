package suggest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ztcn/ztcn/internal/policy"
	"github.com/ztcn/ztcn/internal/telemetry"
)

// The synthetic cluster: two namespaces, workloads labelled app/tier, two
// replicas of the frontend, an app name used in both namespaces, a
// workload that makes no call, and addresses outside the cluster.
var (
	frontend1 = workload("shop", "frontend-7d9c-1", "10.77.1.10", "frontend", map[string]string{"app": "frontend", "tier": "web", "pod-template-hash": "7d9c"})
	frontend2 = workload("shop", "frontend-7d9c-2", "10.77.1.11", "frontend", map[string]string{"app": "frontend", "tier": "web", "pod-template-hash": "7d9c"})
	backend   = workload("shop", "backend-0", "10.77.1.20", "backend", map[string]string{"app": "backend", "tier": "api"})
	ledger    = workload("billing", "backend-0", "10.77.2.20", "ledger", map[string]string{"app": "backend", "tier": "api"})
	worker    = workload("billing", "worker-0", "10.77.2.30", "worker", map[string]string{"app": "worker", "tier": "batch"})
	metrics   = outside("203.0.113.7")
	client    = outside("192.0.2.50")
	stranger  = outside("198.51.100.1")
)

func workload(ns, name, ip, sa string, labels map[string]string) telemetry.Peer {
	return telemetry.Peer{IP: netip.MustParseAddr(ip), Namespace: ns, Name: name, ServiceAccount: sa, Labels: labels,
		SPIFFEID: fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", ns, sa)}
}

func outside(ip string) telemetry.Peer { return telemetry.Peer{IP: netip.MustParseAddr(ip)} }

var t0 = time.Date(2026, 11, 23, 14, 2, 0, 0, time.UTC)

// flow is a connection from src to dst:port at t0 plus minute minutes.
func flow(id int, src, dst telemetry.Peer, port uint16, minute int, verdict string, enforced bool) telemetry.Flow {
	src.Port = uint16(40000 + id)
	dst.Port = port
	start := t0.Add(time.Duration(minute) * time.Minute)
	kind := "flow_closed"
	if verdict == telemetry.VerdictDeny {
		kind = "denied"
	}
	return telemetry.Flow{ID: uint64(id), Start: start, End: start.Add(2 * time.Second), Node: "node-1", Direction: "outbound",
		Source: src, Dest: dst, Protocol: "TCP", Verdict: verdict, Enforced: enforced, Kind: kind}
}

// observed is the traffic of the test cluster.
func observed() []telemetry.Flow {
	allow, deny := telemetry.VerdictAllow, telemetry.VerdictDeny
	return []telemetry.Flow{
		flow(1, frontend1, backend, 80, 0, allow, true),
		flow(2, frontend2, backend, 80, 3, allow, true),
		flow(3, frontend1, backend, 443, 5, allow, true),
		flow(4, frontend2, backend, 8080, 9, allow, true),
		flow(5, frontend1, backend, 8081, 18, allow, true),
		flow(6, frontend1, metrics, 9100, 7, allow, true),
		flow(7, client, frontend2, 443, 10, allow, true),
		// Audit mode: denied but let through, so a policy must allow it.
		flow(8, backend, ledger, 9000, 12, deny, false),
		// Strict mode: denied and enforced, not evidence by default.
		flow(9, worker, backend, 80, 14, deny, true),
		// Not a policy decision.
		{ID: 10, Start: t0, Source: frontend1, Dest: ledger, Protocol: "TCP", Kind: "handshake_failed", Verdict: deny, Enforced: true},
	}
}

func mustSuggest(t *testing.T, flows []telemetry.Flow, opts ...Option) *Suggestion {
	t.Helper()
	sg, err := Suggest(flows, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

func load(t *testing.T, doc []byte) *policy.Index {
	t.Helper()
	set, diags := policy.LoadBytes("suggested.yaml", doc)
	if len(diags) > 0 {
		t.Fatalf("the suggestion does not load clean:\n%s\n%s", diagText(diags), doc)
	}
	if lint := policy.Lint(set); len(lint) > 0 {
		t.Fatalf("the suggestion does not lint clean:\n%s\n%s", diagText(lint), doc)
	}
	ix, err := policy.Compile(set, policy.IsolateAll)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func allowed(ix *policy.Index, src, dst telemetry.Peer, port uint16) bool {
	s, _ := endpointOf(src)
	d, _ := endpointOf(dst)
	return ix.Decide(ix.Resolve(&s), ix.Resolve(&d), policy.TCP, port).Allowed
}

func TestSuggestedPolicyAllowsExactlyTheObservedFlows(t *testing.T) {
	sg := mustSuggest(t, observed())
	if len(sg.Warnings) > 0 {
		t.Errorf("warnings: %q", sg.Warnings)
	}
	for _, doc := range [][]byte{sg.YAML, sg.JSON} {
		ix := load(t, doc)
		for _, c := range []struct {
			name     string
			src, dst telemetry.Peer
			port     uint16
			want     bool
		}{
			{"frontend may call backend on 80", frontend1, backend, 80, true},
			{"the other replica too", frontend2, backend, 80, true},
			{"frontend may call backend on 443", frontend2, backend, 443, true},
			{"frontend may call backend on 8080", frontend1, backend, 8080, true},
			{"frontend may call backend on 8081", frontend2, backend, 8081, true},
			{"frontend may push metrics", frontend2, metrics, 9100, true},
			{"the outside client may call the frontend", client, frontend1, 443, true},
			{"a would-be denial of audit mode is allowed", backend, ledger, 9000, true},

			{"backend may not call frontend (other direction)", backend, frontend1, 80, false},
			{"frontend may not call backend on an unobserved port", frontend1, backend, 8082, false},
			{"nor on a port between observed ones", frontend1, backend, 442, false},
			{"the enforced denial stays denied", worker, backend, 80, false},
			{"a workload that made no call may call nothing", worker, ledger, 9000, false},
			{"same app name, other namespace: not the shop backend", ledger, backend, 80, false},
			{"the billing backend is not the shop backend", frontend1, ledger, 80, false},
			{"frontend may not reach another outside address", frontend1, stranger, 9100, false},
			{"another outside address may not call the frontend", stranger, frontend1, 443, false},
			{"the metrics address may not call in", metrics, frontend1, 443, false},
			{"the handshake failure is not evidence", frontend1, ledger, 9000, false},
		} {
			if got := allowed(ix, c.src, c.dst, c.port); got != c.want {
				t.Errorf("%s: allowed %v, want %v\n%s", c.name, got, c.want, doc)
			}
		}
	}
	if sg.Flows != 8 || sg.Workloads != 4 || sg.Rules != 4 {
		t.Errorf("summary %q, want 8 flows from 4 workloads → 4 rules", sg.Summary())
	}
	if sg.Skipped[SkipDenied] != 1 || sg.Skipped[SkipNoDecision] != 1 {
		t.Errorf("skipped %v", sg.Skipped)
	}
}

func TestSuggestedPolicyReads(t *testing.T) {
	got := string(mustSuggest(t, observed()).YAML)
	want := `# Suggested by ` + "`ztcn policy suggest`" + ` from 8 flows, 2026-11-23 14:02–14:20 UTC.
# Load it with isolation: all. It allows every observed flow and, between the
# observed workloads and addresses, nothing else: review it before enforcing.
apiVersion: ztcn.io/v1alpha1
kind: Policy
policies:
  - subject: "app:frontend"
    allow:
      # 5 flows, 2026-11-23 14:02–14:20, from shop/frontend-7d9c-1 (10.77.1.10), shop/frontend-7d9c-2 (10.77.1.11) to shop/backend-0, ports 80, 443, 8080-8081
      - destination: ["ns:shop", "app:backend"]
        ports: [80, 443, "8080-8081"]
      # 1 flow, 2026-11-23 14:09, from shop/frontend-7d9c-1 (10.77.1.10) to 203.0.113.7, ports 9100
      - destination: "external:observed-2"
        ports: [9100]
  - subject: ["ns:shop", "app:backend"]
    allow:
      # 1 flow, 2026-11-23 14:14, from shop/backend-0 (10.77.1.20) to billing/backend-0, ports 9000
      - destination: ["ns:billing", "app:backend"]
        ports: [9000]
  - subject: "external:observed-1"
    allow:
      # 1 flow, 2026-11-23 14:12, from 192.0.2.50 to shop/frontend-7d9c-2, ports 443
      - destination: "app:frontend"
        ports: [443]
networks:
  observed-1: ["192.0.2.50/32"]
  observed-2: ["203.0.113.7/32"]
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestSelectorsPreferAppAndCheckEveryObservedWorkload(t *testing.T) {
	sg := mustSuggest(t, observed())
	doc := string(sg.YAML)
	for _, want := range []string{
		// app: alone distinguishes the frontend (pod-template-hash is
		// never used: it changes with every rollout).
		`subject: "app:frontend"`,
		// app:backend exists in both namespaces: the shop one needs ns:.
		`destination: ["ns:shop", "app:backend"]`,
		`destination: ["ns:billing", "app:backend"]`,
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("missing %q in\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "pod-template-hash") || strings.Contains(doc, "\"*\"") || strings.Contains(doc, "tier:") {
		t.Errorf("unexpected selector in\n%s", doc)
	}
}

func TestSelectorFallsBackToServiceAccountThenSPIFFEID(t *testing.T) {
	// Two workloads with the same labels in one namespace, each with its
	// own service account: only sa: tells them apart.
	a := workload("shop", "a", "10.77.1.1", "alpha", map[string]string{"app": "job"})
	b := workload("shop", "b", "10.77.1.2", "beta", map[string]string{"app": "job"})
	// Same labels and service account, another trust domain's ID.
	c := workload("shop", "c", "10.77.1.3", "alpha", map[string]string{"app": "job"})
	c.SPIFFEID = "spiffe://other.example/ns/shop/sa/alpha"
	allow := telemetry.VerdictAllow
	sg := mustSuggest(t, []telemetry.Flow{
		flow(1, a, backend, 80, 0, allow, true),
		flow(2, b, backend, 81, 0, allow, true),
		flow(3, c, backend, 82, 0, allow, true),
	})
	doc := string(sg.YAML)
	for _, want := range []string{
		`subject: "sa:shop/beta"`,
		`subject: "spiffe://cluster.local/ns/shop/sa/alpha"`,
		`subject: "spiffe://other.example/ns/shop/sa/alpha"`,
		`destination: "app:backend"`,
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("missing %q in\n%s", want, doc)
		}
	}
	if len(sg.Warnings) > 0 {
		t.Errorf("warnings: %q", sg.Warnings)
	}
	ix := load(t, sg.YAML)
	if allowed(ix, a, backend, 81) || allowed(ix, b, backend, 80) || allowed(ix, c, backend, 80) {
		t.Errorf("a job may use another's port:\n%s", doc)
	}
}

func TestWorkloadsWithTheSameFlowsShareARule(t *testing.T) {
	// Two versions of one app, same calls: one rule on app:.
	v1 := workload("shop", "web-v1", "10.77.1.1", "web", map[string]string{"app": "web", "version": "v1"})
	v2 := workload("shop", "web-v2", "10.77.1.2", "web", map[string]string{"app": "web", "version": "v2"})
	allow := telemetry.VerdictAllow
	sg := mustSuggest(t, []telemetry.Flow{
		flow(1, v1, backend, 80, 0, allow, true),
		flow(2, v2, backend, 80, 1, allow, true),
	})
	if sg.Rules != 1 || !strings.Contains(string(sg.YAML), `subject: "app:web"`) {
		t.Errorf("want one rule for app:web, got %s:\n%s", sg.Summary(), sg.YAML)
	}
	// Once v2 also calls 443, they differ, and so do their selectors.
	sg = mustSuggest(t, []telemetry.Flow{
		flow(1, v1, backend, 80, 0, allow, true),
		flow(2, v2, backend, 80, 1, allow, true),
		flow(3, v2, backend, 443, 2, allow, true),
	})
	doc := string(sg.YAML)
	if !strings.Contains(doc, `subject: "version:v1"`) || !strings.Contains(doc, `subject: "version:v2"`) {
		t.Errorf("want version selectors:\n%s", doc)
	}
	ix := load(t, sg.YAML)
	if allowed(ix, v1, backend, 443) || !allowed(ix, v2, backend, 443) {
		t.Errorf("v1 may use v2's port:\n%s", doc)
	}
}

func TestAWorkloadNoSelectorExcludesIsReported(t *testing.T) {
	// The canary has every label of the stable frontend and more, and the
	// same service account: nothing native selects the stable one alone.
	stable := workload("shop", "web", "10.77.1.1", "web", map[string]string{"app": "web"})
	canary := workload("shop", "web-canary", "10.77.1.2", "web", map[string]string{"app": "web", "track": "canary"})
	allow := telemetry.VerdictAllow
	sg := mustSuggest(t, []telemetry.Flow{
		flow(1, stable, backend, 80, 0, allow, true),
		flow(2, canary, backend, 443, 1, allow, true),
	})
	if len(sg.Warnings) != 2 || !strings.Contains(sg.Warnings[0], "also selects shop/web-canary") ||
		!strings.Contains(sg.Warnings[1], "shop/web-canary -> shop/backend-0 tcp ports 80") {
		t.Errorf("warnings: %q", sg.Warnings)
	}
	ix := load(t, sg.YAML)
	if !allowed(ix, stable, backend, 80) || !allowed(ix, canary, backend, 443) || allowed(ix, stable, backend, 443) {
		t.Errorf("policy:\n%s", sg.YAML)
	}
}

func TestOutputIsByteStable(t *testing.T) {
	flows := observed()
	first := mustSuggest(t, flows)
	for i := range 20 {
		// The same flows in another order, and each twice: the second
		// copy is the same connection.
		shuffled := append([]telemetry.Flow(nil), flows...)
		for j := range shuffled {
			k := (j*7 + i) % len(shuffled)
			shuffled[j], shuffled[k] = shuffled[k], shuffled[j]
		}
		shuffled = append(shuffled, flows...)
		sg := mustSuggest(t, shuffled)
		if !bytes.Equal(sg.YAML, first.YAML) || !bytes.Equal(sg.JSON, first.JSON) {
			t.Fatalf("run %d differs:\n%s\nfirst:\n%s", i, sg.YAML, first.YAML)
		}
		if sg.Flows != first.Flows || sg.Skipped[SkipDuplicate] != first.Flows {
			t.Fatalf("run %d: %s, skipped %v", i, sg.Summary(), sg.Skipped)
		}
	}
}

func TestIncludeDeniedAndNamespace(t *testing.T) {
	sg := mustSuggest(t, observed(), WithDenied())
	ix := load(t, sg.YAML)
	if !allowed(ix, worker, backend, 80) {
		t.Errorf("WithDenied: the enforced denial is not allowed:\n%s", sg.YAML)
	}

	sg = mustSuggest(t, observed(), InNamespace("billing"))
	ix = load(t, sg.YAML)
	if !allowed(ix, backend, ledger, 9000) || allowed(ix, frontend1, backend, 80) || sg.Flows != 1 {
		t.Errorf("InNamespace(billing): %s\n%s", sg.Summary(), sg.YAML)
	}
	if _, err := Suggest(observed(), InNamespace("nowhere")); err == nil || !strings.Contains(err.Error(), "outside the namespace") {
		t.Errorf("no flow in the namespace: %v", err)
	}
}

func TestConsecutivePortsMergeOthersDoNot(t *testing.T) {
	for _, c := range []struct {
		ports []uint16
		want  string
	}{
		{[]uint16{80, 443}, "80 443"},
		{[]uint16{8081, 8080}, "8080-8081"},
		{[]uint16{1, 2, 3, 5, 7, 8}, "1-3 5 7-8"},
		{[]uint16{65535, 65534}, "65534-65535"},
	} {
		m := map[uint16]bool{}
		for _, p := range c.ports {
			m[p] = true
		}
		if got := strings.Join(portItems(m), " "); got != c.want {
			t.Errorf("%v: %q, want %q", c.ports, got, c.want)
		}
	}
}

func TestUDPAndICMPFlows(t *testing.T) {
	dns := workload("kube-system", "coredns-0", "10.77.1.53", "coredns", map[string]string{"app": "coredns"})
	f1 := flow(1, frontend1, dns, 53, 0, telemetry.VerdictAllow, true)
	f1.Protocol = "UDP"
	f2 := flow(2, frontend1, dns, 0, 1, telemetry.VerdictAllow, true)
	f2.Protocol = "ICMP"
	sg := mustSuggest(t, []telemetry.Flow{f1, f2})
	doc := string(sg.YAML)
	if !strings.Contains(doc, "protocols: [udp]") || !strings.Contains(doc, "protocols: [icmp]") || !strings.Contains(doc, "udp ports 53") {
		t.Errorf("policy:\n%s", doc)
	}
	ix := load(t, sg.YAML)
	s, _ := endpointOf(frontend1)
	d, _ := endpointOf(dns)
	if ix.Decide(ix.Resolve(&s), ix.Resolve(&d), policy.TCP, 53).Allowed || !ix.Decide(ix.Resolve(&s), ix.Resolve(&d), policy.UDP, 53).Allowed {
		t.Errorf("udp 53 only:\n%s", doc)
	}
}

func TestNoEvidenceIsAnError(t *testing.T) {
	if _, err := Suggest(nil); err == nil || !strings.Contains(err.Error(), "no flows") {
		t.Errorf("nil: %v", err)
	}
	denied := []telemetry.Flow{flow(1, worker, backend, 80, 0, telemetry.VerdictDeny, true)}
	if _, err := Suggest(denied); err == nil || !strings.Contains(err.Error(), "1 "+SkipDenied) {
		t.Errorf("only enforced denials: %v", err)
	}
}

// ecsLine renders a flow as the agent's audit log would: ECS, nested
// objects, or dotted keys when dotted is set.
func ecsLine(t *testing.T, f telemetry.Flow, dotted bool) string {
	t.Helper()
	action, outcome := "flow_allowed", "success"
	if f.Verdict == telemetry.VerdictDeny {
		action, outcome = "policy_violation", "failure"
		if !f.Enforced {
			action, outcome = "would_be_violation", "success"
		}
	}
	peer := func(p telemetry.Peer) map[string]any {
		m := map[string]any{"spiffe_id": p.SPIFFEID, "namespace": p.Namespace, "name": p.Name, "service_account": p.ServiceAccount}
		if p.Labels != nil {
			m["labels"] = p.Labels
		}
		return m
	}
	ev := map[string]any{
		"@timestamp":  f.Start.Format(time.RFC3339Nano),
		"event":       map[string]any{"kind": "event", "category": []string{"network"}, "action": action, "outcome": outcome, "end": f.End.Format(time.RFC3339Nano)},
		"source":      map[string]any{"ip": f.Source.IP.String(), "port": f.Source.Port},
		"destination": map[string]any{"ip": f.Dest.IP.String(), "port": f.Dest.Port},
		"network":     map[string]any{"transport": strings.ToLower(f.Protocol), "direction": "egress"},
		"ztcn":        map[string]any{"source": peer(f.Source), "destination": peer(f.Dest)},
	}
	if f.Kind == "handshake_failed" {
		ev["event"].(map[string]any)["action"] = "handshake_failed"
	}
	if dotted {
		flat := map[string]any{}
		var walk func(prefix string, m map[string]any)
		walk = func(prefix string, m map[string]any) {
			for k, v := range m {
				if sub, ok := v.(map[string]any); ok && k != "labels" {
					walk(prefix+k+".", sub)
					continue
				}
				flat[prefix+k] = v
			}
		}
		walk("", ev)
		ev = flat
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAuditLogGivesTheSameSuggestionAsFlows(t *testing.T) {
	flows := observed()
	var flowLines, ecs strings.Builder
	for i, f := range flows {
		b, _ := json.Marshal(f)
		flowLines.Write(append(b, '\n'))
		ecs.WriteString(ecsLine(t, f, i%2 == 1) + "\n")
	}
	// Events that are not flows are not evidence.
	ecs.WriteString(`{"@timestamp":"2026-11-23T14:00:00Z","event":{"kind":"event","action":"certificate_issued","outcome":"success"},"ztcn":{"spiffe_id":"spiffe://cluster.local/ns/shop/sa/frontend"}}` + "\n")
	ecs.WriteString(`{"@timestamp":"2026-11-23T14:01:00Z","event.action":"policy_reload","event.outcome":"success","ztcn.policy.version":3}` + "\n")

	var fromFlows, fromECS, fromArray Observed
	if err := fromFlows.Read("flows.jsonl", strings.NewReader(flowLines.String())); err != nil {
		t.Fatal(err)
	}
	if err := fromECS.Read("audit.log", strings.NewReader(ecs.String())); err != nil {
		t.Fatal(err)
	}
	array, _ := json.Marshal(flows)
	if err := fromArray.Read("agent", bytes.NewReader(array)); err != nil {
		t.Fatal(err)
	}
	if len(fromFlows.Flows) != len(flows) || len(fromECS.Flows) != len(flows) || fromECS.Ignored != 2 || len(fromArray.Flows) != len(flows) {
		t.Fatalf("read %d flows, %d audit flows (%d ignored), %d from the array", len(fromFlows.Flows), len(fromECS.Flows), fromECS.Ignored, len(fromArray.Flows))
	}
	want := mustSuggest(t, flows)
	for name, in := range map[string]Observed{"flow lines": fromFlows, "audit log": fromECS, "array": fromArray} {
		got := mustSuggest(t, in.Flows)
		if !bytes.Equal(got.YAML, want.YAML) || got.Summary() != want.Summary() {
			t.Errorf("%s gives another suggestion (%s):\n%s\nwant (%s):\n%s", name, got.Summary(), got.YAML, want.Summary(), want.YAML)
		}
	}
}

func TestReadReportsTheBadLine(t *testing.T) {
	var o Observed
	in := ecsLine(t, observed()[0], false) + "\n\n{not json\n"
	err := o.Read("audit.log", strings.NewReader(in))
	if err == nil || !strings.HasPrefix(err.Error(), "audit.log:3: ") {
		t.Errorf("err = %v", err)
	}
	err = o.Read("x.json", strings.NewReader(`{"hello":"world"}`))
	if err == nil || !strings.Contains(err.Error(), "x.json:1: neither a flow") {
		t.Errorf("err = %v", err)
	}
	if err := o.Read("empty", strings.NewReader("  \n")); err != nil {
		t.Errorf("empty input: %v", err)
	}
}

// withoutComments drops the comment lines, which name workloads by pod
// where the input has pod names and by SPIFFE ID where it has not.
func withoutComments(doc []byte) string {
	var keep []string
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

func TestTheAgentsAuditLogGivesTheSamePolicy(t *testing.T) {
	// Audit mode: every flow the policy in force denies is let through and
	// logged as a would-be violation, which is what the policy is missing.
	var flows []telemetry.Flow
	for _, f := range observed() {
		if f.Kind == "flow_closed" {
			f.Verdict, f.Enforced, f.Kind = telemetry.VerdictDeny, false, "denied"
		}
		flows = append(flows, f)
	}
	path := t.TempDir() + "/audit.log"
	log, err := telemetry.OpenAuditLog(path, telemetry.AuditOptions{Node: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	log.Write(telemetry.AuditEvent{Time: t0, Action: telemetry.ActionCertIssued, SPIFFEID: frontend1.SPIFFEID, Serial: "0a", NotAfter: t0.Add(time.Hour), Reason: "start"})
	log.Write(telemetry.AuditEvent{Time: t0, Action: telemetry.ActionPolicyReload, PolicyVersion: 2})
	for i := range flows {
		f := &flows[i]
		action := telemetry.ActionPolicyViolation
		switch {
		case f.Kind == "handshake_failed":
			action = telemetry.ActionHandshakeFailed
		case !f.Enforced:
			action = telemetry.ActionWouldBeViolation
		}
		log.Write(telemetry.AuditEvent{Time: f.Start, Action: action, Flow: f})
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var audit Observed
	if err := audit.Read(path, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if audit.Ignored != 2 || len(audit.Flows) != len(flows) {
		t.Fatalf("read %d flows, ignored %d events, from\n%s", len(audit.Flows), audit.Ignored, data)
	}
	got, want := mustSuggest(t, audit.Flows), mustSuggest(t, flows)
	if withoutComments(got.YAML) != withoutComments(want.YAML) || got.Flows != want.Flows || got.Rules != want.Rules {
		t.Errorf("audit log (%s):\n%s\nflows (%s):\n%s", got.Summary(), got.YAML, want.Summary(), want.YAML)
	}
	if !strings.Contains(string(got.YAML), "from spiffe://cluster.local/ns/shop/sa/frontend (10.77.1.10, 10.77.1.11) to spiffe://cluster.local/ns/shop/sa/backend, ports 80, 443, 8080-8081") {
		t.Errorf("comments name workloads by SPIFFE ID:\n%s", got.YAML)
	}
}
