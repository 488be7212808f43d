#!/usr/bin/env bash
# test/k8s/smoke.sh [containerd|cluster|all]: the end-to-end infrastructure's
# own test, for CI. Builds (or reuses) the binaries, then
#   containerd: containerd.sh up; an external NRI plugin (nriprobe) connects
#               to the NRI socket; two pods through crictl, one reaching the
#               other by pod IP; the plugin saw their events and its
#               CreateContainer adjustment (an env var) reached the
#               containers; down; nothing left.
#   cluster:    cluster.sh up; two namespaces; a Deployment + Service of
#               testapp; a client pod reaching it by pod IP and by ClusterIP
#               (kube-proxy), and the apiserver through the kubernetes
#               Service; a one-shot pod that succeeds; a DaemonSet ready; an
#               NRI plugin containerd launched from --nri-plugin-dir saw the
#               pods; down; nothing left.
# Exits non-zero on the first failure, after printing component logs and
# tearing down. Prints the time of each phase.
set -euo pipefail
E2E_WHO=smoke
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
e2e_need_root

what=${1:-all}
case $what in containerd | cluster | all) ;; *)
	echo "usage: smoke.sh [containerd|cluster|all]" >&2
	exit 2
	;;
esac

T0=$SECONDS
phase=build
timings=$(mktemp)
mark() { printf '%-36s %4ss\n' "$1" "$2" >>"$timings"; }

on_exit() {
	local rc=$? run
	if [ $rc -ne 0 ]; then
		e2e_log "FAILED during: $(cat "$timings.phase" 2>/dev/null || echo "$phase")"
		for run in "${ZTCN_E2E_RUN:-/run/ztcn-containerd}" "${ZTCN_E2E_RUN:-/run/ztcn-k8s}"; do
			E2E_RUN=$run e2e_fail_logs
		done
		"$E2E_DIR/containerd.sh" down >/dev/null 2>&1 || true
		"$E2E_DIR/cluster.sh" down >/dev/null 2>&1 || true
	fi
	rm -f "$timings" "$timings.phase"
	exit $rc
}
trap on_exit EXIT

# at PHASE: what is being done, for the failure message (phases run in subshells).
at() {
	phase=$1
	echo "$1" >"$timings.phase"
}

check() { # WHAT CMD...: run CMD, fail the smoke test with WHAT if it fails
	local what=$1
	shift
	if ! "$@"; then
		e2e_die "$what"
	fi
}

# assert_clean RUN BRIDGE: nothing of the run is left on the host.
assert_clean() {
	local run=$1 bridge=$2 p left=0
	[ -d "$run" ] && {
		e2e_log "leftover: $run"
		left=1
	}
	for p in /proc/[0-9]*; do
		if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$run/"; then
			e2e_log "leftover process ${p#/proc/}: $(tr '\0' ' ' <"$p/cmdline" | cut -c1-120)"
			left=1
		fi
	done
	if awk -v r="$run" 'index($5, r) == 1' /proc/self/mountinfo | grep -q .; then
		e2e_log "leftover mounts under $run"
		left=1
	fi
	ip link show "$bridge" >/dev/null 2>&1 && {
		e2e_log "leftover bridge $bridge"
		left=1
	}
	for p in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/ztcn-e2e-*; do
		[ -d "$p" ] && {
			e2e_log "leftover cgroup $p"
			left=1
		}
	done
	nft list table ip kube-proxy >/dev/null 2>&1 && {
		e2e_log "leftover nftables table ip kube-proxy"
		left=1
	}
	return $left
}

# -------------------------------------------------------------------- build
t=$SECONDS
"$E2E_DIR/build.sh"
mark "build (all components)" $((SECONDS - t))

