package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Identifiers here start with watch/Watch: other files of the package add
// test helpers concurrently, and a shared name would break the build.

// watchPolicy is a native policy allowing frontend to reach backend on ports.
func watchPolicy(ports ...int) string {
	return fmt.Sprintf(`policies:
  - subject: "app:frontend"
    allow:
      - destination: "app:backend"
        ports: %s
`, strings.Join(strings.Fields(fmt.Sprint(ports)), ", "))
}

// watchTimeout bounds every wait for the watcher; generous for -race on a
// loaded machine, while a passing run takes a fraction of it.
const watchTimeout = 5 * time.Second

func watchEndpoint(app string) *Endpoint {
	return &Endpoint{Workload: true, Namespace: "shop", Name: app, ServiceAccount: "default", Labels: map[string]string{"app": app}}
}

var (
	watchFrontend = watchEndpoint("frontend")
	watchBackend  = watchEndpoint("backend")
)

// watchAllowed decides a TCP flow against a snapshot, resolving both ends
// against its own index as the data plane must.
func watchAllowed(s *Snapshot, src, dst *Endpoint, port uint16) bool {
	return s.Index.Decide(s.Index.Resolve(src), s.Index.Resolve(dst), TCP, port).Allowed
}

// watchWrite replaces path's content the way careful editors do: write a
// temporary file and rename it over the original. That also ends any watch
// on the old inode, which the watcher has to survive.
func watchWrite(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// watchFixture is a watcher under test with its reports.
type watchFixture struct {
	w       *Watcher
	results chan ReloadResult
}

// newWatchFixture starts a Watcher on paths, running Run until the test
// ends (and checking it then returns). Polling is off unless opts turn it
// on, so tests of file events cannot pass through the safety net.
func newWatchFixture(t *testing.T, paths []string, opts ...WatcherOption) *watchFixture {
	t.Helper()
	f := &watchFixture{results: make(chan ReloadResult, 1000)}
	opts = append([]WatcherOption{
		WithDebounce(20 * time.Millisecond),
		WithPollInterval(0),
		WithOnReload(func(r ReloadResult) { f.results <- r }),
		WithOnWatchError(func(err error) { t.Errorf("watch error: %v", err) }),
	}, opts...)
	w, err := NewWatcher(paths, IsolateAll, opts...)
	if err != nil {
		t.Fatal(err)
	}
	f.w = w
	if r := f.next(t); !r.OK || r.Version != 1 {
		t.Fatalf("first load reported %+v, want OK version 1", r)
	}
	return f
}

// run starts Run and stops it at the end of the test.
func (f *watchFixture) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(watchTimeout):
			t.Errorf("Run did not return after cancel")
		}
	})
}

// next waits for the next reload report.
func (f *watchFixture) next(t *testing.T) ReloadResult {
	t.Helper()
	select {
	case r := <-f.results:
		return r
	case <-time.After(watchTimeout):
		t.Fatalf("no reload within %s", watchTimeout)
		return ReloadResult{}
	}
}

// watchReceive waits for the next snapshot from a subscription.
func watchReceive(t *testing.T, ch <-chan *Snapshot) *Snapshot {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return s
	case <-time.After(watchTimeout):
		t.Fatalf("no snapshot within %s", watchTimeout)
		return nil
	}
}

