package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/managedosimage"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/test/vmrig"
)

// TestOSRolloutInVMs is a ManagedOSImage rollout over two real machines
// (UEFI, vTPM, TCG; the VM rig and test OS of TestOSLifecycleInVM), driven
// by the real manager binary: both install 1.0.0 from the same seed (in
// parallel), then a ManagedOSImage with concurrency 1 upgrades them to
// 2.0.0 one after the other — the second machine gets its upgrade plan only
// once the first confirmed the new OS — and reports the rollout complete.
// Changing the image to a broken 3.0.0 upgrades the first machine again:
// GRUB tries the new slot and falls back to 2.0.0, the rollout halts
// (Stalled, MachineRolledBack, naming the machine) and the second machine is
// never started.
func TestOSRolloutInVMs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds OS images, starts a manager and boots two VMs")
	}
	// Two TCG machines installing, upgrading one after the other and
	// rolling back take well over the 6 minutes a test in `make test` may
	// (docs/os.md, Performance): `make bench` runs it.
	if os.Getenv("EDGEFLEET_BENCH") == "" {
		t.Skip("two VMs through install, a rollout and a rollback: runs in make bench (EDGEFLEET_BENCH=1)")
	}
	ctx := context.Background()
	steps := newStepClock(t)

	lab := newOSVMLab(t)
	v1Host, v1Guest := lab.push(t, "1.0.0", false)
	_, v2Guest := lab.push(t, "2.0.0", false)
	_, v3Guest := lab.push(t, "3.0.0", true)
	steps.done("OS images 1.0.0, 2.0.0, 3.0.0 (--broken) built and pushed")

	ns := "os-rollout"
	m := lab.startManager(ctx, t, ns)
	iso := lab.seedISO(ctx, t, ns, `
machineName: "vm-${System Information/Serial Number}"
machineInventoryLabels: {serial: "${System Information/Serial Number}", ring: canary}
tpm: {trustOnFirstUse: true}
config:
  install: {device: /dev/vda, system-uri: "oci:`+v1Guest+`", reboot: true}
`, v1Host)
	steps.done("seed ISO built by the manager")

	// Two machines install 1.0.0 from the seed at the same time.
	names := []string{"vm-ra", "vm-rb"}
	vms := map[string]*vmrig.VM{}
	for i, serial := range []string{"RA", "RB"} {
		vms[names[i]] = vmrig.New(t, vmrig.Config{
			Firmware: vmrig.UEFI, MemoryMiB: 1024, CDROM: iso, TPM: true, Network: true, Serial: serial,
			UUID: fmt.Sprintf("7c0e5b1a-2d3f-4a6b-8c9d-0e1f2a3b4c%02d", i), Disks: []vmrig.Disk{{Size: 3 << 30}}, ExitOnReboot: true,
			Forwards: lab.forwards(true),
		})
	}
	vctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	install := func(name string, vm *vmrig.VM) error {
		if err := vm.PowerOn(vctx); err != nil {
			return err
		}
		for _, re := range []string{`registered as MachineInventory ` + ns + `/` + name + ` \(auth tpm\)`, `installed edgefleet-test-os 1\.0\.0 .* to /dev/vda slot a`} {
			if _, err := vm.WaitFor(vctx, regexp.MustCompile(re)); err != nil {
				return fmt.Errorf("%s: %v\nconsole tail:\n%s", name, err, tailString(vm.Console(), 4000))
			}
		}
		if err := vm.Wait(vctx); err != nil { // the installer rebooted: -no-reboot stops qemu
			return err
		}
		if err := vm.EjectMedia(vctx); err != nil {
			return err
		}
		return vm.PowerOn(vctx)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, name := range names {
		wg.Go(func() { errs[i] = install(name, vms[name]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	waitOS := func(timeout time.Duration, name, what string, ok func(machinesv1.OSStatus) bool) {
		t.Helper()
		waitUntil(t, timeout, func() error {
			var inv machinesv1.MachineInventory
			if err := m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &inv); err != nil {
				return err
			}
			if !ok(inv.Status.OS) {
				return fmt.Errorf("%s status.os %+v, want %s", name, inv.Status.OS, what)
			}
			return nil
		})
	}
	for _, name := range names {
		waitOS(3*time.Minute, name, "1.0.0 in slot a", func(st machinesv1.OSStatus) bool {
			return st.Version == "1.0.0" && st.BootedSlot == "a" && st.ActiveSlot == "a"
		})
	}
	steps.done("two machines: power-on → installed from the seed → 1.0.0 reported (in parallel)")

	// From here on each machine is powered on again whenever its guest
	// reboots (the upgrade's reboot, the broken image's panics), as a
	// machine with a normal reset would.
	keepers := sync.WaitGroup{}
	for _, name := range names {
		vm := vms[name]
		keepers.Go(func() {
			for vctx.Err() == nil {
				if err := vm.Wait(vctx); err != nil || vctx.Err() != nil {
					return
				}
				if err := vm.PowerOn(vctx); err != nil {
					t.Logf("powering %s on again: %v", name, err)
					return
				}
			}
		})
	}
	defer keepers.Wait()
	defer cancel()

	// upgradingNow samples which machines hold the rollout's upgrade plan,
	// from one LIST (one consistent snapshot of both plan Secrets).
	upgradingNow := func() []string {
		t.Helper()
		var list corev1.SecretList
		if err := m.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			t.Fatalf("listing the plan Secrets: %v", err)
		}
		var out []string
		for _, name := range names {
			inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
			for _, s := range list.Items {
				if s.Name == machineregistration.PlanName(inv) && s.Annotations[managedosimage.AnnotationUpgrade] != "" {
					out = append(out, name)
				}
			}
		}
		return out
	}
	mosi := &machinesv1.ManagedOSImage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "canary"}, Spec: machinesv1.ManagedOSImageSpec{
		OSImage: v2Guest, Concurrency: 1, Targets: machinesv1.ManagedOSImageTargets{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"ring": "canary"}}}}}
	if err := m.Client.Create(ctx, mosi); err != nil {
		t.Fatal(err)
	}
	var order []string
	waitUntil(t, 12*time.Minute, func() error {
		now := upgradingNow()
		if len(now) > 1 {
			t.Fatalf("machines %v upgrade at the same time with concurrency 1", now)
		}
		if len(now) == 1 && (len(order) == 0 || order[len(order)-1] != now[0]) {
			order = append(order, now[0])
			steps.done(now[0] + " got the upgrade plan")
		}
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(mosi), mosi); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(mosi.Status.Conditions, machinesv1.StalledCondition); c != nil && c.Status == metav1.ConditionTrue {
			t.Fatalf("the 2.0.0 rollout stalled: %s", c.Message)
		}
		if c := meta.FindStatusCondition(mosi.Status.Conditions, machinesv1.ReadyCondition); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("ManagedOSImage Ready %+v", c)
		}
		return nil
	})
	if strings.Join(order, ",") != "vm-ra,vm-rb" {
		t.Errorf("machines got the upgrade plan in order %v, want vm-ra then vm-rb, one at a time", order)
	}
	for _, name := range names {
		waitOS(time.Minute, name, "2.0.0 confirmed in slot b", func(st machinesv1.OSStatus) bool {
			return st.Version == "2.0.0" && st.ActiveSlot == "b" && st.BootedSlot == "b" && st.TrySlot == ""
		})
	}
	if mosi.Status.Upgraded != 2 || mosi.Status.Total != 2 {
		t.Errorf("rollout counts %d/%d, want 2/2", mosi.Status.Upgraded, mosi.Status.Total)
	}
	steps.done("ManagedOSImage 2.0.0, concurrency 1: both upgraded one after the other")

	// A broken image: the first machine rolls back by itself and the
	// rollout halts before the second.
	waitUntil(t, 30*time.Second, func() error {
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(mosi), mosi); err != nil {
			return err
		}
		mosi.Spec.OSImage = v3Guest
		return m.Client.Update(ctx, mosi)
	})
	waitUntil(t, 10*time.Minute, func() error {
		if now := upgradingNow(); len(now) > 1 || len(now) == 1 && now[0] != "vm-ra" {
			t.Fatalf("upgrading %v during the broken rollout, want only vm-ra", now)
		}
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(mosi), mosi); err != nil {
			return err
		}
		c := meta.FindStatusCondition(mosi.Status.Conditions, machinesv1.StalledCondition)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != machinesv1.MachineRolledBackReason || !strings.Contains(c.Message, "vm-ra") {
			return fmt.Errorf("Stalled %+v, want MachineRolledBack naming vm-ra", c)
		}
		return nil
	})
	steps.done("broken 3.0.0: vm-ra rolled back to 2.0.0, rollout halted naming it")
	waitOS(time.Minute, "vm-ra", "2.0.0 after rolling back 3.0.0", func(st machinesv1.OSStatus) bool {
		return st.Version == "2.0.0" && st.BootedSlot == "b" && st.LastUpgrade != nil && st.LastUpgrade.Result == machinesv1.OSUpgradeRolledBack
	})
	// The halt holds: vm-rb is never started.
	time.Sleep(5 * time.Second)
	if now := upgradingNow(); len(now) != 0 {
		t.Errorf("upgrading %v after the halt, want none", now)
	}
	waitOS(time.Second, "vm-rb", "still 2.0.0, never given 3.0.0", func(st machinesv1.OSStatus) bool {
		return st.Version == "2.0.0" && st.LastUpgrade != nil && st.LastUpgrade.Result == machinesv1.OSUpgradeSucceeded
	})
	for _, name := range names {
		q, sw := vms[name].RSS()
		t.Logf("%s: qemu RSS %d KiB, swtpm RSS %d KiB (accelerator %s)", name, q, sw, vms[name].Accel())
	}
}
