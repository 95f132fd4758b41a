#!/usr/bin/env bash
# Copyright 2026 The edgefleet Authors.
# SPDX-License-Identifier: Apache-2.0
#
# Regenerates the code and manifests derived from the API types in api/:
#   - zz_generated.deepcopy.go in every api/<group>/<version> package
#   - the CRD manifests in config/crd/bases/
#
# The output is deterministic: running this twice leaves the tree unchanged.
# controller-gen is pinned in hack/tools/go.mod (a separate module, so its
# dependencies never enter the product's module graph).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

BIN_DIR="${ROOT}/bin"
CONTROLLER_GEN="${BIN_DIR}/controller-gen"

# Build controller-gen from the pinned version. The Go build cache makes this
# cheap after the first run.
mkdir -p "${BIN_DIR}"
go -C hack/tools build -o "${CONTROLLER_GEN}" sigs.k8s.io/controller-tools/cmd/controller-gen

CRD_DIR="config/crd/bases"

# Remove previous CRDs so that a deleted or renamed kind does not leave a
# stale manifest behind.
mkdir -p "${CRD_DIR}"
find "${CRD_DIR}" -maxdepth 1 -name '*.yaml' -delete

# api/ is its own module (github.com/edgefleet/edgefleet/api), so
# controller-gen loads its packages from inside it.
(
  cd api
  "${CONTROLLER_GEN}" \
    object:headerFile=../hack/boilerplate.go.txt \
    paths=./...

  "${CONTROLLER_GEN}" \
    crd \
    paths=./... \
    output:crd:artifacts:config="../${CRD_DIR}"
)

# Kinds that live on downstream clusters (the agent installs them there) are
# not installed on the manager: move them out of bases/.
DOWNSTREAM_CRD_DIR="config/crd/downstream"
mkdir -p "${DOWNSTREAM_CRD_DIR}"
find "${DOWNSTREAM_CRD_DIR}" -maxdepth 1 -name '*.yaml' -delete
mv "${CRD_DIR}"/upgrade.edgefleet.io_*.yaml "${DOWNSTREAM_CRD_DIR}/"

# The Helm chart ships the same CRDs in crds/ (installed before the chart's
# templates, never deleted by helm uninstall, as Helm users expect).
CHART_CRD_DIR="charts/edgefleet/crds"
mkdir -p "${CHART_CRD_DIR}"
find "${CHART_CRD_DIR}" -maxdepth 1 -name '*.yaml' -delete
cp "${CRD_DIR}"/*.yaml "${CHART_CRD_DIR}/"
