package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/edgefleet/edgefleet/internal/node/osinstall"
	"github.com/edgefleet/edgefleet/internal/node/osinstall/osinstalltest"
	"github.com/edgefleet/edgefleet/internal/node/register"
)

// TestOSCommands drives install, upgrade, boot confirm/status and reset
// through the CLI on a disk-image file, as a user would by hand.
func TestOSCommands(t *testing.T) {
	osinstalltest.RequireTools(t, "sgdisk", "mkfs.ext4", "mkfs.vfat", "sqfstar", "grub-editenv", "mcopy", "losetup")
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices and mount)")
	}
	reg := osinstalltest.NewRegistry(t)
	v1 := reg.Push(t, "os", "v1", osinstalltest.Build(t, osinstalltest.Image{Version: "1.0"}))
	v2 := reg.Push(t, "os", "v2", osinstalltest.Build(t, osinstalltest.Image{Version: "2.0"}))
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	f, _ := os.Create(disk)
	f.Truncate(512 << 20)
	f.Close()
	cfg := filepath.Join(dir, "edgefleet-node.yaml")
	os.WriteFile(cfg, []byte("registration:\n  url: https://manager.example/r\nstate-dir: "+filepath.Join(dir, "state")+"\n"), 0o600)
	cloud := filepath.Join(dir, "extra.yaml")
	os.WriteFile(cloud, []byte("#cloud-config\npackages: [vim]\nruncmd: [date]\n"), 0o600)
	cache := filepath.Join(dir, "cache")

	run := func(args ...string) (string, string) {
		t.Helper()
		root := &cobra.Command{Use: "edgefleet-node", SilenceUsage: true, SilenceErrors: true}
		root.AddCommand(newInstallCommand(), newUpgradeCommand(), newBootCommand(), newResetCommand())
		var out, errb bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errb)
		root.SetArgs(args)
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
		return out.String(), errb.String()
	}
	status := func() osinstall.Status {
		t.Helper()
		out, _ := run("boot", "status", "--device", disk, "--boot-slot-file", filepath.Join(dir, "none"))
		var st osinstall.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("boot status output %q: %v", out, err)
		}
		return st
	}

	out, errOut := run("install", "--device", disk, "--image", v1, "--config", cfg, "--cloud-config", cloud, "--cache-dir", cache)
	if !strings.Contains(out, "installed edgefleet-test 1.0") || !strings.Contains(errOut, `"packages" is not supported`) {
		t.Errorf("install said %q / %q", out, errOut)
	}
	if st := status(); st.ActiveSlot != "a" || st.Slots["a"].Version != "1.0" {
		t.Errorf("status after install: %+v", st)
	}
	out, _ = run("upgrade", "--device", disk, "--image", v2, "--tries", "2", "--cache-dir", cache, "--boot-slot-file", filepath.Join(dir, "none"))
	if !strings.Contains(out, "slot b written") {
		t.Errorf("upgrade said %q", out)
	}
	if st := status(); st.TrySlot != "b" || st.TriesLeft != "2" || st.LastUpgrade.Result != "Pending" {
		t.Errorf("status after upgrade: %+v", st)
	}
	out, _ = run("boot", "confirm", "--device", disk, "--slot", "b", "--offline")
	if !strings.Contains(out, "slot b confirmed") {
		t.Errorf("confirm said %q", out)
	}
	if st := status(); st.ActiveSlot != "b" || st.TrySlot != "" || st.LastUpgrade.Result != "Succeeded" {
		t.Errorf("status after confirm: %+v", st)
	}
	os.WriteFile(filepath.Join(dir, "slot"), []byte("recovery\n"), 0o644)
	out, _ = run("reset", "--device", disk, "--boot-slot-file", filepath.Join(dir, "slot"))
	if !strings.Contains(out, "reset done") {
		t.Errorf("reset said %q", out)
	}
	if st := status(); st.ActiveSlot != "a" || st.Slots["a"].Version != "1.0" || st.Slots["b"].Version != "" || st.LastUpgrade != nil {
		t.Errorf("status after reset: %+v", st)
	}

	// The manager deleted the inventory of a machine whose registration
	// allows a reset: the node schedules it with the registration's
	// settings and reboots into recovery.
	state := filepath.Join(dir, "state")
	os.MkdirAll(state, 0o700)
	os.WriteFile(filepath.Join(state, register.ConfigFile), []byte(`{"inventoryName":"m1","namespace":"ns","reset":{"enabled":true,"reset-oem":false,"reset-persistent":true,"reboot":true}}`), 0o600)
	os.WriteFile(filepath.Join(dir, "slot"), []byte("a\n"), 0o644)
	var rebooted bool
	powerAction = func(reboot, _ bool) error { rebooted = reboot; return nil }
	defer func() { powerAction = realPowerAction }()
	c := &cobra.Command{}
	c.SetContext(context.Background())
	// The manager's current settings win over the stored ones.
	if err := resetOnReprovision(c, state, filepath.Join(dir, "slot"), disk, []byte(`{"enabled":false}`)); err != nil || rebooted {
		t.Fatalf("reset although the registration no longer allows it: %v, rebooted %v", err, rebooted)
	}
	if err := resetOnReprovision(c, state, filepath.Join(dir, "slot"), disk, nil); err != nil {
		t.Fatal(err)
	}
	p, err := osinstall.PendingReset(context.Background(), disk)
	if err != nil || p == nil || p.ResetOEM || !p.ResetPersistent || !p.Reboot || !rebooted {
		t.Fatalf("after reprovisioning: pending reset %+v (%v), rebooted %v", p, err, rebooted)
	}
}

var realPowerAction = powerAction
