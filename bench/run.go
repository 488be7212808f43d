package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"sort"
	"time"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// runPaths measures every path. Each figure is the median of several
// repetitions, taken in rounds (every path once per round) so that a slow
// moment of the machine hits all paths alike.
func runPaths(o options, res *Results) error {
	e, err := newEnv()
	if err != nil {
		return err
	}
	defer e.close()
	paths, err := e.paths()
	if err != nil {
		return err
	}
	if o.pathFilter != "" {
		var keep []path
		for _, p := range paths {
			if p.name == o.pathFilter || p.name == "raw" {
				keep = append(keep, p)
			}
		}
		paths = keep
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	reps, bytes, rr, nc := 5, int64(1<<30), 20000, 1000
	if o.quick {
		reps, bytes, rr, nc = 3, 256<<20, 4000, 300
	}
	res.Settings = fmt.Sprintf("%d rounds; throughput %d MiB per stream; %d request/response round trips; %d new connections (medians of rounds)", reps, bytes>>20, rr, nc)
	// Warm-up: first connections, page-ins, TLS session state, pools.
	for _, p := range paths {
		if _, _, err := throughput(p, 32<<20); err != nil {
			return fmt.Errorf("%s: warm-up: %w", p.name, err)
		}
		if _, err := requestResponse(p, 100, 100); err != nil {
			return fmt.Errorf("%s: warm-up: %w", p.name, err)
		}
	}
	samples := map[string]*pathSamples{}
	for _, p := range paths {
		samples[p.name] = &pathSamples{}
	}
	for round := 0; round < reps; round++ {
		for _, p := range paths {
			s := samples[p.name]
			bps, cpu, err := throughput(p, bytes)
			if err != nil {
				return fmt.Errorf("%s: throughput: %w", p.name, err)
			}
			s.bps = append(s.bps, bps)
			s.cpu = append(s.cpu, cpu)
			d, err := requestResponse(p, rr/reps, 50)
			if err != nil {
				return fmt.Errorf("%s: request/response: %w", p.name, err)
			}
			s.rr = append(s.rr, d...)
			d, err = newConnections(p, nc/reps, 10, false)
			if err != nil {
				return fmt.Errorf("%s: new connections: %w", p.name, err)
			}
			s.nc = append(s.nc, d...)
			if p.cold != nil {
				d, err = newConnections(p, nc/reps, 5, true)
				if err != nil {
					return fmt.Errorf("%s: cold connections: %w", p.name, err)
				}
				s.cold = append(s.cold, d...)
			}
		}
	}
	for _, p := range paths {
		s := samples[p.name]
		pr := PathResult{
			Name:          p.name,
			ThroughputMBs: median(s.bps) / 1e6,
			SpreadPct:     spread(s.bps),
			CPUSecPerGB:   median(s.cpu),
			RRp50:         percentile(s.rr, 0.5), RRp99: percentile(s.rr, 0.99), RRp999: percentile(s.rr, 0.999),
			NewConnP50: percentile(s.nc, 0.5), NewConnP99: percentile(s.nc, 0.99),
		}
		if len(s.cold) > 0 {
			pr.ColdConnP50, pr.ColdConnP99 = percentile(s.cold, 0.5), percentile(s.cold, 0.99)
		}
		res.Paths = append(res.Paths, pr)
	}
	return nil
}

type pathSamples struct {
	bps, cpu     []float64
	rr, nc, cold []time.Duration
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// spread is (max-min)/median in percent: how far apart the rounds were.
func spread(v []float64) float64 {
	if len(v) < 2 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return (s[len(s)-1] - s[0]) / median(s) * 100
}
