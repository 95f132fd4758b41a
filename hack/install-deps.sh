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
  # OS install on disk-image files (internal/node/osinstall): partitions through
  # loop devices, squashfs slots, GRUB environment, EFI partition without vfat
  [mkfs.vfat]=dosfstools
  [sqfstar]=squashfs-tools
  [unsquashfs]=squashfs-tools
  [grub-editenv]=grub-common
  [grub-mkstandalone]=grub-common
  [mcopy]=mtools
  [losetup]=mount
  [blkid]=util-linux
  # GRUB boot assessment in a VM (TestGrubBootAssessmentVM)
  [qemu-system-x86_64]=qemu-system-x86
  [cpio]=cpio
  [busybox]=busybox-static
  # OS image builder (internal/osimage, make os-image) and its VM boot tests
  [apt-get]=apt
  [dpkg-deb]=dpkg
  [grub-mkimage]=grub-common
  [mksquashfs]=squashfs-tools
  # bootable seed media from OS images (internal/seedimage) and the VM test rig (test/vmrig)
  [grub-mkrescue]=grub-common
  [mdir]=mtools
  [qemu-img]=qemu-utils
  # web UI: build (npm ci, esbuild, tsc) and browser tests (playwright-core drives Debian's chromium)
  [node]=nodejs
  [npm]=npm
  [chromium]=chromium
  # data dir on a small tmpfs (TestDataDirDiskFull)
  [mount]=mount
  [umount]=mount
  # the built-in edgefleet Kubernetes distribution (internal/node/kubedistro, TestKubeDistro*):
  # containerd + runc under a real kubelet, network namespaces for nodes, kube-proxy's rules
  [containerd]=containerd
  [runc]=runc
  [ip]=iproute2
  [nsenter]=util-linux
  [iptables]=iptables
  [conntrack]=conntrack
)
# files (no command) -> Debian package: GRUB's BIOS and UEFI platforms, OVMF firmware
declare -A need_files=(
  [/usr/lib/grub/i386-pc/modinfo.sh]=grub-pc-bin
  [/usr/lib/grub/x86_64-efi/modinfo.sh]=grub-efi-amd64-bin
  [/usr/share/OVMF/OVMF_CODE_4M.fd]=ovmf
  [/usr/share/ovmf/OVMF.fd]=ovmf
  # CNI plugins for the edgefleet distribution's pod network
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [/usr/lib/cni/host-local]=containernetworking-plugins
  [/usr/lib/cni/loopback]=containernetworking-plugins
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
for f in "${!need_files[@]}"; do
  [ -e "$f" ] || missing+=("${need_files[$f]}")
done
# internal/debpkg asks apt which package versions to download: it needs package lists.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
  echo "no apt package lists: running apt-get update" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
