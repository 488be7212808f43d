package local

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/runtime/podspec"
)

// listenWait bounds how long `ztcn up` waits for the pods' declared TCP
// ports to listen before it reports the run ready anyway.
const listenWait = 15 * time.Second

// waitListening waits until every pod's and external's declared TCP ports
// are listening in its namespace, so that a run reported ready answers at
// once (the commands were only started). A port still closed after
// listenWait is reported in the progress output, not an error: a pod may
// declare a port its command opens late, or never.
func (r *Runtime) waitListening(ctx context.Context) {
	type target struct {
		name, nsPath string
		ports        []uint16
	}
	var targets []target
	add := func(name, nsPath string, ports []podspec.Port) {
		var tcp []uint16
		for _, p := range ports {
			if p.Protocol == "" || p.Protocol == "TCP" {
				tcp = append(tcp, p.Port)
			}
		}
		if len(tcp) > 0 {
			targets = append(targets, target{name, nsPath, tcp})
		}
	}
	for _, pp := range r.plan.Pods {
		add(pp.Spec.Name, podNetnsPath(r.nw.podName(pp.Spec.Name)), pp.Spec.Ports)
	}
	r.mu.Lock()
	for i, xp := range r.plan.Externals {
		if i < len(r.state.Externals) {
			add(xp.Spec.Name, r.state.Externals[i].Netns, xp.Spec.Ports)
		}
	}
	r.mu.Unlock()

	deadline := time.Now().Add(listenWait)
	for _, t := range targets {
		ns, err := netns.Open(t.nsPath)
		if err != nil {
			r.opts.Progress("pod %s: cannot check its ports: %v", t.name, err)
			continue
		}
		for {
			missing, err := notListening(ns, t.ports)
			if err == nil && len(missing) == 0 {
				break
			}
			if err != nil {
				missing = t.ports
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				r.opts.Progress("pod %s: not listening on %v after %s (reported ready anyway)", t.name, missing, listenWait)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		ns.Close()
	}
}

// notListening returns the ports among ports that no TCP socket in ns
// listens on, read from the kernel's socket table as seen from inside it.
func notListening(ns *netns.NS, ports []uint16) ([]uint16, error) {
	listening := map[uint16]bool{}
	err := netns.Do(ns, func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			if err := listeningPorts(f, listening); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var missing []uint16
	for _, p := range ports {
		if !listening[p] {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// listeningPorts adds the local ports of sockets in state LISTEN (0A) of a
// /proc/net/tcp{,6} table.
func listeningPorts(path string, into map[uint16]bool) error {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil // no IPv6
		}
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" {
			continue
		}
		_, port, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(port, 16, 16)
		if err != nil {
			return fmt.Errorf("%s: local address %q", path, fields[1])
		}
		into[uint16(n)] = true
	}
	return sc.Err()
}
