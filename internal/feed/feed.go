// Package feed is a lossless fan-out of events to subscribers.
//
// The registry and the identity manager publish state changes that other
// layers must see in full: a data plane that misses a revocation keeps a
// dead identity alive. A bounded channel would force the publisher either to
// block on the slowest subscriber or to drop events, so every subscriber
// gets its own unbounded queue drained by one goroutine; the publisher never
// waits for a reader.
package feed

import (
	"context"
	"sync"
)

// Feed delivers every published value, in order, to every subscriber that
// was subscribed when it was published. The zero value is ready to use.
type Feed[T any] struct {
	mu   sync.Mutex
	subs map[*subscriber[T]]struct{}
}

type subscriber[T any] struct {
	mu    sync.Mutex
	queue []T
	wake  chan struct{} // capacity 1: a pending wake-up
}

// Publish queues v for every current subscriber. It never blocks on them.
func (f *Feed[T]) Publish(v T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.mu.Lock()
		s.queue = append(s.queue, v)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Subscribe returns a channel that receives every value published from now
// on. The channel is closed when ctx is cancelled; values still queued then
// are dropped, since the subscriber has said it no longer wants them.
func (f *Feed[T]) Subscribe(ctx context.Context) <-chan T {
	s := &subscriber[T]{wake: make(chan struct{}, 1)}
	f.mu.Lock()
	if f.subs == nil {
		f.subs = make(map[*subscriber[T]]struct{})
	}
	f.subs[s] = struct{}{}
	f.mu.Unlock()

	out := make(chan T)
	go func() {
		defer close(out)
		defer func() {
			f.mu.Lock()
			delete(f.subs, s)
			f.mu.Unlock()
		}()
		for {
			s.mu.Lock()
			batch := s.queue
			s.queue = nil
			s.mu.Unlock()
			for _, v := range batch {
				select {
				case out <- v:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-s.wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Len reports the number of live subscribers, for tests and status output.
func (f *Feed[T]) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}
