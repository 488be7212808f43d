# shellcheck shell=bash
# test/k8s/lib.sh: shared by build.sh, images.sh, containerd.sh, cluster.sh and
# smoke.sh. Source it; it defines variables and functions only.
#
# Everything a run creates lives under one run directory ($E2E_RUN), so that
# `down` can clean up after a crash too: daemons are found through the pid
# files in $E2E_RUN/pids and through their command lines naming $E2E_RUN,
# container processes through the cgroups the run created.

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
E2E_REPO=$(cd "$E2E_DIR/../.." && pwd)
E2E_CACHE=${ZTCN_E2E_CACHE:-/var/cache/ztcn-e2e}

# Versions. Each component is built into $E2E_CACHE/<component>-<version>/bin.
K8S_VERSION=v1.34.4          # v1.34.12 is served by the proxy but fails checksum verification
ETCD_VERSION=v3.6.16
# ZTCN_E2E_CONTAINERD_VERSION=v2.2.9 selects containerd 2.2 (NRI v0.11, whose
# validator can require a plugin: ZTCN_E2E_NRI_REQUIRED=<plugin name>).
CONTAINERD_VERSION=${ZTCN_E2E_CONTAINERD_VERSION:-v2.1.5}
CNI_VERSION=v1.9.1
CRICTL_VERSION=v1.34.0
NRIPROBE_VERSION=v0.8.0 # github.com/containerd/nri, as in containerd v2.1.5
E2E_COMPONENTS="kubernetes etcd containerd cni crictl nriprobe"

# containerd 2.1's default sandbox image (`containerd config default`); the
# pause image built by images.sh carries this name.
PAUSE_IMAGE=registry.k8s.io/pause:3.10
TESTAPP_IMAGE=docker.io/ztcn-e2e/testapp:latest # pods may say ztcn-e2e/testapp:latest

RUNC=${RUNC:-/usr/sbin/runc}

e2e_log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "${E2E_WHO:-e2e}" "$*" >&2; }
e2e_die() {
	e2e_log "FAIL: $*"
	exit 1
}

e2e_arch() {
	case $(uname -m) in
	x86_64) echo amd64 ;;
	aarch64) echo arm64 ;;
	*) uname -m ;;
	esac
}

# e2e_nri_flags ARGS...: the --nri-plugin-dir, --nri-config-dir and
# --nri-socket flags of containerd.sh and cluster.sh up, into the
# ZTCN_E2E_NRI_* variables. Returns 1 at the first argument it does not
# know.
e2e_nri_flags() {
	while [ $# -gt 0 ]; do
		case $1 in
		--nri-plugin-dir)
			ZTCN_E2E_NRI_PLUGIN_DIR=$(readlink -f "$2")
			shift 2
			;;
		--nri-config-dir)
			ZTCN_E2E_NRI_CONF_DIR=$(readlink -f "$2")
			shift 2
			;;
		--nri-socket)
			export ZTCN_E2E_NRI_SOCKET=$2
			shift 2
			;;
		*) return 1 ;;
		esac
	done
}

