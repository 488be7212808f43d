package telemetry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// auditChain is ztcn.chain: the line's place in the log and the hash of
// the line before it, which is what makes an edit, a removal or a
// reordering of any line but the newest detectable.
type auditChain struct {
	// Seq counts written lines from 1, across rotations and restarts.
	Seq uint64 `json:"seq"`
	// Prev is the hex SHA-256 of the previous line's bytes (without its
	// newline), in this file or, for a first line, the previous file;
	// genesisPrev for the first line of a log.
	Prev string `json:"prev"`
	// Lost and Dropped are the events that never made it into the log
	// between the previous line and this one: write errors (and a torn
	// line found at open) and a full queue. Seq does not count them.
	Lost    uint64 `json:"lost,omitempty"`
	Dropped uint64 `json:"dropped,omitempty"`
}

// genesisPrev is the prev of the first line of a log: no line before it.
const genesisPrev = "0000000000000000000000000000000000000000000000000000000000000000"

// auditFile appends chained lines to the log file and rotates it. Only the
// writer goroutine uses it.
type auditFile struct {
	path     string
	maxSize  int64
	maxFiles int

	f *os.File // nil after a failed rotation: reopened on the next append
	// size is where the next line starts: the end of the last complete
	// line. torn is set when bytes past it may hold part of a failed line.
	size int64
	torn bool

	seq           uint64
	prev          [32]byte
	lost, dropped uint64 // not yet recorded in a line

	buf bytes.Buffer
	enc *json.Encoder
}

func openAuditFile(path string, maxSize int64, maxFiles int) (*auditFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	w := &auditFile{path: path, maxSize: maxSize, maxFiles: maxFiles}
	w.enc = newLineEncoder(&w.buf)
	if err := w.reopen(); err != nil {
		return nil, err
	}
	if err := w.resume(); err != nil {
		w.f.Close()
		return nil, err
	}
	return w, nil
}

// resume continues the chain from the log's last line: in the current
// file or, if it is empty (the agent stopped right after rotating), in
// the newest rotated one.
func (w *auditFile) resume() error {
	last, complete, err := lastLine(w.f, w.size)
	if err != nil {
		return fmt.Errorf("audit: read %s: %w", w.path, err)
	}
	if complete < w.size {
		// A line torn by a crash mid-write: the verifier would reject
		// it, so drop it and record it as lost in the next line.
		if err := w.f.Truncate(complete); err != nil {
			return fmt.Errorf("audit: truncate torn last line of %s: %w", w.path, err)
		}
		w.size = complete
		w.lost++
	}
	src := w.path
	if last == nil {
		src = w.rotated(1)
		f, err := os.Open(src)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a fresh log: seq 0, prev all zeros
		}
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		if last, _, err = lastLine(f, st.Size()); err != nil {
			return fmt.Errorf("audit: read %s: %w", src, err)
		}
		if last == nil {
			return nil
		}
	}
	c, err := parseChain(last)
	if err != nil {
		// Continuing would chain onto a line that does not verify; an
		// operator should look at the file before the agent appends.
		return fmt.Errorf("audit: cannot continue the chain of %s: its last line is not an audit event (%v); move the file aside to start a new log", src, err)
	}
	w.seq = c.Seq
	w.prev = sha256.Sum256(last)
	return nil
}

// append renders the chain into doc and writes it as one line. On failure
// the event is counted as lost in the next line.
func (w *auditFile) append(doc *ecsDoc) error {
	doc.Ztcn.Chain = auditChain{Seq: w.seq + 1, Prev: hex.EncodeToString(w.prev[:]), Lost: w.lost, Dropped: w.dropped}
	w.buf.Reset()
	if err := w.enc.Encode(doc); err != nil {
		w.lost++
		return fmt.Errorf("audit: encode %s event: %w", doc.Event.Action, err)
	}
	line := w.buf.Bytes() // Encode ends it with '\n'
	if err := w.writeLine(line); err != nil {
		w.lost++
		return err
	}
	w.seq++
	w.prev = sha256.Sum256(line[:len(line)-1])
	w.lost, w.dropped = 0, 0
	return nil
}

