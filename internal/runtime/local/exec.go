package local

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// ExecIn returns the command that runs argv inside a workload of the run,
// as `ztcn exec` does: in its network namespace, with the run's hosts file
// and the workload's variables.
func ExecIn(self string, st *State, pod PodState, argv []string) *exec.Cmd {
	cmd := PodCommand(self, pod.Netns, filepath.Join(RunDir(st.Run), "hosts"), argv)
	env := map[string]string{"POD_NAME": pod.Name, "POD_IP": pod.IP.String()}
	if pod.Namespace != "" {
		env["POD_NAMESPACE"] = pod.Namespace
	}
	if pod.Node != "" {
		env["NODE_NAME"] = pod.Node
	}
	cmd.Env = podEnviron(self, env, nil)
	return cmd
}

// CopyLog writes the log at path to w; with follow it keeps writing what
// is appended until ctx is done or the log is removed (the run went down).
func CopyLog(ctx context.Context, w io.Writer, path string, follow bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
		if _, err := os.Stat(path); err != nil {
			return nil
		}
	}
}
