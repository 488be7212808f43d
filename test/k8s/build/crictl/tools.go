//go:build tools

// Package tools pins crictl for test/k8s/build.sh.
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
