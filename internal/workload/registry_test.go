package workload

import (
	"context"
	"syscall"
	"testing"
	"time"
)

func TestRegistryLifecycleEventsArePublishedInOrder(t *testing.T) {
	r := NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := r.Subscribe(ctx)

	pod := Pod{UID: "u1", Name: "web", Namespace: "shop", ServiceAccount: "web", Labels: map[string]string{"app": "web"}}
	if err := r.RunPodSandbox(pod); err != nil {
		t.Fatal(err)
	}
	pod.Labels = map[string]string{"app": "web", "version": "2"}
	if err := r.UpdatePodSandbox(pod); err != nil {
		t.Fatal(err)
	}
	if err := r.StopPodSandbox("u1"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []EventKind{RunPodSandbox, UpdatePodSandbox, StopPodSandbox} {
		select {
		case ev := <-events:
			if ev.Kind != want || ev.Pod.UID != "u1" {
				t.Fatalf("event %+v, want %s", ev, want)
			}
		case <-time.After(time.Second):
			t.Fatalf("no %s event", want)
		}
	}
}

func TestRecordsHandedOutCannotChangeTheRegistry(t *testing.T) {
	r := NewRegistry()
	if err := r.RunPodSandbox(Pod{UID: "u1", Namespace: "a", ServiceAccount: "b", Labels: map[string]string{"app": "x"}}); err != nil {
		t.Fatal(err)
	}
	p, _ := r.Get("u1")
	p.Labels["app"] = "tampered"
	if again, _ := r.Get("u1"); again.Labels["app"] != "x" {
		t.Fatal("registry record changed through a returned copy")
	}
}

func TestRegistryRefusesInconsistentChanges(t *testing.T) {
	r := NewRegistry()
	base := Pod{UID: "u1", Namespace: "a", ServiceAccount: "b", NetnsPath: "/proc/self/ns/net"}
	if err := r.RunPodSandbox(base); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func() error{
		"a pod registered twice": func() error { return r.RunPodSandbox(base) },
		"two pods in one network namespace": func() error {
			return r.RunPodSandbox(Pod{UID: "u2", Namespace: "a", ServiceAccount: "c", NetnsPath: "/proc/self/ns/net"})
		},
		"a pod without UID":                          func() error { return r.RunPodSandbox(Pod{Namespace: "a"}) },
		"a missing network namespace":                func() error { return r.RunPodSandbox(Pod{UID: "u3", NetnsPath: "/nonexistent/netns"}) },
		"an update that changes the service account": func() error { p := base; p.ServiceAccount = "admin"; return r.UpdatePodSandbox(p) },
		"an update of an unknown pod":                func() error { return r.UpdatePodSandbox(Pod{UID: "nope"}) },
		"a stop of an unknown pod":                   func() error { return r.StopPodSandbox("nope") },
	}
	for name, f := range cases {
		if err := f(); err == nil {
			t.Errorf("%s was accepted", name)
		}
	}
}

func TestPodsAreFoundByTheirNetworkNamespace(t *testing.T) {
	r := NewRegistry()
	if err := r.RunPodSandbox(Pod{UID: "u1", Namespace: "a", ServiceAccount: "b", NetnsPath: "/proc/self/ns/net"}); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	if uid, ok := r.ByNetns(uint64(st.Dev), st.Ino); !ok || uid != "u1" {
		t.Fatalf("ByNetns = %q, %v", uid, ok)
	}
	if err := r.StopPodSandbox("u1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.ByNetns(uint64(st.Dev), st.Ino); ok {
		t.Fatal("stopped pod still found by its network namespace")
	}
}
