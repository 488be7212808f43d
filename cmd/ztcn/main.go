// Command ztcn is zero-trust networking for containers: the node agent, the
// local runtime, the policy CI gate and the operator tools, in one binary.
//
// This package only parses flags, prints and chooses exit codes; every
// behaviour lives in a package under internal/ with its own tests.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the CLI and returns the process exit code: 0 on success,
// 1 on any error (printed once to stderr as "ztcn: …").
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		var code exitCode
		if errors.As(err, &code) {
			return int(code)
		}
		if err != errSilent {
			fmt.Fprintf(stderr, "ztcn: %v\n", err)
		}
		return 1
	}
	return 0
}

// exitCode is an error that only carries the exit code to return, for a
// command whose own output already told what happened (`ztcn exec` passes
// on the exit code of the command it ran).
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit code %d", int(c)) }

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "ztcn",
		Short: "Zero-trust container networking: SPIFFE identities, transparent mTLS and default-deny policy inside the container runtime",
		Long: `ztcn puts zero-trust networking inside the container runtime: every workload
gets a short-lived SPIFFE X.509-SVID from a node-local CA, and every
pod-to-pod connection is intercepted inside the pod's network namespace,
carried over mutual TLS and allowed only by policy.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newVersionCommand(),
		newConfigCommand(),
		newAgentCommand(),
		newCACommand(),
		newSVIDCommand(),
		newPolicyCommand(),
		newCheckCommand(),
		newStatusCommand(),
		newFlowsCommand(),
		newUpCommand(),
		newDownCommand(),
		newExecCommand(),
		newLogsCommand(),
		newDemoCommand(),
		newPodExecCommand(),
		newAuditCommand(),
		newOCIHookCommand(),
		newNRICommand(),
	)
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the ztcn version and the Go version it was built with",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "ztcn %s\ngo %s %s/%s\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}
