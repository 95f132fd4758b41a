package vmrig

import (
	"context"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"
)

var kvmProbe struct {
	once sync.Once
	ok   bool
}

// chooseAccel resolves the accelerator: AccelEnv wins over the config; Auto
// is KVM only when ProbeKVM ran in this process and succeeded.
func chooseAccel(a Accel) Accel {
	if e := Accel(os.Getenv(AccelEnv)); e == TCG || e == KVM || e == Auto {
		a = e
	}
	switch a {
	case KVM:
		return KVM
	case Auto:
		if kvmProbe.ok {
			return KVM
		}
	}
	return TCG
}

// ProbeKVM boots kernel and initrd (whose init prints marker and powers
// off) under KVM once per process and reports whether it reached marker
// within timeout. Nested KVM guests hang at kernel entry on some hosts, so
// Auto trusts KVM only after this.
func ProbeKVM(t testing.TB, kernel, initrd, appendLine string, marker *regexp.Regexp, timeout time.Duration) bool {
	kvmProbe.once.Do(func() {
		if _, err := os.Stat("/dev/kvm"); err != nil {
			return
		}
		vm := New(t, Config{Accel: KVM, Kernel: kernel, Initrd: initrd, Append: appendLine, MemoryMiB: 256, ExitOnReboot: true,
			Log: func(string, ...any) {}})
		vm.accel = KVM // the environment must not turn the probe into TCG
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := vm.PowerOn(ctx); err != nil {
			t.Logf("KVM probe: %v", err)
			return
		}
		_, err := vm.WaitFor(ctx, marker)
		vm.stop()
		kvmProbe.ok = err == nil
		t.Logf("KVM probe boot succeeded: %v", kvmProbe.ok)
	})
	return kvmProbe.ok
}
