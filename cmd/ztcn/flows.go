package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/runtime/local"
	"github.com/ztcn/ztcn/internal/telemetry"
)

func newFlowsCommand() *cobra.Command {
	var (
		configPath, socket, output, run string
		filter                          telemetry.FlowFilter
		follow                          bool
	)
	cmd := &cobra.Command{
		Use:   "flows [--pod POD] [--namespace NS] [--verdict allow|deny] [--follow] [-o text|json]",
		Short: "Show recent and open flows: who called whom, verdict and why, bytes, duration",
		Long: `Show the agent's flow table: open connections and the most recent finished
or refused ones, each with its source and destination identity, port, verdict,
the deciding rule (file:line) or the reason no rule allowed it, bytes and
duration. --follow streams new flows until Ctrl-C. -o json prints one JSON
object per line (the input of 'ztcn policy suggest').

While a 'ztcn up' run is up (and neither --config nor --socket is given), the
flows of all its nodes are shown.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("unknown output format %q (want text or json)", output)
			}
			if v := filter.Verdict; v != "" && v != telemetry.VerdictAllow && v != telemetry.VerdictDeny {
				return fmt.Errorf("--verdict %q: want allow or deny", v)
			}
			sockets, err := agentSockets(configPath, socket, run)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			w := cmd.OutOrStdout()
			if follow {
				return followFlows(ctx, w, sockets, filter, output)
			}
			var flows []telemetry.Flow
			for _, s := range sockets {
				qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				fl, err := control.NewClient(s).Flows(qctx, filter)
				cancel()
				if err != nil {
					return err
				}
				flows = append(flows, fl...)
			}
			sort.SliceStable(flows, func(i, j int) bool { return flows[i].Start.Before(flows[j].Start) })
			if output == "json" {
				enc := json.NewEncoder(w)
				for _, f := range flows {
					if err := enc.Encode(f); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tVERDICT\tDIRECTION\tSOURCE\tDESTINATION\tPORT\tBYTES (out/in)\tDURATION\tWHY")
			for _, f := range flows {
				fmt.Fprintln(tw, flowRow(f))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&filter.Pod, "pod", "", "only flows from or to this pod (NAME or NAMESPACE/NAME)")
	cmd.Flags().StringVar(&filter.Namespace, "namespace", "", "only flows from or to this namespace")
	cmd.Flags().StringVar(&filter.Verdict, "verdict", "", "only allowed (allow) or denied (deny) flows")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "stream new flows until Ctrl-C")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (one flow per line)")
	cmd.Flags().StringVar(&configPath, "config", "", "runtime.toml whose agent.control_socket to ask")
	cmd.Flags().StringVar(&socket, "socket", "", "the agent's control socket (overrides --config)")
	cmd.Flags().StringVar(&run, "run", local.DefaultRun, "the 'ztcn up' run to ask, if one is up")
	return cmd
}

// agentSockets are the control sockets to ask: --socket, --config's, every
// node of a 'ztcn up' run, or the default agent's.
func agentSockets(configPath, socket, run string) ([]string, error) {
	if socket != "" {
		return []string{socket}, nil
	}
	if configPath == "" {
		if st, err := local.LoadState(run); err == nil {
			var out []string
			for _, n := range st.Nodes {
				out = append(out, n.ControlSocket)
			}
			return out, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	cfg, err := loadConfig(configPath)
	if err != nil {
		return nil, err
	}
	return []string{cfg.Agent.ControlSocket}, nil
}

func followFlows(ctx context.Context, w io.Writer, sockets []string, filter telemetry.FlowFilter, output string) error {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	print := func(f telemetry.Flow) {
		mu.Lock()
		defer mu.Unlock()
		if output == "json" {
			_ = enc.Encode(f)
			return
		}
		fmt.Fprintln(w, strings.ReplaceAll(flowRow(f), "\t", "  "))
	}
	errs := make(chan error, len(sockets))
	for _, s := range sockets {
		go func() { errs <- control.NewClient(s).FollowFlows(ctx, filter, print) }()
	}
	var first error
	for range sockets {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// flowRow is one flow as tab-separated columns.
func flowRow(f telemetry.Flow) string {
	verdict := strings.ToUpper(f.Verdict)
	switch {
	case f.End.IsZero():
		verdict += " (open)"
	case f.Verdict == telemetry.VerdictDeny && !f.Enforced:
		verdict = "AUDIT-DENY"
	}
	if f.StagedVerdict != "" {
		verdict += ", staged: " + f.StagedVerdict
	}
	why := f.Reason
	if f.Rule != "" {
		why = f.Rule
	}
	if f.Verdict == telemetry.VerdictAllow && f.Rule == "" && f.Reason == "allowed" {
		why = ""
	}
	if f.StagedRule != "" {
		why = strings.TrimSpace(why + " [staged: " + f.StagedRule + "]")
	}
	if f.Error != "" && f.Kind != "flow_closed" {
		why = strings.TrimSpace(why + " (" + f.Kind + ": " + f.Error + ")")
	}
	dur := "-"
	if f.Duration > 0 {
		dur = f.Duration.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%d/%s\t%d/%d\t%s\t%s", f.Start.Format("15:04:05"), verdict, f.Direction,
		peerText(f.Source), peerText(f.Dest), f.Dest.Port, f.Protocol, f.BytesOut, f.BytesIn, dur, why)
}

func peerText(p telemetry.Peer) string {
	if p.Name != "" {
		return fmt.Sprintf("%s/%s (%s)", p.Namespace, p.Name, p.IP)
	}
	if p.IP.IsValid() {
		return p.IP.String()
	}
	return "?"
}
