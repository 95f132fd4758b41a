#!/usr/bin/env bash
# Builds CoreDNS for the edgefleet distribution's cluster DNS from hack/coredns
# (a main with only the plugins a cluster DNS needs, its version pinned in
# hack/coredns/go.mod) into a cache folder named after that version, so an
# unchanged version is a no-op. EDGEFLEET_KUBE_CACHE moves the cache, as for the
# Kubernetes binaries. Prints the path of the binary on its last line.
set -euo pipefail
# A throw-away Go build cache, as in hack/build-kube.sh: client-go and the
# CoreDNS packages would otherwise stay in GOCACHE for nothing.
if [ -z "${EDGEFLEET_KEEP_GOCACHE:-}" ]; then
  GOCACHE=$(mktemp -d -t edgefleet-coredns-gocache-XXXXXX)
  export GOCACHE
  trap 'rm -rf "$GOCACHE"' EXIT
fi
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3}' "$root/hack/coredns/go.mod")
[ -n "$version" ] || { echo "no github.com/coredns/coredns version in hack/coredns/go.mod" >&2; exit 1; }
cache_root=${EDGEFLEET_KUBE_CACHE:-$root/.cache/kube}
out=$cache_root/coredns-$version
mkdir -p "$out"
if [ ! -x "$out/coredns" ]; then
  echo "building coredns $version (minimal plugin set; cold: a few minutes)" >&2
  cd "$root/hack/coredns"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/coredns.tmp" .
  mv "$out/coredns.tmp" "$out/coredns"
fi
echo "$out/coredns"
