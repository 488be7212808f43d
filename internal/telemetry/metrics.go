package telemetry

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the agent's Prometheus metrics (DESIGN §6). Every label has
// a small fixed set of values: no pod, identity or address is ever a
// label, so the series count does not grow with the cluster.
type Metrics struct {
	reg *prometheus.Registry

	handshakes       *prometheus.CounterVec   // side, result
	handshakeSeconds *prometheus.HistogramVec // side
	violations       *prometheus.CounterVec   // direction, enforced
	connections      *prometheus.CounterVec   // direction, result
	connectSeconds   *prometheus.HistogramVec // direction
	bytes            *prometheus.CounterVec   // direction
	certificates     *prometheus.CounterVec   // reason
	reloads          *prometheus.CounterVec   // result
}

// Label values.
const (
	ResultOK     = "ok"
	ResultFailed = "failed"

	ConnAllowed = "allowed"
	ConnDenied  = "denied"
	ConnFailed  = "failed"
)

// Latency buckets from 50 µs to 5 s: a pooled stream takes tens of
// microseconds, a TLS handshake a millisecond, a stuck peer seconds.
var latencyBuckets = prometheus.ExponentialBucketsRange(50e-6, 5, 16)

// NewMetrics registers the metrics with a registry of their own (plus the
// Go runtime and process collectors).
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztcn_tls_handshakes_total",
		Help: "mTLS handshakes between agents, by side (client: toward another pod; server: a pod's HBONE listener) and result.",
	}, []string{"side", "result"})
	m.handshakeSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ztcn_tls_handshake_duration_seconds", Help: "Duration of mTLS handshakes, by side.", Buckets: latencyBuckets,
	}, []string{"side"})
	m.violations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztcn_policy_violations_total",
		Help: "Connections policy denies, by direction (outbound: by the source's agent; inbound: by the destination's) and whether the denial was enforced (false: audit mode, the flow went through).",
	}, []string{"direction", "enforced"})
	m.connections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztcn_connections_total",
		Help: "Connections decided by the agent, by direction and result (allowed, denied, failed: allowed but the destination could not be reached or did not authenticate).",
	}, []string{"direction", "result"})
	m.connectSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ztcn_connect_duration_seconds", Help: "Time to reach the destination of an allowed connection (an HBONE stream, or a direct connect).", Buckets: latencyBuckets,
	}, []string{"direction"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztcn_bytes_total", Help: "Bytes carried for the pods, by direction of the connection (both ways of it counted).",
	}, []string{"direction"})
	m.certificates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztcn_certificates_issued_total", Help: "Workload X.509-SVIDs issued, by reason (start, rotation).",
	}, []string{"reason"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztcn_policy_reloads_total", Help: "Policy reload attempts, by result (ok: a new policy is in force; failed: the last good one stays).",
	}, []string{"result"})
	m.reg.MustRegister(m.handshakes, m.handshakeSeconds, m.violations, m.connections, m.connectSeconds, m.bytes, m.certificates, m.reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Zero series for the fixed label values, so that rate() and alerts
	// see a 0 instead of no data before the first event.
	for _, side := range []string{"client", "server"} {
		m.handshakes.WithLabelValues(side, ResultOK)
		m.handshakes.WithLabelValues(side, ResultFailed)
		m.handshakeSeconds.WithLabelValues(side)
	}
	for _, dir := range []string{"outbound", "inbound"} {
		m.violations.WithLabelValues(dir, "true")
		m.violations.WithLabelValues(dir, "false")
		for _, r := range []string{ConnAllowed, ConnDenied, ConnFailed} {
			m.connections.WithLabelValues(dir, r)
		}
		m.bytes.WithLabelValues(dir)
		m.connectSeconds.WithLabelValues(dir)
	}
	for _, r := range []string{ResultOK, ResultFailed} {
		m.reloads.WithLabelValues(r)
	}
	for _, r := range []string{"start", "rotation"} {
		m.certificates.WithLabelValues(r)
	}
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Handshake counts one TLS handshake.
func (m *Metrics) Handshake(side string, took time.Duration, err error) {
	result := ResultOK
	if err != nil {
		result = ResultFailed
	}
	m.handshakes.WithLabelValues(side, result).Inc()
	m.handshakeSeconds.WithLabelValues(side).Observe(took.Seconds())
}

// Violation counts a denied connection.
func (m *Metrics) Violation(direction string, enforced bool) {
	e := "true"
	if !enforced {
		e = "false"
	}
	m.violations.WithLabelValues(direction, e).Inc()
}

// Connection counts a decided connection and, when it was allowed, the
// time it took to reach its destination.
func (m *Metrics) Connection(direction, result string, connect time.Duration) {
	m.connections.WithLabelValues(direction, result).Inc()
	if result == ConnAllowed && connect > 0 {
		m.connectSeconds.WithLabelValues(direction).Observe(connect.Seconds())
	}
}

// Bytes counts the bytes of a finished connection.
func (m *Metrics) Bytes(direction string, n int64) {
	if n > 0 {
		m.bytes.WithLabelValues(direction).Add(float64(n))
	}
}

// CertificateIssued counts an SVID issued at a workload's start or at a
// rotation.
func (m *Metrics) CertificateIssued(reason string) { m.certificates.WithLabelValues(reason).Inc() }

// PolicyReload counts a reload attempt.
func (m *Metrics) PolicyReload(ok bool) {
	if ok {
		m.reloads.WithLabelValues(ResultOK).Inc()
	} else {
		m.reloads.WithLabelValues(ResultFailed).Inc()
	}
}

// Sources are the values the agent computes when scraped.
type Sources struct {
	// NearestExpiry is the earliest NotAfter of the SVIDs in use (false
	// when there are none).
	NearestExpiry func() (time.Time, bool)
	// Active counts the open connections by direction.
	Active func() (outbound, inbound int)
	// Pods counts the attached pods.
	Pods func() int
	// Audit reports the audit log's counters.
	Audit func() (written, dropped, failed uint64)
}

// Observe registers the scrape-time metrics.
func (m *Metrics) Observe(s Sources) error {
	var errs []error
	reg := func(c prometheus.Collector) { errs = append(errs, m.reg.Register(c)) }
	if s.NearestExpiry != nil {
		reg(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ztcn_certificate_expiry_seconds",
			Help: "Seconds until the earliest expiry among the workload SVIDs in use (absent with no workload; negative once expired).",
		}, func() float64 {
			t, ok := s.NearestExpiry()
			if !ok {
				return 0
			}
			return time.Until(t).Seconds()
		}))
	}
	if s.Active != nil {
		for _, dir := range []string{"outbound", "inbound"} {
			reg(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "ztcn_connections_active", Help: "Connections the agent carries now, by direction.",
				ConstLabels: prometheus.Labels{"direction": dir},
			}, func() float64 {
				out, in := s.Active()
				if dir == "outbound" {
					return float64(out)
				}
				return float64(in)
			}))
		}
	}
	if s.Pods != nil {
		reg(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ztcn_pods_attached", Help: "Pods whose traffic the agent secures."},
			func() float64 { return float64(s.Pods()) }))
	}
	if s.Audit != nil {
		for _, result := range []string{"written", "dropped", "error"} {
			reg(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "ztcn_audit_events_total", Help: "Audit events by result: written, dropped (the writer fell behind), error (the write failed, e.g. disk full).",
				ConstLabels: prometheus.Labels{"result": result},
			}, func() float64 {
				w, d, f := s.Audit()
				switch result {
				case "written":
					return float64(w)
				case "dropped":
					return float64(d)
				}
				return float64(f)
			}))
		}
	}
	return errors.Join(errs...)
}
