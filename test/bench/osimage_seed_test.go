package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	sit "github.com/edgefleet/edgefleet/internal/seedimage/seedimagetest"
	"github.com/edgefleet/edgefleet/test/vmrig"
	"github.com/edgefleet/edgefleet/test/vmrig/testos"
)

const osSeedRuns = 3

// TestOSImageSeedBoot times bootable seed media built by the manager from an
// OS image in a loopback registry (create → Ready), and boots each kind in
// a qemu VM under TCG with a vTPM: power-on → the image's init → its
// edgefleet-node registered with the manager.
func TestOSImageSeedBoot(t *testing.T) {
	requireBench(t)
	sit.RequireTools(t, "xorriso", "grub-mkrescue", "grub-mkstandalone", "mksquashfs", "sgdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "swtpm", "qemu-system-x86_64", "busybox")
	ctx := context.Background()
	reg := sit.StartRegistry(t)
	entries := testos.Entries(t, testos.RegisterInit, "1")
	var imageBytes int
	for _, e := range entries {
		imageBytes += len(e.Data)
	}
	ref := sit.PushEntries(t, reg+"/edgefleet/os:1", map[string]string{"io.edgefleet.os.name": "edgefleet-testos", "io.edgefleet.os.version": "1"}, entries...)
	m := startQuietManager(t, "--seed-allow-insecure-base-urls")
	ns := "machines"
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	mr := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: ns}, Spec: machinesv1.MachineRegistrationSpec{
		MachineName: "vm-${System Information/Serial Number}",
		TPM:         machinesv1.TPMTrustPolicy{TrustOnFirstUse: true},
	}}
	if err := m.Client.Create(ctx, mr); err != nil {
		t.Fatal(err)
	}
	warm := seedImage(t, m.Client, ns, "warm-up", machinesv1.SeedImageSpec{})
	waitSeedReady(t, m.Client, warm)

	type build struct {
		label string
		runs  []time.Duration
		size  int64
		file  string
	}
	builds := []*build{{label: "ISO (BIOS + UEFI)"}, {label: "raw GPT disk (UEFI)"}}
	for k, b := range builds {
		for i := range osSeedRuns {
			spec := machinesv1.SeedImageSpec{OSImage: ref}
			if k == 1 {
				spec.Type = machinesv1.SeedImageRaw
			}
			t0 := time.Now()
			si := seedImage(t, m.Client, ns, fmt.Sprintf("os%d-%d", k, i), spec)
			waitSeedReady(t, m.Client, si)
			b.runs = append(b.runs, time.Since(t0))
			if i == 0 {
				b.file = fetch(t, m.HTTP, si.Status.DownloadURL)
				st, _ := os.Stat(b.file)
				b.size = st.Size()
			}
		}
		t.Logf("%s: median %s, %d bytes", b.label, ms(quantile(b.runs, .5)), b.size)
	}

	_, port, _ := net.SplitHostPort(strings.TrimPrefix(m.URL, "https://"))
	forward := []vmrig.Forward{{Guest: "10.0.2.100:" + port, Host: "127.0.0.1:" + port}}
	type boot struct {
		label                string
		cfg                  vmrig.Config
		toInit, toRegistered time.Duration
		qemuKiB, swtpmKiB    int
	}
	boots := []*boot{
		{label: "ISO, BIOS (SeaBIOS)", cfg: vmrig.Config{Firmware: vmrig.BIOS, CDROM: builds[0].file}},
		{label: "ISO, UEFI (OVMF)", cfg: vmrig.Config{Firmware: vmrig.UEFI, CDROM: builds[0].file}},
		{label: "raw disk, UEFI (OVMF)", cfg: vmrig.Config{Firmware: vmrig.UEFI, Disks: []vmrig.Disk{{Path: builds[1].file}}}},
	}
	for i, b := range boots {
		b.cfg.TPM, b.cfg.Network, b.cfg.Forwards, b.cfg.ExitOnReboot, b.cfg.MemoryMiB = true, true, forward, true, 512
		b.cfg.Serial = fmt.Sprintf("B%d", i)
		b.cfg.Log = func(string, ...any) {}
		vm := vmrig.New(t, b.cfg)
		vctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		t0 := time.Now()
		if err := vm.PowerOn(vctx); err != nil {
			t.Fatal(err)
		}
		if _, err := vm.WaitFor(vctx, regexp.MustCompile(`vm-e2e: init`)); err != nil {
			t.Fatal(err)
		}
		b.toInit = time.Since(t0)
		if _, err := vm.WaitFor(vctx, regexp.MustCompile(`vm-e2e: (registered|register failed)`)); err != nil {
			t.Fatal(err)
		}
		b.toRegistered = time.Since(t0)
		if !strings.Contains(vm.Console(), "vm-e2e: registered") {
			t.Fatalf("%s: the VM did not register:\n%s", b.label, vm.Console())
		}
		b.qemuKiB, b.swtpmKiB = vm.RSS()
		_ = vm.PowerOff(vctx)
		cancel()
		t.Logf("%s: init after %s, registered after %s; qemu RSS %d KiB, swtpm RSS %d KiB", b.label, ms(b.toInit), ms(b.toRegistered), b.qemuKiB, b.swtpmKiB)
	}

	var s strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&s, format, a...) }
	w("## Bootable seed media from an OS image\n\n")
	w("Through the manager: a SeedImage with `spec.osImage` (an OS image of %.1f MiB in a loopback OCI registry: Debian's cloud kernel, ", float64(imageBytes)/(1<<20))
	w("a busybox initrd, edgefleet-node; `test/vmrig/testos`) is created and the clock stops at `Ready` with a download URL: the pull, ")
	w("mksquashfs of the image's filesystem, grub-mkrescue (ISO) or grub-mkstandalone + mkfs.vfat + mkfs.ext4 (raw), the SHA-256 and ")
	w("the status writes. %d builds of each kind, one after another. Then each medium boots once in a qemu VM (TCG, no KVM; 512 MiB, ", osSeedRuns)
	w("1 vCPU, vTPM from swtpm, network restricted to the manager's port) until the image's init runs and until its edgefleet-node has ")
	w("registered with the manager (TPM credential activation, MachineInventory written). RSS is read while the VM runs.\n\n")
	w("| media | build median | min | max | size |\n|---|---|---|---|---|\n")
	for _, b := range builds {
		w("| %s | %s | %s | %s | %.1f MiB |\n", b.label, ms(quantile(b.runs, .5)), ms(quantile(b.runs, 0)), ms(quantile(b.runs, 1)), float64(b.size)/(1<<20))
	}
	w("\n| boot | power-on → init | power-on → registered | qemu RSS | swtpm RSS |\n|---|---|---|---|---|\n")
	for _, b := range boots {
		w("| %s | %s | %s | %.0f MiB | %.1f MiB |\n", b.label, ms(b.toInit), ms(b.toRegistered), float64(b.qemuKiB)/1024, float64(b.swtpmKiB)/1024)
	}
	addSection(orderSeedImage+1, s.String())
}

// fetch downloads url with hc (which trusts the manager's CA) into a
// temporary file.
func fetch(t *testing.T, hc *http.Client, url string) string {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(url))
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		t.Fatal(err)
	}
	return out
}
