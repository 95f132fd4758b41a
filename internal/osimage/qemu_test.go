package osimage_test

// A small local qemu runner for this package's boot tests.
// TODO(merge): replace with test/vmrig (the seedboot work) once it lands.

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

type vm struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	line chan struct{}
	done chan struct{}
	err  error
}

func needQEMU(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM: skipped in -short mode")
	}
	for _, c := range []string{"qemu-system-x86_64", "mksquashfs"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not found (Debian packages qemu-system-x86, squashfs-tools; hack/install-deps.sh installs them): skipping the VM boot test", c)
		}
	}
}

// startVM boots qemu under TCG with the serial console on its stdout, which
// is copied to the test log when the test fails.
func startVM(t *testing.T, args ...string) *vm {
	t.Helper()
	base := []string{"-accel", "tcg", "-m", "512", "-smp", "1", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-nic", "user,model=virtio-net-pci,restrict=on"}
	ctx, cancel := context.WithCancel(context.Background())
	v := &vm{t: t, cmd: exec.CommandContext(ctx, "qemu-system-x86_64", append(base, args...)...), line: make(chan struct{}, 1), done: make(chan struct{})}
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stderr = v.cmd.Stdout
	v.cmd.Stdin = nil
	start := time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r := bufio.NewReader(out)
		for {
			l, err := r.ReadString('\n')
			v.mu.Lock()
			v.log.WriteString(l)
			v.mu.Unlock()
			select {
			case v.line <- struct{}{}:
			default:
			}
			if err != nil {
				break
			}
		}
		v.err = v.cmd.Wait()
		close(v.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-v.done
		if t.Failed() || os.Getenv("EDGEFLEET_VM_LOG") != "" {
			t.Logf("serial console (%.1fs):\n%s", time.Since(start).Seconds(), v.output())
		}
	})
	return v
}

func (v *vm) output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.ReplaceAll(v.log.String(), "\r", "")
}

// waitFor waits until the console has printed want and returns the time
// it took; it fails the test on timeout or when the VM stops first.
func (v *vm) waitFor(want string, timeout time.Duration) {
	v.t.Helper()
	deadline := time.After(timeout)
	for {
		if strings.Contains(v.output(), want) {
			return
		}
		select {
		case <-v.line:
		case <-v.done:
			if strings.Contains(v.output(), want) {
				return
			}
			v.t.Fatalf("the VM stopped (%v) before printing %q", v.err, want)
		case <-deadline:
			v.t.Fatalf("no %q on the console after %s", want, timeout)
		}
	}
}

// waitExit waits for the VM to stop by itself.
func (v *vm) waitExit(timeout time.Duration) {
	v.t.Helper()
	select {
	case <-v.done:
	case <-time.After(timeout):
		v.t.Fatalf("the VM still runs after %s", timeout)
	}
}

var _ = io.Discard

// startSWTPM runs a swtpm TPM 2.0 for a VM and returns the qemu arguments
// that give the guest a tpm-tis device backed by it (the guest kernel then
// has /dev/tpm0 and /dev/tpmrm0).
func startSWTPM(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm not found (Debian package swtpm): skipping a VM test with a TPM")
	}
	dir, err := os.MkdirTemp("", "vmtpm") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	sock := dir + "/ctrl.sock"
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+dir, "--ctrl", "type=unixio,path="+sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		os.RemoveAll(dir)
	})
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return []string{"-chardev", "socket,id=chrtpm,path=" + sock, "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"}
}
