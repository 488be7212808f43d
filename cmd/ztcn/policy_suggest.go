package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/internal/config"
	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/suggest"
	"github.com/ztcn/ztcn/internal/telemetry"
)

func newPolicySuggestCommand() *cobra.Command {
	var (
		from          []string
		agent         bool
		socket        string
		namespace     string
		includeDenied bool
		output        string
	)
	cmd := &cobra.Command{
		Use:   "suggest [--from FILE]... [--agent [--socket PATH]] [--namespace NS] [--include-denied] [-o yaml|json]",
		Short: "Propose the least-privilege native policy that allows exactly the observed flows",
		Long: `Propose the least-privilege native policy that allows exactly the observed flows.

Flows come from files (--from, repeatable, - for stdin): JSON lines of flows
as 'ztcn flows -o json' prints them, a JSON array of them, or the agent's
audit log (ECS JSON lines; events that are not flows are ignored); and/or
from the running agent's flow table (--agent).

Evidence is every flow policy decided, from a workload or an outside address
to a workload or an outside address, that was allowed or let through although
denied (audit mode: the would-be denials are what the policy is missing).
Denials that were enforced (strict mode) may be unwanted traffic: they count
only with --include-denied. The audit log records violations only: what it
suggests is what the policy in force is missing, to be added to it.

The policy is written to stdout: loaded with isolation "all", it allows every
evidence flow and, between the observed workloads and addresses, nothing else.
Workloads are named by the shortest selector that tells them from every other
observed workload (app:, then ns: and a label, then sa:, then the SPIFFE ID);
outside addresses are listed as /32 in networks observed-1, …; consecutive
ports are merged into ranges. Each rule's comment says its evidence.
Warnings and the summary "N flows from M workloads → K rules" go to stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "yaml" && output != "json" {
				return fmt.Errorf("unknown output format %q (want yaml or json)", output)
			}
			if len(from) == 0 && !agent {
				return errors.New("no flows given: use --from FILE (repeatable; - for stdin) or --agent")
			}
			var obs suggest.Observed
			for _, path := range from {
				if err := readFlowFile(cmd.InOrStdin(), path, &obs); err != nil {
					return err
				}
			}
			if agent {
				ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
				defer cancel()
				if err := readAgentFlows(ctx, socket, &obs); err != nil {
					return err
				}
			}
			var opts []suggest.Option
			if includeDenied {
				opts = append(opts, suggest.WithDenied())
			}
			if namespace != "" {
				opts = append(opts, suggest.InNamespace(namespace))
			}
			sg, err := suggest.Suggest(obs.Flows, opts...)
			if err != nil {
				return err
			}
			doc := sg.YAML
			if output == "json" {
				doc = sg.JSON
			}
			if _, err := cmd.OutOrStdout().Write(doc); err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			for _, w := range sg.Warnings {
				fmt.Fprintf(stderr, "warning: %s\n", w)
			}
			if s := notEvidence(sg.Skipped, obs.Ignored); s != "" {
				fmt.Fprintf(stderr, "not evidence: %s\n", s)
			}
			fmt.Fprintln(stderr, sg.Summary())
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&from, "from", nil, "file of flows or audit log lines (repeatable; - for stdin)")
	cmd.Flags().BoolVar(&agent, "agent", false, "read the flow table of the running agent")
	cmd.Flags().StringVar(&socket, "socket", config.Default().Agent.ControlSocket, "the agent's control socket, for --agent")
	cmd.Flags().StringVar(&namespace, "namespace", "", "only flows with a workload of this namespace on either side")
	cmd.Flags().BoolVar(&includeDenied, "include-denied", false, "also take denials that were enforced (strict mode) as evidence")
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	return cmd
}

// readFlowFile reads one --from argument; "-" is stdin.
func readFlowFile(stdin io.Reader, path string, obs *suggest.Observed) error {
	if path == "-" {
		return obs.Read("stdin", stdin)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return obs.Read(path, f)
}

// maxAgentFlows bounds the answer read from the agent: its flow table is
// bounded (a few thousand flows of a few hundred bytes), so anything this
// large is not a flow table.
// readAgentFlows asks the agent at socket for its flow table. The
// namespace filter is not passed on: every observed workload is needed to
// check that a selector matches no other.
func readAgentFlows(ctx context.Context, socket string, obs *suggest.Observed) error {
	flows, err := control.NewClient(socket).Flows(ctx, telemetry.FlowFilter{})
	if err != nil {
		return err
	}
	obs.Add(flows...)
	return nil
}

// notEvidence says what was read but not used, e.g. "1 denied and
// enforced (…); 2 audit events that are not flows".
func notEvidence(skipped map[string]int, ignored int) string {
	reasons := make([]string, 0, len(skipped))
	for reason := range skipped {
		reasons = append(reasons, reason)
	}
	sort.Strings(reasons)
	var parts []string
	for _, reason := range reasons {
		text := reason
		if reason == suggest.SkipDenied {
			text = "denied and enforced (strict mode; --include-denied uses them)"
		}
		parts = append(parts, fmt.Sprintf("%d %s", skipped[reason], text))
	}
	if ignored > 0 {
		parts = append(parts, fmt.Sprintf("%d audit events that are not flows", ignored))
	}
	return strings.Join(parts, "; ")
}
