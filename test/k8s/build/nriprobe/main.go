// Command nriprobe is a minimal NRI plugin for test/k8s. It writes one line per
// pod and container lifecycle event it sees, and can add environment variables
// to every container it is asked to create. It proves that a runtime's NRI is
// enabled and reachable, both as an external plugin (connecting to the NRI
// socket) and as a plugin containerd launches from its plugin_path.
//
//	nriprobe [-socket PATH] [-name NAME] [-idx NN] [-log FILE] [-env K=V]...
//
// Launched by containerd (plugin_path/NN-NAME), it gets no arguments and no
// output: its settings come from plugin_config_path/NN-NAME.conf, one
// "log=FILE" or "env=K=V" per line.
//
// Event lines: "RunPodSandbox NAMESPACE/POD", "CreateContainer NAMESPACE/POD/CONTAINER", ...
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type probe struct {
	mu  sync.Mutex
	out io.Writer
	env [][2]string
}

func (p *probe) logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, format+"\n", args...)
}

// set applies one "key=value" setting (a flag or a configuration line).
func (p *probe) set(key, value string) error {
	switch key {
	case "log":
		f, err := os.OpenFile(value, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		p.mu.Lock()
		p.out = f
		p.mu.Unlock()
	case "env":
		k, v, ok := strings.Cut(value, "=")
		if !ok || k == "" {
			return fmt.Errorf("env %q: want KEY=VALUE", value)
		}
		p.env = append(p.env, [2]string{k, v})
	default:
		return fmt.Errorf("unknown setting %q", key)
	}
	return nil
}

func (p *probe) Configure(_ context.Context, config, runtime, version string) (api.EventMask, error) {
	for _, line := range strings.Split(config, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		if err := p.set(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
			return 0, err
		}
	}
	p.logf("Configure %s %s", runtime, version)
	return 0, nil // every event this plugin implements
}

func (p *probe) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.logf("Synchronize pods=%d containers=%d", len(pods), len(ctrs))
	return nil, nil
}

func podName(pod *api.PodSandbox) string { return pod.GetNamespace() + "/" + pod.GetName() }

func (p *probe) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.logf("RunPodSandbox %s", podName(pod))
	return nil
}

func (p *probe) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.logf("StopPodSandbox %s", podName(pod))
	return nil
}

func (p *probe) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.logf("RemovePodSandbox %s", podName(pod))
	return nil
}

func (p *probe) CreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.logf("CreateContainer %s/%s", podName(pod), ctr.GetName())
	adjust := &api.ContainerAdjustment{}
	for _, kv := range p.env {
		adjust.AddEnv(kv[0], kv[1])
	}
	return adjust, nil, nil
}

func (p *probe) StartContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.logf("StartContainer %s/%s", podName(pod), ctr.GetName())
	return nil
}

func (p *probe) StopContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) ([]*api.ContainerUpdate, error) {
	p.logf("StopContainer %s/%s", podName(pod), ctr.GetName())
	return nil, nil
}

func (p *probe) RemoveContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.logf("RemoveContainer %s/%s", podName(pod), ctr.GetName())
	return nil
}

type envFlag struct{ p *probe }

func (e envFlag) String() string     { return "" }
func (e envFlag) Set(v string) error { return e.p.set("env", v) }

func main() {
	p := &probe{out: os.Stdout}
	socket := flag.String("socket", "", "NRI socket of an external plugin (default: the runtime's, /var/run/nri/nri.sock)")
	name := flag.String("name", "", "plugin name (default: from the runtime, or nriprobe)")
	idx := flag.String("idx", "", "plugin index, two digits (default: from the runtime, or 50)")
	logFile := flag.String("log", "", "append event lines to FILE instead of stdout")
	flag.Var(envFlag{p}, "env", "KEY=VALUE to add to every created container (repeatable)")
	flag.Parse()
	if *logFile != "" {
		if err := p.set("log", *logFile); err != nil {
			fail(err)
		}
	}

	// Launched by the runtime, the stub takes name, index and connection from
	// the environment; only an external plugin needs them from us.
	var opts []stub.Option
	if os.Getenv(api.PluginSocketEnvVar) == "" {
		if *name == "" {
			*name = "nriprobe"
		}
		if *idx == "" {
			*idx = "50"
		}
		if *socket != "" {
			opts = append(opts, stub.WithSocketPath(*socket))
		}
	}
	if *name != "" {
		opts = append(opts, stub.WithPluginName(*name))
	}
	if *idx != "" {
		opts = append(opts, stub.WithPluginIdx(*idx))
	}
	s, err := stub.New(p, append(opts, stub.WithOnClose(func() { p.logf("Closed"); os.Exit(0) }))...)
	if err != nil {
		fail(err)
	}
	if err := s.Run(context.Background()); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "nriprobe:", err)
	os.Exit(1)
}
