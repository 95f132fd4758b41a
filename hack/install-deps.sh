#!/usr/bin/env bash
# Installs the Debian packages edgefleet's tests use, only those missing.
# Nothing is downloaded from anywhere but Debian's archive and the Go module proxy.
set -euo pipefail
# command -> Debian package
declare -A need=(
  [git]=git
  [make]=make
  [gcc]=gcc
  # machine registration tests (TPM simulator, EK certificates) and seed images
  [swtpm]=swtpm
  [swtpm_setup]=swtpm-tools
  [xorriso]=xorriso
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
