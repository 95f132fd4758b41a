package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/osimage"
	"github.com/edgefleet/edgefleet/internal/osimage/osimagetest"
	sit "github.com/edgefleet/edgefleet/internal/seedimage/seedimagetest"
	"github.com/edgefleet/edgefleet/test/harness"
	"github.com/edgefleet/edgefleet/test/vmrig"
)

// Guest addresses the rig forwards to the manager and the registry on the
// host's loopback (the VM reaches nothing else).
const (
	guestManagerIP  = "10.0.2.100"
	guestRegistryIP = "10.0.2.101"
)

// TestOSLifecycleInVM is the whole OS story on one virtual machine (UEFI,
// vTPM from swtpm, TCG), driven by the real manager binary: the manager
// builds a seed ISO from the reference OS image (internal/osimage, version
// 1.0.0) in a loopback registry; the machine boots it live, registers with
// its TPM (MachineInventory labelled from its hardware), installs the image
// to its virtual disk as the MachineRegistration's install section says and
// reboots; the installed system confirms its boot and the inventory shows
// OS version 1.0.0. A node plan upgrades it to 2.0.0 (confirmed once the
// new slot reaches the manager), another to a broken 3.0.0: GRUB tries it
// three times and falls back to 2.0.0 by itself, and the inventory says
// RolledBack. Before that, the same seed on a machine without a TPM is
// refused with a clear message on its console, and the power is cut while
// the installer writes: the machine boots its seed again, installs again,
// and the inventory says the first attempt did not finish. Deleting its
// MachineInventory (the registration allows a
// reset) makes it boot recovery, wipe its state and register again as a
// new machine running the recovery image. Each step logs its duration
// (docs/os.md, Performance).
func TestOSLifecycleInVM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an OS image, starts a manager and boots a VM several times")
	}
	ctx := context.Background()
	steps := newStepClock(t)

	lab := newOSVMLab(t)
	v1Host, v1Guest := lab.push(t, "1.0.0", false)
	steps.done("OS image 1.0.0 built and pushed")

	ns := "os-vm"
	m := lab.startManager(ctx, t, ns)
	iso := lab.seedISO(ctx, t, ns, `
machineName: "vm-${System Information/Serial Number}"
machineInventoryLabels: {serial: "${System Information/Serial Number}", cores: "${CPU/TotalCores}"}
tpm: {trustOnFirstUse: true}
config:
  install: {device: /dev/vda, system-uri: "oci:`+v1Guest+`", reboot: true}
  reset: {enabled: true}
`, v1Host)
	steps.done("seed ISO built by the manager")

	// A machine without a TPM boots the same seed (BIOS this time): the
	// registration needs TPM attestation, so the node refuses to register
	// and says why on the console; the manager never hears of it.
	noTPM := vmrig.New(t, vmrig.Config{
		Firmware: vmrig.BIOS, MemoryMiB: 1024, CDROM: iso, Network: true, Serial: "NOTPM1",
		Forwards: lab.forwards(false),
	})
	nctx, ncancel := context.WithTimeout(ctx, 5*time.Minute)
	defer ncancel()
	if err := noTPM.PowerOn(nctx); err != nil {
		t.Fatal(err)
	}
	if _, err := noTPM.WaitFor(nctx, regexp.MustCompile(`opening the TPM: .*no TPM 2\.0 at /dev/tpmrm0\? use a registration that allows a fallback`)); err != nil {
		t.Fatalf("no clear refusal on the console of a machine without a TPM: %v\nconsole tail:\n%s", err, tailString(noTPM.Console(), 4000))
	}
	if err := noTPM.PowerOff(nctx); err != nil {
		t.Fatal(err)
	}
	var invs machinesv1.MachineInventoryList
	if err := m.Client.List(ctx, &invs, client.InNamespace(ns)); err != nil || len(invs.Items) != 0 {
		t.Fatalf("inventories after the machine without a TPM: %d (%v), want none", len(invs.Items), err)
	}
	ncancel()
	steps.done("machine without a TPM: refused on its console, no inventory")

	vm := vmrig.New(t, vmrig.Config{
		Firmware: vmrig.UEFI, MemoryMiB: 1024, CDROM: iso, TPM: true, Network: true, Serial: "VM9", UUID: "9a3c1e02-6f1b-4d7e-9c55-0d4f1c2b3a09",
		Disks: []vmrig.Disk{{Size: 3 << 30}}, ExitOnReboot: true, Forwards: lab.forwards(true),
	})
	vctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	console := func(re string) []string {
		t.Helper()
		mm, err := vm.WaitFor(vctx, regexp.MustCompile(re))
		if err != nil {
			t.Fatalf("%v\nconsole tail:\n%s", err, tailString(vm.Console(), 4000))
		}
		return mm
	}
	steps.reset()
	if err := vm.PowerOn(vctx); err != nil {
		t.Fatal(err)
	}
	console(`edgefleet-os: edgefleet-test-os 1\.0\.0 \(mode live, slot live\)`)
	console(`registered as MachineInventory ` + ns + `/vm-vm9 \(auth tpm\)`)
	steps.done("power-on → registered (live, vTPM)")
	inv := &machinesv1.MachineInventory{}
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "vm-vm9"}, inv); err != nil {
		t.Fatalf("MachineInventory of the VM: %v", err)
	}
	if inv.Labels["serial"] != "VM9" || inv.Labels["cores"] != "1" {
		t.Errorf("inventory labels %v, want serial VM9 and cores 1 from the VM's hardware", inv.Labels)
	}

	// Power loss while the installer writes: the inventory says an install
	// is under way; cut the power once the recovery image is being written
	// (partitions made, no boot loader yet). The machine boots its seed
	// again, registers as the same machine and installs again, and the
	// inventory says the first attempt did not finish.
	console(`edgefleet-node: installing`)
	osReady := func(reason, msg string) {
		t.Helper()
		waitUntil(t, 3*time.Minute, func() error {
			if err := m.Client.Get(ctx, client.ObjectKeyFromObject(inv), inv); err != nil {
				return err
			}
			c := meta.FindStatusCondition(inv.Status.Conditions, machinesv1.OSReadyCondition)
			if c == nil || c.Reason != reason || !strings.Contains(c.Message, msg) {
				return fmt.Errorf("OSReady %+v, want reason %s with %q", c, reason, msg)
			}
			return nil
		})
	}
	osReady(machinesv1.InstallingReason, "to /dev/vda since")
	console(`writing the recovery image`)
	if err := vm.PowerOff(vctx); err != nil {
		t.Fatal(err)
	}
	steps.done("registered → installing, power cut while writing")
	if err := vm.PowerOn(vctx); err != nil {
		t.Fatal(err)
	}
	console(`edgefleet-os: edgefleet-test-os 1\.0\.0 \(mode live, slot live\)`)
	console(`registered as MachineInventory ` + ns + `/vm-vm9 \(auth tpm\)`)
	console(`edgefleet-node: installing`)
	osReady(machinesv1.InstallingReason, "(attempt 2); attempt 1 did not finish (the machine lost power or restarted while installing)")
	console(`installed edgefleet-test-os 1\.0\.0 .* to /dev/vda slot a`)
	if err := vm.Wait(vctx); err != nil { // the guest rebooted: -no-reboot stops qemu
		t.Fatal(err)
	}
	steps.done("power-on again → live seed, installed to /dev/vda, rebooting")

	// The operator takes the seed medium out; the machine boots its disk.
	if err := vm.EjectMedia(vctx); err != nil {
		t.Fatal(err)
	}
	if err := vm.PowerOn(vctx); err != nil {
		t.Fatal(err)
	}
	console(`edgefleet-os: edgefleet-test-os 1\.0\.0 \(mode disk, slot a\)`)
	waitUntil(t, 2*time.Minute, func() error {
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(inv), inv); err != nil {
			return err
		}
		if st := inv.Status.OS; st.Version != "1.0.0" || st.BootedSlot != "a" || st.ActiveSlot != "a" {
			return fmt.Errorf("status.os %+v, want version 1.0.0 booted and active in slot a", inv.Status.OS)
		}
		return nil
	})
	steps.done("installed system booted from disk and reported OS 1.0.0")

	// Upgrades come as node plans: the machine's agent runs
	// `edgefleet-node upgrade` and reboots (the marker file makes the
	// instruction harmless when it runs again after the reboot).
	_, v2Guest := lab.push(t, "2.0.0", false)
	_, v3Guest := lab.push(t, "3.0.0", true)
	steps.done("OS images 2.0.0 and 3.0.0 (--broken) built and pushed")
	powerOnAfterReboot := func() {
		t.Helper()
		if err := vm.Wait(vctx); err != nil { // the guest rebooted: -no-reboot stops qemu
			t.Fatal(err)
		}
		if err := vm.PowerOn(vctx); err != nil {
			t.Fatal(err)
		}
	}
	upgrade := func(name, image string) {
		t.Helper()
		plan := fmt.Sprintf(`instructions:
- name: %[1]s
  command: /bin/sh
  args: ["-c", "[ -f /var/lib/edgefleet-%[1]s.done ] && exit 0; edgefleet-node upgrade --image oci:%[2]s && touch /var/lib/edgefleet-%[1]s.done && sync && reboot"]
  timeoutSeconds: 900
`, name, image)
		f := filepath.Join(t.TempDir(), "plan.yaml")
		if err := os.WriteFile(f, []byte(plan), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(harness.EdgefleetBinary(t), "machine", "plan", "apply", "vm-vm9", "-n", ns, "-f", f, "--kubeconfig", m.Kubeconfig).CombinedOutput()
		if err != nil {
			t.Fatalf("edgefleet machine plan apply: %v\n%s", err, out)
		}
	}
	waitOS := func(what string, ok func(machinesv1.OSStatus) bool) {
		t.Helper()
		waitUntil(t, 3*time.Minute, func() error {
			if err := m.Client.Get(ctx, client.ObjectKeyFromObject(inv), inv); err != nil {
				return err
			}
			if !ok(inv.Status.OS) {
				return fmt.Errorf("status.os %+v, want %s", inv.Status.OS, what)
			}
			return nil
		})
	}

	upgrade("upgrade-2", v2Guest)
	powerOnAfterReboot()
	console(`edgefleet-os: edgefleet-test-os 2\.0\.0 \(mode disk, slot b\)`)
	waitOS("2.0.0 active in slot b", func(st machinesv1.OSStatus) bool {
		return st.Version == "2.0.0" && st.ActiveSlot == "b" && st.BootedSlot == "b" && st.TrySlot == ""
	})
	steps.done("plan applied → upgraded to 2.0.0, rebooted, confirmed")

	// A broken image: GRUB tries it (each try panics and restarts the
	// machine), then boots the confirmed slot again by itself.
	upgrade("upgrade-3", v3Guest)
	brokenBoots := 0
	for {
		powerOnAfterReboot()
		mm := console(`this image was built broken on purpose|edgefleet-test-os 2\.0\.0 \(mode disk, slot b\)`)
		if !strings.Contains(mm[0], "broken") {
			break
		}
		if brokenBoots++; brokenBoots > 5 {
			t.Fatalf("the broken image booted %d times: GRUB did not fall back", brokenBoots)
		}
	}
	waitOS("2.0.0 in slot b after rolling back 3.0.0", func(st machinesv1.OSStatus) bool {
		return st.Version == "2.0.0" && st.ActiveSlot == "b" && st.BootedSlot == "b" && st.LastUpgrade != nil && st.LastUpgrade.Result == machinesv1.OSUpgradeRolledBack
	})
	if brokenBoots != 3 {
		t.Errorf("the broken image booted %d times, want 3 tries", brokenBoots)
	}
	steps.done(fmt.Sprintf("broken 3.0.0: %d failed tries, rolled back to 2.0.0 by itself", brokenBoots))

	// Reset: deleting the inventory revokes the machine's credential; its
	// agent learns at the next request that it must be re-provisioned,
	// schedules the reset the registration allows and reboots into
	// recovery, which wipes the state and persistent partitions, writes the
	// recovery image (1.0.0) as slot a and reboots; the machine then
	// registers again as a new MachineInventory.
	oldUID := inv.UID
	if err := m.Client.Delete(ctx, inv); err != nil {
		t.Fatal(err)
	}
	console(`rebooting into recovery to reset`)
	powerOnAfterReboot()
	console(`edgefleet-os: edgefleet-test-os 1\.0\.0 \(mode recovery, slot recovery\)`)
	console(`Reset done`)
	powerOnAfterReboot()
	console(`edgefleet-os: edgefleet-test-os 1\.0\.0 \(mode disk, slot a\)`)
	waitUntil(t, 3*time.Minute, func() error {
		fresh := &machinesv1.MachineInventory{}
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(inv), fresh); err != nil {
			return err
		}
		if fresh.UID == oldUID {
			return fmt.Errorf("MachineInventory %s is still the deleted one", fresh.Name)
		}
		if st := fresh.Status.OS; st.Version != "1.0.0" || st.BootedSlot != "a" || st.ActiveSlot != "a" || st.LastUpgrade != nil {
			return fmt.Errorf("status.os of the new inventory %+v, want 1.0.0 in slot a and no upgrade history", st)
		}
		if fresh.Labels["serial"] != "VM9" {
			return fmt.Errorf("labels of the new inventory %v, want serial VM9", fresh.Labels)
		}
		return nil
	})
	steps.done("inventory deleted → recovery, reset, registered again as new")
	q, sw := vm.RSS()
	t.Logf("qemu RSS %d KiB, swtpm RSS %d KiB (accelerator %s)", q, sw, vm.Accel())
}

