package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// errGoexit reports a function that left Do through runtime.Goexit (for
// example t.FailNow), so that the caller is not left waiting forever.
var errGoexit = errors.New("netns: fn called runtime.Goexit")

// Do runs fn on an OS thread inside ns and returns fn's error unchanged
// (joined with the error of switching namespaces, should that fail); a
// panic in fn is re-raised in the caller.
//
// fn runs on a fresh goroutine locked to its thread, so the caller's own
// thread never changes namespace. After fn the thread is switched back; if
// that fails, the thread stays locked and the Go runtime terminates it when
// the goroutine exits instead of reusing it in the wrong namespace.
//
// Only that goroutine is inside ns: goroutines fn starts run elsewhere.
// What fn creates keeps the namespace it was created in, because a socket's
// namespace is fixed at creation: a listener opened or a connection dialed
// in fn stays in ns and can be used from any goroutine after Do returns.
// That is how the agent opens listeners inside pods.
func Do(ns *NS, fn func() error) error {
	fnErr, nsErr := onLockedThread(func() error {
		return unix.Setns(ns.Fd(), unix.CLONE_NEWNET)
	}, fn)
	if nsErr != nil {
		return errors.Join(fnErr, fmt.Errorf("netns: in %s: %w", ns, nsErr))
	}
	return fnErr
}

// home is the namespace every thread not locked by Do is in: the
// process's own. Do returns its threads there. It is opened once, by the
// first Do, from a thread that is there by that same invariant: opening
// /proc/thread-self/ns/net costs more than the two setns calls of a Do
// together, and the agent pays a Do for every connection it dials into a pod.
var home struct {
	once sync.Once
	f    *os.File
	err  error
}

func homeNetns() (*os.File, error) {
	home.once.Do(func() { home.f, home.err = os.Open("/proc/thread-self/ns/net") })
	return home.f, home.err
}

// outcome carries the results of onLockedThread's goroutine to its caller.
type outcome struct {
	fnErr, nsErr error
	panicked     bool
	panicVal     any
}

// onLockedThread runs enter and then fn on a new goroutine locked to its
// thread, where enter moves the thread into another network namespace
// (setns or unshare), and afterwards moves the thread back to where it
// started. It returns fn's error and, separately, the error of entering or
// leaving; fn does not run if entering fails.
func onLockedThread(enter, fn func() error) (fnErr, nsErr error) {
	done := make(chan outcome, 1)
	go func() {
		runtime.LockOSThread()
		var res outcome
		defer func() { done <- res }()

		orig, err := homeNetns()
		if err != nil {
			runtime.UnlockOSThread()
			res.nsErr = fmt.Errorf("open current namespace: %w", err)
			return
		}
		if err := enter(); err != nil {
			// A failed setns or unshare leaves the thread where it was.
			runtime.UnlockOSThread()
			res.nsErr = fmt.Errorf("enter namespace: %w", err)
			return
		}

		// Deferred so that it also runs after a panic or runtime.Goexit in fn.
		defer func() {
			if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
				// Still locked: the runtime discards this thread.
				res.nsErr = fmt.Errorf("return to original namespace: %w", err)
				return
			}
			runtime.UnlockOSThread()
		}()

		returned := false
		defer func() {
			if returned {
				return
			}
			if v := recover(); v != nil {
				res.panicked, res.panicVal = true, v
			} else {
				res.fnErr = errGoexit
			}
		}()
		res.fnErr = fn()
		returned = true
	}()
	res := <-done
	if res.panicked {
		panic(res.panicVal)
	}
	return res.fnErr, res.nsErr
}
