// Package podnet gives a pod's network namespace that came without a
// network (no CNI plugin ran) a veth to the node bridge and an address from
// the node's range, and takes them back when the pod goes. It is what lets
// ztcn's runtime adapters (the OCI hook, the NRI plugin) run on a node with
// no CNI plugin at all; a pod that already has addresses is left as it is.
//
// Addresses are granted like CNI's host-local plugin does: one file per
// address under <state_dir>/ipam/<bridge>/, created under a lock, so
// concurrent hooks never hand out an address twice and a restarted agent
// or hook finds the grants where it left them.
package podnet
