# edgefleet — see README.md. `make run` and `make test` are the whole setup.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/edgefleet/edgefleet/internal/version.Version=$(VERSION) -X github.com/edgefleet/edgefleet/internal/version.Commit=$(COMMIT)
DATA_DIR ?= ./edgefleet-data
GO_TEST_FLAGS ?= -timeout 60m
KUBE_BIN_DIR_FILE := .cache/kube-bin-dir

.PHONY: all build run dev-cluster test test-unit bench bench-short soak deps kube-binaries kube-upgrade-binaries generate verify-generate vet fmt clean os-image ui ui-deps verify-ui

all: build

## deps: install the Debian packages the tests need (no-op when present)
deps:
	hack/install-deps.sh

## kube-binaries: build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl, kube-proxy, etcd and kwok,
## and CoreDNS with a minimal plugin set (hack/build-coredns.sh) (cached)
kube-binaries:
	@mkdir -p .cache
	@hack/build-kube.sh | tail -n 1 > $(KUBE_BIN_DIR_FILE)
	@echo "Kubernetes binaries: $$(cat $(KUBE_BIN_DIR_FILE))"
	@hack/build-coredns.sh | tail -n 1 > .cache/coredns-bin
	@echo "CoreDNS (the edgefleet distribution's cluster DNS): $$(cat .cache/coredns-bin)"

## kube-upgrade-binaries: the same six (no etcd, no kwok) at v1.37.2, what the edgefleet distribution's upgrade
## tests move nodes and servers' control plane to (cached; only `make test` needs them, not `make run` or the demo)
kube-upgrade-binaries:
	@hack/build-kube-node.sh v1.37.2 | tail -n 1

## build: the manager/CLI, the cluster agent and the node agent into bin/
build:
	go build -trimpath -ldflags "$(LDFLAGS)" -o bin/edgefleet ./cmd/edgefleet
	# CGO off: kustomize links Go's plugin package, which with cgo makes the
	# linker export every symbol (87 MB instead of 63 MB, ~27 MB more RSS).
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/edgefleet-agent ./cmd/edgefleet-agent
	go build -trimpath -ldflags "$(LDFLAGS)" -o bin/edgefleet-node ./cmd/edgefleet-node

## os-image: the reference OS image (docs/os.md; variant test, version OS_VERSION) as an OCI layout
## cached under ~/.cache/edgefleet/os; OS_PUSH=<registry/repo:tag> also pushes it. Packages come only
## from Debian's archive. OS_IMAGE_FLAGS passes more flags (e.g. --broken).
OS_VERSION ?= $(patsubst v%,%,$(VERSION))
os-image: deps
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/os/edgefleet-node ./cmd/edgefleet-node
	go run ./hack/os-image --version "$(OS_VERSION)" --node-binary bin/os/edgefleet-node $(if $(OS_PUSH),--push "$(OS_PUSH)") $(OS_IMAGE_FLAGS)

## run: build and start the manager on an embedded control plane in $(DATA_DIR)
run: kube-binaries build
	bin/edgefleet server --data-dir $(DATA_DIR) --kube-bin-dir "$$(cat $(KUBE_BIN_DIR_FILE))"

## dev-cluster: start a local downstream cluster with fake nodes in ./dev-cluster-data
dev-cluster: kube-binaries build
	bin/edgefleet dev-cluster --data-dir ./dev-cluster-data --kube-bin-dir "$$(cat $(KUBE_BIN_DIR_FILE))"

## demo: the whole story on this host (root: network namespaces), docs/demo.md; DEMO_FLAGS=--keep leaves it running
.PHONY: demo
demo: kube-binaries build
	bin/edgefleet demo --kube-bin-dir "$$(cat $(KUBE_BIN_DIR_FILE))" $(DEMO_FLAGS)

## test: unit, integration and end-to-end tests against real control planes
test: deps kube-binaries kube-upgrade-binaries build ui-deps
	EDGEFLEET_KUBE_BIN_DIR="$$(cat $(KUBE_BIN_DIR_FILE))" KUBEBUILDER_ASSETS="$$(cat $(KUBE_BIN_DIR_FILE))" EDGEFLEET_BIN="$(CURDIR)/bin/edgefleet" \
		go test $(GO_TEST_FLAGS) ./...
	cd api && go test $(GO_TEST_FLAGS) ./...

## bench: every benchmark (fleet scenarios, idle, registration storm, tunnel, seed image,
## footprint); writes BENCHMARKS.md; then the two-VM OS rollout (TestOSRolloutInVMs). Pick fleet scenarios with BENCH_SCENARIOS=50x50,500x10
BENCH_SCENARIOS ?= 50x50,500x10,500x50,5000x1
bench: kube-binaries build
	EDGEFLEET_BENCH=1 EDGEFLEET_BENCH_SCENARIOS="$(BENCH_SCENARIOS)" EDGEFLEET_BENCH_OUT="$(CURDIR)/BENCHMARKS.md" \
		EDGEFLEET_BENCH_CMD="make bench BENCH_SCENARIOS=$(BENCH_SCENARIOS)" \
		EDGEFLEET_KUBE_BIN_DIR="$$(cat $(KUBE_BIN_DIR_FILE))" EDGEFLEET_BIN="$(CURDIR)/bin/edgefleet" \
		go test -count=1 -timeout 120m -v ./test/bench/
	EDGEFLEET_BENCH=1 EDGEFLEET_KUBE_BIN_DIR="$$(cat $(KUBE_BIN_DIR_FILE))" EDGEFLEET_BIN="$(CURDIR)/bin/edgefleet" \
		go test -count=1 -timeout 45m -run 'TestOSRolloutInVMs' -v ./test/e2e/

