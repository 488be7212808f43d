# ztcn — build, test, lint, bench. `make test` is the whole suite; CI runs it
# through .ci/run as root.

SHELL       := /bin/bash
.SHELLFLAGS := -eo pipefail -c
GO          ?= go
BIN         ?= bin/ztcn
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck
# Package patterns for the default suite; long benchmarks live in bench/.
PKGS        ?= ./...

.PHONY: all build test test-race lint vet staticcheck bench bench-quick bench-go conformance security e2e-k8s fmt clean

all: build

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/ztcn

# Tests that need root (network namespaces) skip without it, except under
# CI=true, where they fail instead.
test:
	$(GO) test -count=1 -timeout 15m $(PKGS)

# The same suite under the race detector (about 3 minutes more on 2 cores).
test-race:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(STATICCHECK) $(PKGS)

lint: vet staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi

# The benchmark harness (bench/): ztcn against raw TCP, stunnel and a Go
# TLS proxy pair between two pod namespaces, as a table of ratios and
# bench/results.json. Needs root and stunnel4. bench-quick: < 2 minutes.
bench:
	$(GO) run ./bench

bench-quick:
	$(GO) run ./bench --quick --json bench/results-quick.json

# Go benchmarks of the hot paths, each beside its baseline.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $(PKGS)

# ztcn on a real single-node Kubernetes 1.34 built from source (test/k8s:
# etcd, apiserver, controller-manager, scheduler, kubelet, kube-proxy,
# containerd 2.1 with NRI, bridge CNI), deployed with deploy/kubernetes/.
# Root; the binaries are built once into /var/cache/ztcn-e2e (~7 min cold).
e2e-k8s:
	bash test/k8s/build.sh kubernetes etcd containerd cni crictl images
	ZTCN_E2E_K8S=1 $(GO) test -count=1 -timeout 20m -run '^TestKubernetes$$' -v ./test/e2e/

# Kubernetes NetworkPolicy conformance (../shared/testdata/netpol), with
# the number of agreeing pairs and queries printed. Also part of `make test`.
conformance:
	$(GO) test -count=1 -run 'Conformance' -v ./internal/policy/ | grep -E 'agree|^(ok|FAIL|---)'

# The attack and fault suites (tests named Attack* and Fault*, real
# namespaces, root) as a table: attack/fault -> expected -> seen.
security:
	ZTCN_LOAD=1 $(GO) test -json -count=1 -timeout 20m -run 'Attack|Fault|NRIPlugin' $(PKGS) | $(GO) run ./test/securityreport

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
