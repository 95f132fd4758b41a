// Package vmrig runs machines as qemu virtual machines for tests: TCG by
// default (KVM only after a probe boot succeeds), BIOS (SeaBIOS) or UEFI
// (OVMF), virtual disks, a CD-ROM drive whose medium can be changed at run
// time, direct kernel boot, a vTPM backed by swtpm, the serial console
// captured to a file and the test log, power control through QMP, and
// user-mode networking that reaches only the loopback ports a test forwards.
//
// Everything lives in a temporary directory removed at cleanup; every
// process the rig starts is killed at cleanup. Sockets are unix sockets, so
// parallel tests never clash on ports. The power and media methods are what
// a BMC emulator (Redfish) drives.
package vmrig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Firmware is what the VM boots with.
type Firmware string

const (
	// BIOS is SeaBIOS, qemu's default firmware.
	BIOS Firmware = "bios"
	// UEFI is OVMF from Debian's ovmf package, with a per-VM copy of its
	// variable store.
	UEFI Firmware = "uefi"
)

// Accel chooses the accelerator.
type Accel string

const (
	// TCG is qemu's software emulation: works everywhere, the default.
	TCG Accel = "tcg"
	// KVM is hardware virtualisation; it hangs in nested guests here.
	KVM Accel = "kvm"
	// Auto uses KVM when ProbeKVM succeeded in this process, else TCG.
	Auto Accel = "auto"
)

// AccelEnv, when set to tcg, kvm or auto, overrides Config.Accel.
const AccelEnv = "EDGEFLEET_VMRIG_ACCEL"

// Disk is a virtual disk (virtio-blk).
type Disk struct {
	// Path of an existing image to attach (a raw seed image, a disk from
	// an earlier VM); empty creates a new image in the VM's directory.
	Path string
	// Size of a new image in bytes.
	Size int64
	// Format is qcow2 (default for new images) or raw (default for Path).
	Format string
	// BootIndex orders firmware boot devices (0: after the CD-ROM).
	BootIndex int
}

// Forward maps a guest address to a host loopback address: the guest
// connects to Guest ("10.0.2.100:443") and reaches Host ("127.0.0.1:34567").
// With restricted networking nothing else outside the guest is reachable.
type Forward struct {
	Guest string
	Host  string
}

// Config describes a machine.
type Config struct {
	// MemoryMiB defaults to 512; CPUs to 1.
	MemoryMiB int
	CPUs      int
	// Firmware defaults to BIOS.
	Firmware Firmware
	// Accel defaults to TCG (see AccelEnv).
	Accel Accel
	// Kernel, Initrd and Append boot a kernel directly (no bootloader).
	Kernel, Initrd, Append string
	// CDROM is an ISO in the CD-ROM drive at power-on. The drive exists
	// always, so media can be inserted later (InsertMedia).
	CDROM string
	// Disks are virtio-blk disks.
	Disks []Disk
	// TPM gives the guest a TPM 2.0 (tpm-tis) backed by swtpm; EKCert
	// manufactures it with an EK certificate from a local CA first.
	TPM, EKCert bool
	// Network adds a virtio NIC with user-mode networking restricted to
	// Forwards (restrict=on). The guest is 10.0.2.15/24, gateway 10.0.2.2.
	Network  bool
	Forwards []Forward
	// ExitOnReboot makes a guest reboot stop the VM instead (-no-reboot).
	ExitOnReboot bool
	// UUID and Serial are the machine's SMBIOS system UUID and serial
	// number (what registration templates read).
	UUID, Serial string
	// Log receives console lines (default: the test's log).
	Log func(format string, args ...any)
}

// VM is one virtual machine. Its zero state is powered off.
type VM struct {
	t      testing.TB
	cfg    Config
	dir    string
	accel  Accel
	disks  []Disk
	vars   string
	tpmDir string
	// TPMCACertPEM is the local CA that signed the EK certificate
	// (Config.EKCert).
	TPMCACertPEM []byte

	mu      sync.Mutex
	console []byte
	cursor  int
	changed chan struct{}
	logged  int
	medium  string

	run *running
}