func (w *auditFile) writeLine(line []byte) error {
	if w.f == nil {
		if err := w.reopen(); err != nil {
			return err
		}
	}
	if w.torn {
		if err := w.f.Truncate(w.size); err != nil {
			return fmt.Errorf("audit: remove partial line from %s: %w", w.path, err)
		}
		w.torn = false
	}
	if w.size > 0 && w.size+int64(len(line)) > w.maxSize {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(line)
	if err != nil {
		// A short write (ENOSPC mid-line) leaves half a line that would
		// read as tampering: cut it off now, or before the next write.
		if n > 0 {
			w.torn = w.f.Truncate(w.size) != nil
		}
		return fmt.Errorf("audit: %w", err)
	}
	w.size += int64(n)
	return nil
}

// rotate renames audit.log to audit.log.1 (shifting older files up and
// dropping the oldest) and starts an empty audit.log. The chain goes on:
// the new file's first line points at the old file's last.
func (w *auditFile) rotate() error {
	// The old file's last line is what the next prev hashes: make it
	// durable before anything points at it.
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("audit: sync %s before rotation: %w", w.path, err)
	}
	w.f.Close()
	w.f = nil
	for i := w.maxFiles - 1; i >= 1; i-- {
		if err := os.Rename(w.rotated(i), w.rotated(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("audit: rotate: %w", err)
		}
	}
	if err := os.Rename(w.path, w.rotated(1)); err != nil {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	if err := w.reopen(); err != nil {
		return err
	}
	// Best effort: make the renames durable. Some filesystems refuse to
	// fsync a directory, and the data itself is already synced.
	if d, err := os.Open(filepath.Dir(w.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func (w *auditFile) rotated(i int) string { return w.path + "." + strconv.Itoa(i) }

// reopen opens the current file for appending; its size is where the next
// line goes.
func (w *auditFile) reopen() error {
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	w.f, w.size, w.torn = f, st.Size(), false
	return nil
}

func (w *auditFile) sync() error {
	if w.f == nil {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("audit: sync %s: %w", w.path, err)
	}
	return nil
}

func (w *auditFile) close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err != nil {
		return fmt.Errorf("audit: close %s: %w", w.path, err)
	}
	return nil
}

// lastLine returns the last complete line of the first size bytes of f
// (without its newline; nil if there is none) and where complete lines
// end. It reads backwards in growing chunks: lines are small, files not.
func lastLine(f io.ReaderAt, size int64) (line []byte, complete int64, err error) {
	for chunk := int64(64 << 10); ; chunk *= 2 {
		start := max(0, size-chunk)
		buf := make([]byte, size-start)
		if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
			return nil, 0, err
		}
		end := bytes.LastIndexByte(buf, '\n')
		if end < 0 && start > 0 {
			continue
		}
		if end < 0 {
			return nil, 0, nil
		}
		begin := bytes.LastIndexByte(buf[:end], '\n') + 1
		if begin == 0 && start > 0 {
			continue
		}
		return buf[begin:end], start + int64(end) + 1, nil
	}
}

// newLineEncoder encodes one JSON line per Encode.
func newLineEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	// Reasons and rule texts contain "->" and "&&": keep them readable.
	enc.SetEscapeHTML(false)
	return enc
}

// parseChain reads ztcn.chain from a line, checking that it is one.
func parseChain(line []byte) (auditChain, error) {
	var l struct {
		Ztcn struct {
			Chain *auditChain `json:"chain"`
		} `json:"ztcn"`
	}
	if err := json.Unmarshal(line, &l); err != nil {
		return auditChain{}, fmt.Errorf("not valid JSON: %w", err)
	}
	c := l.Ztcn.Chain
	if c == nil || c.Seq == 0 {
		return auditChain{}, errors.New("no ztcn.chain.seq")
	}
	if b, err := hex.DecodeString(c.Prev); err != nil || len(b) != sha256.Size {
		return auditChain{}, errors.New("ztcn.chain.prev is not a hex SHA-256")
	}
	return *c, nil
}
