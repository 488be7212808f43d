package local

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// killProcessesIn SIGKILLs every process whose network namespace is the
// one at nsPath. Process groups are not enough: a pod's command may have
// started daemons of its own, in the pod's namespace but not its group.
func killProcessesIn(nsPath string) {
	var target syscall.Stat_t
	if err := syscall.Stat(nsPath, &target); err != nil {
		return
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st) != nil {
			continue
		}
		if st.Dev == target.Dev && st.Ino == target.Ino {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// alive says whether pid is a running (not zombie) process.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// Field 3, after "(comm)", is the state; Z is a zombie.
	for i := len(data) - 1; i >= 0; i-- {
		if data[i] == ')' {
			return i+2 < len(data) && data[i+2] != 'Z'
		}
	}
	return true
}

// stopProcess sends SIGTERM to pid's process group, waits up to grace
// for it to go, then SIGKILLs the group.
func stopProcess(pid int, grace time.Duration) error {
	if pid <= 0 || !alive(pid) {
		return nil
	}
	if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return nil
}
