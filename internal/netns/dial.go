package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// DialTCP connects to dst (IPv4) from inside ns. See DialTCPVia.
func DialTCP(ctx context.Context, ns *NS, dst netip.AddrPort, setup func(fd int) error) (*net.TCPConn, error) {
	return DialTCPVia(ctx, func(fn func() error) error { return Do(ns, fn) }, dst, setup)
}

// DialTCPVia connects to dst (IPv4) with a socket created by enter, which
// runs its function inside a network namespace (Do bound to one). setup,
// if set, configures the socket before the connect (options, bind).
//
// Only the socket is made inside the namespace (a socket belongs to the
// namespace it was created in for its whole life); the connect and the
// wait for it run on the caller's goroutine, outside. Dialing inside Do
// would park a goroutine locked to its thread, and waking such a goroutine
// costs thread hand-offs that about doubled the time of a connection on
// the agent's path (DESIGN §8, bench/RESULTS.md).
func DialTCPVia(ctx context.Context, enter func(func() error) error, dst netip.AddrPort, setup func(fd int) error) (*net.TCPConn, error) {
	if !dst.Addr().Is4() {
		return nil, fmt.Errorf("dial %s: not an IPv4 address", dst)
	}
	fd := -1
	if err := enter(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return os.NewSyscallError("socket", err)
	}); err != nil {
		if fd >= 0 {
			// Made, then switching the thread back failed: close it.
			unix.Close(fd)
		}
		return nil, fmt.Errorf("dial %s: %w", dst, err)
	}
	// os.NewFile on a non-blocking socket gives a file the runtime's
	// poller waits on; FileConn makes it a *net.TCPConn once connected,
	// so that its addresses are the final ones.
	f := os.NewFile(uintptr(fd), "tcp "+dst.String())
	defer f.Close()
	if setup != nil {
		if err := setup(fd); err != nil {
			return nil, fmt.Errorf("dial %s: %w", dst, err)
		}
	}
	if err := connect(ctx, f, dst); err != nil {
		return nil, fmt.Errorf("dial %s: %w", dst, err)
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", dst, err)
	}
	return c.(*net.TCPConn), nil
}

// connect starts a non-blocking connect on f's socket and waits, in the
// runtime's poller, until it completed, failed or ctx ended.
func connect(ctx context.Context, f *os.File, dst netip.AddrPort) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = f.SetWriteDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	sa := &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
	started := false
	var cerr error
	werr := rc.Write(func(fd uintptr) bool {
		if !started {
			started = true
			cerr = unix.Connect(int(fd), sa)
			return cerr != unix.EINPROGRESS && cerr != unix.EINTR
		}
		// Writable: the connect ended, one way or the other.
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			cerr = err
			return true
		}
		switch e := unix.Errno(v); e {
		case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
			return false // woken early
		case 0:
			// No error is not yet a connection: a wake-up for a soft
			// error (a dropped SYN's EPERM) leaves SO_ERROR 0 while
			// the connect goes on. Connected means it has a peer, as in
			// package net.
			if _, err := unix.Getpeername(int(fd)); err != nil {
				return false
			}
			cerr = nil
		default:
			cerr = e
		}
		return true
	})
	if werr != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			// The only deadline set is ctx's, and the socket's can
			// expire a moment before ctx notices its own.
			return context.DeadlineExceeded
		}
		return werr
	}
	return os.NewSyscallError("connect", cerr)
}
