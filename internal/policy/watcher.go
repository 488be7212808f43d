package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ztcn/ztcn/internal/feed"
)

// This file keeps the policy in force current while the agent runs.
//
// The no-gap guarantee: a Watcher always holds exactly one compiled policy,
// reached through a single atomic pointer. A reload parses and compiles the
// new policy completely on the side and only then replaces the pointer in
// one Store, so a reader sees either the old snapshot or the new one, never
// a nil, half-built or empty index in between. A reload that fails for any
// reason (syntax error, schema error, a lint error, a deleted or unreadable
// file, an empty file) changes nothing: the last good policy stays in force
// and the failure is reported with file:line:col.
//
// Kubernetes ConfigMap volumes: kubelet never writes a mounted file in place.
// The volume directory holds a timestamped directory with the real files,
// a symlink ..data pointing to it, and the visible names as symlinks through
// ..data (policy.yaml -> ..data/policy.yaml). An update writes a new
// timestamped directory, points a new symlink ..data_tmp at it, renames
// ..data_tmp over ..data (the atomic step) and removes the old directory.
// A watch on policy.yaml itself sees none of that (its inode never changes;
// it only disappears with the old directory), so the Watcher also watches
// the directory holding each path and treats any event on ..data there as a
// change of the policy. The same directory watch catches editors that save
// by writing a temporary file and renaming it over the original, which
// silently ends a watch on the original's inode; watches are re-added after
// every reload and on every poll for that reason.

// Snapshot is one version of the policy in force. It is immutable: a new
// policy is a new Snapshot, so holders of an old one can keep using it.
type Snapshot struct {
	// Index decides flows. Subjects must be resolved against this Index
	// (Index.Resolve); a Subject of another snapshot is refused by Decide.
	Index *Index
	// Staged is the staged view: the index of every rule, staged ones
	// (`mode: audit`) enforced too, or nil when no rule is staged. Its
	// verdicts are would-be verdicts, to record where they differ from
	// Index's; traffic follows Index alone. Its Subjects are its own (one
	// Resolve per endpoint and index; Decide refuses the other index's),
	// and its Verdict.Rule numbers the same rules as Index's.
	Staged *Index
	// Version counts good policies since the Watcher was made: 1, 2, …
	// Identical input content never gets a new version.
	Version uint64
	// LoadedAt is when this version was swapped in.
	LoadedAt time.Time
	// Warnings are the non-error diagnostics of the loader and linter.
	Warnings Diagnostics
	// Digest is the hex SHA-256 over the input files' names and contents,
	// so that two nodes can tell whether they enforce the same policy.
	Digest string
}

// ReloadResult reports one reload attempt.
type ReloadResult struct {
	// Version is the version in force after the attempt: the new one if
	// Changed, the previous one otherwise.
	Version uint64
	// OK is false when the new input was refused; the last good policy
	// stays in force.
	OK bool
	// Changed says a new snapshot was swapped in. OK without Changed means
	// the input is identical to the policy already in force.
	Changed bool
	// Diagnostics are every problem found (errors when !OK, warnings
	// otherwise), sorted by position.
	Diagnostics Diagnostics
	// Err is why the reload failed (a *LoadError for bad input), or nil.
	Err error
}

// LoadError is a policy input that cannot be put in force. Its message
// lists every diagnostic as file:line:col: severity: message.
type LoadError struct {
	Diagnostics Diagnostics
}

func (e *LoadError) Error() string {
	var b strings.Builder
	n := 0
	for _, d := range e.Diagnostics {
		if d.Severity == SeverityError {
			n++
		}
	}
	fmt.Fprintf(&b, "policy: %d error(s) in policy input", n)
	for _, d := range e.Diagnostics {
		b.WriteString("\n  ")
		b.WriteString(d.String())
	}
	return b.String()
}

// WatcherOption configures a Watcher.
type WatcherOption func(*Watcher)

// WithOnReload calls fn after every reload attempt that had something to
// do, including the first load in NewWatcher: for logs, metrics and audit.
// Reloads are serialized and fn runs before the next one starts, so fn sees
// them in order; it must not call Reload.
func WithOnReload(fn func(ReloadResult)) WatcherOption {
	return func(w *Watcher) { w.onReload = fn }
}

