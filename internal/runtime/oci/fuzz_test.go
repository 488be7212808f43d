package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzReadState: what the runtime writes to the hook's stdin is outside
// input. A state that reads either yields a stage error or a workload
// record whose every field is valid (an identity the agent can issue for),
// or an AnnotationError naming one of ztcn's annotations; never a panic.
func FuzzReadState(f *testing.F) {
	for _, seed := range []string{
		`{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b","annotations":{"ztcn.io/namespace":"shop","ztcn.io/labels":"app=web,tier=a","ztcn.io/ports":"http=8080"}}`,
		`{"id":"3f2a9c1d0e5b","status":"stopped","annotations":{"io.kubernetes.pod.namespace":"p","io.kubernetes.pod.name":"n","io.kubernetes.cri-o.ContainerType":"container"}}`,
		`{"id":"x","status":"created","annotations":{"ztcn.io/labels":"a=b,,c"}}`,
		`{"id":"My_Container","status":"creating"}`,
		`{"id":"c","annotations":{"ztcn.io/ports":"http=99999"}}`,
		`{"id":"c","annotations":{"ztcn.io/labels":"example.com/x=y, k = v"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ReadState(bytes.NewReader(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "container state on stdin") {
				t.Fatalf("ReadState error without context: %v", err)
			}
			return
		}
		if st.ID == "" {
			t.Fatal("ReadState accepted a state without id")
		}
		if stage, err := StageOf(st); err == nil && stage != StageCreateRuntime && stage != StagePoststop {
			t.Fatalf("StageOf = %q", stage)
		}
		pod, err := PodFromState(st)
		if err != nil {
			var ae *AnnotationError
			if !errors.As(err, &ae) || !strings.HasPrefix(ae.Key, "ztcn.io/") {
				t.Fatalf("PodFromState error is not about a ztcn.io annotation: %v", err)
			}
			return
		}
		if pod.UID != st.ID || pod.Runtime != Runtime {
			t.Fatalf("pod %+v for state %q", pod, st.ID)
		}
		for what, errs := range map[string][]string{
			"namespace":       validation.IsDNS1123Label(pod.Namespace),
			"name":            validation.IsDNS1123Subdomain(pod.Name),
			"service account": validation.IsDNS1123Subdomain(pod.ServiceAccount),
		} {
			if len(errs) > 0 {
				t.Fatalf("accepted an invalid %s: %v", what, errs)
			}
		}
		for k, v := range pod.Labels {
			if len(validation.IsQualifiedName(k)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
				t.Fatalf("accepted an invalid label %q=%q", k, v)
			}
		}
		for name, port := range pod.Ports {
			if port == 0 || len(validation.IsValidPortName(name)) > 0 {
				t.Fatalf("accepted an invalid port %q=%d", name, port)
			}
		}
		// The record crosses the control socket as JSON.
		if _, err := json.Marshal(pod); err != nil {
			t.Fatal(err)
		}
	})
}
