package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Results is one run of the harness, as printed and as written to JSON.
type Results struct {
	Started    time.Time     `json:"started"`
	Took       time.Duration `json:"took_ns"`
	Quick      bool          `json:"quick"`
	GoVersion  string        `json:"go_version"`
	Kernel     string        `json:"kernel"`
	CPUs       int           `json:"cpus"`
	GOMAXPROCS int           `json:"gomaxprocs"`
	Settings   string        `json:"settings"`
	Paths      []PathResult  `json:"paths"`
	Pods       PodResult     `json:"pods"`
	Policy     PolicyResult  `json:"policy"`
}

// PathResult is one path's figures.
type PathResult struct {
	Name          string        `json:"name"`
	ThroughputMBs float64       `json:"throughput_mb_s"`
	SpreadPct     float64       `json:"throughput_spread_pct"`
	CPUSecPerGB   float64       `json:"cpu_s_per_gb"`
	RRp50         time.Duration `json:"rr_p50_ns"`
	RRp99         time.Duration `json:"rr_p99_ns"`
	RRp999        time.Duration `json:"rr_p999_ns"`
	NewConnP50    time.Duration `json:"new_conn_p50_ns"`
	NewConnP99    time.Duration `json:"new_conn_p99_ns"`
	// ColdConnP50/P99: ztcn with an empty pool (a full handshake).
	ColdConnP50 time.Duration `json:"cold_conn_p50_ns,omitempty"`
	ColdConnP99 time.Duration `json:"cold_conn_p99_ns,omitempty"`
}

// PodResult is the cost of idle pods to the agent.
type PodResult struct {
	Pods           int           `json:"pods"`
	HeapPerPodKiB  float64       `json:"heap_per_pod_kib"`
	RSSPerPodKiB   float64       `json:"rss_per_pod_kib"`
	GoroutinesPer  float64       `json:"goroutines_per_pod"`
	AttachP50      time.Duration `json:"attach_p50_ns"`
	AttachP99      time.Duration `json:"attach_p99_ns"`
	AttachIncludes string        `json:"attach_includes"`
}

// PolicyResult is the policy decision at scale.
type PolicyResult struct {
	Services      int           `json:"services"`
	Rules         int           `json:"rules"`
	BuildFromFile time.Duration `json:"build_from_file_ns"`
	DecideNs      float64       `json:"decide_ns"`
	DecideAllocs  int64         `json:"decide_allocs"`
}

func (r *Results) path(name string) (PathResult, bool) {
	for _, p := range r.Paths {
		if p.Name == name {
			return p, true
		}
	}
	return PathResult{}, false
}

