// Package testos builds a tiny OS image that follows the edgefleet OS
// image contract (docs/os.md) for tests and benchmarks: Debian's cloud
// kernel, a busybox initrd whose init registers the machine with the
// image's own edgefleet-node, and that binary (built without cgo). The real
// OS image and its boot init come from `make os-image`; this one boots in a
// few seconds under TCG and proves the media, the rig and registration.
package testos

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/edgefleet/edgefleet/internal/osimage/osimagetest"
	sit "github.com/edgefleet/edgefleet/internal/seedimage/seedimagetest"
	"github.com/edgefleet/edgefleet/test/vmrig"
)

// RegisterInit is the initrd's /init: it finds the EDGEFLEET medium,
// loop-mounts the root image, puts the node config where edgefleet-node
// looks for it, brings up the network and runs the image's own
// edgefleet-node to register with the vTPM, then powers off. The console
// says "vm-e2e: registered" or "vm-e2e: register failed". The manager's URL
// names 127.0.0.1:<port> (as on the host), so a relay in the guest sends
// that port to 10.0.2.100:<port>, which the rig forwards to the manager.
const RegisterInit = `
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
loadmods
echo "vm-e2e: init"
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
root=$(arg edgefleet.root)
i=0
until dev=$(findfs LABEL=${root%%:*} 2>/dev/null); do
  i=$((i+1)); [ $i -gt 200 ] && { echo "vm-e2e: no medium"; poweroff -f; }
  sleep 0.1
done
mkdir -p /run/medium /run/root /run/edgefleet/seed /var/lib /tmp
mount -o ro "$dev" /run/medium
mount -t squashfs -o ro,loop "/run/medium${root#*:}" /run/root
cp /run/medium/edgefleet-node.yaml /run/edgefleet/seed/
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
port=$(sed -n 's|^ *url: *https://127.0.0.1:\([0-9]*\)/.*|\1|p' /run/edgefleet/seed/edgefleet-node.yaml)
nc -ll -p "$port" -e nc 10.0.2.100 "$port" &
sleep 0.5
echo "vm-e2e: registering through port $port"
if /run/root/usr/bin/edgefleet-node register; then echo "vm-e2e: registered"; else echo "vm-e2e: register failed"; fi
poweroff -f
`

// Modules the init loads: CD-ROM, virtio disk and NIC, squashfs on loop.
var Modules = append(append(append([]string{}, vmrig.CDROMModules...), vmrig.VirtioModules...), "squashfs", "loop")

// Entries are the image's files: /boot/vmlinuz, /boot/initrd (running
// init), /etc/os-release (VERSION_ID version) and /usr/bin/edgefleet-node.
func Entries(t testing.TB, init, version string) []sit.Entry {
	t.Helper()
	k := vmrig.DebianKernel(t)
	initrd := filepath.Join(t.TempDir(), "initrd")
	vmrig.BuildInitramfs(t, k, vmrig.Initramfs{Init: init, Modules: Modules}, initrd)
	return []sit.Entry{
		{Name: "boot/vmlinuz", Data: readFile(t, k.Vmlinuz)},
		{Name: "boot/initrd", Data: readFile(t, initrd)},
		{Name: "etc/os-release", Data: []byte("NAME=edgefleet-testos\nVERSION_ID=" + version + "\n")},
		{Name: "usr/bin/edgefleet-node", Data: readFile(t, osimagetest.NodeBinary(t)), Mode: 0o755},
	}
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
