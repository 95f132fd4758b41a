package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/cloudconfig"
	"github.com/edgefleet/edgefleet/internal/node/nodekube"
	"github.com/edgefleet/edgefleet/internal/node/osinstall"
)

// OSOptions are the installed OS's boot duties (docs/os/install.md). They
// apply only when the boot init recorded an installed slot (a, b or
// recovery) in BootSlotFile; on a live or foreign system the agent only
// runs plans.
type OSOptions struct {
	// BootSlotFile is where the boot init wrote the booted slot; default
	// osinstall.BootSlotFile.
	BootSlotFile string
	// Device is the installed disk; "" finds the disk with EF_STATE.
	Device string
	// CloudConfigDir holds EF_OEM's cloud-config files; default
	// /oem/cloud-config.
	CloudConfigDir string
	// PowerAction reboots or powers off after a reset (tests record it).
	PowerAction func(reboot, poweroff bool) error
}

// bootedSlot is the installed slot the machine runs, "" when it runs no
// installed OS.
func (o *OSOptions) bootedSlot() string {
	if o == nil {
		return ""
	}
	switch s := osinstall.BootedSlot(o.BootSlotFile); s {
	case osinstall.SlotA, osinstall.SlotB, osinstall.SlotRecovery:
		return s
	}
	return ""
}

// beforeRegistering does what the OS needs before the manager is reached:
// a recovery boot scheduled for a reset runs it (and reboots: the machine
// then registers as new); an installed slot applies its cloud-config
// files not applied yet. It reports whether the agent should go on.
func (a *agent) beforeRegistering(ctx context.Context, slot string) (bool, error) {
	o := a.o.OS
	switch slot {
	case osinstall.SlotRecovery:
		p, err := osinstall.PendingReset(ctx, o.Device)
		if err != nil {
			a.o.Log.Error("Reading the pending reset", "err", err)
			return true, nil
		}
		if p == nil {
			return true, nil
		}
		a.o.Log.Info("Booted into recovery for a reset: resetting the machine")
		p.BootedSlot, p.Log = slot, func(f string, args ...any) { a.o.Log.Info("Reset", "step", fmt.Sprintf(f, args...)) }
		if err := osinstall.Reset(ctx, *p); err != nil {
			return false, err
		}
		a.o.Log.Info("Reset done: the machine registers again as a new machine")
		if o.PowerAction != nil && (p.Reboot || p.PowerOff) {
			return false, o.PowerAction(p.Reboot, p.PowerOff)
		}
		return true, nil
	case osinstall.SlotA, osinstall.SlotB:
		dir := o.CloudConfigDir
		if dir == "" {
			dir = "/oem/" + osinstall.OEMCloudConfigs
		}
		if err := cloudconfig.ApplyDir(ctx, dir, a.o.Root, a.o.Config.StateDir, func(s string) { a.o.Log.Warn("cloud-config", "warning", s) }); err != nil {
			a.o.Log.Error("Applying the cloud-config", "err", err)
		}
	}
	return true, nil
}

// reportOS reports status.os once the manager is reached — reaching it is
// the health check: a slot on trial is then confirmed (it becomes the
// active slot) and the result reported again. It retries with jittered
// backoff until the first report arrives.
func (a *agent) reportOS(ctx context.Context, slot string, id *identity, ids <-chan *identity) {
	o := a.o.OS
	send := func(st *osinstall.Status) bool {
		wait := minRetry
		for {
			select {
			case id = <-ids:
			default:
			}
			err := osinstall.ReportStatus(ctx, id.kube, id.namespace, id.inventory, st)
			if err == nil {
				return true
			}
			if nodekube.IsUnauthorized(err) {
				a.credentialRefused()
			}
			a.o.Log.Warn("Reporting the OS status failed; retrying", "err", err, "in", wait.Round(time.Millisecond))
			if !sleep(ctx, jitter(wait)) {
				return false
			}
			wait = nextWait(wait)
		}
	}
	st, err := osinstall.ReadStatus(ctx, o.Device, slot)
	if err != nil {
		a.o.Log.Error("Reading the OS status", "err", err)
		return
	}
	if !send(st) || slot == osinstall.SlotRecovery {
		return
	}
	res, err := osinstall.Confirm(ctx, o.Device, slot)
	if err != nil {
		a.o.Log.Error("Confirming the boot", "slot", slot, "err", err)
		return
	}
	switch {
	case res.Confirmed:
		a.o.Log.Info("Boot confirmed: the slot on trial is the active slot", "slot", slot)
	case res.RolledBack != "":
		a.o.Log.Warn("The bootloader rolled back an upgrade", "slot", res.RolledBack, "running", slot)
	default:
		return
	}
	send(res.Status)
}
