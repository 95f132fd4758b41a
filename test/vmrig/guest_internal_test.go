package vmrig

import (
	"bytes"
	"compress/gzip"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Modules come with their dependencies first, each once; built-in and
// unknown modules are told apart.
func TestResolveModules(t *testing.T) {
	k := DebianKernel(t)
	for _, tc := range []struct {
		mods        []string
		wantOrder   [][2]string // a before b
		wantMissing string
	}{
		{mods: []string{"sr_mod"}, wantOrder: [][2]string{{"cdrom", "sr_mod"}, {"scsi_mod", "sr_mod"}}},
		{mods: []string{"virtio_net", "virtio_blk"}, wantOrder: [][2]string{{"virtio", "virtio_net"}, {"virtio_ring", "virtio_blk"}, {"failover", "net_failover"}}},
		{mods: []string{"ext4"}}, // built in: nothing to load
		{mods: []string{"no_such_module"}, wantMissing: "no_such_module is neither in"},
	} {
		t.Run(strings.Join(tc.mods, "+"), func(t *testing.T) {
			paths, err := resolveModules(k.ModulesDir, tc.mods)
			if tc.wantMissing != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantMissing) {
					t.Fatalf("error %v, want %q", err, tc.wantMissing)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range paths {
				names = append(names, strings.TrimSuffix(filepath.Base(p), ".ko"))
			}
			seen := map[string]bool{}
			for _, n := range names {
				if seen[n] {
					t.Errorf("%s listed twice: %v", n, names)
				}
				seen[n] = true
			}
			for _, o := range tc.wantOrder {
				a, b := slices.Index(names, o[0]), slices.Index(names, o[1])
				if a < 0 || b < 0 || a > b {
					t.Errorf("want %s before %s in %v", o[0], o[1], names)
				}
			}
		})
	}
}

// The initramfs is a newc cpio the standard tool reads: busybox, its
// applet links, the console device, the modules (dependencies first:
// isofs needs cdrom) and /init with loadmods.
func TestInitramfsLayout(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio is not installed")
	}
	k := DebianKernel(t)
	data, err := initramfs(Busybox(t), k, Initramfs{Init: "echo hi\n", Modules: []string{"isofs"}, Files: map[string][]byte{"/etc/x": []byte("y")}})
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}
	list := string(out)
	for _, want := range []string{" bin/busybox", " bin/sh -> busybox", " init", " lib/modules/00-cdrom.ko", " lib/modules/01-isofs.ko", " etc/x"} {
		if !strings.Contains(list, want) {
			t.Errorf("initramfs lacks %q:\n%s", want, list)
		}
	}
	if !strings.Contains(list, "crw-------") || !strings.Contains(list, "dev/console") {
		t.Errorf("initramfs lacks the console device:\n%s", list)
	}
}

// Console lines reach the test log without terminal control sequences.
func TestConsoleLogLines(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain line", "plain line"},
		{"\x1b[2J\x1b[01;01HWelcome to GRUB!", "Welcome to GRUB!"},
		{"\x1b[0m\x1b[30m\x1b[47m*edgefleet live      \x1b[m", "*edgefleet live"},
		{"box \xc4\xc4\xc4 drawing", "box drawing"},
	} {
		if got := logLine(tc.in); got != tc.want {
			t.Errorf("%q → %q, want %q", tc.in, got, tc.want)
		}
	}
}