// WithDebounce sets how long Run waits after the last file event before
// reloading (default 100ms). Editors save in several steps (truncate, write,
// rename, chmod) and one save should be one reload, of the finished file.
func WithDebounce(d time.Duration) WatcherOption {
	return func(w *Watcher) { w.debounce = max(d, 0) }
}

// WithPollInterval sets how often Run re-reads the inputs regardless of
// file events (default 10s; 0 disables polling). It is the safety net for
// events the kernel drops or never sends (network file systems, inotify
// queue overflow, watch limits): a reload happens only if the content hash
// of the inputs changed, so polling costs a read and a hash.
func WithPollInterval(d time.Duration) WatcherOption {
	return func(w *Watcher) { w.poll = max(d, 0) }
}

// WithLinter runs lint on every loaded Set before it is compiled (for
// example policy.Lint). Its warnings land in Snapshot.Warnings; an error
// refuses the reload like a parse error does.
func WithLinter(lint func(*Set) Diagnostics) WatcherOption {
	return func(w *Watcher) { w.lint = lint }
}

// WithOnWatchError calls fn for problems of the file watch itself (a watch
// that cannot be added, a kernel event queue overflow, no inotify at all).
// The Watcher keeps working through them, by polling if need be, but an
// operator should know that changes may be picked up late.
func WithOnWatchError(fn func(error)) WatcherOption {
	return func(w *Watcher) { w.onWatchError = fn }
}

// Default timings.
const (
	// DefaultReloadDebounce covers the steps of one editor save.
	DefaultReloadDebounce = 100 * time.Millisecond
	// DefaultReloadPoll bounds how stale the policy can get when file
	// events are lost, at the price of reading the inputs that often.
	DefaultReloadPoll = 10 * time.Second
)

// stableReadAttempts bounds how often a reload re-reads inputs that change
// while being read (see Watcher.reload).
const stableReadAttempts = 3

// Watcher holds the policy in force and reloads it when its files change.
type Watcher struct {
	paths        []string
	mode         IsolationMode
	debounce     time.Duration
	poll         time.Duration
	lint         func(*Set) Diagnostics
	onReload     func(ReloadResult)
	onWatchError func(error)
	sources      []Source

	// current is the only thing the hot path reads.
	current atomic.Pointer[Snapshot]
	updates feed.Feed[*Snapshot]
	running atomic.Bool

	// mu serializes reloads, so versions are assigned, stored, published
	// and reported in one order.
	mu sync.Mutex
	// goodSum is the digest of the inputs behind current; triedSum of the
	// inputs of the last attempt, good or not, so that polling and
	// repeated events do not report the same broken file over and over.
	goodSum, triedSum [sha256.Size]byte
}

// NewWatcher loads and compiles the policy at paths (files or directories,
// as Load reads them) and returns a Watcher holding it as version 1. The
// first load must succeed, since there is no earlier policy to fall back
// on: otherwise the error is a *LoadError listing every diagnostic. Call Run
// to follow changes.
func NewWatcher(paths []string, mode IsolationMode, opts ...WatcherOption) (*Watcher, error) {
	if len(paths) == 0 {
		return nil, errors.New("policy: watcher needs at least one policy path")
	}
	if mode == "" {
		mode = IsolateAll
	}
	if _, err := ParseIsolationMode(string(mode)); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	w := &Watcher{
		paths:    append([]string(nil), paths...),
		mode:     mode,
		debounce: DefaultReloadDebounce,
		poll:     DefaultReloadPoll,
	}
	for _, o := range opts {
		o(w)
	}
	if res := w.Reload(); !res.OK {
		return nil, res.Err
	}
	return w, nil
}

// Current returns the policy in force. It is one atomic load, never nil
// (NewWatcher does not return a Watcher without a policy), and cheap enough
// for every connection.
func (w *Watcher) Current() *Snapshot { return w.current.Load() }

