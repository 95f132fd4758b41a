#!/usr/bin/env bash
# Installs the Debian packages edgefleet's tests use, only those missing.
# Nothing is downloaded from anywhere but Debian's archive and the Go module proxy.
set -euo pipefail
# sgdisk, mkfs.ext4 and debugfs live in /usr/sbin, which is not on a Debian user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"
# command -> Debian package
declare -A need=(
  [git]=git
  [make]=make
  [gcc]=gcc
  # the join command `edgefleet token create` prints (e2e TestReadmeWalkthrough runs it)
  [curl]=curl
  # machine registration tests (TPM simulator, EK certificates) and seed images
  [swtpm]=swtpm
  [swtpm_setup]=swtpm-tools
  [xorriso]=xorriso
  # raw seed disk images: partitioned and formatted on plain files, read back with debugfs
  [sgdisk]=gdisk
  [mkfs.ext4]=e2fsprogs
  [debugfs]=e2fsprogs
  [e2label]=e2fsprogs
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
