package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/internal/telemetry"
)

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Work with the agent's tamper-evident audit log",
	}
	cmd.AddCommand(newAuditVerifyCommand())
	return cmd
}

func newAuditVerifyCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "verify FILE...",
		Short: "Check the audit log's hash chain; give rotated files oldest first: audit.log.2 audit.log.1 audit.log",
		Long: `Check the audit log's hash chain: every line is an audit event, seq goes up
by one, and each line's ztcn.chain.prev is the SHA-256 of the line before.
Prints the first line that was altered, removed or reordered, and exits 1.

Files must be given oldest first. Given only the newest files, the link of
the first one to older events cannot be checked: that is a warning.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %s: want text or json", output)
			}
			report, err := telemetry.VerifyAudit(files...)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return err
				}
			} else {
				for _, w := range report.Warnings {
					fmt.Fprintf(out, "warning: %s\n", w)
				}
				switch {
				case report.Problem != nil:
					fmt.Fprintf(out, "FAIL: %s\n", report.Problem)
				case report.Events == 0:
					fmt.Fprintln(out, "OK: 0 events")
				default:
					fmt.Fprintf(out, "OK: %d events, seq %d–%d, chain intact\n", report.Events, report.FirstSeq, report.LastSeq)
				}
			}
			if !report.OK() {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
