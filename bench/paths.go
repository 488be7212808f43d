package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztcn/ztcn/internal/dataplane"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/policy"
)

// path is one way from the client pod to the server applications.
type path struct {
	name string
	// dial opens a connection from the client pod to the sink or the echo.
	dial func(port int) (net.Conn, error)
	// cold, if set, makes the next connection pay a full handshake.
	cold func()
	// cpu is the CPU time spent outside this process (stunnel).
	cpu func() time.Duration
}

// env is the namespaces and everything running in them.
type env struct {
	node    *netns.Node
	pods    map[string]*netns.Pod
	servers []*servers
	dp      *dataplane.DataPlane
	naive   *naivePair
	stunnel *stunnelPair
	dir     string
	ca      *identity.CA
	td      spiffeid.TrustDomain
	bundles *identity.Bundles
}

const (
	prefix = "zbench"
	subnet = "10.99.0"
)

func addr(host int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("%s.%d", subnet, host)) }

// newEnv builds the node and two pod pairs: a (client) and b (server)
// without redirection for raw TCP and the baselines, c (client) and d
// (server) attached to the ztcn data plane. Every pod is on the same
// bridge, so every path crosses the same two veths.
func newEnv() (*env, error) {
	cleanupLeftovers()
	e := &env{pods: map[string]*netns.Pod{}}
	var err error
	if e.dir, err = os.MkdirTemp("", "ztcn-bench-"); err != nil {
		return nil, err
	}
	if e.node, err = netns.NewNode(prefix+"-node", netip.PrefixFrom(addr(1), 24)); err != nil {
		return nil, err
	}
	for i, name := range []string{"a", "b", "c", "d"} {
		p, err := e.node.AddPod(prefix+"-"+name, netip.PrefixFrom(addr(2+i), 24))
		if err != nil {
			e.close()
			return nil, err
		}
		e.pods[name] = p
	}
	for _, name := range []string{"b", "d"} {
		s, err := startServers(e.pods[name].NS)
		if err != nil {
			e.close()
			return nil, err
		}
		e.servers = append(e.servers, s)
	}
	if err := e.pki(); err != nil {
		e.close()
		return nil, err
	}
	if err := e.startZtcn(); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func cleanupLeftovers() {
	names, _ := netns.List(prefix + "-")
	for _, n := range names {
		_ = netns.Delete(n)
	}
}

// pki makes one root, one node CA and the SVIDs every path uses.
func (e *env) pki() error {
	e.td = spiffeid.RequireTrustDomainFromString("cluster.local")
	root, err := identity.NewRootCA(e.td, time.Hour)
	if err != nil {
		return err
	}
	if e.ca, err = root.NewNodeCA("bench", time.Hour); err != nil {
		return err
	}
	e.bundles = identity.NewBundles()
	e.bundles.Set(e.td, root.Roots())
	for _, side := range []string{"client", "server"} {
		svid, err := e.issue(side)
		if err != nil {
			return err
		}
		if err := identity.WriteSVID(filepath.Join(e.dir, side), svid, root.Roots(), true); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) issue(name string) (*identity.SVID, error) {
	return e.ca.IssueSVID(identity.SVIDRequest{ID: spiffeid.RequireFromPath(e.td, "/ns/bench/sa/"+name), TTL: time.Hour,
		Claims: identity.Claims{WorkloadUID: name, Labels: map[string]string{"app": name}}})
}

func (e *env) tlsConfigs() (client, server *tls.Config, err error) {
	pool := x509.NewCertPool()
	roots, err := e.bundles.GetX509BundleForTrustDomain(e.td)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range roots.X509Authorities() {
		pool.AddCert(r)
	}
	load := func(side string) (tls.Certificate, error) {
		return tls.LoadX509KeyPair(filepath.Join(e.dir, side, "svid.crt"), filepath.Join(e.dir, side, "svid.key"))
	}
	cc, err := load("client")
	if err != nil {
		return nil, nil, err
	}
	sc, err := load("server")
	if err != nil {
		return nil, nil, err
	}
	// SPIFFE leaves carry no DNS name: verify the chain, as stunnel's
	// verifyChain does, not a host name.
	verify := func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		_, err := identity.NewVerifier(e.bundles, nil).Verify(rawCerts, x509.ExtKeyUsageServerAuth)
		return err
	}
	client = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cc}, RootCAs: pool,
		InsecureSkipVerify: true, VerifyPeerCertificate: verify}
	server = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{sc}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	return client, server, nil
}

// startZtcn attaches c and d to one data plane (one agent, two hops: the
// client pod's outbound proxy and the server pod's HBONE listener).
func (e *env) startZtcn() error {
	src := `policies:
  - subject: "app:c"
    allow:
      - destination: "app:d"
        ports: [7001, 7002]
`
	set, diags := policy.LoadBytes("bench-policy.yaml", []byte(src))
	if diags.HasErrors() {
		return fmt.Errorf("policy: %v", diags)
	}
	ix, err := policy.Compile(set, policy.IsolateAll)
	if err != nil {
		return err
	}
	snap := &policy.Snapshot{Index: ix, Version: 1, LoadedAt: time.Now()}
	e.dp, err = dataplane.New(dataplane.Config{Policy: func() *policy.Snapshot { return snap },
		Verifier: identity.NewVerifier(e.bundles, identity.NewRevocations()),
		Log:      quietLog()})
	if err != nil {
		return err
	}
	for _, name := range []string{"c", "d"} {
		svid, err := e.issue(name)
		if err != nil {
			return err
		}
		p := e.pods[name]
		ep := &policy.Endpoint{Workload: true, Namespace: "bench", Name: name, ServiceAccount: name, Labels: map[string]string{"app": name},
			SPIFFEID: svid.ID.String(), IP: p.Addr.Addr()}
		if err := e.dp.Attach(dataplane.Pod{UID: name, IP: p.Addr.Addr(), NS: p.NS, Endpoint: ep, SVID: func() *identity.SVID { return svid }}); err != nil {
			return err
		}
	}
	return nil
}

