package local

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// PodExecCommand is the hidden ztcn subcommand that enters a pod: the
// parent starts it in a new mount namespace (a namespace can only be set
// up between fork and exec, which Go's os/exec cannot run code in), and it
// then binds the run's hosts file over /etc/hosts, joins the pod's network
// namespace and executes the command. Pods find each other by name through
// that hosts file; nothing on the host changes.
const PodExecCommand = "__pod-exec"

// PodCommand returns the command that runs argv inside the pod whose
// network namespace is at netnsPath, with hosts as its /etc/hosts (none if
// empty). self is the ztcn binary.
func PodCommand(self, netnsPath, hosts string, argv []string) *exec.Cmd {
	args := []string{PodExecCommand, "--netns", netnsPath}
	if hosts != "" {
		args = append(args, "--hosts", hosts)
	}
	args = append(append(args, "--"), argv...)
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	return cmd
}

// EnterAndExec is the body of PodExecCommand. It returns only on error.
func EnterAndExec(netnsPath, hosts string, argv []string) error {
	if len(argv) == 0 {
		return errors.New("no command")
	}
	// setns and execve must happen on the same thread: execve keeps the
	// calling thread's namespaces.
	runtime.LockOSThread()
	// Make every mount private first, so the bind below stays in this
	// mount namespace instead of propagating to the host's.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if hosts != "" {
		if err := unix.Mount(hosts, "/etc/hosts", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s over /etc/hosts: %w", hosts, err)
		}
	}
	f, err := os.Open(netnsPath)
	if err != nil {
		return fmt.Errorf("pod network namespace: %w", err)
	}
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter %s: %w", netnsPath, err)
	}
	f.Close()
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, argv, os.Environ())
}