func TestWatcherKeepsLastGoodPolicyThroughBrokenEdits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(watchPolicy(80)), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newWatchFixture(t, []string{path})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := f.w.Subscribe(ctx)
	f.run(t)

	v1 := f.w.Current()
	if !watchAllowed(v1, watchFrontend, watchBackend, 80) || watchAllowed(v1, watchFrontend, watchBackend, 8080) {
		t.Fatal("version 1 should allow frontend to backend on 80 only")
	}

	broken := []struct {
		name, content string
		line          int // where the diagnostic must point
		message       string
	}{
		{
			name: "YAML syntax error",
			content: `policies:
  - subject: "app:frontend"
    allow:
      - destination: "app:backend
        ports: [80, 8080]
`,
			message: "YAML syntax",
		},
		{
			name: "unknown key",
			content: `policies:
  - subject: "app:frontend"
    allow:
      - destination: "app:backend"
        prots: [8080]
`,
			line:    5,
			message: `unknown key "prots"`,
		},
	}
	for _, b := range broken {
		watchWrite(t, path, b.content)
		r := f.next(t)
		if r.OK || r.Changed || r.Version != 1 || r.Err == nil {
			t.Fatalf("%s: reload reported %+v, want a failure keeping version 1", b.name, r)
		}
		var le *LoadError
		if !errors.As(r.Err, &le) {
			t.Errorf("%s: error %T, want *LoadError", b.name, r.Err)
		}
		found := false
		for _, d := range r.Diagnostics {
			if d.Severity == SeverityError && d.Pos.File == path && d.Pos.Line > 0 &&
				(b.line == 0 || d.Pos.Line == b.line) && strings.Contains(d.Message, b.message) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no error at %s:%d about %q in %v", b.name, path, b.line, b.message, r.Diagnostics)
		}
		if !strings.Contains(r.Err.Error(), path+":") {
			t.Errorf("%s: error %q does not name the file and line", b.name, r.Err)
		}
		cur := f.w.Current()
		if cur != v1 {
			t.Fatalf("%s: the snapshot in force changed to version %d", b.name, cur.Version)
		}
		if !watchAllowed(cur, watchFrontend, watchBackend, 80) || watchAllowed(cur, watchFrontend, watchBackend, 8080) {
			t.Fatalf("%s: the last good policy no longer decides as before", b.name)
		}
	}

	watchWrite(t, path, watchPolicy(8080))
	r := f.next(t)
	if !r.OK || !r.Changed || r.Version != 2 {
		t.Fatalf("fixed file reported %+v, want OK version 2", r)
	}
	v2 := f.w.Current()
	if v2.Version != 2 || watchAllowed(v2, watchFrontend, watchBackend, 80) || !watchAllowed(v2, watchFrontend, watchBackend, 8080) {
		t.Fatalf("version %d should allow frontend to backend on 8080 only", v2.Version)
	}
	if got := watchReceive(t, sub); got != v2 {
		t.Fatalf("subscriber received version %d, want 2", got.Version)
	}
	select {
	case s := <-sub:
		t.Fatalf("subscriber received version %d after the last good one", s.Version)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestNewWatcherRefusesBrokenPolicyListingEveryDiagnostic(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	bad := `policies:
  - subject: "app:frontend"
    alow: []
`
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w, err := NewWatcher([]string{a, b}, IsolateAll)
	if w != nil || err == nil {
		t.Fatal("NewWatcher accepted a broken policy")
	}
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("error %T, want *LoadError", err)
	}
	for _, p := range []string{a, b} {
		if want := p + ":3:5: error: "; !strings.Contains(err.Error(), want) {
			t.Errorf("error does not list %q:\n%v", want, err)
		}
	}
}

