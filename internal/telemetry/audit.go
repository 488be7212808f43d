package telemetry

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Actions of the audit log (ECS event.action).
const (
	ActionPolicyViolation  = "policy-violation"       // a flow denied by policy in force
	ActionWouldBeViolation = "policy-violation-audit" // denied by mode = "audit" or by a staged policy, let through
	ActionHandshakeFailed  = "tls-handshake-failed"
	ActionPlaintextRefused = "plaintext-refused"
	ActionCertIssued       = "certificate-issued"
	ActionCertRotated      = "certificate-rotated"
	ActionCertRevoked      = "certificate-revoked"
	ActionPolicyReload     = "policy-reload"
)

// AuditEvent is what the agent reports; the audit log renders it as ECS.
type AuditEvent struct {
	// Time is when it happened; zero means when Write was called.
	Time   time.Time
	Action string // one of the Action constants
	// Outcome overrides the ECS event.outcome the action implies
	// ("success" or "failure"): flows denied → failure, would-be
	// violations → success (the connection went through), reloads →
	// failure when Error is set.
	Outcome string
	// Flow is the flow of a violation, a failed handshake or a refused
	// plaintext connection. Write copies the Flow but not its Labels maps:
	// do not modify those afterwards.
	Flow *Flow
	// Certificate events: the SVID's SPIFFE ID, serial (hex), expiry, and
	// why it was issued, rotated or revoked: "start", "expiry", "labels",
	// "stop". Reason is event.reason for any action (for flows it defaults
	// to Flow.Reason).
	SPIFFEID string
	Serial   string
	NotAfter time.Time
	Reason   string
	// Policy reload: the policy in force afterwards (after a failure, the
	// one still in force), and what went wrong (also any action's
	// error.message; for flows it defaults to Flow.Error).
	PolicyVersion uint64
	PolicyDigest  string
	Error         string
	// Node is observer.hostname; empty means Flow.Node, then
	// AuditOptions.Node.
	Node string
}

// AuditOptions are the audit log's optional settings; zero values take the
// defaults.
type AuditOptions struct {
	// MaxSize is the size a file may reach before it is rotated
	// (default 64 MiB).
	MaxSize int64
	// MaxFiles is how many rotated files are kept: audit.log.1 (newest)
	// to audit.log.N (default 5).
	MaxFiles int
	// QueueSize bounds the events waiting for the writer (default 4096,
	// about a second of a denial storm at the writer's slowest fsync
	// rate); beyond it Write drops and counts instead of blocking.
	QueueSize int
	// Node is observer.hostname for events that name none.
	Node string
	// OnError is told about dropped events and write errors, once per
	// burst rather than once per event, from the writer goroutine. It must
	// not call Close, which waits for that goroutine.
	OnError func(error)
}

// AuditStats are the audit log's counters, for
// ztcn_audit_events_total{result="written|dropped|error"}.
type AuditStats struct {
	Written     uint64 // events in the log
	Dropped     uint64 // events refused because the queue was full (or the log closed)
	WriteErrors uint64 // events lost to an I/O error (ENOSPC, EIO, …)
	LastError   string
}

// AuditLog is the agent's audit log: Write queues, one goroutine renders,
// chains and appends. A nil *AuditLog is a log that is switched off.
type AuditLog struct {
	opts AuditOptions
	file *auditFile // owned by the writer goroutine once Open returns

	// mu orders Write's send against Close's close(ch): a send on a closed
	// channel would panic, and Write must never panic.
	mu     sync.RWMutex
	closed bool
	ch     chan AuditEvent
	done   chan struct{}

	written, dropped, writeErrors atomic.Uint64
	// unrecorded counts drops the chain has not recorded yet: the writer
	// moves them into the next line's ztcn.chain.dropped.
	unrecorded atomic.Uint64
	errMu      sync.Mutex
	lastErr    string

	// Writer goroutine only: what OnError was last told, to report an
	// error once per burst rather than once per event.
	reported     string
	dropReported bool
}

// OpenAuditLog opens (or creates) the audit log at path and continues its
// hash chain from the last line, so restarts do not break it.
func OpenAuditLog(path string, opts AuditOptions) (*AuditLog, error) {
	if opts.MaxSize <= 0 {
		opts.MaxSize = 64 << 20
	}
	if opts.MaxFiles <= 0 {
		opts.MaxFiles = 5
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	f, err := openAuditFile(path, opts.MaxSize, opts.MaxFiles)
	if err != nil {
		return nil, err
	}
	l := &AuditLog{
		opts: opts,
		file: f,
		ch:   make(chan AuditEvent, opts.QueueSize),
		done: make(chan struct{}),
	}
	go l.run()
	return l, nil
}

// Write queues an event. It never blocks on the disk and never panics:
// when the queue is full (or the log closed) the event is counted as
// dropped, and the next line written records how many were.
func (l *AuditLog) Write(e AuditEvent) {
	if l == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Flow != nil {
		// The data plane may reuse its Flow once Write returns.
		f := *e.Flow
		e.Flow = &f
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if !l.closed {
		select {
		case l.ch <- e:
			return
		default:
		}
	}
	l.dropped.Add(1)
	l.unrecorded.Add(1)
}

// Stats returns the counters.
func (l *AuditLog) Stats() AuditStats {
	if l == nil {
		return AuditStats{}
	}
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return AuditStats{
		Written:     l.written.Load(),
		Dropped:     l.dropped.Load(),
		WriteErrors: l.writeErrors.Load(),
		LastError:   l.lastErr,
	}
}

// Close writes what is queued, syncs and closes the file. Events written
// after Close are counted as dropped.
func (l *AuditLog) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.ch)
	l.mu.Unlock()
	<-l.done
	return l.file.close()
}

func (l *AuditLog) run() {
	defer close(l.done)
	for e := range l.ch {
		l.write(e)
		if len(l.ch) == 0 {
			// Sync once per batch, not per event: durable within
			// moments of a burst without an fsync per denied packet.
			if err := l.file.sync(); err != nil {
				l.fail(err)
			}
			l.dropReported = false
		}
	}
}

func (l *AuditLog) write(e AuditEvent) {
	if n := l.unrecorded.Swap(0); n > 0 {
		l.file.dropped += n
		if !l.dropReported {
			l.dropReported = true
			l.fail(fmt.Errorf("audit: queue full, %d events dropped", n))
		}
	}
	doc := renderECS(e, l.opts.Node)
	if err := l.file.append(&doc); err != nil {
		l.writeErrors.Add(1)
		l.fail(err)
		return
	}
	l.written.Add(1)
	l.reported = ""
}

// fail records err as the last error and tells OnError, unless it just
// told the same thing: a full disk fails every write until it is freed.
func (l *AuditLog) fail(err error) {
	l.errMu.Lock()
	l.lastErr = err.Error()
	l.errMu.Unlock()
	if l.reported == err.Error() {
		return
	}
	l.reported = err.Error()
	if l.opts.OnError != nil {
		l.opts.OnError(err)
	}
}