# e2e_settings KIND: clean the environment of containerd.sh / cluster.sh.
# The scripts pass sockets and configs explicitly, so the client variables a
# sourced env file exports (CONTAINER_RUNTIME_ENDPOINT, ...) are dropped. A
# run's env file also exports ZTCN_E2E_* for tests, with ZTCN_E2E_KIND=KIND;
# a script of another kind drops those it inherited unchanged from that file
# (a value set since, e.g. ZTCN_E2E_NODE_IP=... on the command line, stays).
e2e_settings() {
	local line k v f
	unset CONTAINER_RUNTIME_ENDPOINT IMAGE_SERVICE_ENDPOINT CRI_CONFIG_FILE CONTAINERD_ADDRESS \
		CONTAINERD_NAMESPACE KUBECONFIG KUBECACHEDIR
	if [ -z "${ZTCN_E2E_KIND:-}" ] || [ "$ZTCN_E2E_KIND" = "$1" ]; then
		return 0
	fi
	f=${ZTCN_E2E_RUN:-}/env
	if [ -f "$f" ]; then
		while IFS= read -r line; do
			[[ $line =~ ^export\ (ZTCN_E2E_[A-Z_]+)=\'(.*)\'$ ]] || continue
			k=${BASH_REMATCH[1]} v=${BASH_REMATCH[2]}
			[ "$k" = ZTCN_E2E_CACHE ] && continue
			[ "${!k:-}" = "$v" ] && unset "$k"
		done <"$f"
	else # that run is gone: drop them all
		for k in $(compgen -v ZTCN_E2E_); do
			[ "$k" = ZTCN_E2E_CACHE ] || unset "$k"
		done
	fi
	unset ZTCN_E2E_KIND
}

e2e_need_root() { [ "$(id -u)" = 0 ] || e2e_die "must run as root"; }

# e2e_bindir COMPONENT: where build.sh puts that component's binaries.
e2e_bindir() {
	local v
	case $1 in
	kubernetes) v=$K8S_VERSION ;;
	etcd) v=$ETCD_VERSION ;;
	containerd) v=$CONTAINERD_VERSION ;;
	cni) v=$CNI_VERSION ;;
	crictl) v=$CRICTL_VERSION ;;
	nriprobe) v=$NRIPROBE_VERSION ;;
	*) e2e_die "unknown component $1" ;;
	esac
	echo "$E2E_CACHE/$1-$v/bin"
}

# e2e_path: every component's bin dir, for PATH.
e2e_path() {
	local c p=""
	for c in $E2E_COMPONENTS; do p="$p:$(e2e_bindir "$c")"; done
	echo "${p#:}"
}

