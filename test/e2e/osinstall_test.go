package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/node/osinstall"
	"github.com/edgefleet/edgefleet/internal/node/osinstall/osinstalltest"
	"github.com/edgefleet/edgefleet/test/harness"
)

// TestMachineInstallsFromElementalRegistration: a MachineRegistration in
// Elemental's layout drives the install with the real binaries: the node
// registers, installs the OS image its registration names (from a loopback
// registry) to the device it names (a disk-image file here), upgrades, and
// confirms the new slot only by reaching the manager, which then shows the
// OS version, slot and upgrade result on the MachineInventory.
func TestMachineInstallsFromElementalRegistration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager")
	}
	osinstalltest.RequireTools(t, "sgdisk", "mkfs.ext4", "mkfs.vfat", "sqfstar", "grub-editenv", "mcopy", "losetup")
	if os.Geteuid() != 0 {
		t.Skip("installing to a disk-image file needs root (loop devices and mount)")
	}
	node := nodeBinary(t)
	m := harness.StartManager(t, harness.ManagerOptions{})
	ctx := context.Background()
	l := &machineLab{m: m, ns: "fleet-default"}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.ns}}); err != nil {
		t.Fatal(err)
	}
	_, l.caPEM = get(t, m, "/cacerts")
	reg := osinstalltest.NewRegistry(t)
	v1 := reg.Push(t, "os", "v1", osinstalltest.Build(t, osinstalltest.Image{Version: "1.0"}))
	v2 := reg.Push(t, "os", "v2", osinstalltest.Build(t, osinstalltest.Image{Version: "2.0"}))
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	f, _ := os.Create(disk)
	f.Truncate(512 << 20)
	f.Close()

	extraCfg := filepath.Join(dir, "extra.yaml")
	os.WriteFile(extraCfg, []byte("#cloud-config\nwrite_files: [{path: /etc/extra, content: x}]\n"), 0o600)
	var spec machinesv1.MachineRegistrationSpec
	if err := yaml.UnmarshalStrict(fmt.Appendf(nil, `
machineName: "m-${System Information/Serial Number}"
config:
  cloud-config:
    runcmd: ["echo first boot"]
  elemental:
    registration: {emulate-tpm: true, emulated-tpm-seed: -1}
    install: {device: %q, system-uri: "oci:%s", config-urls: [%q]}
    reset: {enabled: true}
`, disk, v1, extraCfg), &spec); err != nil {
		t.Fatal(err)
	}
	_, regURL := l.registration(t, "edge-os", spec)
	cfg := l.machine(t, regURL)
	cfgPath := filepath.Join(dir, "edgefleet-node.yaml")
	data, _ := yaml.Marshal(cfg)
	os.WriteFile(cfgPath, data, 0o600)
	run := func(args ...string) string {
		t.Helper()
		t0 := time.Now()
		out, err := exec.Command(node, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("edgefleet-node %v: %v\n%s", args, err, out)
		}
		t.Logf("edgefleet-node %s (%s): %s", args[0], time.Since(t0).Round(time.Millisecond), strings.TrimSpace(string(out)))
		return string(out)
	}
	regOut := run("register", "--config", cfgPath)
	_, invName, _ := strings.Cut(strings.Fields(regOut)[3], "/")
	if out := run("install", "--config", cfgPath, "--cache-dir", filepath.Join(dir, "cache")); !strings.Contains(out, "installed edgefleet-test 1.0") {
		t.Fatalf("install said %q", out)
	}
	// The live system's install reported itself on the inventory (the
	// installed system's first report replaces it).
	{
		inv := &machinesv1.MachineInventory{}
		if err := m.Client.Get(ctx, types.NamespacedName{Namespace: l.ns, Name: invName}, inv); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(inv.Status.Conditions, machinesv1.OSReadyCondition)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != machinesv1.InstallingReason || !strings.Contains(c.Message, "to "+disk+" since ") || !strings.Contains(c.Message, "(attempt 1)") {
			t.Errorf("OSReady after the install = %+v, want False Installing naming the disk, attempt 1", c)
		}
	}
	// The registration's cloud-config and config-urls are on EF_OEM for the
	// first boot.
	d, err := osinstall.OpenDisk(disk)
	if err != nil {
		t.Fatal(err)
	}
	layout, err := d.ReadLayout(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oem, unmount, err := d.Mount(ctx, layout.Get(osinstall.LabelOEM))
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"cloud-config/90_registration.yaml": "echo first boot", "cloud-config/91_config-url-0.yaml": "/etc/extra", "edgefleet-node.yaml": regURL} {
		if b, err := os.ReadFile(filepath.Join(oem, file)); err != nil || !strings.Contains(string(b), want) {
			t.Errorf("EF_OEM/%s = %q (%v), want it to contain %q", file, b, err, want)
		}
	}
	unmount()
	d.Close()
	run("upgrade", "--device", disk, "--image", v2, "--cache-dir", filepath.Join(dir, "cache"), "--boot-slot-file", filepath.Join(dir, "none"))
	// The machine booted slot b; reaching the manager confirms it.
	if out := run("boot", "confirm", "--device", disk, "--slot", "b", "--state-dir", cfg.StateDir); !strings.Contains(out, "slot b confirmed") {
		t.Fatalf("confirm said %q", out)
	}
	inv := &machinesv1.MachineInventory{}
	if err := m.Client.Get(ctx, types.NamespacedName{Namespace: l.ns, Name: invName}, inv); err != nil {
		t.Fatal(err)
	}
	got := inv.Status.OS
	if got.Version != "2.0" || got.ActiveSlot != "b" || got.BootedSlot != "b" || got.TrySlot != "" || got.LastUpgrade == nil || got.LastUpgrade.Result != machinesv1.OSUpgradeSucceeded {
		t.Errorf("status.os = %+v (last upgrade %+v)", got, got.LastUpgrade)
	}
	if !meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.OSReadyCondition) || !meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.RegisteredCondition) {
		t.Errorf("conditions = %+v", inv.Status.Conditions)
	}
	// Without the manager nothing is confirmed.
	run("upgrade", "--device", disk, "--image", v1, "--cache-dir", filepath.Join(dir, "cache"), "--boot-slot-file", filepath.Join(dir, "none"))
	broken := filepath.Join(dir, "unreachable")
	os.MkdirAll(broken, 0o700)
	kc, _ := os.ReadFile(filepath.Join(cfg.StateDir, "kubeconfig"))
	os.WriteFile(filepath.Join(broken, "kubeconfig"), []byte(strings.Replace(string(kc), m.URL, "https://127.0.0.1:1", 1)), 0o600)
	cj, _ := os.ReadFile(filepath.Join(cfg.StateDir, "config.json"))
	os.WriteFile(filepath.Join(broken, "config.json"), cj, 0o600)
	out, err := exec.Command(node, "boot", "confirm", "--device", disk, "--slot", "a", "--state-dir", broken).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not confirming slot a: the manager is not reachable") {
		t.Errorf("confirm without the manager: %v: %s", err, out)
	}

	// The one node agent does the boot duties: the machine booted slot a
	// (on trial); `edgefleet-node agent` applies the cloud-config, reaches
	// the manager, confirms slot a and reports status.os next to
	// status.plan.
	slotFile, root, cloudDir := filepath.Join(dir, "boot-slot"), filepath.Join(dir, "root"), filepath.Join(dir, "oem-cloud-config")
	os.WriteFile(slotFile, []byte("a\n"), 0o644)
	os.MkdirAll(root, 0o755)
	os.MkdirAll(cloudDir, 0o755)
	os.WriteFile(filepath.Join(cloudDir, "90_test.yaml"), []byte("#cloud-config\nwrite_files: [{path: /etc/first-boot, content: applied}]\n"), 0o600)
	startAgent := func() (stop func()) {
		agentCtx, cancel := context.WithCancel(ctx)
		cmd := exec.CommandContext(agentCtx, node, "agent", "--config", cfgPath, "--root", root, "--no-images",
			"--boot-slot-file", slotFile, "--device", disk, "--cloud-config-dir", cloudDir)
		var log strings.Builder
		cmd.Stdout, cmd.Stderr = &log, &log
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return func() {
			cancel()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("agent log:\n%s", log.String())
			}
		}
	}
	stopAgent := startAgent()
	defer func() { stopAgent() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := m.Client.Get(ctx, types.NamespacedName{Namespace: l.ns, Name: invName}, inv); err != nil {
			t.Fatal(err)
		}
		got := inv.Status.OS
		if got.Version == "1.0" && got.ActiveSlot == "a" && got.BootedSlot == "a" && got.TrySlot == "" && got.LastUpgrade != nil &&
			got.LastUpgrade.Result == machinesv1.OSUpgradeSucceeded && inv.Status.Plan.AppliedChecksum != "" &&
			meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.OSReadyCondition) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not confirm slot a and report it: status.os = %+v (last upgrade %+v), plan %+v, conditions %+v",
				got, got.LastUpgrade, inv.Status.Plan, inv.Status.Conditions)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/first-boot")); err != nil || string(b) != "applied" {
		t.Errorf("the agent did not apply the cloud-config: %q %v", b, err)
	}
	if !meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.RegisteredCondition) {
		t.Errorf("the node's reports touched the manager's conditions: %+v", inv.Status.Conditions)
	}
	stopAgent()

	// A reset scheduled on slot a (no reboot: this is the test's host)
	// runs when the machine boots recovery: the agent finds it pending,
	// resets the disk and reports the recovery boot.
	run("reset", "--device", disk, "--boot-slot-file", slotFile)
	os.WriteFile(slotFile, []byte("recovery\n"), 0o644)
	stopAgent = startAgent()
	deadline = time.Now().Add(90 * time.Second)
	for {
		if err := m.Client.Get(ctx, types.NamespacedName{Namespace: l.ns, Name: invName}, inv); err != nil {
			t.Fatal(err)
		}
		ready := meta.FindStatusCondition(inv.Status.Conditions, machinesv1.OSReadyCondition)
		if inv.Status.OS.BootedSlot == "recovery" && ready != nil && ready.Reason == machinesv1.RecoveryBootedReason {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not report the recovery boot: status.os = %+v, conditions %+v", inv.Status.OS, inv.Status.Conditions)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if p, err := osinstall.PendingReset(ctx, disk); err != nil || p != nil {
		t.Errorf("the pending reset was not run by the agent: %+v %v", p, err)
	}
	if st, err := osinstall.ReadStatus(ctx, disk, "recovery"); err != nil || st.ActiveSlot != "a" || st.TrySlot != "" || st.Slots["b"].Version != "" {
		t.Errorf("after the reset the disk should hold only slot a (the recovery image): %+v %v", st, err)
	}
}
