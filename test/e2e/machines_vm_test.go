package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	sit "github.com/edgefleet/edgefleet/internal/seedimage/seedimagetest"
	"github.com/edgefleet/edgefleet/test/harness"
	"github.com/edgefleet/edgefleet/test/vmrig"
)

// vmTestInit is the init of the OS image this test builds: it finds the
// EDGEFLEET medium, loop-mounts the root image, puts the node config where
// edgefleet-node looks for it, brings up the network and runs the image's
// own edgefleet-node to register with the vTPM. The manager's URL names
// 127.0.0.1:<port> (as on the host), so a relay in the guest sends that
// port to 10.0.2.100:<port>, which the rig forwards to the manager.
const vmTestInit = `
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

// A SeedImage built by the manager from an OS image in a loopback registry
// boots in a virtual machine (BIOS, vTPM from swtpm, network restricted to
// the manager's port): the image's own edgefleet-node registers through
// the guestfwd with the TPM, and the MachineInventory appears, named from
// the VM's SMBIOS serial. The raw disk image the CLI builds from the same
// OS image does the same under UEFI.
func TestSeedISOFromOSImageBootsAndRegisters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager and a VM")
	}
	sit.RequireTools(t, "xorriso", "grub-mkrescue", "mksquashfs", "swtpm", "qemu-system-x86_64", "busybox")
	node := staticNodeBinary(t)
	k := vmrig.DebianKernel(t)
	initrd := filepath.Join(t.TempDir(), "initrd")
	mods := append(append(append([]string{}, vmrig.CDROMModules...), vmrig.VirtioModules...), "squashfs", "loop")
	vmrig.BuildInitramfs(t, k, vmrig.Initramfs{Init: vmTestInit, Modules: mods}, initrd)
	reg := sit.StartRegistry(t)
	ref := sit.PushEntries(t, reg+"/edgefleet/os:vm", map[string]string{"io.edgefleet.os.name": "vm-e2e", "io.edgefleet.os.version": "1"},
		sit.Entry{Name: "boot/vmlinuz", Data: readFile(t, k.Vmlinuz)},
		sit.Entry{Name: "boot/initrd", Data: readFile(t, initrd)},
		sit.Entry{Name: "etc/os-release", Data: []byte("NAME=vm-e2e\nVERSION_ID=1\n")},
		sit.Entry{Name: "usr/bin/edgefleet-node", Data: readFile(t, node), Mode: 0o755},
	)
	_, digest, _ := strings.Cut(ref, "@")

	m := harness.StartManager(t, harness.ManagerOptions{Args: []string{"--seed-allow-insecure-base-urls"}})
	ctx := context.Background()
	ns := "vms"
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	mr := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: ns}, Spec: machinesv1.MachineRegistrationSpec{
		MachineName: "vm-${System Information/Serial Number}",
		TPM:         machinesv1.TPMTrustPolicy{TrustOnFirstUse: true}, // swtpm's EK is not from a vendor CA
	}}
	if err := m.Client.Create(ctx, mr); err != nil {
		t.Fatal(err)
	}
	si := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: "live", Namespace: ns}, Spec: machinesv1.SeedImageSpec{
		RegistrationRef: machinesv1.ObjectReference{Name: "vm"}, OSImage: reg + "/edgefleet/os:vm"}}
	if err := m.Client.Create(ctx, si); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	waitUntil(t, 3*time.Minute, func() error {
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(si), si); err != nil {
			return err
		}
		if si.Status.State != machinesv1.SeedImageReady {
			return fmt.Errorf("SeedImage state %q: %+v", si.Status.State, si.Status.Conditions)
		}
		return nil
	})
	t.Logf("bootable seed ISO built by the manager in %s", time.Since(t0).Round(time.Millisecond))
	if si.Status.OSImageDigest != digest {
		t.Errorf("status.osImageDigest %q, want %s", si.Status.OSImageDigest, digest)
	}
	iso := downloadImage(t, m, si, "seed.iso")
	st, _ := os.Stat(iso)
	t.Logf("seed ISO: %d bytes", st.Size())

	u := strings.TrimPrefix(m.URL, "https://")
	_, port, err := net.SplitHostPort(u)
	if err != nil {
		t.Fatal(err)
	}
	forward := []vmrig.Forward{{Guest: "10.0.2.100:" + port, Host: "127.0.0.1:" + port}}
	bootAndRegister(t, m, ns, "vm-vm7", vmrig.Config{Firmware: vmrig.BIOS, CDROM: iso, TPM: true, Network: true, Serial: "VM7", Forwards: forward})

	// The CLI builds the raw disk image from the same OS image; it boots
	// UEFI from a virtio disk and registers another machine.
	raw := filepath.Join(t.TempDir(), "live.img")
	out, err := exec.Command(harness.EdgefleetBinary(t), "seed-image", "build", "--kubeconfig", m.Kubeconfig, "-n", ns, "--registration", "vm",
		"--type", "raw", "--os-image", ref, "-o", raw).CombinedOutput()
	if err != nil {
		t.Fatalf("edgefleet seed-image build --os-image: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "is "+digest) {
		t.Errorf("the CLI does not print the OS image digest %s:\n%s", digest, out)
	}
	bootAndRegister(t, m, ns, "vm-vm8", vmrig.Config{Firmware: vmrig.UEFI, Disks: []vmrig.Disk{{Path: raw}}, TPM: true, Network: true, Serial: "VM8", Forwards: forward})
}

// bootAndRegister boots cfg and waits until the guest's edgefleet-node has
// registered as MachineInventory ns/name.
func bootAndRegister(t *testing.T, m *harness.Manager, ns, name string, cfg vmrig.Config) {
	t.Helper()
	cfg.ExitOnReboot, cfg.MemoryMiB = true, 512
	vm := vmrig.New(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	if err := vm.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`vm-e2e: (registered|register failed)`)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(vm.Console(), "vm-e2e: registered") {
		t.Fatalf("edgefleet-node in the VM did not register; console tail:\n%s", tailString(vm.Console(), 3000))
	}
	q, sw := vm.RSS()
	t.Logf("%s (%s): power-on to registered under %s in %s; qemu RSS %d KiB, swtpm RSS %d KiB", name, cfg.Firmware, vm.Accel(), time.Since(start).Round(time.Millisecond), q, sw)
	inv := &machinesv1.MachineInventory{}
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, inv); err != nil {
		t.Fatalf("MachineInventory of the VM: %v", err)
	}
	if err := vm.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// staticNodeBinary builds edgefleet-node without cgo: it runs from an OS
// image that has no C library.
func staticNodeBinary(t *testing.T) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "edgefleet-node")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/edgefleet-node")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building edgefleet-node: %v\n%s", err, b)
	}
	return out
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
