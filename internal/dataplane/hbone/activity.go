package hbone

import (
	"sync/atomic"
	"time"
)

// watchdog fires once when no data has moved for d. Readers record activity
// with one atomic store per read (no timer reset, no allocation on the hot
// path); the timer re-arms itself for the remaining time when it wakes up
// and finds recent activity.
type watchdog struct {
	d       time.Duration
	base    time.Time    // monotonic origin of last
	last    atomic.Int64 // nanoseconds since base of the last activity
	timer   *time.Timer
	fire    func()
	stopped atomic.Bool
}

// newWatchdog returns nil when d <= 0: no idle timeout. All methods accept a
// nil receiver.
func newWatchdog(d time.Duration, fire func()) *watchdog {
	if d <= 0 {
		return nil
	}
	w := &watchdog{d: d, base: time.Now(), fire: fire}
	w.timer = time.AfterFunc(d, w.check)
	return w
}

func (w *watchdog) touch() {
	if w != nil {
		w.last.Store(int64(time.Since(w.base)))
	}
}

func (w *watchdog) check() {
	if w.stopped.Load() {
		return
	}
	idle := time.Since(w.base) - time.Duration(w.last.Load())
	if idle >= w.d {
		w.fire()
		return
	}
	w.timer.Reset(w.d - idle)
}

func (w *watchdog) stop() {
	if w != nil {
		// stopped keeps a check that is already running from re-arming.
		w.stopped.Store(true)
		w.timer.Stop()
	}
}
