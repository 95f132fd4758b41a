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
	"github.com/edgefleet/edgefleet/test/vmrig/testos"
)

// A SeedImage built by the manager from an OS image in a loopback registry
// boots in a virtual machine (BIOS, vTPM from swtpm, network restricted to
// the manager's port): the image's own edgefleet-node registers through
// the guestfwd with the TPM, and the MachineInventory appears, named from
// the VM's SMBIOS serial (the OS image is test/vmrig/testos: its init
// registers with the image's edgefleet-node). The raw disk image the CLI builds from the same
// OS image does the same under UEFI.
func TestSeedISOFromOSImageBootsAndRegisters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager and a VM")
	}
	sit.RequireTools(t, "xorriso", "grub-mkrescue", "mksquashfs", "swtpm", "qemu-system-x86_64", "busybox")
	reg := sit.StartRegistry(t)
	ref := sit.PushEntries(t, reg+"/edgefleet/os:vm", map[string]string{"io.edgefleet.os.name": "edgefleet-testos", "io.edgefleet.os.version": "1"},
		testos.Entries(t, testos.RegisterInit, "1")...)
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

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
