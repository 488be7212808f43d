package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/runtime/oci"
	"github.com/ztcn/ztcn/internal/runtime/podnet"
)

func newOCIHookCommand() *cobra.Command {
	var configPath string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "oci-hook [createRuntime|poststop] [--config runtime.toml]",
		Short: "OCI runtime hook (runc, crun, podman, CRI-O): secure a container at createRuntime, release it at poststop",
		Long: `Run by the container runtime with the container state on stdin.

At createRuntime it enters the container's network namespace, gives it a veth
to the node bridge (network.bridge) and an address from network.pod_cidr if
it has no network of its own, and registers it with the agent. It returns
only once the container's SVID is issued and its traffic is redirected; on
any failure it undoes its work and exits 1, and the runtime refuses to start
the container.

At poststop it deregisters the container (the agent revokes its SVID) and
removes its veth and address.

Without a stage argument the stage is taken from the state's status
("creating" is createRuntime, "stopped" poststop). Identity comes from the
annotations ztcn.io/namespace, ztcn.io/name, ztcn.io/service-account,
ztcn.io/labels ("app=web,tier=frontend") and ztcn.io/ports ("http=8080").
deploy/oci/ holds hooks.d files for podman and CRI-O.`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{string(oci.StageCreateRuntime), string(oci.StagePoststop)},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			st, err := oci.ReadState(cmd.InOrStdin())
			if err != nil {
				return err
			}
			stage, err := oci.StageOf(st)
			if len(args) == 1 {
				stage, err = oci.Stage(args[0]), nil
			}
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			hook := &oci.Hook{
				Control: control.NewClient(cfg.Agent.ControlSocket),
				Network: &podnet.Attacher{Network: cfg.Network, StateDir: cfg.Agent.StateDir},
			}
			out := cmd.ErrOrStderr()
			switch stage {
			case oci.StageCreateRuntime:
				res, err := hook.CreateRuntime(ctx, st)
				if err != nil {
					return err
				}
				if res.Skipped != "" {
					fmt.Fprintf(out, "ztcn: container %s left alone: %s\n", st.ID, res.Skipped)
					return nil
				}
				fmt.Fprintf(out, "ztcn: container %s secured as %s (%v)\n", st.ID, res.Pod.SPIFFEID, res.Pod.IPs)
				return nil
			case oci.StagePoststop:
				return hook.Poststop(ctx, st)
			}
			return fmt.Errorf("unknown stage %q: want createRuntime or poststop", stage)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "runtime.toml: agent.control_socket, agent.state_dir and [network] (default: built-in defaults)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up (and fail the container) after this long")
	return cmd
}
