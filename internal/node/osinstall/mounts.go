package osinstall

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/edgefleet/edgefleet/internal/mountinfo"
)

// sysBlock maps device numbers to disks and loop backing files.
var sysBlock = "/sys/dev/block"

type mount struct {
	devNum, point, source string
	readOnly              bool
}

func readMounts(file string) ([]mount, error) {
	if file == "" {
		file = "/proc/self/mountinfo"
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		m := mount{devNum: f[2], point: mountinfo.Unescape(f[4])}
		for _, o := range strings.Split(f[5], ",") {
			m.readOnly = m.readOnly || o == "ro"
		}
		for i, x := range f {
			if x == "-" && i+2 < len(f) {
				m.source = f[i+2]
			}
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// diskOf returns the sysfs name of the disk a device number belongs to
// ("vda" for vda4 and for vda), and of a loop device its backing file.
func diskOf(devNum string) (disk, backing string) {
	link, err := os.Readlink(filepath.Join(sysBlock, devNum))
	if err != nil {
		return "", ""
	}
	base := filepath.Base(link)
	if _, err := os.Stat(filepath.Join(sysBlock, devNum, "partition")); err == nil {
		base = filepath.Base(filepath.Dir(link))
	}
	if b, err := os.ReadFile(filepath.Join(sysBlock, devNum, "loop", "backing_file")); err == nil {
		backing = strings.TrimSpace(string(b))
	}
	return base, backing
}

// CheckNotInUse refuses a target with mounted filesystems: the disk the
// system booted from (its root image, state or persistent partition is
// mounted), or an image file mounted through a loop device.
func CheckNotInUse(d *Disk, mountinfo string) error {
	ms, err := readMounts(mountinfo)
	if err != nil {
		return fmt.Errorf("cannot tell whether %s is in use: %w", d.Path, err)
	}
	var targetDisk, targetFile string
	if d.Block {
		st, err := os.Stat(d.Path)
		if err != nil {
			return err
		}
		rdev := st.Sys().(*syscall.Stat_t).Rdev
		targetDisk, _ = diskOf(fmt.Sprintf("%d:%d", unixMajor(rdev), unixMinor(rdev)))
	} else if abs, err := filepath.Abs(d.Path); err == nil {
		targetFile, _ = filepath.EvalSymlinks(abs)
	}
	for _, m := range ms {
		disk, backing := diskOf(m.devNum)
		if (targetDisk != "" && disk == targetDisk) || (targetFile != "" && backing == targetFile) {
			return fmt.Errorf("refusing to install to %s: it is in use (%s is mounted on %s), so it is the disk this system booted from or is being used; pick another disk (device / device-selector)", d.Path, m.source, m.point)
		}
	}
	return nil
}

func unixMajor(dev uint64) uint64 { return (dev >> 8) & 0xfff }
func unixMinor(dev uint64) uint64 { return (dev & 0xff) | ((dev >> 12) & 0xfff00) }
