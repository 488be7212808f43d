// Package oci is ztcn's OCI runtime hook: it brings containers started by
// runc, crun, podman or CRI-O into the mesh with no CNI plugin.
//
// At createRuntime (the container's namespaces exist, its process has not
// started) the hook reads the container state from stdin, gives the
// container's network namespace a veth to the node bridge and an address if
// it has no network of its own, and registers the workload with the agent
// over the control socket. The agent answers only once the workload's SVID
// is issued and its traffic is redirected, so the container's first packet
// is already subject to policy. Any failure undoes what the hook did and
// exits non-zero, and the runtime refuses to start the container: a
// container ztcn could not secure does not run.
//
// At poststop the hook deregisters the workload (the agent revokes its
// SVID and removes its rules) and returns its address.
//
// Identity comes from annotations (see PodFromState): ztcn.io/namespace,
// ztcn.io/service-account, ztcn.io/labels, ztcn.io/name, ztcn.io/ports,
// falling back to the io.kubernetes.pod.* annotations CRI-O sets.
package oci
