package main

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztcn/ztcn/internal/dataplane"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/policy"
)

// runPods attaches many idle pods to one data plane, as an agent would,
// and measures the attach time and what each pod costs the agent.
func runPods(o options, res *Results) error {
	n := 1000
	if o.quick {
		n = 100
	}
	cleanupLeftovers()
	node, err := netns.NewNode(prefix+"-node", netip.MustParsePrefix("10.98.0.1/16"))
	if err != nil {
		return err
	}
	defer node.Teardown()
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root, err := identity.NewRootCA(td, time.Hour)
	if err != nil {
		return err
	}
	ca, err := root.NewNodeCA("bench", time.Hour)
	if err != nil {
		return err
	}
	bundles := identity.NewBundles()
	bundles.Set(td, root.Roots())
	set, _ := policy.LoadBytes("p.yaml", []byte("policies: []\n"))
	ix, err := policy.Compile(set, policy.IsolateAll)
	if err != nil {
		return err
	}
	snap := &policy.Snapshot{Index: ix, Version: 1}
	dp, err := dataplane.New(dataplane.Config{Policy: func() *policy.Snapshot { return snap },
		Verifier: identity.NewVerifier(bundles, identity.NewRevocations()), Log: quietLog()})
	if err != nil {
		return err
	}
	defer dp.Close()

	// Namespaces first: they are the runtime's cost, not the agent's.
	pods := make([]*netns.Pod, n)
	for i := range pods {
		ip := netip.AddrFrom4([4]byte{10, 98, byte(1 + i/250), byte(1 + i%250)})
		if pods[i], err = node.AddPod(fmt.Sprintf("%s-p%d", prefix, i), netip.PrefixFrom(ip, 16)); err != nil {
			return err
		}
	}
	heap0, rss0 := heapInuse(), rss()
	attach := make([]time.Duration, 0, n)
	for i, p := range pods {
		name := fmt.Sprintf("p%d", i)
		start := time.Now()
		svid, err := ca.IssueSVID(identity.SVIDRequest{ID: spiffeid.RequireFromPath(td, "/ns/bench/sa/"+name), TTL: time.Hour,
			Claims: identity.Claims{WorkloadUID: name, Labels: map[string]string{"app": name}}})
		if err != nil {
			return err
		}
		ep := &policy.Endpoint{Workload: true, Namespace: "bench", Name: name, ServiceAccount: name, Labels: map[string]string{"app": name},
			SPIFFEID: svid.ID.String(), IP: p.Addr.Addr()}
		if err := dp.Attach(dataplane.Pod{UID: name, IP: p.Addr.Addr(), NS: p.NS, Endpoint: ep, SVID: func() *identity.SVID { return svid }}); err != nil {
			return err
		}
		attach = append(attach, time.Since(start))
	}
	time.Sleep(500 * time.Millisecond) // let accept loops park
	heap1, rss1 := heapInuse(), rss()
	res.Pods = PodResult{
		Pods:           n,
		HeapPerPodKiB:  float64(heap1-heap0) / float64(n) / 1024,
		RSSPerPodKiB:   float64(rss1-rss0) / float64(n) / 1024,
		GoroutinesPer:  float64(runtime.NumGoroutine()) / float64(n),
		AttachP50:      percentile(attach, 0.5),
		AttachP99:      percentile(attach, 0.99),
		AttachIncludes: "SVID issuance, nftables rule set (2 transactions), 3 listeners in the pod's namespace",
	}
	return nil
}

func heapInuse() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	// Stacks are the goroutines' cost: count them with the heap.
	return m.HeapInuse + m.StackInuse
}

func rss() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}