// osVMLab is what the OS VM tests' machines reach: a loopback registry of
// OS images and a manager, each at a fixed guest address the VM rig
// forwards to the host's loopback.
type osVMLab struct {
	reg, guestReg string // the registry's host and guest addresses
	m             *harness.Manager
	managerPort   string
}

// newOSVMLab starts the registry; it skips without the tools that build OS
// images and seeds and run the VMs.
func newOSVMLab(t *testing.T) *osVMLab {
	t.Helper()
	sit.RequireTools(t, "xorriso", "grub-mkrescue", "mksquashfs", "swtpm", "qemu-system-x86_64", "busybox")
	osimagetest.SkipWithoutBuilder(t)
	reg := sit.StartRegistry(t)
	_, regPort, _ := net.SplitHostPort(reg)
	return &osVMLab{reg: reg, guestReg: net.JoinHostPort(guestRegistryIP, regPort)}
}

// push pushes OS image version v; it returns its reference by digest as
// the host (the manager's seed build) and as the guests reach it.
func (l *osVMLab) push(t *testing.T, v string, broken bool) (hostRef, guestRef string) {
	t.Helper()
	ref := pushOSImage(t, l.reg, v, broken)
	return ref, strings.Replace(ref, l.reg, l.guestReg, 1)
}

// startManager starts the manager, reached by the guests at
// guestManagerIP, and creates namespace ns.
func (l *osVMLab) startManager(ctx context.Context, t *testing.T, ns string) *harness.Manager {
	t.Helper()
	l.m = harness.StartManager(t, harness.ManagerOptions{ExternalHost: guestManagerIP, Args: []string{"--seed-allow-insecure-base-urls"}})
	_, l.managerPort, _ = net.SplitHostPort(strings.TrimPrefix(l.m.URL, "https://"))
	if err := l.m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	return l.m
}