// paths returns the four ways from a client pod to the server apps.
func (e *env) paths() ([]path, error) {
	a, b, c, d := e.pods["a"], e.pods["b"], e.pods["c"], e.pods["d"]
	// A client dials as an application in the pod would: from a socket of
	// the pod's namespace, without its goroutine locked in there while it
	// waits (netns.DialTCP), which would add thread hand-offs to every
	// path's connection time.
	dialFrom := func(ns *netns.NS, host string) func(int) (net.Conn, error) {
		return func(port int) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return netns.DialTCP(ctx, ns, netip.MustParseAddrPort(host+":"+itoa(port)), nil)
		}
	}
	noCPU := func() time.Duration { return 0 }
	paths := []path{
		{name: "raw", dial: dialFrom(a.NS, b.Addr.Addr().String()), cpu: noCPU},
		{name: "ztcn", dial: dialFrom(c.NS, d.Addr.Addr().String()), cpu: noCPU, cold: func() { e.dp.Rotated("c") }},
	}
	if bin := stunnelBinary(); bin != "" {
		st, err := startStunnel(bin, e.dir, a.NS.Name(), b.NS.Name(), b.Addr.Addr().String(),
			[]int{19201, 19202}, []int{9443, 9444}, []int{sinkPort, echoPort})
		if err != nil {
			return nil, err
		}
		e.stunnel = st
		local := dialFrom(a.NS, "127.0.0.1")
		paths = append(paths, path{name: "stunnel", cpu: st.cpu, dial: func(port int) (net.Conn, error) { return local(port - sinkPort + 19201) }})
	} else {
		log.Print("bench: stunnel4 not installed; that baseline is skipped")
	}
	ct, stls, err := e.tlsConfigs()
	if err != nil {
		return nil, err
	}
	e.naive, err = startNaive(a.NS, b.NS, b.Addr.Addr().String(), ct, stls, []int{19101, 19102}, []int{8443, 8444}, []int{sinkPort, echoPort})
	if err != nil {
		return nil, err
	}
	local := dialFrom(a.NS, "127.0.0.1")
	paths = append(paths, path{name: "go-tls", cpu: noCPU, dial: func(port int) (net.Conn, error) { return local(port - sinkPort + 19101) }})
	return paths, nil
}

func (e *env) close() {
	if e.stunnel != nil {
		e.stunnel.close()
	}
	if e.naive != nil {
		e.naive.close()
	}
	if e.dp != nil {
		_ = e.dp.Close()
	}
	for _, s := range e.servers {
		s.close()
	}
	if e.node != nil {
		_ = e.node.Teardown()
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

// throughput sends n bytes over one connection to the sink and returns
// bytes per second and the CPU seconds per GB the whole machine's work
// for it cost (this process, plus stunnel's).
func throughput(p path, n int64) (bps, cpuPerGB float64, err error) {
	c, err := p.dial(sinkPort)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	cpu0, ext0 := selfCPU(), p.cpu()
	start := time.Now()
	for sent := int64(0); sent < n; {
		k := int64(len(buf))
		if n-sent < k {
			k = n - sent
		}
		w, err := c.Write(buf[:k])
		if err != nil {
			return 0, 0, err
		}
		sent += int64(w)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		return 0, 0, err
	}
	var got [8]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return 0, 0, fmt.Errorf("sink answer: %w", err)
	}
	took := time.Since(start)
	if binary.BigEndian.Uint64(got[:]) != uint64(n) {
		return 0, 0, fmt.Errorf("sink received %d bytes, want %d", binary.BigEndian.Uint64(got[:]), n)
	}
	cpu := (selfCPU() - cpu0) + (p.cpu() - ext0)
	return float64(n) / took.Seconds(), cpu.Seconds() / (float64(n) / 1e9), nil
}

// requestResponse measures n round trips of 100 bytes on one connection.
func requestResponse(p path, n, warmup int) ([]time.Duration, error) {
	c, err := p.dial(echoPort)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	msg, got := make([]byte, 100), make([]byte, 100)
	out := make([]time.Duration, 0, n)
	for i := 0; i < n+warmup; i++ {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return nil, err
		}
		if i >= warmup {
			out = append(out, time.Since(start))
		}
	}
	return out, nil
}

// newConnections measures n times: connect, one 100-byte round trip,
// close. With cold, every connection pays a full handshake.
func newConnections(p path, n, warmup int, cold bool) ([]time.Duration, error) {
	msg, got := make([]byte, 100), make([]byte, 100)
	out := make([]time.Duration, 0, n)
	for i := 0; i < n+warmup; i++ {
		if cold && p.cold != nil {
			p.cold()
		}
		start := time.Now()
		c, err := p.dial(echoPort)
		if err != nil {
			return nil, err
		}
		if _, err := c.Write(msg); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			c.Close()
			return nil, err
		}
		took := time.Since(start)
		c.Close()
		if i >= warmup {
			out = append(out, took)
		}
	}
	return out, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p * float64(len(s)-1))
	return s[i]
}
