package osimage_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/test/vmrig"
)

// The boot tests run their machines on test/vmrig (TCG, serial console in
// the test log); vm adds the "has the console printed this by now" wait the
// boot tests read best with.
type vm struct {
	t *testing.T
	*vmrig.VM
}

func needQEMU(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM: skipped in -short mode")
	}
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs not found (Debian package squashfs-tools; hack/install-deps.sh installs it): skipping the VM boot test")
	}
}

// startVM powers on a machine that stops (instead of restarting) when the
// guest reboots or panics, with a NIC that reaches nothing (restrict=on).
func startVM(t *testing.T, cfg vmrig.Config) *vm {
	t.Helper()
	cfg.ExitOnReboot = true
	cfg.Network = true
	v := &vm{t: t, VM: vmrig.New(t, cfg)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := v.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *vm) output() string { return strings.ReplaceAll(v.Console(), "\r", "") }

// waitFor waits until the console has printed want (anywhere, in any boot
// so far); it fails the test on timeout or when the VM stops first.
func (v *vm) waitFor(want string, timeout time.Duration) {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(v.output(), want) {
		if !v.Running() {
			_ = v.Wait(context.Background())
			if strings.Contains(v.output(), want) {
				return
			}
			v.t.Fatalf("the VM stopped before printing %q", want)
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("no %q on the console after %s", want, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitExit waits for the VM to stop by itself.
func (v *vm) waitExit(timeout time.Duration) {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := v.Wait(ctx); err != nil {
		v.t.Fatalf("the VM still runs after %s", timeout)
	}
}

// pullPlug cuts the power (no shutdown in the guest).
func (v *vm) pullPlug() {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := v.PowerOff(ctx); err != nil {
		v.t.Fatal(err)
	}
}
