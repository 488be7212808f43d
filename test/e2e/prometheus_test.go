package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestPrometheusScrapesTheAgent runs a real Prometheus server against a
// real agent and asks it, in PromQL, for the handshakes and violations the
// test caused.
func TestPrometheusScrapesTheAgent(t *testing.T) {
	requireRoot(t, "curl", "prometheus")
	n := newAgentNode(t, shopPolicy)
	frontend := n.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := n.addPod("backend", 3, map[string]string{"app": "backend"})
	other := n.addPod("other", 4, map[string]string{"app": "other"})
	serveHTTPIn(t, backend.NS, "backend", 8080)
	url8080 := fmt.Sprintf("http://%s:8080/", backend.Addr.Addr())
	for range 3 {
		if out, err := curlIn(frontend.NS, url8080); err != nil {
			t.Fatalf("allowed call: %v %s", err, out)
		}
	}
	for range 2 {
		if _, err := curlIn(other.NS, url8080); err == nil {
			t.Fatal("denied call went through")
		}
	}
	st, err := n.status()
	if err != nil || st.MetricsURL == "" {
		t.Fatalf("status has no metrics_url: %+v %v", st, err)
	}
	target, err := url.Parse(st.MetricsURL)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ztcn\n    metrics_path: %s\n    static_configs:\n      - targets: ['%s']\n", target.Path, target.Host)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	prom := exec.Command("prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	var logs lockedBuffer
	prom.Stdout, prom.Stderr = &logs, &logs
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Process.Kill(); _ = prom.Wait() })

	query := func(q string) (float64, bool) {
		resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Result) != 1 {
			return 0, false
		}
		var v float64
		s, _ := r.Data.Result[0].Value[1].(string)
		_, err = fmt.Sscan(s, &v)
		return v, err == nil
	}
	want := map[string]float64{
		// One pooled connection frontend → backend: a client and a server
		// handshake, both by this agent.
		`sum(ztcn_tls_handshakes_total{result="ok"})`:                   2,
		`sum(ztcn_policy_violations_total{enforced="true"})`:            2,
		`ztcn_connections_total{direction="outbound",result="allowed"}`: 3,
		`ztcn_connections_total{direction="outbound",result="denied"}`:  2,
		`ztcn_pods_attached`: 3,
	}
	deadline := time.Now().Add(45 * time.Second)
	for q, v := range want {
		for {
			got, ok := query(q)
			if ok && got == v {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("PromQL %s = %v (ok %v), want %v\nprometheus log:\n%s", q, got, ok, v, logs.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