// Subscribe returns a channel receiving every snapshot swapped in after
// this call, each once and in version order, until ctx ends (then the
// channel is closed). No snapshot is lost to a slow reader. To miss none,
// subscribe first and then read Current: the first snapshot received may be
// the one Current returned, so compare versions.
func (w *Watcher) Subscribe(ctx context.Context) <-chan *Snapshot {
	return w.updates.Subscribe(ctx)
}

// Reload reads the inputs now and swaps in the new policy if it is good and
// different from the one in force; what a SIGHUP handler should call. Run
// does the same on a file change, except that it stays silent when the
// inputs are those of the last attempt; Reload always reports.
func (w *Watcher) Reload() ReloadResult { return w.reload(true) }

// reloadIfChanged reloads only when the inputs differ from those of the
// last attempt: what polling and file events use, so that a chmod, a
// touch or a broken file left alone cause neither work nor repeated
// reports.
func (w *Watcher) reloadIfChanged() { w.reload(false) }

// reload is Reload; with force false it does nothing (and returns a zero
// result) when the inputs are those of the last attempt.
func (w *Watcher) reload(force bool) ReloadResult {
	w.mu.Lock()
	defer w.mu.Unlock()

	sum, empty, extra := w.digest()
	if !force && sum == w.triedSum {
		return ReloadResult{}
	}
	cur := w.current.Load()
	var (
		set   *Set
		diags Diagnostics
	)
	for attempt := 1; ; attempt++ {
		if cur != nil && sum == w.goodSum {
			// Same bytes as the policy in force: a new version would make
			// every subscriber re-check every connection for nothing.
			w.triedSum = sum
			return w.report(ReloadResult{Version: cur.Version, OK: true, Diagnostics: cur.Warnings})
		}
		set, diags = loadWithDocuments(w.paths, extra)
		// Load reads the files again, and with several files (a directory)
		// a writer can change some between our digest and Load, or between
		// two files. Read until the digest before and after agree, so the
		// digest recorded is the content loaded; if the input keeps
		// changing, keep the older digest, so the next event or poll sees a
		// difference and loads again.
		after, emptyAfter, extraAfter := w.digest()
		if after == sum || attempt == stableReadAttempts {
			break
		}
		sum, empty, extra = after, emptyAfter, extraAfter
	}
	w.triedSum = sum

	for _, f := range empty {
		// An editor that truncates and then writes, or a file created
		// before it is filled, shows an empty file for a moment. As policy
		// it would mean deny-all (IsolateAll) or allow-all (IsolateSelected):
		// never what the author meant, so it is refused. A policy without
		// rules can still be written explicitly ("policies: []").
		diags = append(diags, Diagnostic{Pos: Position{File: f}, Severity: SeverityError,
			Message: "file is empty (still being written?); an empty policy file is refused"})
	}
	if !diags.HasErrors() && w.lint != nil {
		diags = append(diags, w.lint(set)...)
	}
	diags.Sort()
	fail := func(err error) ReloadResult {
		res := ReloadResult{OK: false, Diagnostics: diags, Err: err}
		if cur != nil {
			res.Version = cur.Version
		}
		return w.report(res)
	}
	if diags.HasErrors() {
		return fail(&LoadError{Diagnostics: diags})
	}
	ix, staged, err := compileViews(set, w.mode)
	if err != nil {
		return fail(fmt.Errorf("policy: compile: %w", err))
	}

	snap := &Snapshot{Index: ix, Staged: staged, Version: 1, LoadedAt: time.Now(), Warnings: diags, Digest: hex.EncodeToString(sum[:])}
	if cur != nil {
		snap.Version = cur.Version + 1
	}
	// The one moment the policy changes: readers go from cur to snap.
	w.current.Store(snap)
	w.goodSum = sum
	w.updates.Publish(snap)
	return w.report(ReloadResult{Version: snap.Version, OK: true, Changed: true, Diagnostics: diags})
}

// View is the index that decides in the view asked for: the staged view
// if staged and the policy stages any rule, otherwise the policy in force
// (with no staged rule the two are the same). For commands that can show
// either; the data plane reads Index and Staged itself.
func (s *Snapshot) View(staged bool) *Index {
	if staged && s.Staged != nil {
		return s.Staged
	}
	return s.Index
}

