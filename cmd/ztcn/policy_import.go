package main

import (
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/internal/policy"
)

func newPolicyImportCommand() *cobra.Command {
	var (
		podCIDRs []string
		strict   bool
	)
	cmd := &cobra.Command{
		Use:   "import FILE...",
		Short: "Translate Kubernetes NetworkPolicies into the native schema where the meaning is kept exactly; say what cannot be translated",
		Long: `Translate Kubernetes NetworkPolicies into the native schema.

The native policy is written to stdout. Only what keeps its meaning exactly
(under isolation "all") is translated; every part left out is reported on
stderr as "file:line: note: …" with the reason. A note marked "dropped" means
the output allows less than the input. With --strict, any dropped part makes
the command fail.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []policy.ImportOption
			for _, c := range podCIDRs {
				p, err := netip.ParsePrefix(c)
				if err != nil {
					return fmt.Errorf("--pod-cidr %q: %w", c, err)
				}
				opts = append(opts, policy.WithPodCIDRs(p))
			}
			native, notes, diags := policy.Import(args, opts...)
			stderr := cmd.ErrOrStderr()
			for _, d := range diags {
				fmt.Fprintln(stderr, d)
			}
			if diags.HasErrors() {
				return errSilent
			}
			dropped := 0
			for _, n := range notes {
				kind := "note"
				if n.Dropped {
					kind = "dropped"
					dropped++
				}
				fmt.Fprintf(stderr, "%s: %s: %s: %s\n", n.Pos, kind, n.Policy, n.Message)
			}
			if _, err := cmd.OutOrStdout().Write(native); err != nil {
				return err
			}
			if strict && dropped > 0 {
				return fmt.Errorf("%d parts could not be translated exactly", dropped)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&podCIDRs, "pod-cidr", nil, "the cluster's pod address range (repeatable): an ipBlock outside it holds no pod and translates exactly")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail if any part cannot be translated exactly")
	return cmd
}
