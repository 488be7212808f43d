#!/usr/bin/env bash
# test/k8s/images.sh: container images without a registry.
#
#   images.sh build
#       Build the pause and testapp images (static Go binaries from
#       test/k8s/cmd) as OCI archives, cached in
#       $ZTCN_E2E_CACHE/images-<hash of their sources>/; prints that directory.
#         pause.tar    registry.k8s.io/pause:3.10 (containerd 2.1's sandbox image)
#         testapp.tar  docker.io/ztcn-e2e/testapp:latest (pods: ztcn-e2e/testapp:latest)
#
#   images.sh import [TAR...]
#       Import TARs (default: the two above) into the containerd at
#       $CONTAINERD_ADDRESS, namespace k8s.io (where the CRI plugin looks).
#
#   images.sh image -o OUT.tar -name REF -file HOST[=/PATH] [-entrypoint CMD] [-env K=V] ...
#       Any static binary as an image, e.g. ztcn:
#         CGO_ENABLED=0 go build -o /tmp/ztcn ./cmd/ztcn
#         test/k8s/images.sh image -o /tmp/ztcn.tar -name ztcn-e2e/ztcn:dev -file /tmp/ztcn=/ztcn
#         test/k8s/images.sh import /tmp/ztcn.tar
#       (flags of test/k8s/cmd/ociimage; the image has /tmp and /etc too.)
set -euo pipefail
E2E_WHO=images
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath"
command -v go >/dev/null || export PATH=/usr/local/go/bin:$PATH

images_key() {
	{
		go env GOVERSION GOARCH
		cat "$E2E_DIR/images.sh"
		(cd "$E2E_DIR" && find cmd ociimage -name '*.go' | LC_ALL=C sort | xargs sha256sum)
	} | sha256sum | cut -c1-16
}

# ociimage_tool: the image writer, built once per source version.
ociimage_tool() {
	local dir
	dir=$E2E_CACHE/images-$(images_key)
	if [ ! -x "$dir/bin/ociimage" ]; then
		mkdir -p "$dir/bin"
		(cd "$E2E_REPO" && go build -ldflags "-s -w" -o "$dir/bin/ociimage.tmp.$$" ./test/k8s/cmd/ociimage) >&2
		mv "$dir/bin/ociimage.tmp.$$" "$dir/bin/ociimage"
	fi
	echo "$dir/bin/ociimage"
}

cmd_build() {
	local dir tmp b
	dir=$E2E_CACHE/images-$(images_key)
	if [ -f "$dir/.complete" ]; then
		echo "$dir"
		return
	fi
	mkdir -p "$E2E_CACHE"
	exec 8>"$E2E_CACHE/.images.lock"
	flock 8
	if [ -f "$dir/.complete" ]; then
		echo "$dir"
		return
	fi
	tmp=$dir.tmp.$$
	rm -rf "$tmp"
	mkdir -p "$tmp/bin"
	for b in pause testapp ociimage; do
		(cd "$E2E_REPO" && go build -ldflags "-s -w" -o "$tmp/bin/$b" "./test/k8s/cmd/$b") >&2
	done
	"$tmp/bin/ociimage" -o "$tmp/pause.tar" -name "$PAUSE_IMAGE" -file "$tmp/bin/pause=/pause" >/dev/null
	"$tmp/bin/ociimage" -o "$tmp/testapp.tar" -name "$TESTAPP_IMAGE" -file "$tmp/bin/testapp=/testapp" -cmd "serve :8080" >/dev/null
	date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp/.complete"
	rm -rf "$dir"
	mv "$tmp" "$dir"
	echo "$dir"
}

cmd_import() {
	local addr=${CONTAINERD_ADDRESS:-} t dir
	[ -n "$addr" ] || e2e_die "set CONTAINERD_ADDRESS (source \$ZTCN_E2E_RUN/env)"
	if [ $# -eq 0 ]; then
		dir=$(cmd_build)
		set -- "$dir/pause.tar" "$dir/testapp.tar"
	fi
	for t in "$@"; do
		"$(e2e_bindir containerd)/ctr" --address "$addr" -n k8s.io images import --platform "linux/$(e2e_arch)" "$t" >&2
	done
}

case ${1:-} in
build) cmd_build ;;
import)
	shift
	cmd_import "$@"
	;;
image)
	shift
	tool=$(ociimage_tool)
	"$tool" "$@"
	;;
*)
	sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
