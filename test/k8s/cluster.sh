#!/usr/bin/env bash
# test/k8s/cluster.sh: a single-node Kubernetes 1.34 built from source.
#
#   cluster.sh up [--nri-plugin-dir DIR] [--nri-config-dir DIR] [--nri-socket PATH]
#                        etcd, kube-apiserver, kube-controller-manager,
#                        kube-scheduler, containerd (CRI + NRI), kubelet,
#                        kube-proxy (nftables mode); waits for the node to be
#                        Ready; prints the env file and the admin kubeconfig.
#   cluster.sh down      tears everything down, also after a crash.
#   cluster.sh env       print the env file (source it: KUBECONFIG, ...)
#   cluster.sh status
#
# All state is in ${ZTCN_E2E_RUN:-/run/ztcn-k8s}: pki/, etcd/, containerd/,
# kubelet/, pod-logs/, logs/<component>.log, admin.kubeconfig, env.
# Settings (environment):
#   ZTCN_E2E_NODE_IP       node IP the apiserver advertises (default: source of the default route)
#   ZTCN_E2E_NODE_NAME     node name (default ztcn-e2e)
#   ZTCN_E2E_POD_CIDR      cluster pod CIDR (default 10.244.0.0/16; the node gets .0.0/24)
#   ZTCN_E2E_SERVICE_CIDR  service CIDR (default 10.96.0.0/16)
#   ZTCN_E2E_BRIDGE        CNI bridge (default cni-ztcn0)
#   ZTCN_E2E_NRI_SOCKET    NRI socket (default /var/run/nri/nri.sock)
#   ZTCN_E2E_APISERVER_PORT (default 6443), ZTCN_E2E_ETCD_PORT (default 12379, peer +1)
set -euo pipefail
E2E_WHO=cluster
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
E2E_KIND=cluster
e2e_settings $E2E_KIND

