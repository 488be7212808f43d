package feed

import (
	"context"
	"testing"
	"time"
)

func TestSlowSubscriberSeesEveryValueInOrder(t *testing.T) {
	var f Feed[int]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fast, slow := f.Subscribe(ctx), f.Subscribe(ctx)

	const n = 10000
	for i := 0; i < n; i++ {
		f.Publish(i) // must not block although nobody reads yet
	}
	for _, ch := range []<-chan int{fast, slow} {
		for want := 0; want < n; want++ {
			select {
			case got := <-ch:
				if got != want {
					t.Fatalf("got %d, want %d", got, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("timed out waiting for value %d", want)
			}
		}
	}
}

func TestCancelClosesChannelAndUnsubscribes(t *testing.T) {
	var f Feed[string]
	ctx, cancel := context.WithCancel(context.Background())
	ch := f.Subscribe(ctx)
	if f.Len() != 1 {
		t.Fatalf("Len = %d, want 1", f.Len())
	}
	cancel()
	for range ch {
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("subscriber not removed after cancel")
		}
		time.Sleep(time.Millisecond)
	}
	f.Publish("after") // no subscriber, must not panic or block
}

func TestLateSubscriberDoesNotSeeEarlierValues(t *testing.T) {
	var f Feed[int]
	f.Publish(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := f.Subscribe(ctx)
	f.Publish(2)
	if got := <-ch; got != 2 {
		t.Fatalf("got %d, want 2", got)
	}
}
