package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztcn/ztcn/internal/telemetry"
)

// auditLog writes n denied-flow events to a fresh audit log and returns
// its files, oldest first.
func auditLog(t *testing.T, n int, opts telemetry.AuditOptions) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := telemetry.OpenAuditLog(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		l.Write(telemetry.AuditEvent{Action: telemetry.ActionPolicyViolation, Flow: &telemetry.Flow{
			Direction: "outbound", Protocol: "TCP", Verdict: telemetry.VerdictDeny, Enforced: true,
			Source: telemetry.Peer{IP: netip.MustParseAddr("10.0.1.5"), Port: uint16(40000 + i)},
			Dest:   telemetry.Peer{IP: netip.MustParseAddr("10.0.2.7"), Port: 5432},
			Rule:   "policies/shop.yaml:12:5: deny app=frontend -> app=db",
		}})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := []string{path}
	for i := 1; ; i++ {
		p := fmt.Sprintf("%s.%d", path, i)
		if _, err := os.Stat(p); err != nil {
			return files
		}
		files = append([]string{p}, files...)
	}
}

func rewriteLines(t *testing.T, path string, edit func([][]byte) [][]byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := edit(bytes.SplitAfter(data, []byte("\n")))
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestAuditVerifyReportsAnIntactChain(t *testing.T) {
	files := auditLog(t, 30, telemetry.AuditOptions{MaxSize: 4 << 10})
	if len(files) < 3 {
		t.Fatalf("want rotated files, got %v", files)
	}
	out := mustZtcn(t, append([]string{"audit", "verify"}, files...)...)
	if out != "OK: 30 events, seq 1–30, chain intact\n" {
		t.Fatalf("output %q", out)
	}

	newest := mustZtcn(t, "audit", "verify", files[len(files)-1])
	if !strings.HasPrefix(newest, "warning: ") || !strings.Contains(newest, "not checked") || !strings.Contains(newest, "chain intact") {
		t.Fatalf("newest file alone: %q", newest)
	}

	var report telemetry.VerifyReport
	if err := json.Unmarshal([]byte(mustZtcn(t, append([]string{"audit", "verify", "-o", "json"}, files...)...)), &report); err != nil {
		t.Fatal(err)
	}
	if !report.OK() || report.Events != 30 || report.LastSeq != 30 {
		t.Fatalf("json report %+v", report)
	}
}

func TestAuditVerifyFailsAtTheTamperedLine(t *testing.T) {
	cases := []struct {
		name string
		edit func([][]byte) [][]byte
		want string
	}{
		{"altered", func(l [][]byte) [][]byte {
			l[16] = bytes.Replace(l[16], []byte("10.0.2.7"), []byte("10.0.2.9"), 1)
			return l
		}, ":17 (seq 17): event altered — its hash does not match ztcn.chain.prev of the next line\n"},
		{"removed", func(l [][]byte) [][]byte {
			return append(l[:16:16], l[17:]...)
		}, ":17 (seq 18): 1 event removed: seq jumps from 16 to 18\n"},
		{"reordered", func(l [][]byte) [][]byte {
			l[16], l[17] = l[17], l[16]
			return l
		}, ":17 (seq 18): event reordered: seq 18 comes before seq 17"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := auditLog(t, 25, telemetry.AuditOptions{})[0]
			rewriteLines(t, path, tc.edit)
			r := ztcn(t, "audit", "verify", path)
			if r.code != 1 || !strings.HasPrefix(r.stdout, "FAIL: "+path) || !strings.Contains(r.stdout, tc.want) || r.stderr != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want FAIL …%s", r.code, r.stdout, r.stderr, tc.want)
			}

			var report telemetry.VerifyReport
			j := ztcn(t, "audit", "verify", "-o", "json", path)
			if err := json.Unmarshal([]byte(j.stdout), &report); err != nil || j.code != 1 {
				t.Fatalf("-o json: exit %d, %v\n%s", j.code, err, j.stdout)
			}
			if report.Problem == nil || report.Problem.Kind != tc.name || report.Problem.Line != 17 {
				t.Fatalf("json problem %+v", report.Problem)
			}
		})
	}
}

func TestAuditVerifyOfAMissingFileIsAnError(t *testing.T) {
	r := ztcn(t, "audit", "verify", filepath.Join(t.TempDir(), "nope.log"))
	if r.code != 1 || !strings.HasPrefix(r.stderr, "ztcn: audit: open ") || !strings.Contains(r.stderr, "nope.log") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}
