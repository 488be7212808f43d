package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/internal/config"
	"github.com/ztcn/ztcn/internal/policy"
)

// errSilent marks a failure whose details the command already printed: run
// exits 1 without printing it again.
var errSilent = errors.New("")

func newPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Lint, test, explain, import and suggest network policy: the CI gate",
	}
	cmd.AddCommand(newPolicyLintCommand(), newPolicyTestCommand(), newPolicyExplainCommand(), newPolicyMatrixCommand(), newPolicyImportCommand())
	cmd.AddCommand(newPolicySuggestCommand())
	return cmd
}

// policyInputs are the flags every policy command shares: which files,
// and which isolation mode (flag > test file > runtime.toml > "all").
type policyInputs struct {
	paths      []string
	isolation  string
	configPath string
}

func (in *policyInputs) register(cmd *cobra.Command, withPolicyFlag bool) {
	if withPolicyFlag {
		cmd.Flags().StringArrayVar(&in.paths, "policy", nil, "policy file or directory (repeatable; default: policy.config_path of --config)")
	}
	cmd.Flags().StringVar(&in.isolation, "isolation", "", "isolation mode: all (zero trust) or selected (Kubernetes semantics); overrides the test file and runtime.toml")
	cmd.Flags().StringVar(&in.configPath, "config", "", "runtime.toml to take policy.config_path and policy.isolation from")
}

// resolve returns the policy paths and isolation mode; fileMode is the
// test file's isolation, if any.
func (in *policyInputs) resolve(fileMode policy.IsolationMode) ([]string, policy.IsolationMode, error) {
	paths := in.paths
	mode := policy.IsolateAll
	if in.configPath != "" {
		cfg, err := config.Load(in.configPath)
		if err != nil {
			return nil, "", err
		}
		if len(paths) == 0 {
			paths = []string{cfg.Policy.ConfigPath}
		}
		mode = policy.IsolationMode(cfg.Policy.Isolation)
	}
	if fileMode != "" {
		mode = fileMode
	}
	if in.isolation != "" {
		m, err := policy.ParseIsolationMode(in.isolation)
		if err != nil {
			return nil, "", fmt.Errorf("--isolation: %w", err)
		}
		mode = m
	}
	if len(paths) == 0 {
		return nil, "", errors.New("no policy given: use --policy PATH or --config runtime.toml")
	}
	return paths, mode, nil
}

// load reads a test file and builds the policy in the isolation mode that
// applies to it.
func (in *policyInputs) load(stderr io.Writer, testFile string) (*policy.TestFile, *policy.Index, error) {
	tf, err := loadTestFile(stderr, testFile)
	if err != nil {
		return nil, nil, err
	}
	paths, mode, err := in.resolve(tf.Isolation)
	if err != nil {
		return nil, nil, err
	}
	ix, err := buildIndex(stderr, paths, mode)
	if err != nil {
		return nil, nil, err
	}
	return tf, ix, nil
}

// buildIndex loads and compiles a policy; errors are printed to w, one per
// line, and make the command fail.
func buildIndex(w io.Writer, paths []string, mode policy.IsolationMode) (*policy.Index, error) {
	ix, diags, err := policy.Build(mode, paths...)
	if diags.HasErrors() {
		for _, d := range diags {
			if d.Severity == policy.SeverityError {
				fmt.Fprintln(w, d)
			}
		}
		return nil, fmt.Errorf("policy has errors")
	}
	return ix, err
}

