#!/usr/bin/env bash
# test/k8s/build.sh [-f] [component...]: build the end-to-end binaries from
# source, through the Go module proxy, into
# ${ZTCN_E2E_CACHE:-/var/cache/ztcn-e2e}/<component>-<version>/bin.
#
# Components: kubernetes etcd containerd cni crictl nriprobe images (default:
# all). nriprobe is a minimal NRI plugin (test/k8s/build/nriprobe).
# A component is skipped when its directory holds a .complete stamp (written
# last) whose key matches the current recipe: the version, the Go version and
# the wrapper module under test/k8s/build/<component>. -f rebuilds anyway.
# One line per component is printed on stdout with the time it took.
set -euo pipefail
E2E_WHO=build
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

force=0
if [ "${1:-}" = -f ]; then
	force=1
	shift
fi
# shellcheck disable=SC2086 # a list of words
[ $# -gt 0 ] || set -- $E2E_COMPONENTS images

export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath"
command -v go >/dev/null || export PATH=/usr/local/go/bin:$PATH

mkdir -p "$E2E_CACHE"
exec 9>"$E2E_CACHE/.build.lock"
flock 9 # one build at a time; a second caller finds the stamps written

k8s_ldflags() {
	local v=$K8S_VERSION minor
	minor=${v#v1.}
	minor=${minor%%.*}
	local date
	date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	local f="-s -w" p
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		f="$f -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
	done
	echo "$f"
}

# build_<component> BINDIR: the recipes.
build_kubernetes() {
	(cd "$E2E_DIR/build/kubernetes" && go build -ldflags "$(k8s_ldflags)" -o "$1/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
		k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)
}
build_etcd() {
	(cd "$E2E_DIR/build/etcd" && go build -ldflags "-s -w" -o "$1/etcd" .)
}
build_containerd() {
	local p=github.com/containerd/containerd/v2
	if [ "$CONTAINERD_VERSION" != v2.1.5 ]; then
		# Later releases carry no exclude directives: go install takes them.
		GOBIN=$1 go install -ldflags "-s -w -X $p/version.Version=$CONTAINERD_VERSION" \
			"$p/cmd/containerd@$CONTAINERD_VERSION" "$p/cmd/ctr@$CONTAINERD_VERSION" "$p/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
		return
	fi
	(cd "$E2E_DIR/build/containerd" && go build \
		-ldflags "-s -w -X $p/version.Version=$CONTAINERD_VERSION -X $p/version.Revision=$CONTAINERD_VERSION -X $p/version.Package=$p" \
		-o "$1/" $p/cmd/containerd $p/cmd/ctr $p/cmd/containerd-shim-runc-v2)
}
build_cni() {
	local p=github.com/containernetworking/plugins
	# No replace or exclude directives: a plain go install works.
	(cd / && GOBIN=$1 go install -ldflags "-s -w -X $p/pkg/utils/buildversion.BuildVersion=$CNI_VERSION" \
		$p/plugins/main/bridge@$CNI_VERSION $p/plugins/ipam/host-local@$CNI_VERSION \
		$p/plugins/main/loopback@$CNI_VERSION $p/plugins/meta/portmap@$CNI_VERSION)
}
build_nriprobe() {
	(cd "$E2E_DIR/build/nriprobe" && go build -ldflags "-s -w" -o "$1/nriprobe" .)
}
build_crictl() {
	(cd "$E2E_DIR/build/crictl" && go build -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
		-o "$1/crictl" sigs.k8s.io/cri-tools/cmd/crictl)
}

expected_bins() {
	case $1 in
	kubernetes) echo kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl ;;
	etcd) echo etcd ;;
	containerd) echo containerd ctr containerd-shim-runc-v2 ;;
	cni) echo bridge host-local loopback portmap ;;
	crictl) echo crictl ;;
	nriprobe) echo nriprobe ;;
	esac
}

# recipe_key COMPONENT: changes whenever the result could.
recipe_key() {
	{
		echo "$1 $(basename "$(dirname "$(e2e_bindir "$1")")") $(go env GOVERSION) $(go env GOARCH)"
		declare -f "build_$1"
		[ "$1" = kubernetes ] && declare -f k8s_ldflags
		if [ -d "$E2E_DIR/build/$1" ]; then
			(cd "$E2E_DIR/build/$1" && find . -type f | LC_ALL=C sort | xargs sha256sum)
		fi
	} | sha256sum | cut -c1-16
}

build_one() {
	local c=$1 bindir dir key tmp start b
	bindir=$(e2e_bindir "$c")
	dir=$(dirname "$bindir")
	key=$(recipe_key "$c")
	if [ $force = 0 ] && [ -f "$dir/.complete" ] && grep -qx "key=$key" "$dir/.complete"; then
		echo "$c ${dir##*-}: cached (0s) $bindir"
		return 0
	fi
	start=$(date +%s)
	tmp=$dir.tmp.$$
	rm -rf "$tmp"
	mkdir -p "$tmp/bin"
	e2e_log "building $c into $dir"
	if ! "build_$c" "$tmp/bin" >"$tmp/build.log" 2>&1; then
		cat "$tmp/build.log" >&2
		e2e_die "building $c failed (log: $tmp/build.log)"
	fi
	for b in $(expected_bins "$c"); do
		[ -x "$tmp/bin/$b" ] || e2e_die "building $c did not produce $b"
	done
	{
		echo "key=$key"
		echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) seconds=$(($(date +%s) - start)) go=$(go env GOVERSION)"
	} >"$tmp/.complete.new"
	rm -rf "$dir"
	mv "$tmp/.complete.new" "$tmp/.complete"
	mv "$tmp" "$dir"
	echo "$c ${dir##*-}: built in $(($(date +%s) - start))s $bindir"
}

total=$(date +%s)
for c in "$@"; do
	case $c in
	images)
		start=$(date +%s)
		out=$("$E2E_DIR/images.sh" build)
		echo "images: ready in $(($(date +%s) - start))s $out"
		;;
	kubernetes | etcd | containerd | cni | crictl | nriprobe) build_one "$c" ;;
	*) e2e_die "unknown component $c (want: $E2E_COMPONENTS images)" ;;
	esac
done
echo "total: $(($(date +%s) - total))s"
