package telemetry

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Fuzz targets of the audit log verifier. Seeds run in the normal suite;
// fuzz one with e.g.
//
//	go test -run '^$' -fuzz '^FuzzVerifyAuditTamper$' -fuzztime 60s ./internal/telemetry/

// fuzzAuditEvents are events of every kind, with the odd characters
// (quotes, newlines, HTML, non-ASCII) the renderer must escape.
func fuzzAuditEvents() []AuditEvent {
	events := violations(4)
	f := deniedFlow()
	f.Reason = "a \"quoted\"\nreason -> && <b>é</b>"
	events = append(events,
		AuditEvent{Time: testTime, Action: ActionWouldBeViolation, Flow: f},
		AuditEvent{Time: testTime, Action: ActionHandshakeFailed, Flow: deniedFlow(), Error: "tls: bad certificate"},
		AuditEvent{Time: testTime, Action: ActionCertIssued, SPIFFEID: "spiffe://cluster.local/ns/shop/sa/frontend", Serial: "0a1b", NotAfter: testTime.Add(time.Hour), Reason: "start"},
		AuditEvent{Time: testTime, Action: ActionCertRevoked, SPIFFEID: "spiffe://cluster.local/ns/shop/sa/frontend", Serial: "0a1b", Reason: "stop"},
		AuditEvent{Time: testTime, Action: ActionPolicyReload, PolicyVersion: 3, PolicyDigest: "sha256:00ff", Error: "policy.yaml:3:7: unknown key"},
		AuditEvent{Time: testTime, Action: ActionPolicyReload, PolicyVersion: 4, PolicyDigest: "sha256:11ee"},
	)
	return events
}

// fuzzWriteLog writes events with the real AuditLog, rotating every few
// lines, and returns the files oldest first with their contents.
func fuzzWriteLog(f *testing.F, events []AuditEvent) (paths []string, contents [][]byte) {
	f.Helper()
	path := filepath.Join(f.TempDir(), "audit.log")
	writeEvents(f, path, AuditOptions{MaxSize: 3 << 10, MaxFiles: 20, Node: "node-1"}, events...)
	paths = rotatedOldestFirst(f, path)
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		contents = append(contents, data)
	}
	return paths, contents
}

