package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// RunDir is where named namespaces are bind-mounted, the directory
// iproute2 uses, so `ip netns exec NAME` and other tools see ours.
const RunDir = "/run/netns"

// NS is an open network namespace. The open file pins the namespace: it
// stays alive while any NS, socket or process refers to it, even after
// Delete has removed its name.
type NS struct {
	name string // "" when opened by path
	path string
	f    *os.File
}

// Name is the namespace's name under RunDir, or "" if it was opened by a
// path outside RunDir.
func (n *NS) Name() string { return n.name }

// Path is the file the namespace was opened from.
func (n *NS) Path() string { return n.path }

// File is the open namespace file, e.g. to pass to a child process.
func (n *NS) File() *os.File { return n.f }

// Fd is the open namespace file descriptor, as setns(2),
// nftables.WithNetNSFd and netlink.NsFd take it. It is valid until Close.
func (n *NS) Fd() int { return int(n.f.Fd()) }

// Close releases the handle; the namespace itself lives on while named.
func (n *NS) Close() error { return n.f.Close() }

// String names the namespace for error messages.
func (n *NS) String() string {
	if n.name != "" {
		return n.name
	}
	return n.path
}

// Create makes a persistent network namespace named name, bind-mounted at
// RunDir/name as `ip netns add` does, and returns it open. Unlike ip, it
// also brings the loopback interface up: every pod needs 127.0.0.1, e.g.
// for the agent's outbound listener. The calling goroutine's thread never enters the new
// namespace; see Do for how the thread that does is handled.
func Create(name string) (*NS, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if err := prepareRunDir(); err != nil {
		return nil, err
	}
	path := filepath.Join(RunDir, name)
	// The mount point must exist before the bind mount; O_EXCL makes a name
	// clash (ours or another tool's) an error instead of a takeover.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("netns: create %q: %s already exists: %w", name, path, fs.ErrExist)
		}
		return nil, fmt.Errorf("netns: create %q: %w", name, err)
	}
	f.Close()

	mountErr, nsErr := onLockedThread(
		func() error { return unix.Unshare(unix.CLONE_NEWNET) },
		func() error {
			// thread-self, not self: only this thread is in the new namespace.
			return unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, "")
		})
	if err := errors.Join(mountErr, nsErr); err != nil {
		// Delete, not just remove: the mount may have succeeded before
		// the thread failed to switch back.
		return nil, errors.Join(fmt.Errorf("netns: create %q: %w", name, err), Delete(name))
	}

	ns, err := Open(name)
	if err == nil {
		err = setLoopbackUp(ns)
		if err != nil {
			ns.Close()
		}
	}
	if err != nil {
		return nil, errors.Join(err, Delete(name))
	}
	return ns, nil
}

func setLoopbackUp(ns *NS) error {
	h, err := NewHandle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return h.SetUp("lo")
}

// prepareRunDir makes RunDir a shared mount point, as iproute2 does, so
// that unmounting a namespace in one mount namespace unmounts it in all of
// them (a container runtime's private copy would otherwise keep it alive).
func prepareRunDir() error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	for bound := false; ; bound = true {
		err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		// EINVAL: not a mount point yet; make it one by binding it onto
		// itself, once.
		if err != unix.EINVAL || bound {
			return fmt.Errorf("netns: make %s a shared mount: %w", RunDir, err)
		}
		if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("netns: bind-mount %s onto itself: %w", RunDir, err)
		}
	}
}

// Open opens a network namespace by name (under RunDir) or, if nameOrPath
// contains a slash, by path, e.g. /proc/PID/ns/net or
// /proc/thread-self/ns/net for the caller's own. A missing namespace gives
// an error matching fs.ErrNotExist; a file that is not a network namespace
// (such as a stale mount point left by a crash) is an error too.
func Open(nameOrPath string) (*NS, error) {
	ns := &NS{path: nameOrPath}
	if !strings.Contains(nameOrPath, "/") {
		if err := validName(nameOrPath); err != nil {
			return nil, err
		}
		ns.name, ns.path = nameOrPath, filepath.Join(RunDir, nameOrPath)
	}
	f, err := os.OpenFile(ns.path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("netns: open %q: no namespace at %s: %w", nameOrPath, ns.path, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("netns: open %q: %w", nameOrPath, err)
	}
	// Checking the type now turns a later, puzzling setns EINVAL into a
	// clear error here.
	typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || typ != unix.CLONE_NEWNET {
		f.Close()
		return nil, fmt.Errorf("netns: open %q: %s is not a network namespace", nameOrPath, ns.path)
	}
	ns.f = f
	return ns, nil
}

// Delete removes the named namespace: unmount and remove, like
// `ip netns del`. The kernel frees it, and the interfaces in it (which
// destroys their veth peers elsewhere), once nothing else holds it open.
// Deleting a missing namespace is not an error.
func Delete(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	path := filepath.Join(RunDir, name)
	// MNT_DETACH: an open handle must not make deletion fail. EINVAL means
	// the file is not mounted (a crash between create and mount); remove it
	// anyway.
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		if err == unix.ENOENT {
			return nil
		}
		return fmt.Errorf("netns: delete %q: unmount %s: %w", name, path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("netns: delete %q: %w", name, err)
	}
	return nil
}

// List returns the names of the namespaces under RunDir that start with
// prefix, sorted, so a caller can find (and clean up) its own.
func List(prefix string) ([]string, error) {
	entries, err := os.ReadDir(RunDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("netns: list: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// validName refuses names that would escape RunDir or are not file names.
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || len(name) > 255 {
		return fmt.Errorf("netns: invalid namespace name %q", name)
	}
	return nil
}
