package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// stunnelPair runs stunnel4 as a client in one pod and a server in the
// other, mutual TLS 1.3 with the same certificates as the other paths.
type stunnelPair struct {
	cmds []*exec.Cmd
}

func stunnelBinary() string {
	for _, name := range []string{"stunnel4", "stunnel"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startStunnel maps 127.0.0.1:clientPorts[i] in the client pod to
// serverIP:tlsPorts[i] to 127.0.0.1:appPorts[i] in the server pod. pki
// holds client/ and server/ with svid.crt, svid.key and bundle.crt.
func startStunnel(bin, dir, clientNS, serverNS, serverIP string, clientPorts, tlsPorts, appPorts []int) (*stunnelPair, error) {
	common := "foreground = yes\npid =\nsyslog = no\noutput = %s\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n"
	var server, client strings.Builder
	fmt.Fprintf(&server, common, filepath.Join(dir, "server.log"))
	fmt.Fprintf(&client, common, filepath.Join(dir, "client.log"))
	tlsOpts := func(b *strings.Builder, side string) {
		fmt.Fprintf(b, "cert = %s\nkey = %s\nCAfile = %s\nverifyChain = yes\nsslVersionMin = TLSv1.3\n",
			filepath.Join(dir, side, "svid.crt"), filepath.Join(dir, side, "svid.key"), filepath.Join(dir, side, "bundle.crt"))
	}
	for i := range clientPorts {
		fmt.Fprintf(&server, "[s%d]\naccept = %s:%d\nconnect = 127.0.0.1:%d\n", i, serverIP, tlsPorts[i], appPorts[i])
		tlsOpts(&server, "server")
		fmt.Fprintf(&client, "[c%d]\nclient = yes\naccept = 127.0.0.1:%d\nconnect = %s:%d\n", i, clientPorts[i], serverIP, tlsPorts[i])
		tlsOpts(&client, "client")
	}
	p := &stunnelPair{}
	for _, c := range []struct{ ns, name, conf string }{{serverNS, "server.conf", server.String()}, {clientNS, "client.conf", client.String()}} {
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, []byte(c.conf), 0o600); err != nil {
			return nil, err
		}
		cmd := exec.Command("ip", "netns", "exec", c.ns, bin, path)
		if err := cmd.Start(); err != nil {
			p.close()
			return nil, err
		}
		p.cmds = append(p.cmds, cmd)
	}
	time.Sleep(300 * time.Millisecond) // stunnel has no readiness signal; it binds at once
	return p, nil
}

// cpu is the CPU time the stunnel processes (and their children) used.
func (p *stunnelPair) cpu() time.Duration {
	var total time.Duration
	for _, c := range p.cmds {
		total += processCPU(c.Process.Pid)
		// ip netns exec execs stunnel in place: same pid. Children (none
		// with foreground = yes) would not be counted.
	}
	return total
}

func (p *stunnelPair) close() {
	for _, c := range p.cmds {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
}

// processCPU reads utime+stime of pid from /proc (clock ticks of 10 ms).
func processCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
