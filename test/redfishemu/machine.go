package redfishemu

import (
	"context"
	"sync"
)

// Machine is what the emulated BMC controls: power and a CD-ROM drive.
type Machine interface {
	// PoweredOn reports whether the machine is on.
	PoweredOn() bool
	// PowerOn starts the machine; bootOnce is the one-time boot target
	// ("Cd", "Pxe", "Hdd" or "" for the normal order) consumed by this
	// boot.
	PowerOn(ctx context.Context, bootOnce string) error
	// ForceOff cuts the power.
	ForceOff(ctx context.Context) error
	// GracefulShutdown presses the power button; the OS decides.
	GracefulShutdown(ctx context.Context) error
	// ForceRestart presses the reset button.
	ForceRestart(ctx context.Context) error
	// InsertMedia puts the ISO file at path into the CD-ROM drive.
	InsertMedia(ctx context.Context, path string) error
	// EjectMedia empties the CD-ROM drive.
	EjectMedia(ctx context.Context) error
}

// SimulatedMachine is a machine that only exists as state: power follows
// the BMC's actions at once and a graceful shutdown powers it off (an OS
// that obeys the power button) unless IgnorePowerButton. For controller
// tests and benchmarks that need no VM.
type SimulatedMachine struct {
	mu sync.Mutex
	on bool
	// IgnorePowerButton makes GracefulShutdown do nothing (an OS that
	// ignores ACPI).
	IgnorePowerButton bool
	medium            string
	boots             []string
}

// PoweredOn implements Machine.
func (m *SimulatedMachine) PoweredOn() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.on }

// PowerOn implements Machine.
func (m *SimulatedMachine) PowerOn(_ context.Context, bootOnce string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.on {
		m.on = true
		m.boots = append(m.boots, bootOnce)
	}
	return nil
}

// ForceOff implements Machine.
func (m *SimulatedMachine) ForceOff(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.on = false
	return nil
}

// GracefulShutdown implements Machine.
func (m *SimulatedMachine) GracefulShutdown(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.IgnorePowerButton {
		m.on = false
	}
	return nil
}

// ForceRestart implements Machine.
func (m *SimulatedMachine) ForceRestart(context.Context) error { return nil }

// InsertMedia implements Machine.
func (m *SimulatedMachine) InsertMedia(_ context.Context, path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.medium = path
	return nil
}

// EjectMedia implements Machine.
func (m *SimulatedMachine) EjectMedia(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.medium = ""
	return nil
}

// Medium is the file in the CD-ROM drive.
func (m *SimulatedMachine) Medium() string { m.mu.Lock(); defer m.mu.Unlock(); return m.medium }

// Boots lists the one-time boot target of every power-on so far.
func (m *SimulatedMachine) Boots() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.boots...)
}