type running struct {
	qemu    *exec.Cmd
	swtpm   *exec.Cmd
	qmp     *qmp
	serial  net.Conn
	done    chan struct{} // closed when qemu exited
	readers sync.WaitGroup
	err     error
}

// New prepares a VM (disks, firmware variables, TPM state) without
// starting it; cleanup stops it and removes its files.
func New(t testing.TB, cfg Config) *VM {
	t.Helper()
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian packages qemu-system-x86, qemu-utils; see hack/install-deps.sh)", tool)
		}
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 512
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.Firmware == "" {
		cfg.Firmware = BIOS
	}
	if cfg.Log == nil {
		cfg.Log = t.Logf
	}
	// Short path: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "vmrig")
	if err != nil {
		t.Fatal(err)
	}
	vm := &VM{t: t, cfg: cfg, dir: dir, changed: make(chan struct{}), medium: cfg.CDROM}
	t.Cleanup(func() {
		vm.stop()
		os.RemoveAll(dir)
	})
	vm.accel = chooseAccel(cfg.Accel)
	for i, d := range cfg.Disks {
		if d.Path == "" {
			if d.Format == "" {
				d.Format = "qcow2"
			}
			d.Path = filepath.Join(dir, fmt.Sprintf("disk%d.%s", i, d.Format))
			if out, err := exec.Command("qemu-img", "create", "-q", "-f", d.Format, d.Path, strconv.FormatInt(d.Size, 10)).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img create: %v: %s", err, out)
			}
		} else if d.Format == "" {
			d.Format = "raw"
		}
		vm.disks = append(vm.disks, d)
	}
	if cfg.Firmware == UEFI {
		code, vars := OVMF()
		if code == "" {
			t.Skip("OVMF is not installed (Debian package ovmf; see hack/install-deps.sh)")
		}
		vm.vars = filepath.Join(dir, "OVMF_VARS.fd")
		if err := copyFile(vars, vm.vars); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.Network && len(cfg.Forwards) > 0 {
		if _, err := exec.LookPath("busybox"); err != nil {
			t.Skip("busybox is not installed: guest forwards relay through busybox nc (Debian package busybox-static; see hack/install-deps.sh)")
		}
	}
	if cfg.TPM {
		if _, err := exec.LookPath("swtpm"); err != nil {
			t.Skip("swtpm is not installed (Debian packages swtpm, swtpm-tools; see hack/install-deps.sh)")
		}
		vm.tpmDir = filepath.Join(dir, "tpm")
		if err := os.Mkdir(vm.tpmDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if cfg.EKCert {
			ca, err := manufactureTPM(dir, vm.tpmDir)
			if err != nil {
				t.Fatal(err)
			}
			vm.TPMCACertPEM = ca
		}
	}
	return vm
}

// OVMF returns Debian's OVMF firmware code and variable template ("" when
// the ovmf package is missing).
func OVMF() (code, vars string) {
	for _, p := range [][2]string{
		{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
		{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
	} {
		if _, err := os.Stat(p[0]); err == nil {
			return p[0], p[1]
		}
	}
	return "", ""
}

// Dir is the VM's working directory (console.log, qemu.log, disks).
func (vm *VM) Dir() string { return vm.dir }

// DiskPath is the image file of disk i.
func (vm *VM) DiskPath(i int) string { return vm.disks[i].Path }

// Accel is the accelerator the VM runs with.
func (vm *VM) Accel() Accel { return vm.accel }

// Running reports whether the VM is powered on.
func (vm *VM) Running() bool {
	vm.mu.Lock()
	r := vm.run
	vm.mu.Unlock()
	if r == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// PowerOn starts the VM (swtpm, then qemu). Disks, firmware variables and
// TPM state persist across power cycles.
func (vm *VM) PowerOn(ctx context.Context) error {
	if vm.Running() {
		return errors.New("vmrig: already powered on")
	}
	vm.stop() // reap an earlier run
	r := &running{done: make(chan struct{})}
	serialSock := filepath.Join(vm.dir, "serial.sock")
	qmpSock := filepath.Join(vm.dir, "qmp.sock")
	os.Remove(serialSock)
	os.Remove(qmpSock)
	if vm.cfg.TPM {
		if err := vm.startSwtpm(ctx, r); err != nil {
			return err
		}
	}
	args := vm.qemuArgs(serialSock, qmpSock)
	qlog, err := os.OpenFile(filepath.Join(vm.dir, "qemu.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.Stdout, cmd.Stderr = qlog, qlog
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		qlog.Close()
		r.kill()
		if r.swtpm != nil {
			_ = r.swtpm.Wait()
		}
		return fmt.Errorf("starting qemu: %w", err)
	}
	r.qemu = cmd
	go func() {
		r.err = cmd.Wait()
		qlog.Close()
		close(r.done)
	}()
	vm.mu.Lock()
	vm.run = r
	vm.mu.Unlock()
	// qemu waits for the console's client before it runs the guest
	// (server=on,wait=on), so no console byte is lost.
	if r.serial, err = dialWhile(ctx, r, serialSock); err != nil {
		return vm.startFailed(err)
	}
	r.readers.Add(1)
	go vm.readConsole(r)
	if r.qmp, err = vm.dialQMP(ctx, r, qmpSock); err != nil {
		return vm.startFailed(err)
	}
	return nil
}

func (vm *VM) startFailed(err error) error {
	vm.stop()
	log, _ := os.ReadFile(filepath.Join(vm.dir, "qemu.log"))
	return fmt.Errorf("starting qemu: %w: %s", err, strings.TrimSpace(string(log)))
}

func dialWhile(ctx context.Context, r *running, path string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-r.done:
			return nil, errors.New("qemu exited")
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w", path, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (vm *VM) dialQMP(ctx context.Context, r *running, path string) (*qmp, error) {
	c, err := dialWhile(ctx, r, path)
	if err != nil {
		return nil, err
	}
	return newQMP(ctx, c)
}

func (vm *VM) qemuArgs(serialSock, qmpSock string) []string {
	c := vm.cfg
	args := []string{
		"-name", "edgefleet-vm",
		"-machine", "pc",
		"-accel", string(vm.accel),
		"-m", strconv.Itoa(c.MemoryMiB),
		"-smp", strconv.Itoa(c.CPUs),
		"-display", "none",
		"-monitor", "none",
		"-nodefaults",
		"-vga", "none",
		"-chardev", "socket,id=ser0,path=" + serialSock + ",server=on,wait=on",
		"-serial", "chardev:ser0",
		"-chardev", "socket,id=qmp0,path=" + qmpSock + ",server=on,wait=off",
		"-mon", "chardev=qmp0,mode=control",
	}
	if c.ExitOnReboot {
		args = append(args, "-no-reboot")
	}
	if c.UUID != "" {
		args = append(args, "-uuid", c.UUID)
	}
	if c.Serial != "" {
		// qemu's option syntax doubles commas in values.
		args = append(args, "-smbios", "type=1,serial="+strings.ReplaceAll(c.Serial, ",", ",,"))
	}
	if c.Firmware == UEFI {
		code, _ := OVMF()
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vm.vars)
	}
	if c.Kernel != "" {
		args = append(args, "-kernel", c.Kernel)
		if c.Initrd != "" {
			args = append(args, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			args = append(args, "-append", c.Append)
		}
	}
	cd := "if=none,id=cd0,media=cdrom,readonly=on"
	vm.mu.Lock()
	if vm.medium != "" {
		cd += ",format=raw,file=" + vm.medium
	}
	vm.mu.Unlock()
	args = append(args, "-drive", cd, "-device", "ide-cd,drive=cd0,id=cdrom0,bus=ide.1,bootindex=1")
	for i, d := range vm.disks {
		bi := d.BootIndex
		if bi == 0 {
			bi = 2 + i
		}
		args = append(args,
			"-drive", fmt.Sprintf("if=none,id=disk%d,format=%s,file=%s", i, d.Format, d.Path),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,bootindex=%d", i, bi))
	}
	if c.TPM {
		args = append(args,
			"-chardev", "socket,id=chrtpm,path="+filepath.Join(vm.tpmDir, "..", "swtpm.sock"),
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", "tpm-tis,tpmdev=tpm0")
	}
	if c.Network {
		nd := "user,id=net0,restrict=on"
		for _, f := range c.Forwards {
			// One host connection per guest connection: qemu runs the
			// command for each, and busybox nc relays it to the loopback
			// port (a chardev forward would carry a single connection).
			nd += fmt.Sprintf(",guestfwd=tcp:%s-cmd:busybox nc %s", f.Guest, strings.Replace(f.Host, ":", " ", 1))
		}
		args = append(args, "-netdev", nd, "-device", "virtio-net-pci,netdev=net0,romfile=")
	}
	return args
}

// readConsole copies the serial console into console.log, the in-memory
// console WaitFor reads and, line by line, the test log.
func (vm *VM) readConsole(r *running) {
	defer r.readers.Done()
	f, err := os.OpenFile(filepath.Join(vm.dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.serial.Read(buf)
		if n > 0 {
			_, _ = f.Write(buf[:n])
			vm.mu.Lock()
			vm.console = append(vm.console, buf[:n]...)
			ch := vm.changed
			vm.changed = make(chan struct{})
			lines := vm.takeLines(false)
			vm.mu.Unlock()
			close(ch)
			vm.logLines(lines)
		}
		if err != nil {
			vm.mu.Lock()
			lines := vm.takeLines(true)
			vm.mu.Unlock()
			vm.logLines(lines)
			return
		}
	}
}

// takeLines returns complete console lines not logged yet (and the rest at
// the end). Called with vm.mu held.
func (vm *VM) takeLines(all bool) []string {
	rest := vm.console[vm.logged:]
	end := strings.LastIndexByte(string(rest), '\n') + 1
	if all {
		end = len(rest)
	}
	if end <= 0 {
		return nil
	}
	vm.logged += end
	return strings.Split(strings.TrimRight(string(rest[:end]), "\r\n"), "\n")
}

func (vm *VM) logLines(lines []string) {
	for _, l := range lines {
		if l = logLine(l); l != "" {
			vm.cfg.Log("vm console: %s", l)
		}
	}
}

// logLine is a console line without terminal control sequences and runs
// of blanks.
func logLine(l string) string {
	return strings.Join(strings.Fields(ansi.ReplaceAllString(l, " ")), " ")
}

// ansi matches terminal control sequences (GRUB's and the firmware's menus
// draw with them) and box-drawing bytes, kept out of the test log.
var ansi = regexp.MustCompile(`\x1b\[[0-9;?=]*[a-zA-Z]|[^\x20-\x7e\t]+`)

// Console is everything the serial console printed so far (all boots).
func (vm *VM) Console() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return string(vm.console)
}

// WaitFor waits until the console prints a match of re after the previous
// WaitFor's match, and returns the submatches. It looks at complete lines
// only: a serial read can end in the middle of a word, and `slot=(\S+)`
// must not match "recover" of "recovery". It fails early when the VM stops
// (and then reads the unterminated last line too).
func (vm *VM) WaitFor(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	stopped := false
	for {
		vm.mu.Lock()
		seen := vm.console[vm.cursor:]
		if !stopped {
			seen = completeLines(seen)
		}
		if loc := re.FindSubmatchIndex(seen); loc != nil {
			m := re.FindSubmatch(seen)
			vm.cursor += loc[1]
			vm.mu.Unlock()
			out := make([]string, len(m))
			for i := range m {
				out[i] = string(m[i])
			}
			return out, nil
		}
		ch := vm.changed
		r := vm.run
		vm.mu.Unlock()
		var done chan struct{}
		if r != nil {
			done = r.done
		}
		select {
		case <-ch:
		case <-done:
			// Let the console reader drain the last bytes, then look once more.
			if !stopped {
				r.readers.Wait()
				stopped = true
				continue
			}
			return nil, fmt.Errorf("vm stopped before the console printed %q", re)
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %q on the console: %w", re, ctx.Err())
		}
	}
}

// completeLines is b up to and including its last newline.
func completeLines(b []byte) []byte {
	return b[:bytes.LastIndexByte(b, '\n')+1]
}

// Wait waits until qemu exits (the guest powered off, or a reboot with
// ExitOnReboot).
func (vm *VM) Wait(ctx context.Context) error {
	vm.mu.Lock()
	r := vm.run
	vm.mu.Unlock()
	if r == nil {
		return nil
	}
	select {
	case <-r.done:
		r.readers.Wait()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the vm to stop: %w", ctx.Err())
	}
}

// QMP runs a QMP command on the running VM.
func (vm *VM) QMP(ctx context.Context, command string, args any) ([]byte, error) {
	vm.mu.Lock()
	r := vm.run
	vm.mu.Unlock()
	if r == nil || r.qmp == nil {
		return nil, errors.New("vmrig: not powered on")
	}
	return r.qmp.Execute(ctx, command, args)
}

// PowerOff cuts the power: qemu quits without the guest's cooperation.
func (vm *VM) PowerOff(ctx context.Context) error {
	if !vm.Running() {
		return nil
	}
	_, err := vm.QMP(ctx, "quit", nil)
	if err != nil && vm.Running() {
		return err
	}
	return vm.Wait(ctx)
}

// Shutdown presses the power button (ACPI); the guest decides what to do.
func (vm *VM) Shutdown(ctx context.Context) error {
	_, err := vm.QMP(ctx, "system_powerdown", nil)
	return err
}

// Reset presses the reset button.
func (vm *VM) Reset(ctx context.Context) error {
	_, err := vm.QMP(ctx, "system_reset", nil)
	return err
}

// InsertMedia puts the ISO at path into the CD-ROM drive (at once when
// running, at the next power-on otherwise).
func (vm *VM) InsertMedia(ctx context.Context, path string) error {
	if vm.Running() {
		if _, err := vm.QMP(ctx, "blockdev-change-medium", map[string]any{"id": "cdrom0", "filename": path, "format": "raw", "read-only-mode": "read-only"}); err != nil {
			return err
		}
	}
	vm.mu.Lock()
	vm.medium = path
	vm.mu.Unlock()
	return nil
}

// EjectMedia empties the CD-ROM drive.
func (vm *VM) EjectMedia(ctx context.Context) error {
	if vm.Running() {
		if _, err := vm.QMP(ctx, "eject", map[string]any{"id": "cdrom0", "force": true}); err != nil {
			return err
		}
	}
	vm.mu.Lock()
	vm.medium = ""
	vm.mu.Unlock()
	return nil
}

// Medium is the ISO in the CD-ROM drive ("" when empty).
func (vm *VM) Medium() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.medium
}

// PIDs are the process ids of qemu and swtpm (0 when not running), for
// measurements.
func (vm *VM) PIDs() (qemu, swtpm int) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.run == nil {
		return 0, 0
	}
	if vm.run.qemu != nil && vm.run.qemu.Process != nil {
		qemu = vm.run.qemu.Process.Pid
	}
	if vm.run.swtpm != nil && vm.run.swtpm.Process != nil {
		swtpm = vm.run.swtpm.Process.Pid
	}
	return qemu, swtpm
}

// stop kills qemu and swtpm and waits for the console reader.
func (vm *VM) stop() {
	vm.mu.Lock()
	r := vm.run
	vm.mu.Unlock()
	if r == nil {
		return
	}
	r.kill()
	if r.qemu != nil {
		<-r.done
	}
	if r.serial != nil {
		r.serial.Close()
	}
	r.readers.Wait()
	if r.qmp != nil {
		r.qmp.Close()
	}
	if r.swtpm != nil {
		_ = r.swtpm.Wait()
	}
	vm.mu.Lock()
	if vm.run == r {
		vm.run = nil
	}
	vm.mu.Unlock()
}

func (r *running) kill() {
	if r.qemu != nil && r.qemu.Process != nil {
		_ = r.qemu.Process.Kill()
	}
	if r.swtpm != nil && r.swtpm.Process != nil {
		_ = r.swtpm.Process.Kill()
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// RSS is the resident memory of qemu and swtpm in KiB (0 when not
// running), for measurements.
func (vm *VM) RSS() (qemuKiB, swtpmKiB int) {
	q, s := vm.PIDs()
	return rssKiB(q), rssKiB(s)
}

func rssKiB(pid int) int {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}
