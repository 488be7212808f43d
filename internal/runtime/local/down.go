package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ztcn/ztcn/internal/netns"
)

// prepareRun refuses to start over a live run and cleans the leftovers of
// a dead one.
func prepareRun(run string) error {
	st, err := LoadState(run)
	if err == nil && st.Supervisor != os.Getpid() && alive(st.Supervisor) {
		return fmt.Errorf("run %q is already up (pid %d); stop it with `ztcn down` first", run, st.Supervisor)
	}
	if _, err := Down(run); err != nil {
		return fmt.Errorf("cleaning up an earlier run %q: %w", run, err)
	}
	return nil
}

// DownReport says what Down found and removed.
type DownReport struct {
	// Supervisor is the pid of a live supervisor that was stopped (0: none).
	Supervisor int
	// Removed lists the namespaces removed and processes killed after the
	// supervisor was gone (leftovers of a crash).
	Namespaces []string
	Processes  []int
}

// Down removes a run, whether its supervisor is alive (it is asked to tear
// down and waited for) or died without cleaning up (its processes are
// killed and its namespaces deleted from the state file and by name). It
// is idempotent: a run that is not there is no error.
func Down(run string) (DownReport, error) {
	var rep DownReport
	st, err := LoadState(run)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		// A corrupt state file: fall back to what the names tell.
		st = nil
	}
	if st != nil && st.Supervisor != os.Getpid() && alive(st.Supervisor) {
		rep.Supervisor = st.Supervisor
		_ = syscall.Kill(st.Supervisor, syscall.SIGTERM)
		deadline := time.Now().Add(30 * time.Second)
		for alive(st.Supervisor) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(st.Supervisor) {
			_ = syscall.Kill(st.Supervisor, syscall.SIGKILL)
		}
	}
	var names []string
	if st != nil {
		// The pods' processes are found by namespace below (removeNamespaces):
		// a pid from the state file may have been recycled since.
		for _, n := range st.Nodes {
			if alive(n.AgentPID) && isAgent(n.AgentPID) {
				rep.Processes = append(rep.Processes, n.AgentPID)
				_ = stopProcess(n.AgentPID, 5*time.Second)
			}
		}
		names = st.Namespaces
	}
	// Namespaces created after the last state write, or by a run whose
	// state is gone, are found by name.
	byName, err := netns.List(run + "-")
	if err != nil {
		return rep, err
	}
	for _, n := range byName {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	var existing []string
	for _, n := range names {
		if _, err := os.Stat(podNetnsPath(n)); err == nil {
			existing = append(existing, n)
		}
	}
	rep.Namespaces = existing
	errs := []error{removeNamespaces(existing), os.RemoveAll(RunDir(run)), removeIfExists(SupervisorLog(run))}
	return rep, errors.Join(errs...)
}

// isAgent guards against killing a recycled pid: the state's agent pid
// must still be running `ztcn agent`.
func isAgent(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmdline), "\x00agent\x00")
}

// SupervisorLog is where `ztcn up -d` writes its supervisor's output.
func SupervisorLog(run string) string { return filepath.Join(StateRoot, run+".log") }

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
