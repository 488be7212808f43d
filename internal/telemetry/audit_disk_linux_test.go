//go:build linux

package telemetry

// These tests need root: they mount a tiny tmpfs to fill. Without root
// they skip, except in CI (CI=true), where skipping would hide them.

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func requireRoot(t *testing.T) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("needs root to mount a tmpfs")
	}
}

// mountTmpfs mounts a tmpfs of the given size on a temporary directory,
// unmounted when the test ends, whatever happens.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// TestAuditFullDiskIsCountedAndTheChainStaysVerifiable fills the disk
// under the log: writes fail and are counted, the caller is never held
// up, and once space is freed the log goes on and still verifies, with
// the lost events recorded instead of a broken chain.
func TestAuditFullDiskIsCountedAndTheChainStaysVerifiable(t *testing.T) {
	requireRoot(t)
	path := filepath.Join(mountTmpfs(t, "64k"), "audit.log")

	var mu sync.Mutex
	var reported []string
	// 6 files of 10 kB do not fit in 64 KiB: the disk fills before
	// rotation frees anything. 10 kB is not a multiple of the page size,
	// so the write that fills the disk stops mid-line (a short write).
	l, err := OpenAuditLog(path, AuditOptions{MaxSize: 10000, MaxFiles: 5, OnError: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, err.Error())
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() }) // before the unmount

	events := violations(600)
	sent := 0
	write := func(n int) {
		t.Helper()
		start := time.Now()
		for range n {
			l.Write(events[sent%len(events)])
			sent++
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%d Writes took %v on a full disk", n, d)
		}
		waitStats(t, l, func(s AuditStats) bool { return s.Written+s.WriteErrors+s.Dropped == uint64(sent) })
	}
	for l.Stats().WriteErrors == 0 {
		if sent >= len(events) {
			t.Fatalf("%d events written and the 64 KiB disk is not full: %+v", sent, l.Stats())
		}
		write(10)
	}
	write(50) // keep writing into the full disk

	full := l.Stats()
	if full.WriteErrors < 10 || full.Dropped != 0 || !strings.Contains(full.LastError, "no space left on device") {
		t.Fatalf("stats on a full disk: %+v", full)
	}
	mu.Lock()
	if len(reported) == 0 || len(reported) > 3 {
		t.Errorf("OnError told %d times for %d errors, want once per burst: %q", len(reported), full.WriteErrors, reported)
	}
	mu.Unlock()

	// Free space as an operator would: delete the oldest rotated file.
	files := rotatedOldestFirst(t, path)
	if len(files) < 2 {
		t.Fatalf("no rotated file to delete: %v", files)
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	write(5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	after := l.Stats()
	if after.Written != full.Written+5 || after.WriteErrors != full.WriteErrors {
		t.Fatalf("writing did not resume: %+v, then %+v", full, after)
	}

	r := mustVerify(t, rotatedOldestFirst(t, path)...)
	if r.Lost != full.WriteErrors {
		t.Errorf("chain records %d lost events, stats %d", r.Lost, full.WriteErrors)
	}
	var warned bool
	for _, w := range r.Warnings {
		warned = warned || strings.Contains(w, "lost (write errors)")
	}
	if !warned {
		t.Errorf("no lost-events warning: %q", r.Warnings)
	}
}
