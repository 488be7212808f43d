package agent

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// raiseFileLimit lifts RLIMIT_NOFILE to the kernel's maximum: the agent
// holds two descriptors per proxied connection, and a node with ten
// thousand open connections must not fail at the container's default.
// It returns the limit in force.
func raiseFileLimit() uint64 {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	want := uint64(1 << 20)
	if data, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err == nil {
			want = n
		}
	}
	if lim.Max < want {
		// Raising the hard limit needs CAP_SYS_RESOURCE; without it, the
		// soft limit still goes up to the hard one.
		next := unix.Rlimit{Cur: want, Max: want}
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &next) == nil {
			return want
		}
	}
	lim.Cur = lim.Max
	_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	return lim.Cur
}