// seedISO creates MachineRegistration "vm" in ns from the spec YAML and
// SeedImage "live" of it booting osImage; once the manager built it, it
// downloads the ISO and returns its path.
func (l *osVMLab) seedISO(ctx context.Context, t *testing.T, ns, registrationSpec, osImage string) string {
	t.Helper()
	var spec machinesv1.MachineRegistrationSpec
	if err := yaml.UnmarshalStrict([]byte(registrationSpec), &spec); err != nil {
		t.Fatal(err)
	}
	if err := l.m.Client.Create(ctx, &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: ns}, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	si := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: "live", Namespace: ns}, Spec: machinesv1.SeedImageSpec{
		RegistrationRef: machinesv1.ObjectReference{Name: "vm"}, OSImage: osImage}}
	if err := l.m.Client.Create(ctx, si); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Minute, func() error {
		if err := l.m.Client.Get(ctx, client.ObjectKeyFromObject(si), si); err != nil {
			return err
		}
		if si.Status.State != machinesv1.SeedImageReady {
			return fmt.Errorf("SeedImage state %q: %+v", si.Status.State, si.Status.Conditions)
		}
		return nil
	})
	return downloadSeed(t, l.m, si)
}

// forwards are a VM's forwards to the manager and, with registry, to the
// registry (a machine that installs pulls its OS image).
func (l *osVMLab) forwards(registry bool) []vmrig.Forward {
	fw := []vmrig.Forward{{Guest: net.JoinHostPort(guestManagerIP, l.managerPort), Host: net.JoinHostPort("127.0.0.1", l.managerPort)}}
	if registry {
		fw = append(fw, vmrig.Forward{Guest: l.guestReg, Host: l.reg})
	}
	return fw
}

