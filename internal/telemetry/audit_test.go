package telemetry

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func writeEvents(t testing.TB, path string, opts AuditOptions, events ...AuditEvent) {
	t.Helper()
	l, err := OpenAuditLog(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		l.Write(e)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Written != uint64(len(events)) {
		t.Fatalf("stats %+v after writing %d events", s, len(events))
	}
}

// violations returns n distinct denied-flow events.
func violations(n int) []AuditEvent {
	events := make([]AuditEvent, n)
	for i := range events {
		f := deniedFlow()
		f.ID = uint64(i + 1)
		f.Source.Port = uint16(40000 + i)
		events[i] = AuditEvent{Time: testTime.Add(time.Duration(i) * time.Millisecond), Action: ActionPolicyViolation, Flow: f}
	}
	return events
}

func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
}

func writeLines(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	data := bytes.Join(lines, nil)
	if !bytes.HasSuffix(data, []byte("\n")) {
		data = append(data, '\n')
	}
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
}

func verify(t testing.TB, paths ...string) VerifyReport {
	t.Helper()
	r, err := VerifyAudit(paths...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustVerify(t testing.TB, paths ...string) VerifyReport {
	t.Helper()
	r := verify(t, paths...)
	if !r.OK() {
		t.Fatalf("verify: %s", r.Problem)
	}
	return r
}

func TestAuditChainOfAFreshLogVerifies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	writeEvents(t, path, AuditOptions{}, violations(20)...)
	r := mustVerify(t, path)
	if r.Events != 20 || r.FirstSeq != 1 || r.LastSeq != 20 || len(r.Warnings) != 0 {
		t.Fatalf("report %+v", r)
	}
}

// TestAuditVerifyNamesTheTamperedLine: each kind of tampering is reported
// at the line it happened to, with its kind.
func TestAuditVerifyNamesTheTamperedLine(t *testing.T) {
	const n = 10
	cases := []struct {
		name   string
		tamper func(lines [][]byte) [][]byte
		line   int
		seq    uint64
		kind   string
		detail string
	}{
		{"one byte of line 4 changed", func(l [][]byte) [][]byte {
			l[3] = bytes.Replace(l[3], []byte(`"10.0.2.7"`), []byte(`"10.0.2.8"`), 1)
			return l
		}, 4, 4, ProblemAltered, "its hash does not match ztcn.chain.prev of the next line"},
		{"line 4 no longer JSON", func(l [][]byte) [][]byte {
			l[3] = bytes.Replace(l[3], []byte(`{`), []byte(`[`), 1)
			return l
		}, 4, 0, ProblemAltered, "not valid JSON"},
		{"seq of line 4 edited", func(l [][]byte) [][]byte {
			l[3] = bytes.Replace(l[3], []byte(`"seq":4`), []byte(`"seq":9`), 1)
			return l
		}, 4, 9, ProblemAltered, "its seq should be 4"},
		{"line 4 deleted", func(l [][]byte) [][]byte {
			return append(l[:3:3], l[4:]...)
		}, 4, 5, ProblemRemoved, "1 event removed: seq jumps from 3 to 5"},
		{"lines 4 to 6 deleted", func(l [][]byte) [][]byte {
			return append(l[:3:3], l[6:]...)
		}, 4, 7, ProblemRemoved, "3 events removed: seq jumps from 3 to 7"},
		{"line 2 deleted", func(l [][]byte) [][]byte {
			return append(l[:1:1], l[2:]...)
		}, 2, 3, ProblemRemoved, "seq jumps from 1 to 3"},
		{"lines 4 and 5 swapped", func(l [][]byte) [][]byte {
			l[3], l[4] = l[4], l[3]
			return l
		}, 4, 5, ProblemReordered, "seq 5 comes before seq 4"},
		{"lines 4 and 8 swapped", func(l [][]byte) [][]byte {
			l[3], l[7] = l[7], l[3]
			return l
		}, 4, 8, ProblemReordered, "seq 8 comes before seq 4"},
		{"line 4 replayed after line 6", func(l [][]byte) [][]byte {
			return append(l[:6:6], append([][]byte{l[3]}, l[6:]...)...)
		}, 7, 4, ProblemReordered, "seq goes back from 6 to 4"},
		{"first line's prev not zero", func(l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte(`"prev":"0`), []byte(`"prev":"1`), 1)
			return l
		}, 1, 1, ProblemAltered, "must be all zeros"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			writeEvents(t, path, AuditOptions{}, violations(n)...)
			writeLines(t, path, tc.tamper(readLines(t, path)))
			r := verify(t, path)
			p := r.Problem
			if p == nil {
				t.Fatalf("tampering not detected: %+v", r)
			}
			if p.File != path || p.Line != tc.line || p.Seq != tc.seq || p.Kind != tc.kind || !strings.Contains(p.Detail, tc.detail) {
				t.Fatalf("problem %s (kind %s); want line %d, seq %d, %s: %q", p, p.Kind, tc.line, tc.seq, tc.kind, tc.detail)
			}
		})
	}
}

func TestAuditRotationContinuesTheChainAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	// About five events per file.
	writeEvents(t, path, AuditOptions{MaxSize: 4 << 10, MaxFiles: 10}, violations(40)...)

	files := rotatedOldestFirst(t, path)
	if len(files) < 4 {
		t.Fatalf("%d files, want rotation into several", len(files))
	}
	for _, f := range files {
		if st, _ := os.Stat(f); st.Size() > 4<<10 {
			t.Errorf("%s is %d bytes, over MaxSize", f, st.Size())
		}
	}
	r := mustVerify(t, files...)
	if r.Events != 40 || r.FirstSeq != 1 || r.LastSeq != 40 || len(r.Warnings) != 0 {
		t.Fatalf("report %+v", r)
	}

	t.Run("the newest file alone verifies, its first link unchecked", func(t *testing.T) {
		r := mustVerify(t, path)
		if r.FirstSeq == 1 || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "not checked") {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("files in the wrong order fail", func(t *testing.T) {
		r := verify(t, append([]string{path}, files[:len(files)-1]...)...)
		if r.OK() || r.Problem.Kind != ProblemReordered {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("a missing middle file reads as removed events", func(t *testing.T) {
		r := verify(t, append(files[:1:1], files[2:]...)...)
		if r.OK() || r.Problem.Kind != ProblemRemoved || r.Problem.File != files[2] || r.Problem.Line != 1 {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("last line of a rotated file is protected by the next file", func(t *testing.T) {
		lines := readLines(t, files[0])
		k := len(lines) - 1
		lines[k] = bytes.Replace(lines[k], []byte(`"tier":"web"`), []byte(`"tier":"WEB"`), 1)
		writeLines(t, files[0], lines)
		r := verify(t, files...)
		if r.OK() || r.Problem.File != files[0] || r.Problem.Line != k+1 || r.Problem.Kind != ProblemAltered {
			t.Fatalf("report %+v", r)
		}
	})
}

func TestAuditRotationDropsTheOldestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	writeEvents(t, path, AuditOptions{MaxSize: 4 << 10, MaxFiles: 2}, violations(40)...)
	files := rotatedOldestFirst(t, path)
	if len(files) != 3 {
		t.Fatalf("files %v, want audit.log and 2 rotated", files)
	}
	r := mustVerify(t, files...)
	if r.LastSeq != 40 || r.FirstSeq == 1 {
		t.Fatalf("report %+v", r)
	}
}

func TestAuditReopenContinuesTheChain(t *testing.T) {
	t.Run("after a clean stop", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.log")
		events := violations(10)
		writeEvents(t, path, AuditOptions{}, events[:5]...)
		writeEvents(t, path, AuditOptions{}, events[5:]...)
		if r := mustVerify(t, path); r.Events != 10 || r.LastSeq != 10 {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("after a stop right after rotation", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "audit.log")
		events := violations(10)
		writeEvents(t, path, AuditOptions{}, events[:5]...)
		// What rotate leaves when the agent stops before the next write.
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o640); err != nil {
			t.Fatal(err)
		}
		writeEvents(t, path, AuditOptions{}, events[5:]...)
		if r := mustVerify(t, path+".1", path); r.Events != 10 || r.LastSeq != 10 {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("after a crash mid-line", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.log")
		events := violations(10)
		writeEvents(t, path, AuditOptions{}, events[:5]...)
		appendBytes(t, path, `{"@timestamp":"2025-03-14T08:26:`)
		if r := mustVerify(t, path); len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "incomplete last line") {
			t.Fatalf("torn line not reported: %+v", r)
		}
		writeEvents(t, path, AuditOptions{}, events[5:]...)
		r := mustVerify(t, path)
		if r.Events != 10 || r.Lost != 1 || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "1 event lost (write errors) before seq 6") {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("refused when the last line is not an audit event", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.log")
		writeEvents(t, path, AuditOptions{}, violations(3)...)
		appendBytes(t, path, "garbage\n")
		if _, err := OpenAuditLog(path, AuditOptions{}); err == nil || !strings.Contains(err.Error(), "cannot continue the chain") {
			t.Fatalf("open: %v", err)
		}
	})
}

// TestAuditFullQueueDropsAndTheChainSaysSo: a writer that cannot keep up
// costs events, never the caller's time, and the log records how many.
func TestAuditFullQueueDropsAndTheChainSaysSo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var mu sync.Mutex
	var reported []error
	l, err := OpenAuditLog(path, AuditOptions{QueueSize: 1, OnError: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, err)
	}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	events := violations(n + 1)
	start := time.Now()
	for _, e := range events[:n] {
		l.Write(e)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("%d Writes took %v: Write blocks", n, d)
	}
	waitStats(t, l, func(s AuditStats) bool { return s.Written+s.Dropped == n })
	// The drops after the last written line are recorded by the next one.
	l.Write(events[n])
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s := l.Stats()
	if s.Dropped == 0 || s.Written+s.Dropped != n+1 || s.WriteErrors != 0 || !strings.Contains(s.LastError, "queue full") {
		t.Fatalf("stats %+v", s)
	}
	r := mustVerify(t, path)
	if r.Dropped != s.Dropped || uint64(r.Events) != s.Written || len(r.Warnings) == 0 || !strings.Contains(r.Warnings[0], "dropped (queue full)") {
		t.Fatalf("report %+v, stats %+v", r, s)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) == 0 || len(reported) > int(r.Dropped) {
		t.Errorf("OnError called %d times for %d drops", len(reported), r.Dropped)
	}
}

func TestAuditWriteNeverPanics(t *testing.T) {
	var off *AuditLog
	off.Write(AuditEvent{Action: ActionPolicyReload})
	if off.Stats() != (AuditStats{}) || off.Close() != nil {
		t.Fatal("a nil log is not a no-op")
	}
	l, err := OpenAuditLog(filepath.Join(t.TempDir(), "audit.log"), AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Write(AuditEvent{}) // no action, no time: still recorded
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Write(AuditEvent{Action: ActionPolicyReload})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Written != 1 || s.Dropped != 1 {
		t.Fatalf("stats %+v: want the write after Close counted as dropped", s)
	}
}

func BenchmarkAuditWrite(b *testing.B) {
	event := violations(1)[0]
	// The baseline: rendering and encoding one line, what the writer
	// goroutine spends per event before the write(2).
	b.Run("render", func(b *testing.B) {
		w := &auditFile{}
		w.enc = newLineEncoder(&w.buf)
		b.ReportAllocs()
		for b.Loop() {
			doc := renderECS(event, "node-1")
			w.buf.Reset()
			if err := w.enc.Encode(&doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What the data plane pays: Write with the writer keeping up.
	b.Run("write", func(b *testing.B) {
		l, err := OpenAuditLog(filepath.Join(b.TempDir(), "audit.log"), AuditOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		start := time.Now()
		for b.Loop() {
			for len(l.ch) == cap(l.ch) {
				time.Sleep(10 * time.Microsecond) // measure throughput, not drops
			}
			l.Write(event)
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(l.Stats().Written)/time.Since(start).Seconds(), "events/s")
	})
}

// rotatedOldestFirst lists path's rotated files, oldest first, then path.
func rotatedOldestFirst(t testing.TB, path string) []string {
	t.Helper()
	var files []string
	for i := 1; ; i++ {
		p := fmt.Sprintf("%s.%d", path, i)
		if _, err := os.Stat(p); err != nil {
			break
		}
		files = append([]string{p}, files...)
	}
	return append(files, path)
}

func waitStats(t testing.TB, l *AuditLog, done func(AuditStats) bool) AuditStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := l.Stats()
		if done(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats stuck at %+v", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appendBytes(t testing.TB, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}
