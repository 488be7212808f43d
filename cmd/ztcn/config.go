package main

import (
	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/internal/config"
)

func newConfigCommand() *cobra.Command {
	cfg := &cobra.Command{
		Use:   "config",
		Short: "Validate runtime.toml",
	}
	cfg.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Print the effective configuration of FILE (every default filled in), or its errors with file:line:col (exit 1)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := config.Load(args[0])
			if err != nil {
				return err
			}
			out, err := c.TOML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	})
	return cfg
}

// loadConfig reads runtime.toml at path, or returns the built-in defaults
// when path is empty (the commands' --config flag).
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}
