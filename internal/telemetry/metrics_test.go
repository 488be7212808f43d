package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

func TestMetricsCountWhatTheyAreTold(t *testing.T) {
	m := NewMetrics()
	expiry := time.Now().Add(90 * time.Minute)
	if err := m.Observe(Sources{
		NearestExpiry: func() (time.Time, bool) { return expiry, true },
		Active:        func() (int, int) { return 3, 2 },
		Pods:          func() int { return 4 },
		Audit:         func() (uint64, uint64, uint64) { return 10, 1, 2 },
	}); err != nil {
		t.Fatal(err)
	}
	m.Handshake("client", 2*time.Millisecond, nil)
	m.Handshake("server", time.Millisecond, errors.New("bad certificate"))
	m.Violation("outbound", true)
	m.Violation("inbound", false)
	m.Connection("outbound", ConnAllowed, 300*time.Microsecond)
	m.Connection("outbound", ConnDenied, 0)
	m.Bytes("outbound", 1500)
	m.CertificateIssued("start")
	m.PolicyReload(false)
	out := scrape(t, m)
	for _, want := range []string{
		`ztcn_tls_handshakes_total{result="ok",side="client"} 1`,
		`ztcn_tls_handshakes_total{result="failed",side="server"} 1`,
		`ztcn_tls_handshakes_total{result="failed",side="client"} 0`,
		`ztcn_policy_violations_total{direction="outbound",enforced="true"} 1`,
		`ztcn_policy_violations_total{direction="inbound",enforced="false"} 1`,
		`ztcn_connections_total{direction="outbound",result="allowed"} 1`,
		`ztcn_connections_total{direction="outbound",result="denied"} 1`,
		`ztcn_connect_duration_seconds_count{direction="outbound"} 1`,
		`ztcn_tls_handshake_duration_seconds_count{side="client"} 1`,
		`ztcn_bytes_total{direction="outbound"} 1500`,
		`ztcn_certificates_issued_total{reason="start"} 1`,
		`ztcn_policy_reloads_total{result="failed"} 1`,
		`ztcn_connections_active{direction="outbound"} 3`,
		`ztcn_connections_active{direction="inbound"} 2`,
		`ztcn_pods_attached 4`,
		`ztcn_audit_events_total{result="dropped"} 1`,
		`ztcn_audit_events_total{result="error"} 2`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !regexp.MustCompile(`ztcn_certificate_expiry_seconds 5[34]\d\d`).MatchString(out) {
		t.Errorf("certificate expiry not ~5400 s:\n%s", grep(out, "expiry"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMetricsPassPromtool runs Prometheus's own linter over the output.
func TestMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not installed (Debian package prometheus)")
		}
		t.Skip("promtool not installed")
	}
	m := NewMetrics()
	if err := m.Observe(Sources{NearestExpiry: func() (time.Time, bool) { return time.Now(), true }, Active: func() (int, int) { return 0, 0 },
		Pods: func() int { return 0 }, Audit: func() (uint64, uint64, uint64) { return 0, 0, 0 }}); err != nil {
		t.Fatal(err)
	}
	m.Handshake("client", time.Millisecond, nil)
	m.Connection("inbound", ConnAllowed, time.Millisecond)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape(t, m))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || strings.TrimSpace(out.String()) != "" {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
}

// TestDashboardUsesOnlyRealMetrics keeps deploy/grafana in step with the
// metrics: every series a panel queries must exist.
func TestDashboardUsesOnlyRealMetrics(t *testing.T) {
	data, err := os.ReadFile("../../deploy/grafana/ztcn-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	if err := m.Observe(Sources{NearestExpiry: func() (time.Time, bool) { return time.Now(), true }, Active: func() (int, int) { return 0, 0 },
		Pods: func() int { return 0 }, Audit: func() (uint64, uint64, uint64) { return 0, 0, 0 }}); err != nil {
		t.Fatal(err)
	}
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range families {
		known[f.GetName()] = true
	}
	name := regexp.MustCompile(`ztcn_[a-z_]+`)
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")
				if !known[base] {
					t.Errorf("panel %q queries %s, which ztcn does not export", p.Title, n)
				}
			}
		}
	}
}