func newPolicyLintCommand() *cobra.Command {
	var (
		output string
		strict bool
	)
	cmd := &cobra.Command{
		Use:   "lint PATH...",
		Short: "Check policy files: errors and warnings as file:line:col: error|warning: message (exit 1 on errors, or on warnings with --strict)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			diags := policy.LintPaths(args...)
			errs, warns := 0, 0
			for _, d := range diags {
				if d.Severity == policy.SeverityError {
					errs++
				} else {
					warns++
				}
			}
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				if diags == nil {
					diags = policy.Diagnostics{}
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(map[string]any{"diagnostics": diags, "errors": errs, "warnings": warns}); err != nil {
					return err
				}
			case "text":
				for _, d := range diags {
					fmt.Fprintln(out, d)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d errors, %d warnings\n", errs, warns)
			default:
				return fmt.Errorf("unknown output format %q (want text or json)", output)
			}
			if errs > 0 || (strict && warns > 0) {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on warnings too")
	return cmd
}

func newPolicyTestCommand() *cobra.Command {
	var in policyInputs
	cmd := &cobra.Command{
		Use:   "test --policy PATH... TESTFILE...",
		Short: "Run expected allow/deny flows against a policy; prints each failure with its explanation and ends with \"N passed, M failed\"",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			passed, failed := 0, 0
			for _, file := range args {
				tf, ix, err := in.load(cmd.ErrOrStderr(), file)
				if err != nil {
					return err
				}
				for _, r := range policy.RunTests(ix, tf) {
					if r.Passed {
						passed++
						continue
					}
					failed++
					if r.Err != nil {
						fmt.Fprintf(out, "FAIL %s (%s): %v\n", r.Case.Label(), r.Case.Pos, r.Err)
						continue
					}
					fmt.Fprintf(out, "FAIL %s (%s): expected %s, got %s\n%s", r.Case.Label(), r.Case.Pos, verdictWord(r.Case.Expect), verdictWord(r.Explanation.Allowed), indent(r.Explanation.String()))
				}
			}
			fmt.Fprintf(out, "%d passed, %d failed\n", passed, failed)
			if failed > 0 {
				return errSilent
			}
			return nil
		},
	}
	in.register(cmd, true)
	return cmd
}

func newPolicyExplainCommand() *cobra.Command {
	var (
		in        policyInputs
		workloads string
		output    string
	)
	cmd := &cobra.Command{
		Use:   "explain --policy PATH... --workloads TESTFILE FROM TO PORT[/PROTO]",
		Short: "Print the verdict of one flow and every rule behind it",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			tf, ix, err := in.load(cmd.ErrOrStderr(), workloads)
			if err != nil {
				return err
			}
			src, err := tf.Endpoint(args[0])
			if err != nil {
				return err
			}
			dst, err := tf.Endpoint(args[1])
			if err != nil {
				return err
			}
			portStr, proto, err := splitPortProto(args[2])
			if err != nil {
				return err
			}
			port, err := policy.ResolvePort(portStr, dst, proto)
			if err != nil {
				return err
			}
			e := ix.Explain(ix.Resolve(src), ix.Resolve(dst), proto, port)
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(e)
			}
			fmt.Fprint(cmd.OutOrStdout(), e.String())
			return nil
		},
	}
	in.register(cmd, true)
	cmd.Flags().StringVar(&workloads, "workloads", "", "test file that defines the workloads (required)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	_ = cmd.MarkFlagRequired("workloads")
	return cmd
}

func newPolicyMatrixCommand() *cobra.Command {
	var (
		in        policyInputs
		workloads string
		portFlag  string
		output    string
	)
	cmd := &cobra.Command{
		Use:   "matrix --policy PATH... --workloads TESTFILE [--port 80/TCP]",
		Short: "Print the reachability table of all workloads (rows = sources, columns = destinations)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tf, ix, err := in.load(cmd.ErrOrStderr(), workloads)
			if err != nil {
				return err
			}
			portStr, proto, err := splitPortProto(portFlag)
			if err != nil {
				return err
			}
			port, err := policy.ResolvePort(portStr, &policy.Endpoint{}, proto)
			if err != nil {
				return fmt.Errorf("--port: %w", err)
			}
			m := policy.ReachabilityMatrix(ix, tf, proto, port)
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"port": m.Port, "protocol": m.Protocol.String(), "workloads": m.Names, "allowed": m.Allowed})
			}
			fmt.Fprint(cmd.OutOrStdout(), m.String())
			return nil
		},
	}
	in.register(cmd, true)
	cmd.Flags().StringVar(&workloads, "workloads", "", "test file that defines the workloads (required)")
	cmd.Flags().StringVar(&portFlag, "port", "80/TCP", "destination port and protocol")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	_ = cmd.MarkFlagRequired("workloads")
	return cmd
}

func loadTestFile(stderr io.Writer, path string) (*policy.TestFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	tf, diags := policy.ParseTestFile(path, data)
	if diags.HasErrors() {
		for _, d := range diags {
			fmt.Fprintln(stderr, d)
		}
		return nil, fmt.Errorf("%s has errors", path)
	}
	return tf, nil
}

// splitPortProto reads "80", "80/TCP", "dns/udp".
func splitPortProto(s string) (string, policy.Protocol, error) {
	port, protoStr, ok := strings.Cut(s, "/")
	proto := policy.TCP
	if ok {
		var err error
		if proto, err = policy.ParseProtocol(protoStr); err != nil {
			return "", 0, err
		}
	}
	if port == "" {
		return "", 0, fmt.Errorf("no port in %q (want PORT[/PROTO], e.g. 80/TCP)", s)
	}
	return port, proto, nil
}

func verdictWord(allowed bool) string {
	if allowed {
		return "allow"
	}
	return "deny"
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "    " + l
	}
	return strings.Join(lines, "\n") + "\n"
}
