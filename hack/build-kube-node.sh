#!/usr/bin/env bash
# Builds the binaries an edgefleet-distribution node runs (kubelet, kubectl,
# kube-proxy, and a server's control plane: kube-apiserver,
# kube-controller-manager, kube-scheduler; etcd stays at the pinned version)
# at another Kubernetes patch version than the pinned one
# (hack/kube/go.mod), for upgrade tests: a throw-away copy of hack/kube's
# module with every k8s.io pin moved to that version. Output goes to
# <kube cache>/<version>-node/ (a no-op when built already); prints the folder
# on its last line. Usage: hack/build-kube-node.sh v1.37.2
set -euo pipefail
# A throw-away Go build cache: Kubernetes' packages fill several GiB of
# GOCACHE that nothing but this script would reuse, and the binaries are
# cached already (a full disk makes kubelets in the tests evict their pods).
if [ -z "${EDGEFLEET_KEEP_GOCACHE:-}" ]; then
  GOCACHE_TMP=$(mktemp -d -t edgefleet-kube-gocache-XXXXXX)
  export GOCACHE=$GOCACHE_TMP
  trap 'rm -rf "$GOCACHE_TMP"' EXIT
fi
version=${1:?usage: $0 v1.37.x}
root=$(cd "$(dirname "$0")/.." && pwd)
cache_root=${EDGEFLEET_KUBE_CACHE:-$root/.cache/kube}
out=$cache_root/$version-node
mkdir -p "$out"
pinned=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$root/hack/kube/go.mod")
minor=${version#v1.}; minor=${minor%%.*}
staging=v0.${version#v1.}
pinned_staging=v0.${pinned#v1.}
bins="kubelet kubectl kube-proxy kube-apiserver kube-controller-manager kube-scheduler"
missing=
for bin in $bins; do [ -x "$out/$bin" ] || missing=1; done
if [ -n "$missing" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp" "${GOCACHE_TMP:-}"' EXIT
  sed -e "s/$pinned_staging/$staging/g" -e "s#k8s.io/kubernetes $pinned#k8s.io/kubernetes $version#" "$root/hack/kube/go.mod" > "$tmp/go.mod"
  cp -r "$root/hack/kube/cmd" "$tmp/cmd"
  cd "$tmp"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  for bin in $bins; do
    [ -x "$out/$bin" ] && continue
    echo "building $bin $version (cold: several minutes)" >&2
    GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out/$bin.tmp" "k8s.io/kubernetes/cmd/$bin"
    mv "$out/$bin.tmp" "$out/$bin"
  done
fi
echo "$out"
