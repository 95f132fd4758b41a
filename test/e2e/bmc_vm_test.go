package e2e

import (
	"context"
	"fmt"
	"net"
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
	"github.com/edgefleet/edgefleet/test/redfishemu"
	"github.com/edgefleet/edgefleet/test/vmrig"
	"github.com/edgefleet/edgefleet/test/vmrig/testos"
)

// Provision from power-off: a machine known only by its BMC (a VM behind
// the Redfish emulator, running with nothing to boot) is declared as a BMC
// with a one-time boot from a SeedImage. The manager powers it off over
// Redfish, inserts the seed ISO by its download URL as virtual media (the
// emulated BMC downloads it and changes the VM's CD-ROM through QMP), sets
// the boot override Cd once and powers it on; the machine boots the ISO and
// registers, and the BMC links to the new MachineInventory by the SMBIOS
// UUID both report. No console access, no manual media.
func TestBMCProvisionFromPowerOffInVM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager and a VM")
	}
	sit.RequireTools(t, "xorriso", "grub-mkrescue", "mksquashfs", "swtpm", "qemu-system-x86_64", "busybox")
	reg := sit.StartRegistry(t)
	sit.PushEntries(t, reg+"/edgefleet/os:bmc", map[string]string{"io.edgefleet.os.name": "edgefleet-testos", "io.edgefleet.os.version": "1"},
		testos.Entries(t, testos.RegisterInit, "1")...)

	m := harness.StartManager(t, harness.ManagerOptions{Args: []string{"--seed-allow-insecure-base-urls"}})
	ctx := context.Background()
	ns := "bmc"
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: "rack", Namespace: ns}, Spec: machinesv1.MachineRegistrationSpec{
			MachineName: "node-${System Information/Serial Number}",
			TPM:         machinesv1.TPMTrustPolicy{TrustOnFirstUse: true}, // swtpm's EK is not from a vendor CA
		}},
		&machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: "install", Namespace: ns}, Spec: machinesv1.SeedImageSpec{
			RegistrationRef: machinesv1.ObjectReference{Name: "rack"}, OSImage: reg + "/edgefleet/os:bmc"}},
	} {
		if err := m.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	// The machine: SMBIOS serial and UUID, a vTPM, network only to the
	// manager, an empty CD-ROM and no disk.
	const uuid = "5a1e0b3c-7d2f-4e41-9a0b-bc0000000b3c"
	u := strings.TrimPrefix(m.URL, "https://")
	_, port, err := net.SplitHostPort(u)
	if err != nil {
		t.Fatal(err)
	}
	vm := vmrig.New(t, vmrig.Config{Firmware: vmrig.BIOS, TPM: true, Network: true, Serial: "BMC1", UUID: uuid, MemoryMiB: 512,
		ExitOnReboot: true, Forwards: []vmrig.Forward{{Guest: "10.0.2.100:" + port, Host: "127.0.0.1:" + port}}})
	// It was left running (firmware finds nothing to boot): the manager
	// must power it off first.
	if err := vm.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	emu, err := redfishemu.Start(redfishemu.Options{Username: "root", Password: bmcPassword,
		Machine: redfishemu.VMMachine{VM: vm}, Manufacturer: "QEMU", Model: "Standard PC (i440FX + PIIX, 1996)", SerialNumber: "BMC1", UUID: strings.ToUpper(uuid),
		MediaClient: m.HTTP}) // the BMC downloads the ISO from the manager, trusting its CA
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "node-bmc", Namespace: ns}, StringData: map[string]string{"username": "root", "password": bmcPassword}}
	if err := m.Client.Create(ctx, creds); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b := &machinesv1.BMC{ObjectMeta: metav1.ObjectMeta{Name: "node", Namespace: ns}, Spec: machinesv1.BMCSpec{
		Address: emu.URL, CredentialsSecretRef: machinesv1.ObjectReference{Name: "node-bmc"}, CABundle: string(emu.CA.CertPEM),
		Boot: &machinesv1.BMCBootRequest{ID: "first-install", SeedImageRef: &machinesv1.ObjectReference{Name: "install"}},
	}}
	if err := m.Client.Create(ctx, b); err != nil {
		t.Fatal(err)
	}

	// The manager powers the VM off and on again: wait for that, then
	// for the boot of the new run.
	waitUntil(t, 5*time.Minute, func() error {
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			return err
		}
		if st := b.Status.Boot; st == nil || st.Result != machinesv1.ActionSucceeded {
			return fmt.Errorf("status.boot %+v, last action %+v, conditions %+v", st, b.Status.LastAction, b.Status.Conditions)
		}
		return nil
	})
	t.Logf("BMC declared to machine powered on with the seed ISO: %s (seed build included)", time.Since(start).Round(time.Millisecond))
	vctx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	if _, err := vm.WaitFor(vctx, regexp.MustCompile(`vm-e2e: (registered|register failed)`)); err != nil {
		t.Fatalf("the machine did not boot the seed ISO and register: %v; BMC status: %+v", err, bmcStatus(m, ns))
	}
	if !strings.Contains(vm.Console(), "vm-e2e: registered") {
		t.Fatalf("edgefleet-node in the VM did not register; console tail:\n%s", tailString(vm.Console(), 3000))
	}
	t.Logf("BMC declared to machine registered: %s (seed build included)", time.Since(start).Round(time.Millisecond))

	waitUntil(t, 2*time.Minute, func() error {
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			return err
		}
		st := b.Status
		if st.Boot == nil || st.Boot.ID != "first-install" || st.Boot.Result != machinesv1.ActionSucceeded {
			return fmt.Errorf("status.boot %+v", st.Boot)
		}
		if st.InventoryRef == nil || st.InventoryRef.Name != "node-bmc1" || st.FactsAgree == nil || !*st.FactsAgree {
			return fmt.Errorf("inventoryRef %+v factsAgree %v; conditions %+v", st.InventoryRef, st.FactsAgree, st.Conditions)
		}
		return nil
	})
	inv := &machinesv1.MachineInventory{}
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "node-bmc1"}, inv); err != nil {
		t.Fatal(err)
	}
	if got := inv.Annotations[machinesv1.AnnotationSystemUUID]; got != uuid {
		t.Errorf("inventory's system-uuid annotation %q, want %s", got, uuid)
	}
	si := &machinesv1.SeedImage{}
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "install"}, si); err != nil {
		t.Fatal(err)
	}
	if emu.Image() == "" || emu.Image() != si.Status.DownloadURL {
		t.Errorf("the BMC's virtual CD holds %q, want the SeedImage's download URL", emu.Image())
	}
	// The download URL carries the SeedImage's token: status shows it redacted.
	if img := b.Status.Boot.Image; img == "" || img == si.Status.DownloadURL {
		t.Errorf("status.boot.image %q: want the URL without its token", img)
	}
	var evs corev1.EventList
	if err := m.Client.List(ctx, &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range evs.Items {
		if e.InvolvedObject.Kind == "BMC" {
			reasons = append(reasons, e.Reason)
		}
	}
	for _, want := range []string{"ForceOff", "InsertMedia", "SetBootOnce", "PowerOn"} {
		if !strings.Contains(strings.Join(reasons, ","), want) {
			t.Errorf("no %s event on the BMC; events: %v", want, reasons)
		}
	}
}

const bmcPassword = "calvin-e2e"

func bmcStatus(m *harness.Manager, ns string) machinesv1.BMCStatus {
	b := &machinesv1.BMC{}
	_ = m.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "node"}, b)
	return b.Status
}
