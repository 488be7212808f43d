package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/examples/quickstart"
	"github.com/ztcn/ztcn/internal/runtime/local"
)

func newUpCommand() *cobra.Command {
	var (
		detach, supervise bool
		nodes             int
		run               string
	)
	cmd := &cobra.Command{
		Use:   "up [DIR] [-d] [--nodes N] [--run NAME]",
		Short: "Run secured pods on this machine: network namespaces, identities, policy and mTLS, no CNI",
		Long: `Run the pods of DIR/pods.yaml under DIR/policy.yaml (and DIR/runtime.toml if
present) as network namespaces on this machine, each secured by a ztcn agent:
a SPIFFE identity, in-pod redirection and mutual TLS between pods, before the
pod's command starts. Nothing on the host's network changes.

Without DIR, the quickstart runs: ./examples/quickstart when it exists (so
its policy.yaml can be edited live), else the copy built into ztcn.

In the foreground a live view shows pods, identities, policy and recent
verdicts until Ctrl-C, which removes everything. With -d it runs in the
background until 'ztcn down'. --nodes N spreads the pods over N simulated
nodes, each with its own agent and node CA, joined by an underlay.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			dir, err := upDir(args, run, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if detach {
				return upDetached(cmd, self, dir, nodes, run)
			}
			return upForeground(cmd, self, dir, nodes, run, supervise)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "run in the background (stop with 'ztcn down')")
	cmd.Flags().IntVar(&nodes, "nodes", 1, "spread the pods over N simulated nodes")
	cmd.Flags().StringVar(&run, "run", local.DefaultRun, "name of the run (its namespaces are NAME-*)")
	cmd.Flags().BoolVar(&supervise, "supervise", false, "internal: run as the background supervisor of 'up -d'")
	_ = cmd.Flags().MarkHidden("supervise")
	return cmd
}

// upDir chooses the run directory: the argument, ./examples/quickstart, or
// the embedded quickstart written out under /run/ztcn.
func upDir(args []string, run string, stderr io.Writer) (string, error) {
	if len(args) == 1 {
		return args[0], nil
	}
	if _, err := os.Stat(filepath.Join("examples", "quickstart", local.PodsFile)); err == nil {
		return filepath.Join("examples", "quickstart"), nil
	}
	dir := filepath.Join(filepath.Dir(local.StateRoot), "quickstart-"+run)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	err := fs.WalkDir(quickstart.Files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := quickstart.Files.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, path), data, 0o644)
	})
	if err == nil {
		fmt.Fprintf(stderr, "using the built-in quickstart, written to %s (edit its policy.yaml to change the policy live)\n", dir)
	}
	return dir, err
}

func upForeground(cmd *cobra.Command, self, dir string, nodes int, run string, supervise bool) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := cmd.OutOrStdout()
	logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	progress := func(format string, args ...any) { fmt.Fprintf(cmd.ErrOrStderr(), "  "+format+"\n", args...) }
	if supervise {
		logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "ztcn up %s (run %q, %d node(s))\n", dir, run, nodes)
	rt, err := local.Up(ctx, local.Options{Run: run, Dir: dir, Nodes: nodes, Self: self, Log: logger, Progress: progress})
	if err != nil {
		return err
	}
	st := rt.State()
	fmt.Fprintf(cmd.ErrOrStderr(), "ready: %d pods in %s\n", len(st.Pods), st.ReadyAfter.Round(time.Millisecond))
	if !supervise {
		watch(ctx, out, run, isTerminal(out))
		fmt.Fprintln(cmd.ErrOrStderr(), "\nstopping: pods, agents, namespaces")
	} else {
		<-ctx.Done()
	}
	if err := rt.Teardown(); err != nil {
		return fmt.Errorf("teardown: %w (run 'ztcn down --run %s' to retry)", err, run)
	}
	fmt.Fprintln(cmd.ErrOrStderr(), "removed")
	return nil
}

// upDetached starts the supervisor in its own session and returns once
// the run is ready, or with its log when it failed.
func upDetached(cmd *cobra.Command, self, dir string, nodes int, run string) error {
	if err := os.MkdirAll(local.StateRoot, 0o700); err != nil {
		return err
	}
	logPath := local.SupervisorLog(run)
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	child := exec.Command(self, "up", dir, "--supervise", "--nodes", fmt.Sprint(nodes), "--run", run)
	child.Stdout, child.Stderr = logFile, logFile
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	deadline := time.After(5 * time.Minute)
	for {
		select {
		case <-exited:
			data, _ := os.ReadFile(logPath)
			fmt.Fprint(cmd.ErrOrStderr(), string(data))
			return errSilent
		case <-deadline:
			return fmt.Errorf("run %q not ready after 5 minutes; see %s", run, logPath)
		case <-time.After(50 * time.Millisecond):
		}
		st, err := local.LoadState(run)
		if err != nil || st.Supervisor != child.Process.Pid || !st.Ready {
			continue
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "ztcn up: %d pods ready in %s (run %q, supervisor pid %d, log %s)\n",
			len(st.Pods), st.ReadyAfter.Round(time.Millisecond), run, st.Supervisor, logPath)
		rs, err := local.Status(cmd.Context(), run)
		if err == nil {
			renderRun(cmd.OutOrStdout(), rs, time.Now())
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "\nnext: ztcn exec frontend -- ztcn demo get http://backend/   ·   ztcn status   ·   ztcn down\n")
		return nil
	}
}

// watch redraws the run's view every second until ctx is done. On a
// terminal it repaints; elsewhere (a pipe, a log) it prints the view once
// and then each new event as a line.
func watch(ctx context.Context, w io.Writer, run string, tty bool) {
	var lastEvent time.Time
	first := true
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		rs, err := local.Status(ctx, run)
		if err == nil {
			if tty {
				fmt.Fprint(w, "\x1b[H\x1b[2J")
				renderRun(w, rs, time.Now())
				fmt.Fprintln(w, "\nCtrl-C stops everything.")
			} else if first {
				renderRun(w, rs, time.Now())
				first = false
			} else {
				for _, e := range rs.Recent {
					if e.Time.After(lastEvent) {
						fmt.Fprintln(w, eventLine(e))
					}
				}
			}
			if n := len(rs.Recent); n > 0 {
				lastEvent = rs.Recent[n-1].Time
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func newDownCommand() *cobra.Command {
	var run string
	cmd := &cobra.Command{
		Use:   "down [--run NAME]",
		Short: "Stop a 'ztcn up' run and remove all of it (idempotent; also cleans a crashed run)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := local.Down(run)
			if err != nil {
				return err
			}
			switch {
			case rep.Supervisor != 0:
				fmt.Fprintf(cmd.OutOrStdout(), "stopped run %q (supervisor pid %d)\n", run, rep.Supervisor)
			case len(rep.Namespaces) > 0 || len(rep.Processes) > 0:
				fmt.Fprintf(cmd.OutOrStdout(), "cleaned up after run %q: %d namespaces, %d processes\n", run, len(rep.Namespaces), len(rep.Processes))
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "nothing to remove for run %q\n", run)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&run, "run", local.DefaultRun, "name of the run")
	return cmd
}

func newExecCommand() *cobra.Command {
	var run string
	cmd := &cobra.Command{
		Use:   "exec [--run NAME] POD -- COMMAND [ARG...]",
		Short: "Run a command inside a pod's network namespace (pods resolve each other by name)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return errors.New("usage: ztcn exec POD -- COMMAND [ARG...]")
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			st, err := local.LoadState(run)
			if err != nil {
				return noRun(run, err)
			}
			pod, ok := st.Pod(args[0])
			if !ok {
				return fmt.Errorf("run %q has no pod %q", run, args[0])
			}
			c := local.ExecIn(self, st, pod, args[1:])
			c.Stdin, c.Stdout, c.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			if err := c.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return exitCode(ee.ExitCode())
				}
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&run, "run", local.DefaultRun, "name of the run")
	return cmd
}

func newLogsCommand() *cobra.Command {
	var (
		run    string
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "logs [--run NAME] [-f] POD",
		Short: "Print the output of a pod's command",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := local.LoadState(run)
			if err != nil {
				return noRun(run, err)
			}
			pod, ok := st.Pod(args[0])
			if !ok {
				return fmt.Errorf("run %q has no pod %q", run, args[0])
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return local.CopyLog(ctx, cmd.OutOrStdout(), pod.Log, follow)
		},
	}
	cmd.Flags().StringVar(&run, "run", local.DefaultRun, "name of the run")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until Ctrl-C")
	return cmd
}

func noRun(run string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no run %q is up (start one with 'ztcn up')", run)
	}
	return err
}

// newPodExecCommand is the hidden helper that enters a pod (see
// local.PodExecCommand).
func newPodExecCommand() *cobra.Command {
	var netnsPath, hosts string
	cmd := &cobra.Command{
		Use:    local.PodExecCommand + " --netns PATH [--hosts FILE] -- COMMAND [ARG...]",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := local.EnterAndExec(netnsPath, hosts, args)
			return fmt.Errorf("%s: %w", args[0], err)
		},
	}
	cmd.Flags().StringVar(&netnsPath, "netns", "", "the pod's network namespace")
	cmd.Flags().StringVar(&hosts, "hosts", "", "file to bind over /etc/hosts")
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