# --------------------------------------------------------------- containerd
smoke_containerd() {
	at "containerd up"
	local t=$SECONDS server client ip out
	"$E2E_DIR/containerd.sh" up >/dev/null
	mark "containerd.sh up" $((SECONDS - t))
	# shellcheck disable=SC1091
	source "${ZTCN_E2E_RUN:-/run/ztcn-containerd}/env"
	E2E_RUN=$ZTCN_E2E_RUN
	E2E_CGROUP_PARENT=$ZTCN_E2E_CGROUP_PARENT
	e2e_containerd_settings

	at "containerd: NRI plugin connects"
	check "NRI socket $ZTCN_E2E_NRI_SOCKET is not listening" \
		bash -c "ss -xlH | awk '{print \$5}' | grep -qxF '$ZTCN_E2E_NRI_SOCKET'"
	# An external plugin, as a DaemonSet-deployed one would be. Its command
	# line names the run directory, so down stops it.
	e2e_start nriprobe "$(e2e_bindir nriprobe)/nriprobe" -socket "$ZTCN_E2E_NRI_SOCKET" \
		-log "$E2E_RUN/nriprobe.events" -env ZTCN_E2E_NRI=probed
	e2e_wait 10 "nriprobe to register" grep -q '^Configure' "$E2E_RUN/nriprobe.events" ||
		e2e_die "nriprobe did not register with NRI: $(cat "$E2E_RUN/logs/nriprobe.log")"

	at "containerd: crictl pods"
	t=$SECONDS
	server=$(e2e_crictl_pod server "$ZTCN_E2E_TESTAPP_IMAGE" serve :8080) || e2e_die "crictl: server pod"
	server=${server%% *} # pod sandbox id
	client=$(e2e_crictl_pod client "$ZTCN_E2E_TESTAPP_IMAGE" sleep) || e2e_die "crictl: client pod"
	client=${client##* } # container id
	ip=$(e2e_crictl_pod_ip "$server")
	[[ $ip == "${ZTCN_E2E_POD_SUBNET%.*}".* ]] || e2e_die "server pod IP '$ip' is not in $ZTCN_E2E_POD_SUBNET"
	mark "crictl: two pods running" $((SECONDS - t))

	at "containerd: client -> server by pod IP"
	out=$(e2e_crictl exec "$client" /testapp get -retry 10s "http://$ip:8080/smoke") ||
		e2e_die "client could not reach server at $ip:8080"
	grep -qx "pod=server" <<<"$out" || e2e_die "unexpected answer from $ip: $out"
	e2e_log "client -> server $ip:8080: $(tr '\n' ' ' <<<"$out")"
	if e2e_crictl exec "$client" /testapp get -timeout 1s "http://$ip:8081/" >/dev/null 2>&1; then
		e2e_die "a closed port answered"
	fi

	at "containerd: NRI events and adjustment"
	for ev in "RunPodSandbox e2e/server" "CreateContainer e2e/server/server" "StartContainer e2e/client/client"; do
		grep -qx "$ev" "$E2E_RUN/nriprobe.events" || e2e_die "nriprobe did not see '$ev': $(cat "$E2E_RUN/nriprobe.events")"
	done
	e2e_crictl exec "$client" /testapp env | grep -qx ZTCN_E2E_NRI=probed ||
		e2e_die "the NRI adjustment (env ZTCN_E2E_NRI) did not reach the container"
	e2e_log "NRI: nriprobe saw $(grep -vc -e '^Configure' -e '^Synchronize' "$E2E_RUN/nriprobe.events") pod/container events; its env adjustment reached the containers"

	at "containerd down"
	t=$SECONDS
	"$E2E_DIR/containerd.sh" down
	mark "containerd.sh down" $((SECONDS - t))
	check "containerd.sh down left something behind" assert_clean "$ZTCN_E2E_RUN" "$ZTCN_E2E_BRIDGE"
}

# ------------------------------------------------------------------ cluster
smoke_cluster() {
	at "cluster up"
	local t=$SECONDS ips ip cip out mem nri
	# A pre-installed NRI plugin, launched by containerd, configured by a
	# drop-in file.
	nri=$(mktemp -d)
	mkdir "$nri/plugins" "$nri/conf.d"
	cp "$(e2e_bindir nriprobe)/nriprobe" "$nri/plugins/10-nriprobe"
	printf 'log=%s\nenv=ZTCN_E2E_NRI=preinstalled\n' "$nri/events" >"$nri/conf.d/10-nriprobe.conf"
	"$E2E_DIR/cluster.sh" up --nri-plugin-dir "$nri/plugins" --nri-config-dir "$nri/conf.d" >/dev/null
	mark "cluster.sh up (to node Ready)" $((SECONDS - t))
	# shellcheck disable=SC1091
	source "${ZTCN_E2E_RUN:-/run/ztcn-k8s}/env"
	E2E_RUN=$ZTCN_E2E_RUN
	kubectl version

	at "cluster: Deployment and Service"
	t=$SECONDS
	kubectl apply -f "$E2E_DIR/manifests/smoke-server.yaml"
	e2e_wait 30 "service account in e2e-server" kubectl -n e2e-server get serviceaccount default
	kubectl -n e2e-server rollout status deployment/web --timeout=90s
	mark "Deployment web available" $((SECONDS - t))
	mapfile -t ips < <(kubectl -n e2e-server get pods -l app=web -o jsonpath='{range .items[*]}{.status.podIP}{"\n"}{end}')
	[ ${#ips[@]} -eq 2 ] || e2e_die "want 2 web pod IPs, got: ${ips[*]}"
	cip=$(kubectl -n e2e-server get service web -o jsonpath='{.spec.clusterIP}')

	at "cluster: client pods"
	t=$SECONDS
	sed "s/@WEB_CLUSTER_IP@/$cip/" "$E2E_DIR/manifests/smoke-client.yaml" | kubectl apply -f -
	e2e_wait 30 "service account in e2e-client" kubectl -n e2e-client get serviceaccount default
	kubectl -n e2e-client wait pod/client --for=condition=Ready --timeout=60s

	at "cluster: client -> web by pod IP"
	for ip in "${ips[@]}"; do
		out=$(kubectl -n e2e-client exec client -- /testapp get -retry 10s "http://$ip:8080/") ||
			e2e_die "client could not reach web pod $ip"
		grep -qx "namespace=e2e-server" <<<"$out" || e2e_die "unexpected answer from $ip: $out"
	done
	e2e_log "client -> web pods ${ips[*]}: ok"

	at "cluster: client -> web by ClusterIP (kube-proxy)"
	out=$(kubectl -n e2e-client exec client -- /testapp get -retry 20s "http://$cip/") ||
		e2e_die "client could not reach Service web at $cip"
	grep -q "^pod=web-" <<<"$out" || e2e_die "unexpected answer from $cip: $out"
	e2e_log "client -> Service web $cip:80: $(grep '^pod=' <<<"$out")"

	at "cluster: client -> kubernetes Service (apiserver via node IP)"
	out=$(kubectl -n e2e-client exec client -- /testapp get -retry 10s -insecure "https://$(kubectl get service kubernetes -o jsonpath='{.spec.clusterIP}')/readyz") ||
		e2e_die "client could not reach the apiserver through the kubernetes Service"
	[ "$out" = ok ] || e2e_die "apiserver /readyz said: $out"

	at "cluster: one-shot pod get-web"
	kubectl -n e2e-client wait pod/get-web --for=jsonpath='{.status.phase}'=Succeeded --timeout=60s ||
		{
			kubectl -n e2e-client logs get-web || true
			e2e_die "pod get-web did not succeed"
		}
	kubectl -n e2e-client logs get-web | grep -q "^pod=web-" || e2e_die "get-web printed: $(kubectl -n e2e-client logs get-web)"
	mark "client pods: pod IP, ClusterIP, API" $((SECONDS - t))

	at "cluster: DaemonSet"
	t=$SECONDS
	kubectl apply -f "$E2E_DIR/manifests/smoke-daemonset.yaml"
	kubectl -n e2e-server rollout status daemonset/node-agent --timeout=60s
	mark "DaemonSet ready after apply" $((SECONDS - t))
	kubectl get pods -A -o wide

	at "cluster: pre-installed NRI plugin"
	grep -q "^RunPodSandbox e2e-server/web-" "$nri/events" || e2e_die "the pre-installed NRI plugin saw no web pod: $(cat "$nri/events")"
	kubectl -n e2e-client exec client -- /testapp env | grep -qx ZTCN_E2E_NRI=preinstalled ||
		e2e_die "the pre-installed NRI plugin's adjustment did not reach the client container"
	e2e_log "NRI: the pre-installed plugin saw $(grep -c '^CreateContainer' "$nri/events") CreateContainer events"

	mem=$(ps -eo rss=,cmd= | awk -v r="$ZTCN_E2E_RUN/" 'index($0, r) {s += $1} END {print int(s / 1024)}')
	e2e_log "memory: ${mem} MiB RSS for the cluster's daemons and shims, $(($(cat /sys/fs/cgroup/memory/kubepods/memory.usage_in_bytes 2>/dev/null || echo 0) / 1048576)) MiB in the kubepods cgroup"

	at "cluster down"
	t=$SECONDS
	"$E2E_DIR/cluster.sh" down
	mark "cluster.sh down" $((SECONDS - t))
	check "cluster.sh down left something behind" assert_clean "$ZTCN_E2E_RUN" "$ZTCN_E2E_BRIDGE"
	pgrep -f "^$nri/plugins/" >/dev/null && e2e_die "the pre-installed NRI plugin outlived containerd"
	rm -rf "$nri"
}

# Each phase in a subshell: sourcing one run's env must not leak into the next.
case $what in
containerd) (smoke_containerd) ;;
cluster) (smoke_cluster) ;;
all)
	(smoke_containerd)
	(smoke_cluster)
	;;
esac

mark "total" $((SECONDS - T0))
echo "---- smoke ($what) passed"
cat "$timings"