## soak: issue #20 scenario 7, not in CI: SOAK_CLUSTERS simulated clusters (500) with a
## Bundle change every minute for SOAK_DURATION (1h; SOAK_DURATION=5m for a short check);
## writes the Soak section of BENCHMARKS.md and docs/bench/soak.svg
SOAK_DURATION ?= 1h
SOAK_CLUSTERS ?= 500
soak: kube-binaries build
	EDGEFLEET_BENCH=1 EDGEFLEET_SOAK=1 EDGEFLEET_SOAK_DURATION="$(SOAK_DURATION)" EDGEFLEET_SOAK_CLUSTERS="$(SOAK_CLUSTERS)" \
		EDGEFLEET_SOAK_SVG="$(CURDIR)/docs/bench/soak.svg" EDGEFLEET_BENCH_OUT="$(CURDIR)/BENCHMARKS.md" \
		EDGEFLEET_BENCH_CMD="make soak SOAK_DURATION=$(SOAK_DURATION) SOAK_CLUSTERS=$(SOAK_CLUSTERS)" \
		EDGEFLEET_KUBE_BIN_DIR="$$(cat $(KUBE_BIN_DIR_FILE))" EDGEFLEET_BIN="$(CURDIR)/bin/edgefleet" \
		go test -count=1 -timeout 0 -run 'TestSoak$$' -v ./test/bench/

## bench-short: the 50x50 fleet scenario only (under 3 minutes; prints, writes nothing)
bench-short: kube-binaries build
	EDGEFLEET_BENCH=1 EDGEFLEET_BENCH_SCENARIOS=50x50 \
		EDGEFLEET_KUBE_BIN_DIR="$$(cat $(KUBE_BIN_DIR_FILE))" EDGEFLEET_BIN="$(CURDIR)/bin/edgefleet" \
		go test -count=1 -timeout 20m -run TestFleetScale -v ./test/bench/

## test-unit: only the tests that need no control plane
test-unit:
	go test -short ./...
	cd api && go test -short ./...

## generate: deepcopy functions and CRD manifests from api/
generate:
	hack/generate.sh

## verify-generate: fail when committed generated files differ from a fresh `make generate`
verify-generate: generate
	@if [ -n "$$(git status --porcelain -- api config charts/edgefleet/crds)" ]; then \
		echo "generated files are stale; run 'make generate' and commit:"; git status --porcelain -- api config charts/edgefleet/crds; git diff --stat -- api config charts/edgefleet/crds; exit 1; \
	fi

## ui-deps: the web UI's npm packages, exactly as web/ui/package-lock.json pins them
ui-deps:
	cd web/ui && npm ci --no-audit --no-fund --loglevel=error

## ui: type-check and build the web UI into internal/webui/dist (embedded in the manager; commit it)
ui: ui-deps
	cd web/ui && ./node_modules/.bin/tsc --noEmit -p . && node build.mjs

## verify-ui: fail when the committed internal/webui/dist differs from a fresh `make ui`
verify-ui: ui
	@if [ -n "$$(git status --porcelain -- internal/webui/dist)" ]; then \
		echo "the built web UI is stale; run 'make ui' and commit:"; git status --porcelain -- internal/webui/dist; exit 1; \
	fi

## images: manager and cluster agent container images (static CGO_ENABLED=0 binaries cross-compiled for
## IMAGE_ARCHS on a base of Debian's CA certificates + a nonroot user) as OCI layouts and docker archives
## in bin/images; no container daemon. Reproducible: every timestamp is SOURCE_DATE_EPOCH (default the
## last commit's time). REGISTRY=<host/prefix> names them under that registry (default ghcr.io/edgefleet).
## push: the same, then pushes both to REGISTRY (required). docs/install.md.
.PHONY: images push
IMAGE_ARCHS ?= amd64 arm64
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_REPO = $(or $(REGISTRY),ghcr.io/edgefleet)
IMAGE_FLAGS ?=
images:
	for a in $(IMAGE_ARCHS); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a go build -trimpath -ldflags "$(LDFLAGS)" -o bin/linux-$$a/edgefleet ./cmd/edgefleet; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a go build -trimpath -ldflags "$(LDFLAGS)" -o bin/linux-$$a/edgefleet-agent ./cmd/edgefleet-agent; \
	done
	go run ./hack/images --bin-dir bin --out bin/images --archs "$$(echo $(IMAGE_ARCHS) | tr ' ' ,)" --version "$(VERSION)" \
		--revision "$(COMMIT)" --source-date-epoch "$(SOURCE_DATE_EPOCH)" --repo "$(IMAGE_REPO)" $(IMAGE_FLAGS)

push:
	@if [ -z "$(REGISTRY)" ]; then echo "push: give REGISTRY=<registry>/<prefix>, e.g. make push REGISTRY=registry.example.com/edgefleet"; exit 1; fi
	$(MAKE) images IMAGE_FLAGS="--push $(IMAGE_FLAGS)"

vet:
	go vet ./...
	cd api && go vet ./...
	cd hack/kube && go vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