func TestWatcherRefusesAnEmptyFile(t *testing.T) {
	// A file caught between truncate and write must not become the policy.
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(watchPolicy(80)), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newWatchFixture(t, []string{path})
	if err := os.WriteFile(path, []byte("\n  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := f.w.Reload(); r.OK || r.Version != 1 || !strings.Contains(fmt.Sprint(r.Err), "empty") {
		t.Fatalf("empty file reported %+v, want a failure", r)
	}
	if !watchAllowed(f.w.Current(), watchFrontend, watchBackend, 80) {
		t.Fatal("the last good policy is no longer in force")
	}
	// An explicitly empty policy is a policy.
	if err := os.WriteFile(path, []byte("policies: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := f.w.Reload(); !r.OK || r.Version != 2 {
		t.Fatalf("explicitly empty policy reported %+v, want OK version 2", r)
	}
}

// watchConfigMap lays out a ConfigMap volume as kubelet's atomic writer
// does and updates it the same way.
type watchConfigMap struct {
	t   *testing.T
	dir string
	ts  string // current timestamped directory
	n   int
	// keepOld skips removing the previous timestamped directory, so that
	// the ..data rename is the only event there is.
	keepOld bool
}

func newWatchConfigMap(t *testing.T, files map[string]string) *watchConfigMap {
	cm := &watchConfigMap{t: t, dir: t.TempDir()}
	cm.update(files)
	for name := range files {
		// The visible names are made once and point through ..data.
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(cm.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return cm
}

// update writes a new timestamped directory, points ..data_tmp at it,
// renames ..data_tmp over ..data and removes the previous directory.
func (cm *watchConfigMap) update(files map[string]string) {
	t := cm.t
	cm.n++
	ts := fmt.Sprintf("..2026_11_23_10_%02d_00.%09d", cm.n, cm.n)
	if err := os.Mkdir(filepath.Join(cm.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(cm.dir, ts, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(cm.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(cm.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if cm.ts != "" && !cm.keepOld {
		if err := os.RemoveAll(filepath.Join(cm.dir, cm.ts)); err != nil {
			t.Fatal(err)
		}
	}
	cm.ts = ts
}

func TestWatcherFollowsKubernetesConfigMapSymlinkSwap(t *testing.T) {
	mountedFile := func(cm *watchConfigMap) string { return filepath.Join(cm.dir, "policy.yaml") }
	mountedDir := func(cm *watchConfigMap) string { return cm.dir }
	for _, tc := range []struct {
		name    string
		watch   func(cm *watchConfigMap) string
		keepOld bool
	}{
		{"watching the mounted file", mountedFile, false},
		{"watching the mounted directory", mountedDir, false},
		{"watching the mounted file, ..data rename the only event", mountedFile, true},
		{"watching the mounted directory, ..data rename the only event", mountedDir, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cm := newWatchConfigMap(t, map[string]string{"policy.yaml": watchPolicy(80)})
			cm.keepOld = tc.keepOld
			f := newWatchFixture(t, []string{tc.watch(cm)})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sub := f.w.Subscribe(ctx)
			f.run(t)

			for i, port := range []int{8080, 9090} {
				cm.update(map[string]string{"policy.yaml": watchPolicy(port)})
				s := watchReceive(t, sub)
				if s.Version != uint64(i+2) {
					t.Fatalf("swap %d: version %d, want %d", i+1, s.Version, i+2)
				}
				if !watchAllowed(s, watchFrontend, watchBackend, uint16(port)) || watchAllowed(s, watchFrontend, watchBackend, 80) {
					t.Fatalf("swap %d: the new policy is not in force", i+1)
				}
				if f.w.Current() != s {
					t.Fatalf("swap %d: Current is not the published snapshot", i+1)
				}
			}
		})
	}
}

func TestWatcherKeepsLastGoodPolicyWhileFileIsDeletedAndLoadsItWhenRecreated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(watchPolicy(80)), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newWatchFixture(t, []string{path})
	f.run(t)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	r := f.next(t)
	if r.OK || r.Version != 1 || len(r.Diagnostics) == 0 || r.Diagnostics[0].Pos.File != path {
		t.Fatalf("deleted file reported %+v, want a failure naming %s", r, path)
	}
	if s := f.w.Current(); s.Version != 1 || !watchAllowed(s, watchFrontend, watchBackend, 80) {
		t.Fatal("the last good policy is no longer in force")
	}

	// Re-created by a plain write (not a rename): only the directory watch
	// can see it, and the file watch must be re-added for what follows.
	if err := os.WriteFile(path, []byte(watchPolicy(8080)), 0o644); err != nil {
		t.Fatal(err)
	}
	for r = f.next(t); !r.Changed; r = f.next(t) {
		// A reload may catch the file between create and write; it is
		// refused as empty and the write's event brings the real content.
		if r.OK {
			t.Fatalf("unexpected report %+v", r)
		}
	}
	if s := f.w.Current(); !r.OK || s.Version != 2 || !watchAllowed(s, watchFrontend, watchBackend, 8080) {
		t.Fatalf("re-created file reported %+v, want version 2 with the new policy", r)
	}

	watchWrite(t, path, watchPolicy(9090))
	if r := f.next(t); !r.Changed || r.Version != 3 || !watchAllowed(f.w.Current(), watchFrontend, watchBackend, 9090) {
		t.Fatalf("edit after re-creation reported %+v, want version 3", r)
	}
}

func TestWatcherNeverShowsAGapWhileReloading(t *testing.T) {
	// Policies A and B differ (different rules, different index layout) but
	// agree on the flows the readers check; the broken one is refused.
	// Any reader seeing a verdict other than the expected one has caught
	// the policy between versions.
	const policyA = `policies:
  - subject: "app:frontend"
    allow:
      - destination: "app:backend"
        ports: [80]
      - destination: "app:db"
        ports: [5432]
`
	const policyB = `policies:
  - subject: "app:monitor"
    allow:
      - destination: "*"
        ports: [9100]
  - subject: "app:frontend"
    allow:
      - destination: "app:cache"
        ports: [6379]
      - destination: "app:backend"
        ports: [80, 443]
`
	const broken = "policies:\n  - subject: [\n"

	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(policyA), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher([]string{path}, IsolateAll, WithPollInterval(0))
	if err != nil {
		t.Fatal(err)
	}

	type flow struct {
		src, dst *Endpoint
		port     uint16
		want     bool
	}
	flows := []flow{
		{watchFrontend, watchBackend, 80, true},
		{watchBackend, watchFrontend, 80, false}, // denied under both
		{watchFrontend, watchBackend, 22, false},
		{watchEndpoint("other"), watchBackend, 80, false},
	}

	done := make(chan struct{})
	var wg, started sync.WaitGroup
	var seen atomic.Int64 // snapshots observed, summed over readers
	const readers = 2
	started.Add(readers)
	for reader := range readers {
		wg.Go(func() {
			var last uint64
			var subjects [][2]*Subject
			versions, decisions := 0, 0
			signalled := false
			defer func() {
				seen.Add(int64(versions))
				if !signalled { // failed early: do not leave the writer waiting
					started.Done()
				}
			}()
			for {
				select {
				case <-done:
					if decisions == 0 {
						t.Errorf("reader %d decided nothing", reader)
					}
					return
				default:
				}
				s := w.Current()
				if s == nil || s.Index == nil {
					t.Errorf("reader %d saw no policy", reader)
					return
				}
				if s.Version < last {
					t.Errorf("reader %d saw version %d after %d", reader, s.Version, last)
					return
				}
				if s.Version != last || subjects == nil {
					// As the data plane does: resolve once per snapshot.
					last, versions = s.Version, versions+1
					subjects = subjects[:0]
					for _, fl := range flows {
						subjects = append(subjects, [2]*Subject{s.Index.Resolve(fl.src), s.Index.Resolve(fl.dst)})
					}
				}
				for i, fl := range flows {
					if got := s.Index.Decide(subjects[i][0], subjects[i][1], TCP, fl.port).Allowed; got != fl.want {
						t.Errorf("reader %d, version %d: %s -> %s:%d allowed=%v, want %v",
							reader, s.Version, fl.src.Name, fl.dst.Name, fl.port, got, fl.want)
						return
					}
					decisions++
				}
				if !signalled {
					signalled = true
					started.Done()
				}
				runtime.Gosched()
			}
		})
	}

	started.Wait() // every reader is deciding before the first reload
	var good uint64 = 1
	for i := range 200 {
		content := []string{policyB, broken, policyA}[i%3]
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		r := w.Reload()
		if content == broken {
			if r.OK || r.Version != good {
				t.Fatalf("reload %d of the broken file reported %+v", i, r)
			}
			continue
		}
		good++
		if !r.OK || r.Version != good {
			t.Fatalf("reload %d reported %+v, want OK version %d", i, r, good)
		}
	}
	close(done)
	wg.Wait()
	if got := w.Current().Version; got != good || good < 100 {
		t.Fatalf("ended at version %d, want %d (> 100)", got, good)
	}
	// Readers must have run during the reloads, not only before or after.
	if n := seen.Load(); n <= readers {
		t.Fatalf("readers observed %d snapshots in all: they never saw a reload", n)
	}
	t.Logf("readers observed %d snapshots of %d versions", seen.Load(), good)
}

func TestWatcherPublishesEachNewVersionOnceInOrderAndIgnoresIdenticalContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(watchPolicy(80)), 0o644); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()

	results := make(chan ReloadResult, 100)
	w, err := NewWatcher([]string{path}, IsolateAll,
		WithDebounce(10*time.Millisecond), WithPollInterval(0),
		WithOnReload(func(r ReloadResult) { results <- r }))
	if err != nil {
		t.Fatal(err)
	}
	<-results
	subCtx, cancelSubs := context.WithCancel(context.Background())
	subs := []<-chan *Snapshot{w.Subscribe(subCtx), w.Subscribe(subCtx)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	// Identical bytes, by explicit reload and by a rewrite Run sees: no
	// new version, nothing published.
	if r := w.Reload(); !r.OK || r.Changed || r.Version != 1 {
		t.Fatalf("reload of identical content reported %+v, want OK version 1 unchanged", r)
	}
	watchWrite(t, path, watchPolicy(80))

	ports := []int{8080, 9090, 443}
	for _, p := range ports {
		watchWrite(t, path, watchPolicy(p))
		// Wait for each change before the next, so the debounce does not
		// merge them and each must become a version of its own.
		deadline := time.After(watchTimeout)
		for r := (ReloadResult{}); !r.Changed; {
			select {
			case r = <-results:
			case <-deadline:
				t.Fatalf("port %d: no new version", p)
			}
		}
		watchWrite(t, path, watchPolicy(p)) // identical again
	}
	for i, sub := range subs {
		for j, p := range ports {
			s := watchReceive(t, sub)
			if s.Version != uint64(j+2) || !watchAllowed(s, watchFrontend, watchBackend, uint16(p)) {
				t.Fatalf("subscriber %d: got version %d, want %d allowing port %d", i, s.Version, j+2, p)
			}
		}
		select {
		case s := <-sub:
			t.Fatalf("subscriber %d: extra version %d", i, s.Version)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if got := w.Current().Version; got != uint64(len(ports)+1) {
		t.Fatalf("version %d, want %d", got, len(ports)+1)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel", err)
		}
	case <-time.After(watchTimeout):
		t.Fatal("Run did not return after cancel")
	}
	cancelSubs()
	for _, sub := range subs {
		for range sub { // closed once its context ends
		}
	}
	// Run, fsnotify's reader and the subscriptions are gone.
	deadline := time.Now().Add(watchTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatcherPollsForChangesItHasNoEventFor(t *testing.T) {
	// The debounce is far longer than the test: only polling can load the
	// change in time.
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(watchPolicy(80)), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newWatchFixture(t, []string{path}, WithDebounce(time.Minute), WithPollInterval(50*time.Millisecond))
	f.run(t)
	watchWrite(t, path, watchPolicy(8080))
	if r := f.next(t); !r.Changed || r.Version != 2 {
		t.Fatalf("poll reported %+v, want version 2", r)
	}
	// A broken file is reported once, not on every poll.
	watchWrite(t, path, "policies: [\n")
	if r := f.next(t); r.OK {
		t.Fatalf("poll reported %+v, want a failure", r)
	}
	select {
	case r := <-f.results:
		t.Fatalf("unchanged broken file reported again: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestWatcherRunStopsOnCancelAndRefusesASecondRun(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(watchPolicy(80)), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher([]string{path}, IsolateAll)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(watchTimeout)
	for !w.running.Load() {
		if time.Now().After(deadline) {
			t.Fatal("Run did not start")
		}
		time.Sleep(time.Millisecond)
	}
	if err := w.Run(context.Background()); err == nil {
		t.Fatal("a second concurrent Run was accepted")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(watchTimeout):
		t.Fatal("Run did not return after cancel")
	}
}

func TestWatcherRunsTheLinterAndRefusesItsErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(watchPolicy(80)), 0o644); err != nil {
		t.Fatal(err)
	}
	// A stand-in for Lint: warns about every rule, and fails a policy that
	// opens port 22.
	lint := func(set *Set) Diagnostics {
		var ds Diagnostics
		for _, r := range set.Rules {
			ds = append(ds, Diagnostic{Pos: r.Pos, Severity: SeverityWarning, Message: "checked"})
			if strings.Contains(r.Text, "22/") {
				ds = append(ds, Diagnostic{Pos: r.Pos, Severity: SeverityError, Message: "ssh is not allowed"})
			}
		}
		return ds
	}
	w, err := NewWatcher([]string{path}, IsolateAll, WithLinter(lint), WithPollInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	if ws := w.Current().Warnings; len(ws) != 1 || ws[0].Message != "checked" || ws[0].Pos.File != path {
		t.Fatalf("snapshot warnings %v, want the linter's warning", ws)
	}
	if err := os.WriteFile(path, []byte(watchPolicy(22)), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := w.Reload(); r.OK || r.Version != 1 || !strings.Contains(fmt.Sprint(r.Err), "ssh is not allowed") {
		t.Fatalf("lint error reported %+v, want a failure", r)
	}
	if !watchAllowed(w.Current(), watchFrontend, watchBackend, 80) {
		t.Fatal("the last good policy is no longer in force")
	}
}

func TestWatcherFollowsEditsThroughRelativePathsAndSymlinks(t *testing.T) {
	t.Run("relative path", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(watchPolicy(80)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Chdir(dir)
		f := newWatchFixture(t, []string{"policy.yaml"})
		f.run(t)
		watchWrite(t, "policy.yaml", watchPolicy(8080))
		if r := f.next(t); !r.Changed || r.Version != 2 {
			t.Fatalf("edit reported %+v, want version 2", r)
		}
	})
	t.Run("symlink to a file in another directory, target saved by rename", func(t *testing.T) {
		// The link's directory does not change. The save is seen by the
		// watch on the link (which follows it to the old inode, so it has
		// to be re-added after each save) and by the one on the target's
		// directory; either suffices, the test needs one of them.
		dir, elsewhere := t.TempDir(), t.TempDir()
		target := filepath.Join(elsewhere, "real.yaml")
		if err := os.WriteFile(target, []byte(watchPolicy(80)), 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "policy.yaml")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		f := newWatchFixture(t, []string{link})
		f.run(t)
		for i, port := range []int{8080, 9090} {
			watchWrite(t, target, watchPolicy(port))
			if r := f.next(t); !r.Changed || r.Version != uint64(i+2) {
				t.Fatalf("save %d reported %+v, want version %d", i+1, r, i+2)
			}
		}
	})
}
