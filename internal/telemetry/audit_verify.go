package telemetry

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// Kinds of AuditProblem: what the first break in the chain looks like.
const (
	ProblemAltered   = "altered"   // a line's bytes changed (or are not an audit event)
	ProblemRemoved   = "removed"   // seq skips: lines are missing
	ProblemReordered = "reordered" // seq goes back, or a skipped seq turns up later
)

// VerifyReport is what VerifyAudit found.
type VerifyReport struct {
	Files []string `json:"files"`
	// Events verified (up to the problem, if any), and their seq range.
	Events   int    `json:"events"`
	FirstSeq uint64 `json:"first_seq,omitempty"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
	// Lost and Dropped are the events the writer recorded as never
	// written (I/O errors, full queue): honest gaps, not tampering.
	Lost    uint64 `json:"lost"`
	Dropped uint64 `json:"dropped"`
	// Problem is the first break in the chain; nil when it is intact.
	Problem  *AuditProblem `json:"problem,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
}

// OK reports whether the chain is intact.
func (r VerifyReport) OK() bool { return r.Problem == nil }

// AuditProblem locates the first break in the chain.
type AuditProblem struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Seq    uint64 `json:"seq,omitempty"` // 0 when the line has none
	Kind   string `json:"kind"`          // ProblemAltered, ProblemRemoved or ProblemReordered
	Detail string `json:"detail"`
}

func (p AuditProblem) String() string {
	if p.Seq == 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Detail)
	}
	return fmt.Sprintf("%s:%d (seq %d): %s", p.File, p.Line, p.Seq, p.Detail)
}

// auditRecord is one line as the verifier needs it.
type auditRecord struct {
	file  string
	line  int
	chain auditChain
	prev  [32]byte // chain.Prev decoded
	hash  [32]byte // of this line's bytes
	bad   error    // not an audit event
}

// VerifyAudit checks the hash chain of audit files given oldest first
// (audit.log.2 audit.log.1 audit.log): every line is an audit event, seq
// goes up by one, and each prev is the hash of the line before. It reports
// the first problem; err is only for files it cannot read.
//
// The order of paths matters. Given a suffix of the log (audit.log alone
// while rotated files exist), the first line's link to older events cannot
// be checked: that is a warning, not a failure.
func VerifyAudit(paths ...string) (VerifyReport, error) {
	r := VerifyReport{Files: paths}
	var recs []auditRecord
	for i, p := range paths {
		var err error
		if recs, err = readAuditRecords(p, recs, i == len(paths)-1, &r); err != nil {
			return r, err
		}
	}
	for i := range recs {
		cur := &recs[i]
		if r.Problem = checkLink(recs, i); r.Problem != nil {
			break
		}
		if i == 0 && cur.chain.Seq > 1 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s:%d: seq %d is not the start of the log: its link to older events is not checked (give the rotated files too, oldest first)", cur.file, cur.line, cur.chain.Seq))
		}
		if c := cur.chain; c.Lost > 0 || c.Dropped > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s:%d: %s before seq %d", cur.file, cur.line, lossText(c), c.Seq))
			r.Lost += c.Lost
			r.Dropped += c.Dropped
		}
		if r.Events == 0 {
			r.FirstSeq = cur.chain.Seq
		}
		r.Events++
		r.LastSeq = cur.chain.Seq
	}
	return r, nil
}

// checkLink checks record i against the one before it.
func checkLink(recs []auditRecord, i int) *AuditProblem {
	cur := recs[i]
	at := func(rec auditRecord, kind, format string, args ...any) *AuditProblem {
		return &AuditProblem{File: rec.file, Line: rec.line, Seq: rec.chain.Seq, Kind: kind, Detail: fmt.Sprintf(format, args...)}
	}
	if cur.bad != nil {
		return at(cur, ProblemAltered, "event altered — %v", cur.bad)
	}
	if i == 0 {
		if cur.chain.Seq == 1 && cur.chain.Prev != genesisPrev {
			return at(cur, ProblemAltered, "event altered — the first event's ztcn.chain.prev must be all zeros")
		}
		return nil
	}
	prev := recs[i-1]
	want := prev.chain.Seq + 1
	linked := cur.prev == prev.hash
	switch {
	case cur.chain.Seq == want && linked:
		return nil
	case cur.chain.Seq == want:
		return at(prev, ProblemAltered, "event altered — its hash does not match ztcn.chain.prev of the next line")
	case linked:
		// The link is right, so this line follows the previous one: only
		// its own seq can have been edited.
		return at(cur, ProblemAltered, "event altered — its seq should be %d", want)
	case cur.chain.Seq > want:
		// Skipped seqs that turn up later were moved, not removed: name
		// the earliest, the one this line jumped ahead of.
		var moved *auditRecord
		for j := i + 1; j < len(recs); j++ {
			if s := recs[j].chain.Seq; s >= want && s < cur.chain.Seq && (moved == nil || s < moved.chain.Seq) {
				moved = &recs[j]
			}
		}
		if moved != nil {
			return at(cur, ProblemReordered, "event reordered: seq %d comes before seq %d (%s:%d)", cur.chain.Seq, moved.chain.Seq, moved.file, moved.line)
		}
		n := cur.chain.Seq - want
		return at(cur, ProblemRemoved, "%d %s removed: seq jumps from %d to %d", n, plural(n, "event"), prev.chain.Seq, cur.chain.Seq)
	default:
		return at(cur, ProblemReordered, "event reordered: seq goes back from %d to %d", prev.chain.Seq, cur.chain.Seq)
	}
}

// readAuditRecords appends the lines of one file. A last line without its
// newline is a write the agent did not finish (it discards it when it
// restarts): a warning at the end of the newest file, a problem anywhere
// else, since rotation only ever closes complete files.
func readAuditRecords(path string, recs []auditRecord, newest bool, r *VerifyReport) ([]auditRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return recs, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err == io.EOF && len(line) == 0 {
			return recs, nil
		}
		if err != nil && err != io.EOF {
			return recs, fmt.Errorf("audit: read %s: %w", path, err)
		}
		rec := auditRecord{file: path, line: n}
		if body, ok := bytes.CutSuffix(line, []byte("\n")); ok {
			rec.hash = sha256.Sum256(body)
			if rec.chain, rec.bad = parseChain(body); rec.bad == nil {
				_, _ = hex.Decode(rec.prev[:], []byte(rec.chain.Prev)) // parseChain checked it
			}
		} else if newest {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s:%d: incomplete last line ignored (the agent stopped mid-write and drops it when it restarts)", path, n))
			return recs, nil
		} else {
			rec.bad = fmt.Errorf("incomplete line (no newline) in a rotated file")
		}
		recs = append(recs, rec)
	}
}

func lossText(c auditChain) string {
	switch {
	case c.Lost > 0 && c.Dropped > 0:
		return fmt.Sprintf("%d %s lost (write errors) and %d dropped (queue full)", c.Lost, plural(c.Lost, "event"), c.Dropped)
	case c.Lost > 0:
		return fmt.Sprintf("%d %s lost (write errors)", c.Lost, plural(c.Lost, "event"))
	}
	return fmt.Sprintf("%d %s dropped (queue full)", c.Dropped, plural(c.Dropped, "event"))
}

func plural(n uint64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
