package vmrig_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/test/vmrig"
)

const initHead = `
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
loadmods
`

// directBoot builds an initramfs with script as /init and returns the rig
// config that boots it with the Debian cloud kernel.
func directBoot(t *testing.T, script string) vmrig.Config {
	k := vmrig.DebianKernel(t)
	initrd := filepath.Join(t.TempDir(), "initrd.gz")
	vmrig.BuildInitramfs(t, k, vmrig.Initramfs{Init: initHead + script, Modules: append([]string{"button", "evdev"}, vmrig.VirtioModules...)}, initrd)
	return vmrig.Config{Kernel: k.Vmlinuz, Initrd: initrd, Append: "console=ttyS0 panic=-1 quiet", MemoryMiB: 256}
}

func loopbackHTTP(t *testing.T, h http.HandlerFunc) (addr string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// TestGuestTPMAndRestrictedNetwork: the guest sees a TPM 2.0 at /dev/tpm0
// (swtpm, manufactured with an EK certificate), reaches a loopback HTTP server through a guestfwd entry, and
// cannot reach another loopback port of the host nor an unforwarded guest
// address.
func TestGuestTPMAndRestrictedNetwork(t *testing.T) {
	nonce := fmt.Sprintf("forward-ok-%d", time.Now().UnixNano())
	var forwarded, other atomic.Int32
	fwd := loopbackHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		forwarded.Add(1)
		fmt.Fprintln(w, nonce)
	})
	otherAddr := loopbackHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		other.Add(1)
		fmt.Fprintln(w, "must-not-be-reached")
	})
	_, otherPort, _ := net.SplitHostPort(otherAddr)
	cfg := directBoot(t, fmt.Sprintf(`
echo "vmrig-test: booted"
if [ -c /dev/tpm0 ]; then echo "vmrig-test: tpm0 version $(cat /sys/class/tpm/tpm0/tpm_version_major)"; else echo "vmrig-test: no tpm0"; fi
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
get() { printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 "$1" "$2" 2>/dev/null | tail -n 1; }
echo "vmrig-test: forwarded says $(get 10.0.2.100 8080)"
[ -n "$(get 10.0.2.2 %[1]s)" ] && echo "vmrig-test: host port reached" || echo "vmrig-test: host port blocked"
[ -n "$(get 10.0.2.100 %[1]s)" ] && echo "vmrig-test: unforwarded reached" || echo "vmrig-test: unforwarded blocked"
echo "vmrig-test: done"
poweroff -f
`, otherPort))
	cfg.TPM, cfg.EKCert = true, true
	cfg.Network = true
	cfg.Forwards = []vmrig.Forward{{Guest: "10.0.2.100:8080", Host: fwd}}
	vm := vmrig.New(t, cfg)
	// The TPM was manufactured with an EK certificate from a local CA.
	if rest := vm.TPMCACertPEM; len(rest) == 0 {
		t.Error("no EK CA certificates")
	} else {
		for len(rest) > 0 {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				t.Errorf("EK CA certificate: %v", err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	if err := vm.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`vmrig-test: tpm0 version 2`,
		`vmrig-test: forwarded says ` + nonce,
		`vmrig-test: host port blocked`,
		`vmrig-test: unforwarded blocked`,
	} {
		if _, err := vm.WaitFor(ctx, regexp.MustCompile(regexp.QuoteMeta(want))); err != nil {
			t.Fatalf("%v\nconsole:\n%s", err, tail(vm.Console()))
		}
	}
	q, sw := vm.RSS()
	t.Logf("RSS while the guest runs: qemu %d KiB, swtpm %d KiB", q, sw)
	if err := vm.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("power-on to power-off under %s: %s", vm.Accel(), time.Since(start).Round(time.Millisecond))
	if forwarded.Load() == 0 {
		t.Error("the forwarded server saw no request")
	}
	if other.Load() != 0 {
		t.Errorf("the unforwarded loopback server was reached %d times", other.Load())
	}
}

// TestPowerControl: QMP reset reboots the guest, a hard power-off stops it
// while it runs, it powers on again, and the ACPI power button reaches the
// guest, which powers off.
func TestPowerControl(t *testing.T) {
	cfg := directBoot(t, `
ev=
for e in /sys/class/input/event*; do [ "$(cat $e/device/name)" = "Power Button" ] && ev=/dev/input/${e##*/}; done
echo "vmrig-test: up $(cat /proc/sys/kernel/random/boot_id)"
# The ACPI power button is an input device: an event on it means shutdown.
dd if="$ev" of=/dev/null bs=24 count=1 2>/dev/null
echo "vmrig-test: power button pressed"
poweroff -f
`)
	vm := vmrig.New(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	up := regexp.MustCompile(`vmrig-test: up ([0-9a-f-]{36})`)
	if err := vm.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := vm.WaitFor(ctx, up)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := vm.WaitFor(ctx, up)
	if err != nil {
		t.Fatal(err)
	}
	if first[1] == second[1] {
		t.Errorf("boot id %s did not change across a reset", first[1])
	}
	if err := vm.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	if vm.Running() {
		t.Fatal("running after a hard power-off")
	}
	if _, err := vm.QMP(ctx, "query-status", nil); err == nil {
		t.Error("QMP answered while powered off")
	}
	if err := vm.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, up); err != nil {
		t.Fatal(err)
	}
	st, err := vm.QMP(ctx, "query-status", nil)
	if err != nil || !strings.Contains(string(st), `"running"`) {
		t.Errorf("query-status after power-on: %s, %v", st, err)
	}
	// The guest prints "up" just before it opens the button's device: a
	// press in between is lost, so press again until it reacts, as a
	// person (or a BMC) would.
	pressed := regexp.MustCompile(`vmrig-test: power button pressed`)
	for {
		if err := vm.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := vm.WaitFor(wctx, pressed)
		wcancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
	}
	if err := vm.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if vm.Running() {
		t.Error("running after the guest powered off")
	}
}

// TestAccel: TCG unless asked otherwise; Auto becomes KVM only when a
// probe boot under KVM reached its marker.
func TestAccel(t *testing.T) {
	if os.Getenv(vmrig.AccelEnv) != "" {
		t.Skipf("%s is set", vmrig.AccelEnv)
	}
	cfg := directBoot(t, `
echo "vmrig-test: probe ok"
poweroff -f
`)
	if got := vmrig.New(t, cfg).Accel(); got != vmrig.TCG {
		t.Errorf("default accel %s, want tcg", got)
	}
	ok := vmrig.ProbeKVM(t, cfg.Kernel, cfg.Initrd, cfg.Append, regexp.MustCompile(`vmrig-test: probe ok`), 20*time.Second)
	cfg.Accel = vmrig.Auto
	want := vmrig.TCG
	if ok {
		want = vmrig.KVM
	}
	if got := vmrig.New(t, cfg).Accel(); got != want {
		t.Errorf("auto accel %s after probe=%v, want %s", got, ok, want)
	}
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}

// TestVirtualMedia: an ISO inserted into the running VM's CD-ROM drive
// through QMP is seen by the guest; ejecting it empties the drive.
func TestVirtualMedia(t *testing.T) {
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Skip("xorriso is not installed (hack/install-deps.sh)")
	}
	src := t.TempDir()
	nonce := fmt.Sprintf("media-%d", time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(src, "hello.txt"), []byte(nonce+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(t.TempDir(), "media.iso")
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-V", "VMRIGMEDIA", "-R", "-o", iso, src).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}
	k := vmrig.DebianKernel(t)
	initrd := filepath.Join(t.TempDir(), "initrd.gz")
	vmrig.BuildInitramfs(t, k, vmrig.Initramfs{Modules: vmrig.CDROMModules, Init: initHead + `
echo "vmrig-test: drive empty"
until dev=$(findfs LABEL=VMRIGMEDIA 2>/dev/null); do sleep 0.2; done
mkdir -p /mnt/cd
mount -t iso9660 -o ro "$dev" /mnt/cd
echo "vmrig-test: medium says $(cat /mnt/cd/hello.txt)"
while true; do sleep 60; done
`}, initrd)
	vm := vmrig.New(t, vmrig.Config{Kernel: k.Vmlinuz, Initrd: initrd, Append: "console=ttyS0 panic=-1 quiet", MemoryMiB: 256})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := vm.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`vmrig-test: drive empty`)); err != nil {
		t.Fatal(err)
	}
	if err := vm.InsertMedia(ctx, iso); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(regexp.QuoteMeta("vmrig-test: medium says "+nonce))); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, tail(vm.Console()))
	}
	if vm.Medium() != iso {
		t.Errorf("Medium() = %q, want %s", vm.Medium(), iso)
	}
	if err := vm.EjectMedia(ctx); err != nil {
		t.Fatal(err)
	}
	blk, err := vm.QMP(ctx, "query-block", nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(blk), "media.iso") {
		t.Errorf("the drive still holds the medium after eject: %s", blk)
	}
	if vm.Medium() != "" {
		t.Errorf("Medium() = %q after eject", vm.Medium())
	}
}
