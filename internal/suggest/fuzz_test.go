package suggest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztcn/ztcn/internal/policy"
	"github.com/ztcn/ztcn/internal/telemetry"
)

// FuzzRead feeds Observed.Read arbitrary input (flow lines, audit log
// lines, a JSON array). It must not panic; the flows it reads, written
// back as `ztcn flows -o json` lines, read back the same; and Suggest on
// them, with and without denials, either explains why there is nothing to
// suggest or returns a policy whose YAML and JSON load without errors and
// compile. (Suggest checks its own output against the evidence and says
// "bug" when that fails: that is a failure here too.) Seeds run in the
// normal suite; fuzz with
//
//	go test -run '^$' -fuzz '^FuzzRead$' -fuzztime 60s ./internal/suggest/
func FuzzRead(f *testing.F) {
	flows := observed()
	var lines bytes.Buffer
	for _, fl := range flows {
		b, err := json.Marshal(fl)
		if err != nil {
			f.Fatal(err)
		}
		lines.Write(append(b, '\n'))
		f.Add(b)
	}
	f.Add(lines.Bytes())
	array, err := json.Marshal(flows)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(array)
	audit := fuzzAuditLog(f, flows)
	f.Add(audit)
	for _, l := range bytes.SplitAfter(audit, []byte("\n"))[:4] {
		f.Add(l)
	}
	for _, s := range []string{
		`{"@timestamp":"2026-11-23T14:00:00Z","event":{"kind":"event","action":"certificate_issued","outcome":"success"},"ztcn":{"spiffe_id":"spiffe://cluster.local/ns/shop/sa/frontend"}}`,
		`{"@timestamp":"2026-11-23T14:01:00Z","event.action":"policy_reload","event.outcome":"success","ztcn.policy.version":3}`,
		`{"@timestamp":"2026-11-23T14:02:00Z","event.action":"would_be_violation","event.outcome":"success","source.ip":"10.77.1.10","source.port":40001,"destination.ip":"10.77.1.20","destination.port":80,"network.transport":"tcp","network.direction":"egress","ztcn.source.spiffe_id":"spiffe://cluster.local/ns/shop/sa/frontend","ztcn.source.labels.app":"frontend","ztcn.destination.spiffe_id":"spiffe://cluster.local/ns/shop/sa/backend","ztcn.destination.labels":{"app":"backend"}}`,
		`{"event":{"action":"flow_allowed","type":["connection","allowed"]},"source":{"ip":"::ffff:192.0.2.50"},"destination":{"ip":"10.77.1.11","port":"443"},"network":{"transport":"udp"},"ztcn":{"destination":{"namespace":"shop","name":"frontend-2","labels":{"app":"frontend","n":1,"b":true}}}}`,
		`{"event.action":"denied","ztcn.verdict":"deny","ztcn.enforced":"false","destination.ip":"203.0.113.7","network.transport":"icmp","source.ip":"10.77.2.30","ztcn.source.namespace":"billing","ztcn.source.service_account":"worker"}`,
		`{"source":{"ip":"10.0.0.1"},"destination":{"ip":"10.0.0.2","port":80,"spiffe_id":"spiffe://td/ns/a/sa/b"},"protocol":"SCTP","verdict":"allow","enforced":true}`,
		"[]", "[{}]", "  \n", "{not json\n", `{"hello":"world"}`, "[1, 2]\n3",
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		var o Observed
		if err := o.Read("in.jsonl", bytes.NewReader(data)); err != nil {
			if !strings.HasPrefix(err.Error(), "in.jsonl") {
				t.Fatalf("an error that does not name the input: %v", err)
			}
			return
		}
		var again bytes.Buffer
		for _, fl := range o.Flows {
			b, err := json.Marshal(fl)
			if err != nil {
				t.Fatalf("a flow read does not encode: %v (%+v)", err, fl)
			}
			again.Write(append(b, '\n'))
		}
		var back Observed
		if err := back.Read("again.jsonl", bytes.NewReader(again.Bytes())); err != nil || len(back.Flows) != len(o.Flows) || back.Ignored != 0 {
			t.Fatalf("the flows read, written as flow lines, read back as %d flows (%d ignored), %v; want %d:\n%s", len(back.Flows), back.Ignored, err, len(o.Flows), again.Bytes())
		}
		var twice bytes.Buffer
		for _, fl := range back.Flows {
			b, _ := json.Marshal(fl)
			twice.Write(append(b, '\n'))
		}
		if !bytes.Equal(twice.Bytes(), again.Bytes()) {
			t.Fatalf("flow lines read back differently:\n%s\nthen\n%s", again.Bytes(), twice.Bytes())
		}

		for _, opts := range [][]Option{nil, {WithDenied()}} {
			sg, err := Suggest(o.Flows, opts...)
			if err != nil {
				if strings.Contains(err.Error(), "bug") {
					t.Fatalf("Suggest (%d options): %v", len(opts), err)
				}
				continue
			}
			for name, doc := range map[string][]byte{"suggested.yaml": sg.YAML, "suggested.json": sg.JSON} {
				set, diags := policy.LoadBytes(name, doc)
				if diags.HasErrors() {
					t.Fatalf("%s does not load: %v\n%s", name, diags, doc)
				}
				if _, err := policy.Compile(set, policy.IsolateAll); err != nil {
					t.Fatalf("%s does not compile: %v", name, err)
				}
				if len(set.Rules) != sg.Rules {
					t.Fatalf("%s has %d rules, the suggestion says %d", name, len(set.Rules), sg.Rules)
				}
			}
		}
	})
}

// fuzzAuditLog is what the agent's audit log holds for flows.
func fuzzAuditLog(f *testing.F, flows []telemetry.Flow) []byte {
	f.Helper()
	path := filepath.Join(f.TempDir(), "audit.log")
	log, err := telemetry.OpenAuditLog(path, telemetry.AuditOptions{Node: "node-1"})
	if err != nil {
		f.Fatal(err)
	}
	log.Write(telemetry.AuditEvent{Time: t0, Action: telemetry.ActionCertIssued, SPIFFEID: frontend1.SPIFFEID, Serial: "0a", Reason: "start"})
	for i := range flows {
		fl := &flows[i]
		action := telemetry.ActionPolicyViolation
		switch {
		case fl.Kind == "handshake_failed":
			action = telemetry.ActionHandshakeFailed
		case fl.Verdict == telemetry.VerdictAllow:
			action = telemetry.ActionWouldBeViolation // audit mode: let through
		case !fl.Enforced:
			action = telemetry.ActionWouldBeViolation
		}
		log.Write(telemetry.AuditEvent{Time: fl.Start, Action: action, Flow: fl})
	}
	if err := log.Close(); err != nil {
		f.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return data
}