func (w *Watcher) report(res ReloadResult) ReloadResult {
	if w.onReload != nil {
		w.onReload(res)
	}
	return res
}

func (w *Watcher) watchError(err error) {
	if w.onWatchError != nil {
		w.onWatchError(err)
	}
}

// digest hashes every input: the files and the sources' documents, which it
// returns, so that what is compiled is what was hashed.
func (w *Watcher) digest() (sum [sha256.Size]byte, empty []string, docs []Document) {
	h := sha256.New()
	empty = digestFiles(h, w.paths)
	docs = sourceDocuments(w.sources)
	digestDocuments(h, docs)
	h.Sum(sum[:0])
	return sum, empty, docs
}

// digestFiles hashes what Load would read: for each path, the names and
// contents of its files (or why they cannot be read, so that a deleted file
// is a change too). It returns the files holding nothing but white space.
func digestFiles(h io.Writer, paths []string) (empty []string) {
	for _, p := range paths {
		fmt.Fprintf(h, "path %q\n", p)
		files, err := policyFiles(p)
		if err != nil {
			fmt.Fprintf(h, "error %q\n", err)
			continue
		}
		for _, f := range files {
			fileSum, blank, err := digestFile(f)
			if err != nil {
				fmt.Fprintf(h, "file %q error %q\n", f, err)
				continue
			}
			fmt.Fprintf(h, "file %q %x\n", f, fileSum)
			if blank {
				empty = append(empty, f)
			}
		}
	}
	return empty
}

func digestFile(path string) (sum [sha256.Size]byte, blank bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return sum, false, err
	}
	defer f.Close()
	h := sha256.New()
	bw := &blankWriter{blank: true}
	// One byte over the loader's limit is enough to change the digest of
	// an oversized file; Load reports it.
	if _, err := io.Copy(io.MultiWriter(h, bw), io.LimitReader(f, maxPolicyFileSize+1)); err != nil {
		return sum, false, err
	}
	h.Sum(sum[:0])
	return sum, bw.blank, nil
}

// blankWriter notes whether everything written was white space.
type blankWriter struct{ blank bool }

func (b *blankWriter) Write(p []byte) (int, error) {
	if b.blank {
		for _, c := range p {
			switch c {
			case ' ', '\t', '\n', '\r':
			default:
				b.blank = false
				return len(p), nil
			}
		}
	}
	return len(p), nil
}

// Run follows changes of the policy files until ctx ends, then stops its
// file watch and returns nil. Changes are noticed by file events (debounced)
// and by polling; each leads to a reload only if the inputs' content hash
// changed. If the kernel refuses a file watch, Run reports it through
// WithOnWatchError and carries on by polling (it fails only if polling is
// disabled too). Run may be called once at a time.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("policy: watcher is already running")
	}
	defer w.running.Store(false)

	var (
		events <-chan fsnotify.Event
		errs   <-chan error
		ws     watchSet
	)
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		err = fmt.Errorf("policy: watch policy files: %w", err)
		if w.poll <= 0 {
			return err
		}
		w.watchError(fmt.Errorf("%w; polling every %s instead", err, w.poll))
	} else {
		// Close ends fsnotify's reader goroutine; nothing of Run outlives it.
		defer fw.Close()
		events, errs = fw.Events, fw.Errors
		ws = w.syncWatches(fw)
	}

	var tick <-chan time.Time
	if w.poll > 0 {
		t := time.NewTicker(w.poll)
		defer t.Stop()
		tick = t.C
	}
	// Since Go 1.23 a stopped or reset timer delivers no stale tick, so
	// one timer serves every burst.
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()

	sourceChanged := mergeChanged(ctx, w.sources)

	// A change between NewWatcher's load and the watches above would
	// otherwise wait for the next poll.
	w.reloadIfChanged()

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				// fsnotify closed its channels on its own: carry on polling.
				events, errs = nil, nil
				continue
			}
			if ws.relevant(ev.Name) {
				// Trailing-edge debounce: each event of a burst pushes the
				// reload back, so it reads the finished file.
				debounce.Reset(w.debounce)
			}
		case err, ok := <-errs:
			if !ok {
				events, errs = nil, nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were dropped: any of them may have been ours.
				debounce.Reset(w.debounce)
			}
			w.watchError(fmt.Errorf("policy: watch policy files: %w", err))
		case <-sourceChanged:
			// Objects of an API often change in bursts (kubectl apply -f
			// of a directory): one reload for the burst.
			debounce.Reset(w.debounce)
		case <-debounce.C:
			w.reloadIfChanged()
			if fw != nil {
				ws = w.syncWatches(fw)
			}
		case <-tick:
			if fw != nil {
				ws = w.syncWatches(fw)
			}
			w.reloadIfChanged()
		}
	}
}