// bestBaseline is the baseline with the best throughput (the one ztcn
// must beat by 1.3×) and its name.
func (r *Results) bestBaseline() (PathResult, bool) {
	var best PathResult
	found := false
	for _, p := range r.Paths {
		if p.Name == "stunnel" || p.Name == "go-tls" {
			if !found || p.ThroughputMBs > best.ThroughputMBs {
				best, found = p, true
			}
		}
	}
	return best, found
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

func (r *Results) print(w io.Writer) {
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(w, "ztcn bench (%s) — %s, kernel %s, %d CPUs, GOMAXPROCS %d; took %s\n%s\n\n",
		mode, r.GoVersion, r.Kernel, r.CPUs, r.GOMAXPROCS, r.Took.Round(time.Second), r.Settings)
	if len(r.Paths) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		names := []string{}
		for _, p := range r.Paths {
			names = append(names, p.Name)
		}
		fmt.Fprintf(tw, "metric\t%s\tztcn/raw\tztcn/best baseline\t\t\n", strings.Join(names, "\t"))
		raw, _ := r.path("raw")
		z, _ := r.path("ztcn")
		best, _ := r.bestBaseline()
		row := func(label string, val func(PathResult) float64, format func(float64) string, lowerBetter bool) {
			cells := []string{}
			for _, p := range r.Paths {
				cells = append(cells, format(val(p)))
			}
			ratio := func(a, b float64) string {
				if b == 0 {
					return "-"
				}
				return fmt.Sprintf("%.2f×", a/b)
			}
			// Plain ratios, ztcn over the other: above 1 is better for
			// throughput, below 1 is better for times and CPU.
			better := "higher is better"
			if lowerBetter {
				better = "lower is better"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", label, strings.Join(cells, "\t"), ratio(val(z), val(raw)), ratio(val(z), val(best)), better)
		}
		mbs := func(v float64) string { return fmt.Sprintf("%.0f MB/s", v) }
		dur := func(v float64) string { return us(time.Duration(v)) }
		row("throughput, 1 stream", func(p PathResult) float64 { return p.ThroughputMBs }, mbs, false)
		row("CPU s per GB", func(p PathResult) float64 { return p.CPUSecPerGB }, func(v float64) string { return fmt.Sprintf("%.2f", v) }, true)
		row("100 B req/resp p50", func(p PathResult) float64 { return float64(p.RRp50) }, dur, true)
		row("100 B req/resp p99", func(p PathResult) float64 { return float64(p.RRp99) }, dur, true)
		row("100 B req/resp p99.9", func(p PathResult) float64 { return float64(p.RRp999) }, dur, true)
		row("new conn + RR p50 (warm pool)", func(p PathResult) float64 { return float64(p.NewConnP50) }, dur, true)
		row("new conn + RR p99 (warm pool)", func(p PathResult) float64 { return float64(p.NewConnP99) }, dur, true)
		tw.Flush()
		fmt.Fprintf(w, "\nztcn new conn + RR with an empty pool (full handshake): p50 %s, p99 %s\n", us(z.ColdConnP50), us(z.ColdConnP99))
		fmt.Fprintf(w, "throughput spread between rounds (max-min)/median: ")
		for _, p := range r.Paths {
			fmt.Fprintf(w, "%s %.0f%%  ", p.Name, p.SpreadPct)
		}
		fmt.Fprintln(w)
		r.printTargets(w, raw, z, best)
	}
	if r.Pods.Pods > 0 {
		p := r.Pods
		fmt.Fprintf(w, "\nidle pods: %d attached; agent heap+stacks %.1f KiB/pod, RSS %.1f KiB/pod, %.1f goroutines/pod; attach p50 %s, p99 %s (%s)\n",
			p.Pods, p.HeapPerPodKiB, p.RSSPerPodKiB, p.GoroutinesPer, us(p.AttachP50), us(p.AttachP99), p.AttachIncludes)
	}
	if r.Policy.Rules > 0 {
		p := r.Policy
		fmt.Fprintf(w, "policy: %d services, %d rules; read+parse+lint+compile %s; decision %.0f ns, %d allocs\n",
			p.Services, p.Rules, p.BuildFromFile.Round(time.Millisecond), p.DecideNs, p.DecideAllocs)
	}
}

func (r *Results) printTargets(w io.Writer, raw, z, best PathResult) {
	check := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintln(w, "\ntargets (DESIGN §8):")
	if best.Name != "" {
		ratio := z.ThroughputMBs / best.ThroughputMBs
		fmt.Fprintf(w, "  throughput ≥ 1.3× best baseline (%s): %.2f× — %s\n", best.Name, ratio, check(ratio >= 1.3))
	}
	p50, p99 := z.RRp50-raw.RRp50, z.RRp99-raw.RRp99
	fmt.Fprintf(w, "  req/resp overhead over raw ≤ 120 µs p50 / ≤ 300 µs p99: %s / %s — %s\n", us(p50), us(p99), check(p50 <= 120*time.Microsecond && p99 <= 300*time.Microsecond))
	warm := float64(z.NewConnP50) / float64(raw.NewConnP50)
	fmt.Fprintf(w, "  new conn + RR, warm pool ≤ 3× raw: %.2f× — %s\n", warm, check(warm <= 3))
	if best.Name != "" {
		var slowest PathResult
		for _, p := range r.Paths {
			if (p.Name == "stunnel" || p.Name == "go-tls") && (slowest.Name == "" || p.NewConnP50 < slowest.NewConnP50) {
				slowest = p // the fastest baseline handshake is the bar
			}
		}
		f := float64(slowest.NewConnP50) / float64(z.NewConnP50)
		fmt.Fprintf(w, "  new conn + RR ≥ 5× faster than the baselines' full handshakes (best: %s): %.2f× — %s\n", slowest.Name, f, check(f >= 5))
	}
	if r.Pods.Pods > 0 {
		fmt.Fprintf(w, "  agent memory ≤ 64 KiB per idle pod: %.1f KiB — %s\n", r.Pods.HeapPerPodKiB, check(r.Pods.HeapPerPodKiB <= 64))
	}
	if r.Policy.Rules > 0 {
		fmt.Fprintf(w, "  policy decision ≤ 200 ns: %.0f ns — %s\n", r.Policy.DecideNs, check(r.Policy.DecideNs <= 200))
	}
}
