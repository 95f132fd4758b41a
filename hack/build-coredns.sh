#!/usr/bin/env bash
# Builds CoreDNS for the edgefleet distribution's cluster DNS from hack/coredns
# (a main with only the plugins a cluster DNS needs, its version pinned in
# hack/coredns/go.mod) into a cache folder named after that version and the
# main's content, so an unchanged build is a no-op. EDGEFLEET_KUBE_CACHE moves
# the cache, as for the Kubernetes binaries. Prints the path of the binary on
# its last line.
set -euo pipefail
# A throw-away Go build cache, as in hack/build-kube.sh: client-go and the
# CoreDNS packages would otherwise stay in GOCACHE for nothing.
if [ -z "${EDGEFLEET_KEEP_GOCACHE:-}" ]; then
  GOCACHE=$(mktemp -d -t edgefleet-coredns-gocache-XXXXXX)
  export GOCACHE
  trap 'rm -rf "$GOCACHE"' EXIT
fi
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(awk '/^[[:space:]]*\/\//{next} {for (i = 1; i < NF; i++) if ($i == "github.com/coredns/coredns") {print $(i+1); exit}}' "$root/hack/coredns/go.mod")
[ -n "$version" ] || { echo "no github.com/coredns/coredns version in hack/coredns/go.mod" >&2; exit 1; }
cache_root=${EDGEFLEET_KUBE_CACHE:-$root/.cache/kube}
# The main's plugin list is part of the key: a plugin added there rebuilds.
sum=$(cat "$root/hack/coredns/main.go" "$root/hack/coredns/go.sum" | sha256sum | cut -c1-8)
out=$cache_root/coredns-$version-$sum
mkdir -p "$out"
if [ ! -x "$out/coredns" ]; then
  echo "building coredns $version (minimal plugin set; cold: a few minutes)" >&2
  cd "$root/hack/coredns"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/coredns.tmp" .
  mv "$out/coredns.tmp" "$out/coredns"
fi
echo "$out/coredns"
