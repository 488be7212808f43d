package oci

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPodFromState(t *testing.T) {
	st := &specs.State{ID: "3f2a9c1d0e5b7a8f", Annotations: map[string]string{
		AnnotationNamespace:      "shop",
		AnnotationName:           "web-1",
		AnnotationServiceAccount: "web",
		AnnotationLabels:         " tier=frontend , app=web,example.com/team=",
		AnnotationPorts:          "http=8080,metrics=9090",
	}}
	pod, err := PodFromState(st)
	if err != nil {
		t.Fatal(err)
	}
	if pod.UID != st.ID || pod.Namespace != "shop" || pod.Name != "web-1" || pod.ServiceAccount != "web" {
		t.Fatalf("identity: %+v", pod)
	}
	if fmt.Sprint(pod.Labels) != "map[app:web example.com/team: tier:frontend]" {
		t.Fatalf("labels: %v", pod.Labels)
	}
	if pod.Ports["http"] != 8080 || pod.Ports["metrics"] != 9090 || len(pod.Ports) != 2 {
		t.Fatalf("ports: %v", pod.Ports)
	}
}

func TestPodFromStateDefaultsAndCRIO(t *testing.T) {
	pod, err := PodFromState(&specs.State{ID: "0123456789abcdef0123"})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Namespace != DefaultNamespace || pod.ServiceAccount != DefaultServiceAccount || pod.Name != "0123456789ab" || pod.Labels != nil {
		t.Fatalf("defaults: %+v", pod)
	}
	pod, err = PodFromState(&specs.State{ID: "x", Annotations: map[string]string{
		annotationKubeNamespace: "payments", annotationKubeName: "api-7d9",
	}})
	if err != nil || pod.Namespace != "payments" || pod.Name != "api-7d9" {
		t.Fatalf("CRI-O annotations: %+v, %v", pod, err)
	}
	if !SharesSandbox(&specs.State{Annotations: map[string]string{annotationCRIOContainerType: "container"}}) ||
		SharesSandbox(&specs.State{Annotations: map[string]string{annotationCRIOContainerType: "sandbox"}}) {
		t.Fatal("SharesSandbox")
	}
}

func TestPodFromStateRejects(t *testing.T) {
	for _, tc := range []struct {
		name        string
		id          string
		annotations map[string]string
		want        string
	}{
		{"bad namespace", "c1", map[string]string{AnnotationNamespace: "Shop"}, `annotation ztcn.io/namespace="Shop": a lowercase RFC 1123 label`},
		{"bad service account", "c1", map[string]string{AnnotationServiceAccount: "a/b"}, `annotation ztcn.io/service-account="a/b"`},
		{"container ID is no name", "my_container", nil, `annotation ztcn.io/name="my_container": the container ID is not a valid workload name`},
		{"label without value", "c1", map[string]string{AnnotationLabels: "app"}, `annotation ztcn.io/labels="app": item "app": want key=value`},
		{"empty label item", "c1", map[string]string{AnnotationLabels: "app=a,,x=y"}, `item "": want key=value`},
		{"label twice", "c1", map[string]string{AnnotationLabels: "app=a,app=b"}, `key "app" given twice`},
		{"bad label key", "c1", map[string]string{AnnotationLabels: "-app=a"}, `label key "-app"`},
		{"bad label value", "c1", map[string]string{AnnotationLabels: "app=a b"}, `label "app" value "a b"`},
		{"port out of range", "c1", map[string]string{AnnotationPorts: "http=70000"}, `port "70000" of "http": want 1-65535`},
		{"port zero", "c1", map[string]string{AnnotationPorts: "http=0"}, `want 1-65535`},
		{"bad port name", "c1", map[string]string{AnnotationPorts: "HTTP_1=80"}, `port name "HTTP_1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PodFromState(&specs.State{ID: tc.id, Annotations: tc.annotations})
			var ae *AnnotationError
			if !errors.As(err, &ae) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an AnnotationError containing %q", err, tc.want)
			}
		})
	}
}

func TestReadStateAndStage(t *testing.T) {
	st, err := ReadState(strings.NewReader(`{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b","annotations":{"ztcn.io/namespace":"shop"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if stage, err := StageOf(st); err != nil || stage != StageCreateRuntime || st.Pid != 42 {
		t.Fatalf("creating: %v %v %+v", stage, err, st)
	}
	st.Status = specs.StateStopped
	if stage, err := StageOf(st); err != nil || stage != StagePoststop {
		t.Fatalf("stopped: %v %v", stage, err)
	}
	st.Status = specs.StateRunning
	if _, err := StageOf(st); err == nil || !strings.Contains(err.Error(), "name the stage") {
		t.Fatalf("running: %v", err)
	}
	for _, bad := range []string{"", "{", `{"status":"creating"}`, `{"id":"c1"` + strings.Repeat(" ", maxStateSize) + `}`} {
		if _, err := ReadState(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "container state on stdin") {
			t.Fatalf("ReadState(%.20q) = %v", bad, err)
		}
	}
}
