package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/kube"
	"github.com/ztcn/ztcn/internal/runtime/nri"
	"github.com/ztcn/ztcn/internal/runtime/podnet"
)

func newNRICommand() *cobra.Command {
	var configPath, nodeName string
	var k8s kubeFlags
	opts := nri.Options{}
	cmd := &cobra.Command{
		Use:   "nri [--config runtime.toml] [--socket /var/run/nri/nri.sock]",
		Short: "Run as an NRI plugin of containerd or CRI-O: secure every pod sandbox before its containers start",
		Long: `Connect to the container runtime's NRI socket and register every pod sandbox
with the agent (agent.control_socket) at RunPodSandbox: the runtime starts
the pod's containers only once its SVID is issued and its traffic is
redirected, and fails the sandbox if the agent cannot secure it.
StopPodSandbox and RemovePodSandbox revoke and detach. On (re)connection
the runtime's Synchronize registers pods that started meanwhile and removes
those that went. A pod without addresses (no CNI plugin) gets a veth to
network.bridge and an address from network.pod_cidr.

The plugin reconnects when the runtime restarts. docs/runtimes.md shows
the containerd configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p := &nri.Plugin{
				Control: control.NewClient(cfg.Agent.ControlSocket),
				Network: &podnet.Attacher{Network: cfg.Network, StateDir: cfg.Agent.StateDir},
				Log:     log,
			}
			client, err := k8s.client()
			if err != nil {
				return err
			}
			if client != nil {
				if err := cfg.ResolveNodeName(); err != nil {
					return err
				}
				node := nodeNameFrom(nodeName, cfg.Agent.NodeName)
				pods, err := kube.WatchPods(ctx, client, node, informerSyncTimeout)
				if err != nil {
					return err
				}
				p.Metadata = pods
				log.Info("pod service accounts and labels come from the Kubernetes API", "node", node)
			}
			return p.Run(ctx, opts)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "runtime.toml: agent.control_socket, agent.state_dir and [network] (default: built-in defaults)")
	cmd.Flags().StringVar(&opts.Socket, "socket", "/var/run/nri/nri.sock", "the runtime's NRI socket")
	cmd.Flags().StringVar(&opts.Name, "plugin-name", "ztcn", "plugin name (as a required-plugins list names it)")
	cmd.Flags().StringVar(&opts.Index, "plugin-index", "10", "plugin index: the runtime calls plugins in index order")
	cmd.Flags().StringVar(&nodeName, "node-name", "", "this node's name in the cluster (default: $NODE_NAME, else agent.node_name, else the hostname)")
	k8s.register(cmd, "read each pod's service account and labels from the Kubernetes API")
	return cmd
}