// watchSet is what Run watches and which event names concern the policy.
type watchSet struct {
	// dirs are watched directories; files are watched paths themselves
	// (for a symlink, the watch follows it to the target).
	dirs, files map[string]bool
	// names are event names that are changes of the input.
	names map[string]bool
	// inputDirs are directory inputs: any policy file or ..data in them
	// counts.
	inputDirs map[string]bool
}

// configMapData is the symlink kubelet swaps atomically in a ConfigMap or
// Secret volume.
const configMapData = "..data"

func (ws *watchSet) relevant(name string) bool {
	name = filepath.Clean(name)
	if ws.names[name] {
		return true
	}
	if !ws.inputDirs[filepath.Dir(name)] {
		return false
	}
	base := filepath.Base(name)
	switch strings.ToLower(filepath.Ext(base)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return base == configMapData
}

// desiredWatches works out, from the current state of the file system,
// what to watch for paths:
//   - a file: the file itself, its directory (renames over it, ConfigMap
//     ..data swaps) and, if it is a symlink, the directory of its target
//     (an editor saving the target by rename);
//   - a directory: the directory (files added, changed, removed, ..data
//     swapped) and its parent (the directory replaced or re-pointed).
func desiredWatches(paths []string) watchSet {
	ws := watchSet{dirs: map[string]bool{}, files: map[string]bool{}, names: map[string]bool{}, inputDirs: map[string]bool{}}
	for _, p := range paths {
		// Absolute, so that two spellings of one directory (a relative
		// path and a symlink target) do not become two names for one
		// inotify watch, of which fsnotify would report only the first.
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		} else {
			p = filepath.Clean(p)
		}
		parent := filepath.Dir(p)
		ws.dirs[parent] = true
		ws.names[p] = true
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			ws.dirs[p] = true
			ws.inputDirs[p] = true
			continue
		}
		// Also for a file that does not exist right now: once it is
		// re-created, the event in parent brings it back.
		ws.files[p] = true
		ws.names[filepath.Join(parent, configMapData)] = true
		if target, err := filepath.EvalSymlinks(p); err == nil && target != p {
			ws.dirs[filepath.Dir(target)] = true
			ws.names[target] = true
		}
	}
	return ws
}

// syncWatches brings fw's watches in line with desiredWatches and returns
// the set. Files are re-added every time: a watch follows an inode, and
// after a rename over the file (or a ConfigMap swap) the path names a new
// one. Paths that do not exist now are skipped silently; the directory
// watch or the next poll picks them up when they return.
func (w *Watcher) syncWatches(fw *fsnotify.Watcher) watchSet {
	ws := desiredWatches(w.paths)
	have := map[string]bool{}
	for _, p := range fw.WatchList() {
		have[p] = true
	}
	for p := range have {
		if !ws.dirs[p] && !ws.files[p] {
			// Typically the old timestamped directory of a ConfigMap;
			// removing a watch the kernel already dropped fails harmlessly.
			_ = fw.Remove(p)
		}
	}
	add := func(p string) {
		if err := fw.Add(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.watchError(fmt.Errorf("policy: watch %s: %w", p, err))
		}
	}
	for p := range ws.dirs {
		if !have[p] {
			add(p)
		}
	}
	for p := range ws.files {
		add(p)
	}
	return ws
}