// FuzzVerifyAudit feeds VerifyAudit arbitrary file contents. It must not
// panic; a report that is OK counts every complete line as an event, with
// seqs one apart; a problem is at a line of the file; and the verdict is
// the same when the file is cut in two at a line (a rotation).
func FuzzVerifyAudit(f *testing.F) {
	_, contents := fuzzWriteLog(f, fuzzAuditEvents())
	all := bytes.Join(contents, nil)
	f.Add(all)
	for _, c := range contents {
		f.Add(c)
	}
	lines := bytes.SplitAfter(all, []byte("\n"))
	f.Add(bytes.Join(lines[:3], nil))
	f.Add(bytes.TrimSuffix(all, []byte("\n")))
	f.Add(bytes.Join([][]byte{lines[0], lines[2], lines[1]}, nil))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"ztcn":{"chain":{"seq":1,"prev":"` + genesisPrev + `"}}}` + "\n"))
	f.Add([]byte(`{"ztcn":{"chain":{"seq":18446744073709551615,"prev":"` + genesisPrev + `","lost":18446744073709551615,"dropped":1}}}` + "\n"))
	f.Add([]byte("\n\n"))

	dir := f.TempDir()
	path, older := filepath.Join(dir, "audit.log"), filepath.Join(dir, "audit.log.1")
	f.Fuzz(func(t *testing.T, data []byte) {
		r := fuzzVerifyFiles(t, []string{path}, [][]byte{data})
		complete := bytes.Count(data, []byte("\n"))
		if r.Events > complete {
			t.Fatalf("%d events in %d complete lines", r.Events, complete)
		}
		if r.OK() {
			if r.Events != complete {
				t.Fatalf("OK with %d events in %d complete lines", r.Events, complete)
			}
			if r.Events > 0 && (r.FirstSeq == 0 || r.LastSeq-r.FirstSeq != uint64(r.Events-1)) {
				t.Fatalf("OK with %d events from seq %d to %d", r.Events, r.FirstSeq, r.LastSeq)
			}
		} else {
			p := r.Problem
			if p.File != path || p.Line < 1 || p.Line > complete || (p.Kind != ProblemAltered && p.Kind != ProblemRemoved && p.Kind != ProblemReordered) || p.Detail == "" {
				t.Fatalf("problem %+v in a file of %d complete lines", p, complete)
			}
		}

		// Cut at the line boundary nearest the middle: the older half
		// becomes audit.log.1.
		cut := bytes.LastIndexByte(data[:len(data)/2], '\n') + 1
		split := fuzzVerifyFiles(t, []string{older, path}, [][]byte{data[:cut], data[cut:]})
		if split.OK() != r.OK() || split.Events != r.Events || split.FirstSeq != r.FirstSeq || split.LastSeq != r.LastSeq {
			t.Fatalf("one file: %+v\ncut in two at byte %d: %+v", r, cut, split)
		}
		if !r.OK() && (split.Problem.Kind != r.Problem.Kind || split.Problem.Seq != r.Problem.Seq) {
			t.Fatalf("one file: %+v\ncut in two at byte %d: %+v", r.Problem, cut, split.Problem)
		}
	})
}

// FuzzVerifyAuditTamper changes one byte of a log the real AuditLog wrote
// (several files, rotated) and verifies it: the unchanged log is OK, and
// a change to any byte before the newest line is never OK. (Nothing comes
// after the newest line to hold its hash: an edit of it is caught only if
// it breaks the line's own chain fields. See the package's audit docs.)
func FuzzVerifyAuditTamper(f *testing.F) {
	paths, contents := fuzzWriteLog(f, fuzzAuditEvents())
	if len(paths) < 3 {
		f.Fatalf("the log rotated into %d files, want several", len(paths))
	}
	if r := fuzzVerifyFiles(f, paths, contents); !r.OK() || r.Events != len(fuzzAuditEvents()) {
		f.Fatalf("the log as written does not verify: %+v", r)
	}
	newest := contents[len(contents)-1]
	body := bytes.TrimSuffix(newest, []byte("\n"))
	// protected is how many bytes, counted over the files oldest first,
	// come before the newest line.
	protected := len(bytes.Join(contents, nil)) - (len(body) - bytes.LastIndexByte(body, '\n') - 1) - 1
	for _, pos := range []int{0, 1, protected / 2, protected - 1, protected + 40} {
		for _, b := range []byte{'\n', '0', '"', '{', 0xff} {
			f.Add(uint32(pos), b)
		}
	}

	f.Fuzz(func(t *testing.T, pos uint32, b byte) {
		i := int(pos % uint32(protected))
		file := 0
		for i >= len(contents[file]) {
			i -= len(contents[file])
			file++
		}
		tampered := make([][]byte, len(contents))
		copy(tampered, contents)
		tampered[file] = bytes.Clone(contents[file])
		tampered[file][i] = b
		r := fuzzVerifyFiles(t, paths, tampered)
		switch {
		case b == contents[file][i] && !r.OK():
			t.Fatalf("the unchanged log does not verify: %s", r.Problem)
		case b != contents[file][i] && r.OK():
			t.Fatalf("byte %d of %s changed from %q to %q, and the log still verifies: %+v", i, filepath.Base(paths[file]), contents[file][i], b, r)
		}
	})
}

// fuzzVerifyFiles writes contents to paths and verifies them, oldest first.
func fuzzVerifyFiles(t testing.TB, paths []string, contents [][]byte) VerifyReport {
	t.Helper()
	for i, p := range paths {
		if err := os.WriteFile(p, contents[i], 0o640); err != nil {
			t.Fatal(err)
		}
	}
	r, err := VerifyAudit(paths...)
	if err != nil {
		t.Fatalf("VerifyAudit of readable files: %v", err)
	}
	if r.Problem != nil && r.OK() {
		t.Fatal("a report with a problem says OK")
	}
	return r
}
