#!/usr/bin/env bash
# test/k8s/containerd.sh: containerd 2.1 alone (CRI + NRI), for NRI plugin tests.
#
#   containerd.sh up [--nri-plugin-dir DIR] [--nri-config-dir DIR] [--nri-socket PATH]
#   containerd.sh down
#   containerd.sh env      print the env file (source it: CONTAINERD_ADDRESS, ...)
#   containerd.sh status
#
# State lives in ${ZTCN_E2E_RUN:-/run/ztcn-containerd}: containerd root/state,
# config.toml, CNI config, crictl.yaml, logs/, env. Pods get addresses from a
# bridge (${ZTCN_E2E_BRIDGE:-cni-ztcn1}, ${ZTCN_E2E_POD_SUBNET:-10.245.0.0/24}).
# NRI listens on ${ZTCN_E2E_NRI_SOCKET:-/var/run/nri/nri.sock}; containerd
# launches plugins found in --nri-plugin-dir at start (named NN-NAME, each
# configured by --nri-config-dir/NN-NAME.conf if present).
# Pods run with crictl should use cgroup_parent "/$ZTCN_E2E_CGROUP_PARENT" so
# that down finds their processes after a crash.
set -euo pipefail
E2E_WHO=containerd
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
E2E_KIND=containerd
e2e_settings $E2E_KIND

E2E_RUN=${ZTCN_E2E_RUN:-/run/ztcn-containerd}
BRIDGE=${ZTCN_E2E_BRIDGE:-cni-ztcn1}
SUBNET=${ZTCN_E2E_POD_SUBNET:-10.245.0.0/24}

usage() {
	sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
e2e_nri_flags "$@" || usage
e2e_containerd_settings

down() {
	e2e_need_root
	[ -d "$E2E_RUN" ] || return 0
	local start=$SECONDS
	e2e_stop_containerd
	e2e_kill_strays
	e2e_kill_cgroup_procs "$E2E_CGROUP_PARENT"
	e2e_unmount_all
	e2e_cleanup_network
	e2e_cleanup_shim_sockets
	e2e_cleanup_nri
	e2e_restore_sysctls
	rm -rf "$E2E_RUN"
	e2e_log "down in $((SECONDS - start))s"
}

up() {
	e2e_need_root
	if e2e_alive containerd 2>/dev/null; then
		e2e_die "containerd is already up in $E2E_RUN (containerd.sh down first)"
	fi
	[ -d "$E2E_RUN" ] && down # leftovers of a crashed run
	local start=$SECONDS
	ip link show "$BRIDGE" >/dev/null 2>&1 && e2e_die "a link named $BRIDGE exists already: set ZTCN_E2E_BRIDGE"
	e2e_ensure_host_tools
	e2e_ensure_built containerd cni crictl
	mkdir -p "$E2E_RUN"
	e2e_save_sysctls
	e2e_write_cni_config "$BRIDGE" "$SUBNET"
	e2e_write_containerd_config
	echo "$E2E_CGROUP_PARENT" >"$E2E_RUN/cgroup-parent"
	if ! e2e_start_containerd; then
		e2e_fail_logs
		e2e_die "containerd did not come up"
	fi
	e2e_write_env "ZTCN_E2E_CGROUP_PARENT='$E2E_CGROUP_PARENT'" "ZTCN_E2E_POD_SUBNET='$SUBNET'" "ZTCN_E2E_BRIDGE='$BRIDGE'"
	e2e_log "up in $((SECONDS - start))s: source $E2E_RUN/env"
	cat "$E2E_RUN/env"
}

case $cmd in
up) up ;;
down) down ;;
env) cat "$E2E_RUN/env" ;;
status)
	if e2e_alive containerd; then
		echo "containerd up (pid $(e2e_pid containerd)) in $E2E_RUN"
	else
		echo "containerd down"
		exit 1
	fi
	;;
*) usage ;;
esac