# e2e_ensure_built COMPONENT...: build what is missing (a no-op when cached).
e2e_ensure_built() {
	local c missing=()
	for c in "$@"; do [ -f "$(dirname "$(e2e_bindir "$c")")/.complete" ] || missing+=("$c"); done
	[ ${#missing[@]} -eq 0 ] || "$E2E_DIR/build.sh" "${missing[@]}" >&2 || e2e_die "build.sh ${missing[*]} failed"
}

# e2e_ensure_host_tools: runc (Debian), nft (kube-proxy's nftables mode),
# openssl (cluster certificates), jq.
e2e_ensure_host_tools() {
	local pkgs=()
	[ -x "$RUNC" ] || pkgs+=(runc)
	command -v nft >/dev/null || [ -x /usr/sbin/nft ] || pkgs+=(nftables)
	command -v openssl >/dev/null || pkgs+=(openssl)
	command -v jq >/dev/null || pkgs+=(jq)
	[ ${#pkgs[@]} -eq 0 ] && return 0
	e2e_log "installing ${pkgs[*]} with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >&2 ||
		{ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >&2; } ||
		e2e_die "apt-get install ${pkgs[*]} failed"
}

# e2e_node_ip: the IPv4 source address of the default route (never loopback:
# in-cluster clients reach the apiserver through it).
e2e_node_ip() {
	if [ -n "${ZTCN_E2E_NODE_IP:-}" ]; then
		echo "$ZTCN_E2E_NODE_IP"
		return
	fi
	ip -4 -o route get 192.0.2.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1
}

# ---------------------------------------------------------------- daemons

# e2e_start NAME CMD...: start CMD detached (own session), log to
# $E2E_RUN/logs/NAME.log, pid in $E2E_RUN/pids/NAME.pid.
e2e_start() {
	local name=$1
	shift
	mkdir -p "$E2E_RUN/logs" "$E2E_RUN/pids"
	setsid "$@" </dev/null >>"$E2E_RUN/logs/$name.log" 2>&1 &
	echo $! >"$E2E_RUN/pids/$name.pid"
	e2e_log "started $name (pid $!, log $E2E_RUN/logs/$name.log)"
}

# e2e_pid NAME: the pid of a running daemon this run started, or nothing.
# A pid only counts while its command line still names the run directory.
e2e_pid() {
	local f=$E2E_RUN/pids/$1.pid pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$E2E_RUN" || return 1
	echo "$pid"
}

e2e_alive() { e2e_pid "$1" >/dev/null; }

# e2e_stop [-t SECONDS] NAME...: SIGTERM the daemons together, then SIGKILL
# those still alive after SECONDS (default 10).
e2e_stop() {
	local wait=10 name pid i alive
	local -A stopping=()
	if [ "$1" = -t ]; then
		wait=$2
		shift 2
	fi
	for name in "$@"; do
		if pid=$(e2e_pid "$name"); then
			stopping[$name]=$pid
			kill -TERM "$pid" 2>/dev/null || true
		else
			rm -f "$E2E_RUN/pids/$name.pid"
		fi
	done
	for ((i = 0; i < wait * 10; i++)); do
		alive=0
		for pid in "${stopping[@]}"; do [ -d "/proc/$pid" ] && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for name in "${!stopping[@]}"; do
		pid=${stopping[$name]}
		if [ -d "/proc/$pid" ]; then
			e2e_log "$name (pid $pid) ignored SIGTERM for ${wait}s: SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		rm -f "$E2E_RUN/pids/$name.pid"
		e2e_log "stopped $name"
	done
}

# e2e_kill_strays: SIGKILL every process whose command line names the run
# directory (daemons whose pid file was lost, containerd shims) or is an NRI
# plugin containerd launched from the run's plugin dir.
e2e_kill_strays() {
	local p pids=() plugins=/nonexistent cmd
	[ -f "$E2E_RUN/nri-plugin-dir" ] && plugins=$(cat "$E2E_RUN/nri-plugin-dir")
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = $$ ] && continue
		[ "$p" = "$BASHPID" ] && continue
		cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
		case $cmd in
		*"$E2E_RUN/"* | "$plugins/"*) pids+=("$p") ;;
		esac
	done
	[ ${#pids[@]} -eq 0 ] && return 0
	for p in "${pids[@]}"; do
		e2e_log "killing stray pid $p: $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-150)"
		kill -KILL "$p" 2>/dev/null || true
	done
	sleep 0.5
}

# e2e_wait SECONDS WHAT CMD...: retry CMD every 0.2 s until it succeeds or
# SECONDS have passed (a try of an external command is cut at 10 s; shell
# functions must bound their own tries). With E2E_WAIT_DAEMON=NAME, give up as
# soon as that daemon has exited.
e2e_wait() {
	local secs=$1 what=$2 deadline
	shift 2
	deadline=$((SECONDS + secs))
	while [ $SECONDS -lt $deadline ]; do
		if declare -F "$1" >/dev/null; then
			"$@" >/dev/null 2>&1 && return 0
		else
			timeout 10 "$@" >/dev/null 2>&1 && return 0
		fi
		if [ -n "${E2E_WAIT_DAEMON:-}" ] && ! e2e_alive "$E2E_WAIT_DAEMON"; then
			e2e_log "$E2E_WAIT_DAEMON exited while waiting for $what"
			return 1
		fi
		sleep 0.2
	done
	e2e_log "timed out after ${secs}s waiting for $what"
	return 1
}

# e2e_fail_logs: on failure, say where the logs are and show their tails.
e2e_fail_logs() {
	local f
	[ -d "$E2E_RUN/logs" ] || return 0
	e2e_log "logs of every component are in $E2E_RUN/logs/"
	for f in "$E2E_RUN"/logs/*.log; do
		[ -f "$f" ] || continue
		echo "----- tail of $f" >&2
		tail -n "${E2E_LOG_TAIL:-15}" "$f" >&2
	done
}

# ----------------------------------------------------------- host sysctls

# The sysctls the run (bridge plugin, kubelet) may change; saved at `up`,
# restored at `down`.
E2E_SYSCTLS="net.ipv4.ip_forward vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet"

e2e_save_sysctls() {
	local s
	[ -f "$E2E_RUN/sysctl.orig" ] && return 0
	for s in $E2E_SYSCTLS; do
		echo "$s=$(sysctl -n "$s" 2>/dev/null)"
	done >"$E2E_RUN/sysctl.orig"
}

e2e_restore_sysctls() {
	local line s v now
	[ -f "$E2E_RUN/sysctl.orig" ] || return 0
	while IFS= read -r line; do
		s=${line%%=*} v=${line#*=}
		[ -n "$v" ] || continue
		now=$(sysctl -n "$s" 2>/dev/null) || continue
		if [ "$now" != "$v" ]; then
			sysctl -q -w "$s=$v" >/dev/null 2>&1 && e2e_log "restored sysctl $s=$v (was $now)"
		fi
	done <"$E2E_RUN/sysctl.orig"
}

# ------------------------------------------------------------- containerd

# Settings a run may override through the environment.
e2e_containerd_settings() {
	E2E_CTRD_DIR=$E2E_RUN/containerd
	E2E_CTRD_SOCK=$E2E_CTRD_DIR/containerd.sock
	E2E_NRI_SOCKET=${ZTCN_E2E_NRI_SOCKET:-/var/run/nri/nri.sock}
	E2E_NRI_PLUGIN_DIR=${ZTCN_E2E_NRI_PLUGIN_DIR:-$E2E_RUN/nri/plugins}
	E2E_NRI_CONF_DIR=${ZTCN_E2E_NRI_CONF_DIR:-$E2E_RUN/nri/conf.d}
	E2E_CNI_CONF_DIR=$E2E_RUN/cni/net.d
	E2E_CGROUP_PARENT=${E2E_CGROUP_PARENT:-ztcn-e2e-$(basename "$E2E_RUN")} # crictl pods' cgroup parent (standalone mode)
}

# e2e_write_cni_config BRIDGE SUBNET: bridge + host-local with a default
# route (without 0.0.0.0/0 pods cannot reach services or the node), no
# masquerading (nothing leaves the node), hairpin for pod -> own service.
e2e_write_cni_config() {
	local bridge=$1 subnet=$2
	mkdir -p "$E2E_CNI_CONF_DIR" "$E2E_RUN/cni/ipam"
	cat >"$E2E_CNI_CONF_DIR/10-ztcn-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "ztcn-e2e-$(basename "$E2E_RUN")",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$subnet"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$E2E_RUN/cni/ipam"
      }
    }
  ]
}
EOF
	echo "$bridge" >"$E2E_RUN/cni/bridge"
}

# e2e_write_containerd_config: config version 3 (containerd 2.x).
# e2e_nri_validator: containerd >= 2.2's NRI validator requiring the plugin
# named by ZTCN_E2E_NRI_REQUIRED, if set.
e2e_nri_validator() {
	[ -n "${ZTCN_E2E_NRI_REQUIRED:-}" ] || return 0
	cat <<EOV
  [plugins.'io.containerd.nri.v1.nri'.default_validator]
    enable = true
    required_plugins = ['$ZTCN_E2E_NRI_REQUIRED']
    tolerate_missing_plugins_annotation = 'ztcn.io/tolerate-missing-plugins'
EOV
}

e2e_write_containerd_config() {
	mkdir -p "$E2E_CTRD_DIR/root" "$E2E_CTRD_DIR/state" "$E2E_NRI_PLUGIN_DIR" "$E2E_NRI_CONF_DIR"
	cat >"$E2E_CTRD_DIR/config.toml" <<EOF
# Written by test/k8s/lib.sh for the run in $E2E_RUN.
version = 3
root = '$E2E_CTRD_DIR/root'
state = '$E2E_CTRD_DIR/state'

[grpc]
  address = '$E2E_CTRD_SOCK'

[ttrpc]
  address = '$E2E_CTRD_DIR/containerd.sock.ttrpc'

[debug]
  level = 'info'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$PAUSE_IMAGE'

  [plugins.'io.containerd.cri.v1.runtime']
    # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails with
    # "can't get final child's PID from pipe".
    restrict_oom_score_adj = true
    # Network namespaces under the state dir, so that down finds them.
    netns_mounts_under_state_dir = true
    enable_cdi = false
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$RUNC'
          Root = '$E2E_CTRD_DIR/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$(e2e_bindir cni)']
      conf_dir = '$E2E_CNI_CONF_DIR'
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'

  # NRI is built into containerd 2.x. containerd 2.1 (NRI v0.8) has no way to
  # mark a plugin as required; containerd >= 2.2 (NRI >= v0.10) adds
  # [plugins.'io.containerd.nri.v1.nri'.default_validator] with
  # enable = true and required_plugins = ['<index>-<name>'].
$(e2e_nri_validator)
  [plugins.'io.containerd.nri.v1.nri']
    disable = false
    socket_path = '$E2E_NRI_SOCKET'
    plugin_path = '$E2E_NRI_PLUGIN_DIR'
    plugin_config_path = '$E2E_NRI_CONF_DIR'
    plugin_registration_timeout = '5s'
    plugin_request_timeout = '2s'
    disable_connections = false

  [plugins.'io.containerd.internal.v1.opt']
    path = '$E2E_CTRD_DIR/opt'
EOF
	cat >"$E2E_RUN/crictl.yaml" <<EOF
runtime-endpoint: unix://$E2E_CTRD_SOCK
image-endpoint: unix://$E2E_CTRD_SOCK
timeout: 30
EOF
}

e2e_ctr() { "$(e2e_bindir containerd)/ctr" --address "$E2E_CTRD_SOCK" "$@"; }
e2e_crictl() {
	"$(e2e_bindir crictl)/crictl" --config "$E2E_RUN/crictl.yaml" \
		--runtime-endpoint "unix://$E2E_CTRD_SOCK" --image-endpoint "unix://$E2E_CTRD_SOCK" "$@"
}

# e2e_start_containerd: start it, wait for the CRI plugin, import images.
e2e_start_containerd() {
	local nri_dir
	nri_dir=$(dirname "$E2E_NRI_SOCKET")
	if [ -S "$E2E_NRI_SOCKET" ]; then
		# A socket someone listens on belongs to another containerd.
		if ss -xlH 2>/dev/null | awk '{print $5}' | grep -qxF -e "$E2E_NRI_SOCKET" -e "$(readlink -f "$E2E_NRI_SOCKET")"; then
			e2e_log "NRI socket $E2E_NRI_SOCKET is in use by another runtime: set ZTCN_E2E_NRI_SOCKET"
			return 1
		fi
		rm -f "$E2E_NRI_SOCKET"
	fi
	[ -d "$nri_dir" ] || {
		mkdir -p "$nri_dir"
		echo "$nri_dir" >"$E2E_RUN/nri-dir-created"
	}
	echo "$E2E_NRI_SOCKET" >"$E2E_RUN/nri-socket"
	echo "$E2E_NRI_PLUGIN_DIR" >"$E2E_RUN/nri-plugin-dir"
	[ -d /run/containerd ] || touch "$E2E_RUN/run-containerd-created"
	[ -d /var/lib/cni ] || touch "$E2E_RUN/var-lib-cni-created" # libcni's result cache
	e2e_start containerd env PATH="$(e2e_bindir containerd):$(dirname "$RUNC"):/usr/sbin:/usr/bin:/sbin:/bin" \
		"$(e2e_bindir containerd)/containerd" --config "$E2E_CTRD_DIR/config.toml"
	E2E_WAIT_DAEMON=containerd e2e_wait 30 "containerd socket" e2e_ctr version || return 1
	E2E_WAIT_DAEMON=containerd e2e_wait 30 "the CRI plugin" e2e_crictl info || return 1
	e2e_wait 10 "the NRI socket $E2E_NRI_SOCKET" test -S "$E2E_NRI_SOCKET" || e2e_log "warning: no NRI socket at $E2E_NRI_SOCKET"
	e2e_import_images
}

# e2e_import_images: the pause and testapp images (built by images.sh,
# cached) into the k8s.io namespace, where the CRI plugin looks.
e2e_import_images() {
	local dir t
	dir=$("$E2E_DIR/images.sh" build) || return 1
	for t in "$dir"/*.tar; do
		e2e_ctr -n k8s.io images import --platform "linux/$(e2e_arch)" "$t" >/dev/null || {
			e2e_log "ctr images import $t failed"
			return 1
		}
	done
	e2e_crictl inspecti "$PAUSE_IMAGE" >/dev/null || {
		e2e_log "the CRI plugin does not see $PAUSE_IMAGE after import"
		return 1
	}
	e2e_log "imported $(cd "$dir" && echo *.tar) from $dir"
}

# e2e_stop_containerd: remove every pod and task first (CNI DEL releases the
# addresses and veths, and shims exit with their last task), then containerd.
e2e_stop_containerd() {
	local ns t
	if e2e_alive containerd; then
		timeout 60 "$(e2e_bindir crictl)/crictl" --config "$E2E_RUN/crictl.yaml" --runtime-endpoint "unix://$E2E_CTRD_SOCK" \
			--timeout 20s rmp --all --force >/dev/null 2>&1 ||
			e2e_log "crictl rmp --all --force failed; killing tasks"
		for ns in $(e2e_ctr namespaces list -q 2>/dev/null); do
			for t in $(e2e_ctr -n "$ns" tasks list -q 2>/dev/null); do
				e2e_ctr -n "$ns" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
				e2e_ctr -n "$ns" tasks delete -f "$t" >/dev/null 2>&1 || true
			done
		done
	fi
	e2e_stop -t 15 containerd
}

# e2e_crictl_pod NAME IMAGE ARG...: a one-container pod through crictl
# (RunPodSandbox, CreateContainer, StartContainer), labelled app=NAME, in the
# run's cgroup parent; prints "POD_ID CONTAINER_ID". Files in $E2E_RUN/pods/NAME.
e2e_crictl_pod() {
	local name=$1 image=$2 dir pod ctr args
	shift 2
	dir=$E2E_RUN/pods/$name
	mkdir -p "$dir"
	args=$(printf '%s\n' "$@" | jq -R . | jq -s -c .)
	cat >"$dir/pod.json" <<EOF
{"metadata": {"name": "$name", "namespace": "e2e", "uid": "$name-$(date +%s%N)", "attempt": 0},
 "hostname": "$name", "labels": {"app": "$name"}, "log_directory": "$dir",
 "linux": {"cgroup_parent": "/$E2E_CGROUP_PARENT/$name"}}
EOF
	cat >"$dir/container.json" <<EOF
{"metadata": {"name": "$name"}, "image": {"image": "$image"}, "args": $args,
 "envs": [{"key": "POD_NAME", "value": "$name"}, {"key": "POD_NAMESPACE", "value": "e2e"}],
 "labels": {"app": "$name"}, "log_path": "$name.log", "linux": {}}
EOF
	pod=$(e2e_crictl runp "$dir/pod.json") || return 1
	ctr=$(e2e_crictl create "$pod" "$dir/container.json" "$dir/pod.json") || return 1
	e2e_crictl start "$ctr" >/dev/null || return 1
	echo "$pod $ctr"
}

# e2e_crictl_pod_ip POD_ID
e2e_crictl_pod_ip() { e2e_crictl inspectp -o json "$1" | jq -r .status.network.ip; }

# ---------------------------------------------------------------- cleanup

# e2e_kill_cgroup_procs NAME: SIGKILL the processes of every cgroup called
# NAME at the top of a hierarchy (our container processes), then remove those
# cgroups, deepest first.
e2e_kill_cgroup_procs() {
	local name=$1 h d p found=0
	for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
		[ -d "$h$name" ] || continue
		found=1
		for p in $(find "$h$name" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u); do
			kill -KILL "$p" 2>/dev/null && e2e_log "killed container process $p ($name cgroup)"
		done
	done
	[ $found = 1 ] || return 0
	sleep 0.3
	for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
		[ -d "$h$name" ] || continue
		find "$h$name" -depth -type d -exec rmdir {} \; 2>/dev/null
		[ -d "$h$name" ] && e2e_log "warning: could not remove cgroup $h$name"
	done
	return 0
}

# e2e_unmount_all: every mount point under the run directory, deepest first.
e2e_unmount_all() {
	local m i
	for i in 1 2 3; do
		mapfile -t ms < <(awk -v r="$E2E_RUN" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
		[ ${#ms[@]} -eq 0 ] && return 0
		for m in "${ms[@]}"; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done
	done
	awk -v r="$E2E_RUN" '$5 == r || index($5, r "/") == 1 {print "warning: still mounted: " $5}' /proc/self/mountinfo >&2
}

# e2e_cleanup_network: the CNI bridge, the run's CNI result cache entries.
e2e_cleanup_network() {
	local bridge net
	if [ -f "$E2E_RUN/cni/bridge" ]; then
		bridge=$(cat "$E2E_RUN/cni/bridge")
		if ip link show "$bridge" >/dev/null 2>&1; then
			ip link delete "$bridge" && e2e_log "deleted bridge $bridge"
		fi
	fi
	net="ztcn-e2e-$(basename "$E2E_RUN")"
	rm -f /var/lib/cni/results/"$net"-* 2>/dev/null
	# containerd's loopback network caches results per sandbox id.
	for id in $(find "$E2E_CTRD_DIR"/{root,state}/io.containerd.grpc.v1.cri/sandboxes -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -u); do
		rm -f /var/lib/cni/results/*-"$id"-* 2>/dev/null
	done
	if [ -f "$E2E_RUN/var-lib-cni-created" ]; then
		rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
	fi
	return 0
}

# e2e_cleanup_shim_sockets: containerd 2.x shims always put their sockets in
# /run/containerd/s (not under the configured state dir); a killed shim leaves
# its socket behind. Remove the ones nobody listens on, and the directories
# if this run created them.
e2e_cleanup_shim_sockets() {
	local s listening
	listening=$(ss -xlH 2>/dev/null | awk '{print $5}')
	for s in /run/containerd/s/*; do
		[ -S "$s" ] || continue
		grep -qxF "$s" <<<"$listening" || rm -f "$s"
	done
	if [ -f "$E2E_RUN/run-containerd-created" ]; then
		rmdir /run/containerd/s /run/containerd 2>/dev/null || true
	fi
}

# e2e_cleanup_nri: the NRI socket (and its directory if the run made it).
e2e_cleanup_nri() {
	local s d
	if [ -f "$E2E_RUN/nri-socket" ]; then
		s=$(cat "$E2E_RUN/nri-socket")
		[ -S "$s" ] && rm -f "$s"
	fi
	if [ -f "$E2E_RUN/nri-dir-created" ]; then
		d=$(cat "$E2E_RUN/nri-dir-created")
		rmdir "$d" 2>/dev/null || true
	fi
}

# e2e_write_env EXTRA...: $E2E_RUN/env, for `source` by tests.
e2e_write_env() {
	{
		echo "# Written by test/k8s for the run in $E2E_RUN: source it."
		echo "export ZTCN_E2E_KIND='$E2E_KIND'"
		echo "export ZTCN_E2E_RUN='$E2E_RUN'"
		echo "export ZTCN_E2E_CACHE='$E2E_CACHE'"
		echo "export ZTCN_E2E_BIN='$(e2e_path)'"
		echo "export PATH=\"\$ZTCN_E2E_BIN:\$PATH\""
		echo "export CONTAINERD_ADDRESS='$E2E_CTRD_SOCK'"
		echo "export CONTAINERD_NAMESPACE='k8s.io'"
		echo "export CONTAINER_RUNTIME_ENDPOINT='unix://$E2E_CTRD_SOCK'"
		echo "export IMAGE_SERVICE_ENDPOINT='unix://$E2E_CTRD_SOCK'"
		echo "export CRI_CONFIG_FILE='$E2E_RUN/crictl.yaml'"
		echo "export KUBECACHEDIR='$E2E_RUN/kube-cache'"
		echo "export ZTCN_E2E_NRI_SOCKET='$E2E_NRI_SOCKET'"
		echo "export ZTCN_E2E_NRI_PLUGIN_DIR='$E2E_NRI_PLUGIN_DIR'"
		echo "export ZTCN_E2E_NRI_CONF_DIR='$E2E_NRI_CONF_DIR'"
		echo "export ZTCN_E2E_PAUSE_IMAGE='$PAUSE_IMAGE'"
		echo "export ZTCN_E2E_TESTAPP_IMAGE='$TESTAPP_IMAGE'"
		local kv
		for kv in "$@"; do echo "export $kv"; done
	} >"$E2E_RUN/env"
}