cmd=${1:-}
[ $# -gt 0 ] && shift
e2e_nri_flags "$@" || cmd=usage

E2E_RUN=${ZTCN_E2E_RUN:-/run/ztcn-k8s}
NODE_NAME=${ZTCN_E2E_NODE_NAME:-ztcn-e2e}
POD_CIDR=${ZTCN_E2E_POD_CIDR:-10.244.0.0/16}
SERVICE_CIDR=${ZTCN_E2E_SERVICE_CIDR:-10.96.0.0/16}
BRIDGE=${ZTCN_E2E_BRIDGE:-cni-ztcn0}
APISERVER_PORT=${ZTCN_E2E_APISERVER_PORT:-6443}
ETCD_PORT=${ZTCN_E2E_ETCD_PORT:-12379}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
KUBELET_PORT=10250
NODE_POD_SUBNET=${POD_CIDR%.*.*/*}.0.0/24 # what the controller-manager gives the first node
E2E_CGROUP_PARENT=kubepods                # kubelet's cgroupfs root for pods (cgroupRoot /)
e2e_containerd_settings

KBIN=$(e2e_bindir kubernetes)
PKI=$E2E_RUN/pki
KUBECONFIG_ADMIN=$E2E_RUN/admin.kubeconfig

usage() {
	sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
}

kubectl_admin() { "$KBIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" --cache-dir "$E2E_RUN/kube-cache" --request-timeout 5s "$@"; }

# first_service_ip 10.96.0.0/16 -> 10.96.0.1
first_service_ip() {
	local net=${1%/*}
	echo "${net%.*}.$((${net##*.} + 1))"
}

# ------------------------------------------------------------------ pki

gen_pki() {
	local node_ip=$1 svc_ip
	svc_ip=$(first_service_ip "$SERVICE_CIDR")
	mkdir -p "$PKI"
	cat >"$PKI/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyEncipherment, keyCertSign
subjectKeyIdentifier = hash
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, DNS:localhost, DNS:$NODE_NAME, IP:$node_ip, IP:127.0.0.1, IP:$svc_ip
EOF
	key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key" 2>/dev/null; }
	key ca
	openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=ztcn-e2e-ca" -days 7 \
		-config "$PKI/openssl.cnf" -extensions ca -out "$PKI/ca.crt" 2>/dev/null
	cert() { # NAME SUBJECT EXTENSIONS
		key "$1"
		openssl req -new -key "$PKI/$1.key" -subj "$2" -config "$PKI/openssl.cnf" -out "$PKI/$1.csr" 2>/dev/null
		openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 7 \
			-extfile "$PKI/openssl.cnf" -extensions "$3" -out "$PKI/$1.crt" 2>/dev/null
		rm -f "$PKI/$1.csr"
	}
	cert apiserver "/CN=kube-apiserver" server
	cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client
	cert admin "/O=system:masters/CN=ztcn-e2e-admin" client
	cert controller-manager "/CN=system:kube-controller-manager" client
	cert scheduler "/CN=system:kube-scheduler" client
	cert kube-proxy "/CN=system:kube-proxy" client
	cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" client
	# Service account token signing key pair.
	key sa
	openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	chmod 600 "$PKI"/*.key
}

# kubeconfig USER FILE [embed]: a kubeconfig for USER's certificate.
kubeconfig() {
	local user=$1 file=$2 server="https://$NODE_IP:$APISERVER_PORT"
	local ca="certificate-authority: $PKI/ca.crt"
	local cert="client-certificate: $PKI/$user.crt" key="client-key: $PKI/$user.key"
	if [ "${3:-}" = embed ]; then
		ca="certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")"
		cert="client-certificate-data: $(base64 -w0 <"$PKI/$user.crt")"
		key="client-key-data: $(base64 -w0 <"$PKI/$user.key")"
	fi
	cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ztcn-e2e
  cluster:
    server: $server
    $ca
users:
- name: $user
  user:
    $cert
    $key
contexts:
- name: ztcn-e2e
  context: {cluster: ztcn-e2e, user: $user}
current-context: ztcn-e2e
EOF
	chmod 600 "$file"
}

# -------------------------------------------------------------- components

start_etcd() {
	e2e_start etcd "$(e2e_bindir etcd)/etcd" --name "$NODE_NAME" --data-dir "$E2E_RUN/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "$NODE_NAME=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
		--unsafe-no-fsync --log-level warn
	E2E_WAIT_DAEMON=etcd e2e_wait 30 "etcd" curl -fsS -m 5 "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
	e2e_start kube-apiserver "$KBIN/kube-apiserver" \
		--advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
		--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--client-ca-file "$PKI/ca.crt" \
		--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
		--kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
		--kubelet-preferred-address-types InternalIP,Hostname \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
		--allow-privileged=true --profiling=false \
		--cert-dir "$E2E_RUN/apiserver" --v 1
	E2E_WAIT_DAEMON=kube-apiserver e2e_wait 60 "kube-apiserver /readyz" kubectl_admin get --raw /readyz
}

start_controller_manager() {
	e2e_start kube-controller-manager "$KBIN/kube-controller-manager" \
		--kubeconfig "$E2E_RUN/controller-manager.kubeconfig" \
		--secure-port 0 --leader-elect=false --use-service-account-credentials \
		--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
		--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
		--allocate-node-cidrs --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
		--service-cluster-ip-range "$SERVICE_CIDR" --v 1
}

start_scheduler() {
	e2e_start kube-scheduler "$KBIN/kube-scheduler" \
		--kubeconfig "$E2E_RUN/scheduler.kubeconfig" --secure-port 0 --leader-elect=false --v 1
}

start_kubelet() {
	mkdir -p "$E2E_RUN/kubelet" "$E2E_RUN/pod-logs"
	cat >"$E2E_RUN/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$E2E_CTRD_SOCK
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: AlwaysAllow}
podLogsDir: $E2E_RUN/pod-logs
volumePluginDir: $E2E_RUN/kubelet/volume-plugins
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# Leave the host's iptables alone (kube-proxy runs in nftables mode).
makeIPTablesUtilChains: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
rotateCertificates: false
nodeStatusUpdateFrequency: 5s
EOF
	e2e_start kubelet "$KBIN/kubelet" --config "$E2E_RUN/kubelet/config.yaml" \
		--kubeconfig "$E2E_RUN/kubelet.kubeconfig" --root-dir "$E2E_RUN/kubelet" --cert-dir "$E2E_RUN/kubelet/pki" \
		--hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
}

start_kube_proxy() {
	cat >"$E2E_RUN/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $E2E_RUN/kube-proxy.kubeconfig}
mode: nftables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
	touch "$E2E_RUN/kube-proxy-nftables"
	e2e_start kube-proxy "$KBIN/kube-proxy" --config "$E2E_RUN/kube-proxy.yaml" --v 1
}

node_ready() {
	[ "$(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# ------------------------------------------------------------------ up/down

check_port_free() {
	if ss -ltnH "( sport = :$1 )" 2>/dev/null | grep -q .; then
		e2e_die "port $1 ($2) is in use"
	fi
}

up() {
	e2e_need_root
	if e2e_alive kube-apiserver || e2e_alive containerd; then
		e2e_die "a cluster is already up in $E2E_RUN (cluster.sh down first)"
	fi
	[ -d "$E2E_RUN" ] && down # leftovers of a crashed run
	local start=$SECONDS t
	NODE_IP=$(e2e_node_ip)
	[ -n "$NODE_IP" ] || e2e_die "no node IP (no default route?): set ZTCN_E2E_NODE_IP"
	ip link show "$BRIDGE" >/dev/null 2>&1 && e2e_die "a link named $BRIDGE exists already: set ZTCN_E2E_BRIDGE"
	check_port_free "$APISERVER_PORT" kube-apiserver
	check_port_free "$ETCD_PORT" etcd
	check_port_free "$ETCD_PEER_PORT" "etcd peer"
	check_port_free "$KUBELET_PORT" kubelet
	check_port_free 10248 "kubelet healthz"
	check_port_free 10249 "kube-proxy metrics"
	check_port_free 10256 "kube-proxy healthz"
	[ -d /sys/fs/cgroup/memory/kubepods ] || [ -d /sys/fs/cgroup/kubepods ] && e2e_die "a kubepods cgroup exists: another kubelet runs here?"
	e2e_ensure_host_tools
	# shellcheck disable=SC2086 # a list of words
	e2e_ensure_built $E2E_COMPONENTS

	mkdir -p "$E2E_RUN"
	echo "$NODE_IP" >"$E2E_RUN/node-ip"
	[ -d /var/log/containers ] || touch "$E2E_RUN/var-log-containers-created"
	[ -d /var/lib/kubelet ] || touch "$E2E_RUN/var-lib-kubelet-created" # device-plugins/kubelet.sock ignores --root-dir
	e2e_save_sysctls
	t=$SECONDS
	gen_pki "$NODE_IP"
	kubeconfig admin "$KUBECONFIG_ADMIN" embed
	kubeconfig controller-manager "$E2E_RUN/controller-manager.kubeconfig"
	kubeconfig scheduler "$E2E_RUN/scheduler.kubeconfig"
	kubeconfig kube-proxy "$E2E_RUN/kube-proxy.kubeconfig"
	kubeconfig kubelet "$E2E_RUN/kubelet.kubeconfig"
	e2e_log "pki and kubeconfigs in $((SECONDS - t))s"

	t=$SECONDS
	start_etcd || fail_up "etcd did not come up"
	start_apiserver || fail_up "kube-apiserver did not become ready"
	e2e_log "etcd + kube-apiserver ready in $((SECONDS - t))s"
	start_controller_manager
	start_scheduler
	e2e_write_cni_config "$BRIDGE" "$NODE_POD_SUBNET"
	e2e_write_containerd_config
	t=$SECONDS
	e2e_start_containerd || fail_up "containerd did not come up"
	e2e_log "containerd ready in $((SECONDS - t))s"
	t=$SECONDS
	start_kubelet
	start_kube_proxy
	E2E_WAIT_DAEMON=kubelet e2e_wait 90 "node $NODE_NAME Ready" node_ready || fail_up "node $NODE_NAME did not become Ready"
	e2e_log "node Ready $((SECONDS - t))s after kubelet start"
	# Pods need the default service account (controller-manager) to exist.
	e2e_wait 60 "the default service account" kubectl_admin -n default get serviceaccount default ||
		fail_up "no default service account"

	e2e_write_env "KUBECONFIG='$KUBECONFIG_ADMIN'" "ZTCN_E2E_NODE_NAME='$NODE_NAME'" "ZTCN_E2E_NODE_IP='$NODE_IP'" \
		"ZTCN_E2E_POD_CIDR='$POD_CIDR'" "ZTCN_E2E_NODE_POD_SUBNET='$NODE_POD_SUBNET'" "ZTCN_E2E_SERVICE_CIDR='$SERVICE_CIDR'" \
		"ZTCN_E2E_BRIDGE='$BRIDGE'" "ZTCN_E2E_LOGS='$E2E_RUN/logs'"
	e2e_log "cluster up in $((SECONDS - start))s; admin kubeconfig: $KUBECONFIG_ADMIN; logs: $E2E_RUN/logs/"
	cat "$E2E_RUN/env"
	echo "# ---- $KUBECONFIG_ADMIN"
	cat "$KUBECONFIG_ADMIN"
}

fail_up() {
	e2e_fail_logs
	e2e_die "$1 (cluster.sh down cleans up)"
}

down() {
	e2e_need_root
	[ -d "$E2E_RUN" ] || return 0
	local start=$SECONDS l
	# The kubelet first, so that nothing restarts what is being removed.
	e2e_stop -t 15 kubelet
	e2e_stop kube-proxy kube-scheduler kube-controller-manager
	e2e_stop_containerd # pods (CNI DEL), tasks, then containerd
	e2e_stop kube-apiserver # before etcd: without etcd it does not shut down
	e2e_stop etcd
	e2e_kill_strays
	e2e_kill_cgroup_procs kubepods
	e2e_unmount_all
	e2e_cleanup_network
	e2e_cleanup_shim_sockets
	e2e_cleanup_nri
	if [ -f "$E2E_RUN/kube-proxy-nftables" ]; then
		nft delete table ip kube-proxy 2>/dev/null && e2e_log "deleted nftables table ip kube-proxy"
		nft delete table ip6 kube-proxy 2>/dev/null && e2e_log "deleted nftables table ip6 kube-proxy"
	fi
	# ztcn's kubelet-probe tables on the node (kubelet_probes = true): the
	# agent keeps them when it stops, as it keeps the pods' rules.
	nft delete table ip ztcn-node 2>/dev/null && e2e_log "deleted nftables table ip ztcn-node"
	nft delete table bridge ztcn-node 2>/dev/null && e2e_log "deleted nftables table bridge ztcn-node"
	# The kubelet's legacy log symlinks point into the run directory.
	for l in /var/log/containers/*.log; do
		[ -L "$l" ] && case $(readlink "$l") in "$E2E_RUN"/*) rm -f "$l" ;; esac
	done
	[ -f "$E2E_RUN/var-log-containers-created" ] && { rmdir /var/log/containers 2>/dev/null || true; }
	rm -f /var/lib/kubelet/device-plugins/kubelet.sock
	[ -f "$E2E_RUN/var-lib-kubelet-created" ] && { rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null || true; }
	e2e_restore_sysctls
	rm -rf "$E2E_RUN"
	e2e_log "down in $((SECONDS - start))s"
}

case $cmd in
up) up ;;
down) down ;;
env) cat "$E2E_RUN/env" ;;
status)
	for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
		if e2e_alive $c; then echo "$c: up (pid $(e2e_pid $c))"; else echo "$c: down"; fi
	done
	;;
*) usage ;;
esac
