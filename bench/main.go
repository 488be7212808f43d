// Command bench measures ztcn's data plane against raw TCP and two mTLS
// baselines on the same path: two pod network namespaces on one node
// bridge, connected over veth. It prints a table of absolute figures and
// ratios (to raw TCP and to the best baseline) and writes them as JSON.
//
//	go run ./bench            # full run (~10 minutes on 2 cores)
//	go run ./bench --quick    # under 2 minutes
//
// Paths, in one run:
//   - raw:      client → server, plain TCP
//   - ztcn:     client → (in-pod redirection) agent → HBONE mTLS → agent → server
//   - stunnel:  client → stunnel client → TLS 1.3 mTLS → stunnel server → server
//   - go-tls:   the same pair written in Go (bench/naive.go): one TLS
//     connection per TCP connection, the "naive" proxy baseline
//
// It needs root (namespaces, nftables) and stunnel4 for that baseline.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"runtime"
	"time"
)

type options struct {
	quick      bool
	jsonPath   string
	only       string
	cpuProfile string
	pathFilter string
}

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "fewer repetitions and pods: under 2 minutes")
	flag.StringVar(&o.jsonPath, "json", "bench/results.json", "write the results here as JSON (empty: do not)")
	flag.StringVar(&o.only, "only", "", "run only this section: paths, pods, policy")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the path measurements here")
	flag.StringVar(&o.pathFilter, "path", "", "measure only this path (raw, ztcn, stunnel, go-tls)")
	flag.Parse()
	if os.Geteuid() != 0 {
		log.Fatal("bench: needs root (network namespaces, nftables)")
	}
	start := time.Now()
	res := &Results{Started: start, Quick: o.quick, GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		res.Kernel = string(out[:len(out)-1])
	}
	if o.only == "" || o.only == "paths" {
		if err := runPaths(o, res); err != nil {
			log.Fatalf("bench: paths: %v", err)
		}
	}
	if o.only == "" || o.only == "pods" {
		if err := runPods(o, res); err != nil {
			log.Fatalf("bench: pods: %v", err)
		}
	}
	if o.only == "" || o.only == "policy" {
		if err := runPolicy(o, res); err != nil {
			log.Fatalf("bench: policy: %v", err)
		}
	}
	res.Took = time.Since(start)
	res.print(os.Stdout)
	if o.jsonPath != "" {
		data, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(o.jsonPath, append(data, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("\nJSON: %s\n", o.jsonPath)
	}
}
