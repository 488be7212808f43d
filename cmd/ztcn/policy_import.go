package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newPolicyImportCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE...",
		Short: "Translate Kubernetes NetworkPolicies into the native schema where the meaning is kept exactly",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(*cobra.Command, []string) error {
			return errors.New("not yet available")
		},
	}
}
