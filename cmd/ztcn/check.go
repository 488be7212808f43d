package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/internal/policy"
	"github.com/ztcn/ztcn/internal/preflight"
)

func newCheckCommand() *cobra.Command {
	var (
		opts      preflight.Options
		isolation string
		output    string
	)
	cmd := &cobra.Command{
		Use:   "check [--config runtime.toml] [--policy PATH]... [--tests FILE]...",
		Short: "The zero-trust network test for CI: config valid, policy lints clean (strict), CA and bundles valid for --min-validity, policy tests pass",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if isolation != "" {
				m, err := policy.ParseIsolationMode(isolation)
				if err != nil {
					return fmt.Errorf("--isolation: %w", err)
				}
				opts.Isolation = m
			}
			results := preflight.Run(opts)
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(map[string]any{"passed": preflight.Passed(results), "checks": results}); err != nil {
					return err
				}
			} else {
				for _, r := range results {
					status := "ok  "
					switch {
					case r.Skipped:
						status = "skip"
					case !r.OK:
						status = "FAIL"
					}
					fmt.Fprintf(out, "%s %s", status, r.Name)
					if r.Detail != "" {
						fmt.Fprintf(out, " (%s)", r.Detail)
					}
					fmt.Fprintln(out)
					for _, p := range r.Problems {
						fmt.Fprintf(out, "     %s\n", p)
					}
				}
			}
			if !preflight.Passed(results) {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.ConfigPath, "config", "", "runtime.toml (default: built-in defaults)")
	cmd.Flags().StringArrayVar(&opts.PolicyPaths, "policy", nil, "policy file or directory (repeatable; default: policy.config_path)")
	cmd.Flags().StringArrayVar(&opts.TestFiles, "tests", nil, "policy test file that must pass (repeatable)")
	cmd.Flags().StringVar(&isolation, "isolation", "", "override policy.isolation: all or selected")
	cmd.Flags().DurationVar(&opts.MinValidity, "min-validity", 30*24*time.Hour, "CA and bundle certificates must stay valid at least this long")
	cmd.Flags().BoolVar(&opts.SkipCA, "skip-ca", false, "skip the CA and bundle checks (for repositories without CA material)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
