package workloadapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Resolver maps a network namespace to the workload that owns it.
// *workload.Registry satisfies it.
type Resolver interface {
	// ByNetns returns the UID of the workload whose network namespace has
	// the given device and inode numbers, as stat(2) reports them for
	// /proc/<pid>/ns/net.
	ByNetns(dev, ino uint64) (uid string, ok bool)
}

// attest returns the UID of the workload that made the call in ctx, or a
// PermissionDenied status saying why the caller is nobody. The peer is also
// returned, for logging, whenever it is known.
func attest(ctx context.Context, resolver Resolver) (string, peerInfo, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", peerInfo{}, status.Error(codes.PermissionDenied, "workloadapi: call carries no peer")
	}
	who, ok := p.AuthInfo.(peerInfo)
	if !ok {
		return "", peerInfo{}, status.Errorf(codes.PermissionDenied, "workloadapi: caller has no peer credentials (auth %T)", p.AuthInfo)
	}
	if who.startErr != nil {
		return "", who, status.Errorf(codes.PermissionDenied, "workloadapi: caller pid %d: %v", who.PID, who.startErr)
	}
	if err := sameProcess(who); err != nil {
		return "", who, err
	}
	var st unix.Stat_t
	netns := fmt.Sprintf("/proc/%d/ns/net", who.PID)
	if err := unix.Stat(netns, &st); err != nil {
		return "", who, status.Errorf(codes.PermissionDenied, "workloadapi: caller pid %d: network namespace: stat %s: %v", who.PID, netns, err)
	}
	// Between the two start-time reads the pid named one process
	// throughout, so the namespace stat'ed is the caller's.
	if err := sameProcess(who); err != nil {
		return "", who, err
	}
	uid, ok := resolver.ByNetns(uint64(st.Dev), st.Ino)
	if !ok {
		return "", who, status.Errorf(codes.PermissionDenied, "workloadapi: caller pid %d: its network namespace (dev %d, inode %d) belongs to no registered workload", who.PID, st.Dev, st.Ino)
	}
	return uid, who, nil
}

// sameProcess checks that who.PID still names the process that connected.
func sameProcess(who peerInfo) error {
	now, err := processStartTime(who.PID)
	if errors.Is(err, os.ErrNotExist) {
		return status.Errorf(codes.PermissionDenied, "workloadapi: caller pid %d has exited", who.PID)
	}
	if err != nil {
		return status.Errorf(codes.PermissionDenied, "workloadapi: caller pid %d: %v", who.PID, err)
	}
	if now != who.startTime {
		return status.Errorf(codes.PermissionDenied, "workloadapi: caller pid %d exited and the pid was reused (start time %d, at connect %d)", who.PID, now, who.startTime)
	}
	return nil
}

// processStartTime reads when pid started, in clock ticks since boot. With
// the pid it names a process uniquely: a reused pid has a later start time.
func processStartTime(pid int32) (uint64, error) {
	if pid <= 0 {
		// SO_PEERCRED reports 0 when the peer's pid namespace is not
		// visible from ours: the agent must run in the host pid namespace.
		return 0, fmt.Errorf("pid %d is not visible in the agent's pid namespace", pid)
	}
	path := fmt.Sprintf("/proc/%d/stat", pid)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	start, err := parseStartTime(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return start, nil
}

// parseStartTime extracts field 22, starttime, from the contents of
// /proc/<pid>/stat. Field 2 is the command name in parentheses, and the
// name may itself contain spaces and parentheses (a process may call itself
// "x) R 1 2"), so fields are counted from the last ')' on.
func parseStartTime(stat []byte) (uint64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("no ')' closing the command name")
	}
	// After the command name come fields 3 (state) onwards.
	fields := bytes.Fields(stat[end+1:])
	const startTimeField = 22 - 3
	if len(fields) <= startTimeField {
		return 0, fmt.Errorf("only %d fields after the command name, want at least %d", len(fields), startTimeField+1)
	}
	start, err := strconv.ParseUint(string(fields[startTimeField]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("start time (field 22): %w", err)
	}
	return start, nil
}
