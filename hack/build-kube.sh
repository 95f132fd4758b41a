#!/usr/bin/env bash
# Builds the real control-plane binaries edgefleet runs as child processes:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl and etcd from hack/kube (pinned in its
# go.mod), and kwok from the Go module proxy. Output goes to a git-ignored cache
# folder named after the pinned versions, so a version change rebuilds and an
# unchanged one is a no-op. EDGEFLEET_KUBE_CACHE moves the cache (CI shares one
# across clones). Prints the folder of the binaries on its last line.
set -euo pipefail
# A throw-away Go build cache: Kubernetes' packages fill several GiB of
# GOCACHE that nothing but this script would reuse, and the binaries are
# cached already (a full disk makes kubelets in the tests evict their pods).
if [ -z "${EDGEFLEET_KEEP_GOCACHE:-}" ]; then
  GOCACHE=$(mktemp -d -t edgefleet-kube-gocache-XXXXXX)
  export GOCACHE
  trap 'rm -rf "$GOCACHE"' EXIT
fi
root=$(cd "$(dirname "$0")/.." && pwd)
modver() { awk -v m="$1" '/^[[:space:]]*\/\//{next} {for (i = 1; i < NF; i++) if ($i == m) {print $(i+1); exit}}' "$root/hack/kube/go.mod"; }
kube_version=$(modver k8s.io/kubernetes)
etcd_version=$(modver go.etcd.io/etcd/server/v3)
kwok_version=${KWOK_VERSION:-v0.8.0}
cache_root=${EDGEFLEET_KUBE_CACHE:-$root/.cache/kube}
out=$cache_root/$kube_version-etcd$etcd_version-kwok$kwok_version
mkdir -p "$out"

minor=${kube_version#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
cd "$root/hack/kube"
# kubelet, kubectl and kube-proxy: the built-in edgefleet distribution's node
# binaries (internal/node/kubedistro); kubectl applies its auto-deploy manifests.
for bin in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy; do
  if [ ! -x "$out/$bin" ]; then
    echo "building $bin $kube_version (cold: several minutes)" >&2
    go build -trimpath -ldflags "$ldflags" -o "$out/$bin.tmp" "k8s.io/kubernetes/cmd/$bin"
    mv "$out/$bin.tmp" "$out/$bin"
  fi
done
if [ ! -x "$out/etcd" ]; then
  echo "building etcd $etcd_version" >&2
  go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" ./cmd/etcd
  mv "$out/etcd.tmp" "$out/etcd"
fi
if [ ! -x "$out/kwok" ]; then
  echo "building kwok $kwok_version" >&2
  tmp=$(mktemp -d)
  GOBIN="$tmp" GOFLAGS=-trimpath go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$kwok_version"
  mv "$tmp/kwok" "$out/kwok"
  rm -rf "$tmp"
fi
if [ ! -f "$out/kwok-stages.yaml" ]; then
  moddir=$(cd "$root/hack/kube" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kwok@$kwok_version" | awk -F'"' '$2=="Dir"{print $4}')
  : > "$out/kwok-stages.yaml.tmp"
  # The "fast" stages: nodes Ready at once, pods Running/Ready about a second
  # after scheduling, Jobs' pods complete, deleted pods go away.
  for s in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    f="$moddir/kustomize/stage/$s.yaml"
    [ -f "$f" ] || { echo "kwok stage $s not found in $moddir" >&2; exit 1; }
    { echo "---"; cat "$f"; } >> "$out/kwok-stages.yaml.tmp"
  done
  mv "$out/kwok-stages.yaml.tmp" "$out/kwok-stages.yaml"
fi
echo "$out"