// pushOSImage builds (or takes from the cache) the reference OS image
// (internal/osimage, test variant) version v and pushes it to the registry
// at reg; it returns the reference by digest.
func pushOSImage(t *testing.T, reg, v string, broken bool) string {
	t.Helper()
	img, err := osimagetest.Build(t, osimage.Options{Version: v, Broken: broken}).Image()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := osimage.Push(context.Background(), img, reg+"/edgefleet/os:"+v)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// downloadSeed fetches the SeedImage's ISO through the test's own address
// of the manager (status.downloadURL names the external one, which only the
// VM reaches) and checks it against status.checksum.
func downloadSeed(t *testing.T, m *harness.Manager, si *machinesv1.SeedImage) string {
	t.Helper()
	u := si.Status.DownloadURL
	if i := strings.Index(u, "/v1/"); i > 0 {
		u = m.URL + u[i:]
	}
	resp, err := m.HTTP.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	sum := sha256.Sum256(body)
	if err != nil || resp.StatusCode != 200 || hex.EncodeToString(sum[:]) != si.Status.Checksum {
		t.Fatalf("download %s: %s %v, or its checksum differs from status.checksum", u, resp.Status, err)
	}
	path := filepath.Join(t.TempDir(), "seed.iso")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// stepClock logs each step's duration and the time since the VM's first
// power-on (the numbers docs/os.md quotes).
type stepClock struct {
	t          *testing.T
	start, big time.Time
}

func newStepClock(t *testing.T) *stepClock {
	now := time.Now()
	return &stepClock{t: t, start: now, big: now}
}

func (s *stepClock) reset() { s.start, s.big = time.Now(), time.Now() }

func (s *stepClock) done(what string) {
	s.t.Helper()
	now := time.Now()
	s.t.Logf("STEP %-55s %7.1fs (total %6.1fs)", what, now.Sub(s.start).Seconds(), now.Sub(s.big).Seconds())
	s.start = now
}
