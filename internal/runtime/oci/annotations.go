package oci

import (
	"cmp"
	"fmt"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ztcn/ztcn/internal/workload"
)

// Annotations read from the container state.
const (
	AnnotationNamespace      = "ztcn.io/namespace"
	AnnotationName           = "ztcn.io/name"
	AnnotationServiceAccount = "ztcn.io/service-account"
	// AnnotationLabels holds "key=value" pairs separated by commas, as
	// `kubectl label` takes them: "app=web,tier=frontend".
	AnnotationLabels = "ztcn.io/labels"
	// AnnotationPorts holds the container's named ports, "http=8080,metrics=9090".
	AnnotationPorts = "ztcn.io/ports"

	// CRI-O (and podman's kube play) set these; they are used when the
	// ztcn.io ones are absent.
	annotationKubeNamespace = "io.kubernetes.pod.namespace"
	annotationKubeName      = "io.kubernetes.pod.name"
	// annotationCRIOContainerType is "sandbox" for a pod's infra container
	// and "container" for the others, which share its network namespace.
	annotationCRIOContainerType = "io.kubernetes.cri-o.ContainerType"
)

// Runtime is the workload.Pod.Runtime of the containers the hook registers.
const Runtime = "oci-hook"

// Defaults for a container that carries no identity annotations.
const (
	DefaultNamespace      = "default"
	DefaultServiceAccount = "default"
)

// AnnotationError is a bad identity annotation.
type AnnotationError struct {
	Key, Value, Reason string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s=%q: %s", e.Key, e.Value, e.Reason)
}

// PodFromState builds the workload record of a container from its state:
// its UID is the container ID and its identity comes from the annotations.
// The caller fills in NetnsPath and IPs.
func PodFromState(st *specs.State) (workload.Pod, error) {
	a := st.Annotations
	pod := workload.Pod{
		UID:            st.ID,
		Runtime:        Runtime,
		Namespace:      cmp.Or(a[AnnotationNamespace], a[annotationKubeNamespace], DefaultNamespace),
		Name:           cmp.Or(a[AnnotationName], a[annotationKubeName], shortID(st.ID)),
		ServiceAccount: cmp.Or(a[AnnotationServiceAccount], DefaultServiceAccount),
	}
	for _, c := range []struct {
		key, value string
		check      func(string) []string
	}{
		{AnnotationNamespace, pod.Namespace, validation.IsDNS1123Label},
		{AnnotationName, pod.Name, validation.IsDNS1123Subdomain},
		{AnnotationServiceAccount, pod.ServiceAccount, validation.IsDNS1123Subdomain},
	} {
		if errs := c.check(c.value); len(errs) > 0 {
			reason := strings.Join(errs, "; ")
			if c.key == AnnotationName && a[AnnotationName] == "" && a[annotationKubeName] == "" {
				reason = "the container ID is not a valid workload name (" + reason + "): set " + AnnotationName
			}
			return workload.Pod{}, &AnnotationError{Key: c.key, Value: c.value, Reason: reason}
		}
	}
	var err error
	if pod.Labels, err = parseLabels(a[AnnotationLabels]); err != nil {
		return workload.Pod{}, err
	}
	if pod.Ports, err = parsePorts(a[AnnotationPorts]); err != nil {
		return workload.Pod{}, err
	}
	return pod, nil
}

// SharesSandbox reports whether the container joins a pod whose infra
// container holds the network namespace (CRI-O's non-sandbox containers):
// the pod is registered once, by its sandbox.
func SharesSandbox(st *specs.State) bool {
	return st.Annotations[annotationCRIOContainerType] == "container"
}

func parseLabels(s string) (map[string]string, error) {
	pairs, err := splitPairs(AnnotationLabels, s)
	if err != nil || len(pairs) == 0 {
		return nil, err
	}
	labels := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		if errs := validation.IsQualifiedName(kv[0]); len(errs) > 0 {
			return nil, &AnnotationError{Key: AnnotationLabels, Value: s, Reason: fmt.Sprintf("label key %q: %s", kv[0], strings.Join(errs, "; "))}
		}
		if errs := validation.IsValidLabelValue(kv[1]); len(errs) > 0 {
			return nil, &AnnotationError{Key: AnnotationLabels, Value: s, Reason: fmt.Sprintf("label %q value %q: %s", kv[0], kv[1], strings.Join(errs, "; "))}
		}
		labels[kv[0]] = kv[1]
	}
	return labels, nil
}

func parsePorts(s string) (map[string]uint16, error) {
	pairs, err := splitPairs(AnnotationPorts, s)
	if err != nil || len(pairs) == 0 {
		return nil, err
	}
	ports := make(map[string]uint16, len(pairs))
	for _, kv := range pairs {
		if errs := validation.IsValidPortName(kv[0]); len(errs) > 0 {
			return nil, &AnnotationError{Key: AnnotationPorts, Value: s, Reason: fmt.Sprintf("port name %q: %s", kv[0], strings.Join(errs, "; "))}
		}
		n, err := strconv.ParseUint(kv[1], 10, 16)
		if err != nil || n == 0 {
			return nil, &AnnotationError{Key: AnnotationPorts, Value: s, Reason: fmt.Sprintf("port %q of %q: want 1-65535", kv[1], kv[0])}
		}
		ports[kv[0]] = uint16(n)
	}
	return ports, nil
}

// splitPairs splits "k=v,k2=v2" (spaces around items allowed), refusing
// empty items and keys given twice.
func splitPairs(key, s string) ([][2]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var pairs [][2]string
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || k == "" {
			return nil, &AnnotationError{Key: key, Value: s, Reason: fmt.Sprintf("item %q: want key=value", strings.TrimSpace(item))}
		}
		if seen[k] {
			return nil, &AnnotationError{Key: key, Value: s, Reason: fmt.Sprintf("key %q given twice", k)}
		}
		seen[k] = true
		pairs = append(pairs, [2]string{k, v})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i][0] < pairs[j][0] })
	return pairs, nil
}

// shortID is the container ID as `podman ps` and `docker ps` show it.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
