package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/runtime/local"
)

func newStatusCommand() *cobra.Command {
	var configPath, socket, output, run string
	cmd := &cobra.Command{
		Use:   "status [--config runtime.toml | --socket PATH | --run NAME] [-o text|json]",
		Short: "Show the running agent: pods, identities, certificate expiry, policy, redirection health",
		Long: `Ask the running agent, over its control socket (agent.control_socket), for
its state: every pod with its SPIFFE ID, certificate expiry and the health of
its in-pod redirection (healthy, drifted, failed), the policy version in force
and the data plane's event counters. Exits 1 if the agent cannot be reached
or any pod's redirection is not healthy.

While a 'ztcn up' run is up (and neither --config nor --socket is given),
it reports the run instead: every node's agent, every pod with its node,
identity and process, and the recent verdicts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("unknown output format %q (want text or json)", output)
			}
			if socket == "" && configPath == "" {
				if rs, err := local.Status(cmd.Context(), run); err == nil {
					return printRunStatus(cmd.OutOrStdout(), rs, output)
				} else if !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			if socket == "" {
				cfg, err := loadConfig(configPath)
				if err != nil {
					return err
				}
				socket = cfg.Agent.ControlSocket
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			st, err := control.NewClient(socket).Status(ctx)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else {
				printStatus(cmd.OutOrStdout(), st, time.Now())
			}
			if !healthy(st) {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "runtime.toml whose agent.control_socket to ask (default: built-in defaults)")
	cmd.Flags().StringVar(&socket, "socket", "", "the agent's control socket (overrides --config)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&run, "run", local.DefaultRun, "the 'ztcn up' run to report, if one is up")
	return cmd
}

func printRunStatus(w io.Writer, rs *local.RunStatus, output string) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rs); err != nil {
			return err
		}
	} else {
		renderRun(w, rs, time.Now())
	}
	if !rs.Healthy() {
		return errSilent
	}
	return nil
}

// healthy: the agent is ready and every attached pod is redirected.
func healthy(st control.Status) bool {
	if !st.Ready {
		return false
	}
	for _, p := range st.Pods {
		if s := p.Redirection.State; s != control.RedirectionHealthy && s != control.RedirectionNotAttached {
			return false
		}
	}
	return true
}

func printStatus(w io.Writer, st control.Status, now time.Time) {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	dp := "on"
	if !st.DataPlane {
		dp = "off (identities only)"
	}
	fmt.Fprintf(w, "agent    %s on node %s, trust domain %s, mode %s, data plane %s\n", ready, st.Node, st.TrustDomain, st.Mode, dp)
	if st.AdminAddress != "" {
		fmt.Fprintf(w, "admin    http://%s (/healthz, /readyz, /metrics)\n", st.AdminAddress)
	}
	if st.AuditLog.Path != "" {
		fmt.Fprintf(w, "audit    %s: %d written", st.AuditLog.Path, st.AuditLog.Written)
		if lost := st.AuditLog.Dropped + st.AuditLog.Errors; lost > 0 {
			fmt.Fprintf(w, ", %d LOST (%s)", lost, st.AuditLog.LastError)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "policy   version %d, %d rules, loaded %s", st.Policy.Version, st.Policy.Rules, st.Policy.LoadedAt.Format(time.RFC3339))
	if len(st.Policy.Paths) > 0 {
		fmt.Fprintf(w, " from %s", strings.Join(st.Policy.Paths, ", "))
	}
	fmt.Fprintln(w)
	if st.Policy.LastError != "" {
		fmt.Fprintf(w, "         last reload FAILED (previous policy stays in force): %s\n", st.Policy.LastError)
	}
	if len(st.Events) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(st.Events)) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, st.Events[k]))
		}
		fmt.Fprintf(w, "events   %s\n", strings.Join(parts, " "))
	}
	fmt.Fprintln(w)
	if len(st.Pods) == 0 {
		fmt.Fprintln(w, "no pods")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tIP\tRUNTIME\tSPIFFE ID\tCERT EXPIRES\tREDIRECTION")
	for _, p := range st.Pods {
		ip := "-"
		if len(p.IPs) > 0 {
			ip = p.IPs[0].String()
		}
		expires := "-"
		if !p.CertNotAfter.IsZero() {
			expires = "in " + p.CertNotAfter.Sub(now).Round(time.Second).String()
		}
		redir := p.Redirection.State
		if p.Redirection.Repairs > 0 {
			redir += fmt.Sprintf(" (%d repairs)", p.Redirection.Repairs)
		}
		if p.Redirection.Error != "" {
			redir += ": " + p.Redirection.Error
		}
		runtime := p.Runtime
		if runtime == "" {
			runtime = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, ip, runtime, p.SPIFFEID, expires, redir)
	}
	tw.Flush()
}
