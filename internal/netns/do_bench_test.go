package netns

import (
	"crypto/rand"
	"fmt"
	"os"
	"runtime"
	"testing"
)

// BenchmarkDo is the cost of running a function inside a pod's namespace,
// paid by every inbound connection the agent dials into a pod; beside it,
// the same hand-off to a locked goroutine without switching namespaces.
func BenchmarkDo(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("ztbench%x", rnd)
	ns, err := Create(name)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { ns.Close(); _ = Delete(name) }()
	b.Run("setns", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := Do(ns, func() error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline-locked-goroutine", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			done := make(chan struct{})
			go func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				close(done)
			}()
			<-done
		}
	})
}
