package osinstall_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/osinstall"
	"github.com/edgefleet/edgefleet/internal/node/osinstall/osinstalltest"
)

// BenchmarkInstallUpgrade measures installing a ~30 MB OS image (30 MiB of
// incompressible data, so the squashfs is as big) from a loopback registry
// to a 1 GiB disk-image file, and upgrading it; layers are not cached
// between iterations. Reports squashfs MiB and seconds per step.
func BenchmarkInstallUpgrade(b *testing.B) {
	osinstalltest.RequireTools(b, "sgdisk", "mkfs.ext4", "mkfs.vfat", "sqfstar", "grub-editenv", "mcopy", "losetup")
	if os.Geteuid() != 0 {
		b.Skip("needs root (loop devices and mount)")
	}
	ctx := context.Background()
	reg := osinstalltest.NewRegistry(b)
	v1 := reg.Push(b, "os", "v1", osinstalltest.Build(b, osinstalltest.Image{Version: "1", Padding: 30 << 20}))
	v2 := reg.Push(b, "os", "v2", osinstalltest.Build(b, osinstalltest.Image{Version: "2", Padding: 30 << 20}))
	var install, upgrade time.Duration
	var size int64
	for b.Loop() {
		dir := b.TempDir()
		disk := filepath.Join(dir, "disk.img")
		f, _ := os.Create(disk)
		f.Truncate(1 << 30)
		f.Close()
		start := time.Now()
		res, err := osinstall.Install(ctx, osinstall.InstallOptions{Device: disk, Pull: osinstall.PullOptions{Image: v1, CacheDir: filepath.Join(dir, "c1")}})
		if err != nil {
			b.Fatal(err)
		}
		install += time.Since(start)
		size = res.Image.Size
		start = time.Now()
		if _, err := osinstall.Upgrade(ctx, osinstall.UpgradeOptions{Device: disk, Pull: osinstall.PullOptions{Image: v2, CacheDir: filepath.Join(dir, "c2")}}); err != nil {
			b.Fatal(err)
		}
		upgrade += time.Since(start)
	}
	b.ReportMetric(install.Seconds()/float64(b.N), "install-s")
	b.ReportMetric(upgrade.Seconds()/float64(b.N), "upgrade-s")
	b.ReportMetric(float64(size)/(1<<20), "slot-MiB")
}
