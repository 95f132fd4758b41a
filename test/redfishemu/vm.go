package redfishemu

import (
	"context"

	"github.com/edgefleet/edgefleet/test/vmrig"
)

// VMMachine maps the BMC onto a VM of the test rig: power through QMP and
// the qemu process, the CD-ROM through QMP blockdev-change-medium/eject.
//
// The rig's CD-ROM always has the first boot index and its disks follow,
// so a one-time boot override to Cd is what the VM does anyway while a
// medium is inserted; other targets are recorded by the BMC but not
// applied (the rig has no per-boot order).
type VMMachine struct{ VM *vmrig.VM }

// PoweredOn implements Machine.
func (m VMMachine) PoweredOn() bool { return m.VM.Running() }

// PowerOn implements Machine.
func (m VMMachine) PowerOn(ctx context.Context, _ string) error {
	if m.VM.Running() {
		return nil
	}
	// The VM outlives the request that powered it on.
	return m.VM.PowerOn(context.WithoutCancel(ctx))
}

// ForceOff implements Machine.
func (m VMMachine) ForceOff(ctx context.Context) error { return m.VM.PowerOff(ctx) }

// GracefulShutdown implements Machine.
func (m VMMachine) GracefulShutdown(ctx context.Context) error { return m.VM.Shutdown(ctx) }

// ForceRestart implements Machine.
func (m VMMachine) ForceRestart(ctx context.Context) error { return m.VM.Reset(ctx) }

// InsertMedia implements Machine.
func (m VMMachine) InsertMedia(ctx context.Context, path string) error {
	return m.VM.InsertMedia(ctx, path)
}

// EjectMedia implements Machine.
func (m VMMachine) EjectMedia(ctx context.Context) error { return m.VM.EjectMedia(ctx) }
