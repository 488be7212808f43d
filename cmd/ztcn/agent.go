package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/internal/agent"
	"github.com/ztcn/ztcn/internal/kube"
)

func newAgentCommand() *cobra.Command {
	var (
		configPath, adminAddress string
		dev, dataPlane           bool
		k8s                      kubeFlags
	)
	cmd := &cobra.Command{
		Use:   "agent [--config runtime.toml] [--dev]",
		Short: "Run the node agent: workload identities, Workload API, data plane, control API, admin endpoint",
		Long: `Run the node agent until SIGINT or SIGTERM.

With --dev everything lives in memory: a fresh root CA is generated at start
and no file is needed. Without it the CA is loaded from identity.ca_path: a
root (root.crt, root.key) from which the agent makes its own node
intermediate, or a node CA from 'ztcn ca issue-node'.

Pods are registered over the control socket (agent.control_socket) by a
runtime adapter; each gets its SVID and, with the data plane on (the
default), its in-pod redirection before the registration returns. Attached
pods are recorded in agent.state_dir: when the agent stops or dies their
traffic is refused (fail closed), and a restarted agent re-attaches them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			if adminAddress != "" {
				cfg.Telemetry.AdminAddress = adminAddress
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opts := agent.Options{Config: cfg, Dev: dev, Logger: log, DataPlane: dataPlane}
			client, err := k8s.client()
			if err != nil {
				return err
			}
			if client != nil {
				nps, err := kube.WatchNetworkPolicies(ctx, client, informerSyncTimeout)
				if err != nil {
					return err
				}
				opts.PolicySources = append(opts.PolicySources, agent.PolicySource{Name: "kubernetes:networkpolicies", Source: nps})
				log.Info("NetworkPolicies from the Kubernetes API join the policy", "count", len(nps.Documents()))
			}
			a, err := agent.New(opts)
			if err != nil {
				return err
			}
			// ZTCN_CPUPROFILE=file profiles the agent until it stops: for
			// performance work on a live node, not for production.
			if path := os.Getenv("ZTCN_CPUPROFILE"); path != "" {
				f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid()))
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			return a.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "runtime.toml (default: built-in defaults)")
	cmd.Flags().BoolVar(&dev, "dev", false, "development mode: in-memory root CA, no files needed")
	cmd.Flags().BoolVar(&dataPlane, "dataplane", true, "intercept and secure the registered pods' traffic (false: issue identities only)")
	cmd.Flags().StringVar(&adminAddress, "admin-address", "", "override telemetry.admin_address (host:port)")
	k8s.register(cmd, "add the cluster's NetworkPolicy objects to the policy, following their changes")
	return cmd
}
