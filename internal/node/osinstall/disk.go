package osinstall

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Partition labels (contract §2): the GPT partition name and the filesystem
// label are the same.
const (
	LabelEFI        = "EF_EFI"
	LabelOEM        = "EF_OEM"
	LabelRecovery   = "EF_RECOVERY"
	LabelState      = "EF_STATE"
	LabelPersistent = "EF_PERSISTENT"
)

const (
	mib        = int64(1) << 20
	sectorSize = 512
	// alignment of partition starts; the first one starts at 1 MiB.
	align = mib
)

// Part is one partition of the installed layout.
type Part struct {
	Num   int
	Label string
	FS    string // vfat or ext4
	Type  string // sgdisk type code
	Start int64  // bytes
	Size  int64  // bytes
}

// Layout is where each partition goes on the disk.
type Layout []Part

// Get returns the partition labelled label.
func (l Layout) Get(label string) Part {
	for _, p := range l {
		if p.Label == label {
			return p
		}
	}
	return Part{}
}

// Sizes of the fixed partitions and the minimum of the persistent one.
const (
	EFISize           = 64 * mib
	OEMSize           = 64 * mib
	MinPersistentSize = 64 * mib
)

// PlanLayout sizes the partitions for an image whose slot takes slotSize
// bytes: recovery holds one slot, state two, each with room to grow by half
// (upgrades to a bigger image) plus filesystem overhead, and persistent gets
// the rest of the disk. It fails, saying how much is needed, when the disk is
// too small.
func PlanLayout(diskSize, slotSize int64) (Layout, error) {
	recovery := roundUp(slotSize*3/2+32*mib, mib)
	state := roundUp(2*(slotSize*3/2)+64*mib, mib)
	fixed := align + EFISize + OEMSize + recovery + state
	// GPT's backup header takes the last 33 sectors; leave 1 MiB.
	need := fixed + MinPersistentSize + mib
	if diskSize < need {
		return nil, &TooSmallError{Have: diskSize, Need: need}
	}
	l := Layout{
		{Num: 1, Label: LabelEFI, FS: "vfat", Type: "ef00", Size: EFISize},
		{Num: 2, Label: LabelOEM, FS: "ext4", Type: "8300", Size: OEMSize},
		{Num: 3, Label: LabelRecovery, FS: "ext4", Type: "8300", Size: recovery},
		{Num: 4, Label: LabelState, FS: "ext4", Type: "8300", Size: state},
		{Num: 5, Label: LabelPersistent, FS: "ext4", Type: "8300", Size: (diskSize - fixed - mib) / mib * mib},
	}
	at := align
	for i := range l {
		l[i].Start = at
		at += l[i].Size
	}
	return l, nil
}

// TooSmallError is a target disk without room for the layout.
type TooSmallError struct{ Have, Need int64 }

func (e *TooSmallError) Error() string {
	return fmt.Sprintf("the target disk has %d MiB; this OS image needs at least %d MiB (EFI 64, OEM 64, recovery, state for two images, persistent 64)", e.Have/mib, (e.Need+mib-1)/mib)
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// Disk is the install target: a block device (/dev/vda) or a disk-image file
// (tests, building pre-installed images). Partitions of an image file are
// reached through loop devices with an offset, since loop partition scanning
// is not available everywhere.
type Disk struct {
	Path  string
	Size  int64
	Block bool
	loops []string
}

// OpenDisk checks the target and returns its size.
func OpenDisk(p string) (*Disk, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("target disk: %w", err)
	}
	d := &Disk{Path: p}
	switch {
	case st.Mode()&os.ModeDevice != 0:
		d.Block = true
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("target disk: %w", err)
		}
		defer f.Close()
		size, err := f.Seek(0, 2)
		if err != nil {
			return nil, fmt.Errorf("target disk %s: reading its size: %w", p, err)
		}
		d.Size = size
	case st.Mode().IsRegular():
		d.Size = st.Size()
	default:
		return nil, fmt.Errorf("target %s is neither a block device nor a disk-image file", p)
	}
	return d, nil
}

// Partition writes a new GPT with the layout, replacing whatever was there.
func (d *Disk) Partition(ctx context.Context, l Layout) error {
	sgdisk, err := lookTool("sgdisk", "gdisk")
	if err != nil {
		return err
	}
	args := []string{"--zap-all"}
	if _, err := runTool(ctx, sgdisk, append(args, d.Path)...); err != nil {
		return err
	}
	// Partition 6, EF_BIOS, fills the gap before the first 1 MiB-aligned
	// partition: BIOS firmware boots GRUB's core.img from it (bios.go).
	args = []string{"-o", "-a1", fmt.Sprintf("-n%d:%d:%d", BIOSBootNum, biosBootFirst, biosBootLast), fmt.Sprintf("-t%d:ef02", BIOSBootNum), fmt.Sprintf("-c%d:%s", BIOSBootNum, LabelBIOSBoot)}
	for _, p := range l {
		args = append(args,
			fmt.Sprintf("-n%d:%d:%d", p.Num, p.Start/sectorSize, (p.Start+p.Size)/sectorSize-1),
			fmt.Sprintf("-t%d:%s", p.Num, p.Type),
			fmt.Sprintf("-c%d:%s", p.Num, p.Label))
	}
	if _, err := runTool(ctx, sgdisk, append(args, d.Path)...); err != nil {
		return err
	}
	if d.Block {
		// Let the kernel (and udev, when there is one) see the new
		// partitions; minimal systems have blockdev but no partprobe.
		if pp, err := lookTool("partprobe", "parted"); err == nil {
			_, _ = runTool(ctx, pp, d.Path)
		} else if bd, err := lookTool("blockdev", "util-linux"); err == nil {
			_, _ = runTool(ctx, bd, "--rereadpt", d.Path)
		}
		if ua, err := exec.LookPath("udevadm"); err == nil {
			_, _ = runTool(ctx, ua, "settle")
		}
		for _, p := range l {
			dev, _ := d.Device(ctx, p)
			for i := 0; i < 50; i++ {
				if _, err := os.Stat(dev); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if _, err := os.Stat(dev); err != nil {
				return fmt.Errorf("partition %s of %s did not appear as %s after partitioning", p.Label, d.Path, dev)
			}
		}
	}
	return nil
}

// ReadLayout reads the partitions of an installed disk back from its GPT.
func (d *Disk) ReadLayout(ctx context.Context) (Layout, error) {
	sgdisk, err := lookTool("sgdisk", "gdisk")
	if err != nil {
		return nil, err
	}
	out, err := runTool(ctx, sgdisk, "-p", d.Path)
	if err != nil {
		return nil, err
	}
	var l Layout
	in := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "Number" {
			in = true
			continue
		}
		if !in || len(f) < 7 {
			continue
		}
		n, err1 := strconv.Atoi(f[0])
		s, err2 := strconv.ParseInt(f[1], 10, 64)
		e, err3 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		p := Part{Num: n, Label: f[len(f)-1], Type: f[5], Start: s * sectorSize, Size: (e - s + 1) * sectorSize, FS: "ext4"}
		switch p.Label {
		case LabelEFI:
			p.FS = "vfat"
		case LabelBIOSBoot:
			p.FS = ""
		}
		l = append(l, p)
	}
	for _, want := range []string{LabelEFI, LabelOEM, LabelRecovery, LabelState, LabelPersistent} {
		if l.Get(want).Num == 0 {
			return nil, fmt.Errorf("%s has no partition %s: it is not an edgefleet installation (run edgefleet-node install)", d.Path, want)
		}
	}
	return l, nil
}

// Device returns a block device for partition p: /dev/vda3 on a disk, a loop
// device on an image file (detached by Close).
func (d *Disk) Device(ctx context.Context, p Part) (string, error) {
	if d.Block {
		base := d.Path
		sep := ""
		if last := base[len(base)-1]; last >= '0' && last <= '9' {
			sep = "p" // nvme0n1p1, mmcblk0p1, loop0p1
		}
		return fmt.Sprintf("%s%s%d", base, sep, p.Num), nil
	}
	losetup, err := lookTool("losetup", "mount")
	if err != nil {
		return "", err
	}
	out, err := runTool(ctx, losetup, "--find", "--show", "--offset", strconv.FormatInt(p.Start, 10), "--sizelimit", strconv.FormatInt(p.Size, 10), d.Path)
	if err != nil {
		return "", err
	}
	dev := strings.TrimSpace(out)
	d.loops = append(d.loops, dev)
	return dev, nil
}

// Close detaches the loop devices Device attached.
func (d *Disk) Close() {
	losetup, err := lookTool("losetup", "mount")
	if err != nil {
		return
	}
	for _, l := range d.loops {
		_, _ = runTool(context.Background(), losetup, "-d", l)
	}
	d.loops = nil
}

// Format makes p's filesystem, labelled with its label.
func (d *Disk) Format(ctx context.Context, p Part) error {
	dev, err := d.Device(ctx, p)
	if err != nil {
		return err
	}
	switch p.FS {
	case "vfat":
		mk, err := lookTool("mkfs.vfat", "dosfstools")
		if err != nil {
			return err
		}
		_, err = runTool(ctx, mk, "-F", "32", "-n", p.Label, dev)
		return err
	default:
		mk, err := lookTool("mkfs.ext4", "e2fsprogs")
		if err != nil {
			return err
		}
		_, err = runTool(ctx, mk, "-q", "-F", "-L", p.Label, dev)
		return err
	}
}

// Mount mounts partition p (read-write) on a new directory under /run (or
// the system's temp dir) and returns it with the function that unmounts it.
func (d *Disk) Mount(ctx context.Context, p Part) (string, func() error, error) {
	dev, err := d.Device(ctx, p)
	if err != nil {
		return "", nil, err
	}
	if d.Block {
		if dir, done, ok := reuseMount(ctx, dev); ok {
			return dir, done, nil
		}
	}
	return mountDev(ctx, dev, p.FS)
}

// reuseMount: on the running system the state partition is mounted already
// (read-only, by the boot init); remount it read-write for the change and
// back afterwards instead of mounting it twice.
func reuseMount(ctx context.Context, dev string) (string, func() error, bool) {
	st, err := os.Stat(dev)
	if err != nil {
		return "", nil, false
	}
	rdev := st.Sys().(*syscall.Stat_t).Rdev
	num := fmt.Sprintf("%d:%d", unixMajor(rdev), unixMinor(rdev))
	ms, err := readMounts("")
	if err != nil {
		return "", nil, false
	}
	for _, m := range ms {
		if m.devNum != num {
			continue
		}
		mount, err := lookTool("mount", "mount")
		if err != nil {
			return "", nil, false
		}
		if m.readOnly {
			if _, err := runTool(ctx, mount, "-o", "remount,rw", m.point); err != nil {
				return "", nil, false
			}
		}
		return m.point, func() error {
			syscall.Sync()
			if m.readOnly {
				_, err := runTool(context.Background(), mount, "-o", "remount,ro", m.point)
				return err
			}
			return nil
		}, true
	}
	return "", nil, false
}

func mountDev(ctx context.Context, dev, fs string) (string, func() error, error) {
	mount, err := lookTool("mount", "mount")
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "edgefleet-mnt-")
	if err != nil {
		return "", nil, err
	}
	if _, err := runTool(ctx, mount, "-t", fs, dev, dir); err != nil {
		os.Remove(dir)
		return "", nil, err
	}
	return dir, func() error {
		syscall.Sync()
		umount, err := lookTool("umount", "mount")
		if err != nil {
			return err
		}
		if _, err := runTool(context.Background(), umount, dir); err != nil {
			return err
		}
		return os.Remove(dir)
	}, nil
}

// WriteEFIFile copies src to path on the EFI partition: mounted when the
// kernel has vfat, otherwise with mtools (containers and build hosts often
// lack the vfat module).
func (d *Disk) WriteEFIFile(ctx context.Context, p Part, src, path string) error {
	dev, err := d.Device(ctx, p)
	if err != nil {
		return err
	}
	dir, unmount, merr := mountDev(ctx, dev, "vfat")
	if merr == nil {
		err := copyFile(src, filepath.Join(dir, path), 0o644)
		if uerr := unmount(); err == nil {
			err = uerr
		}
		return err
	}
	mmd, err1 := lookTool("mmd", "mtools")
	mcopy, err2 := lookTool("mcopy", "mtools")
	if err1 != nil || err2 != nil {
		return fmt.Errorf("cannot mount the EFI partition (%v) and mtools is not installed", merr)
	}
	dirs := strings.Split(filepath.Dir(path), "/")
	for i := range dirs {
		_, _ = runTool(ctx, mmd, "-D", "s", "-i", dev, "::"+strings.Join(dirs[:i+1], "/"))
	}
	_, err = runTool(ctx, mcopy, "-o", "-i", dev, src, "::"+path)
	return err
}

// ReadEFIFile reads path from the EFI partition (mount or mtools).
func (d *Disk) ReadEFIFile(ctx context.Context, p Part, path string) ([]byte, error) {
	dev, err := d.Device(ctx, p)
	if err != nil {
		return nil, err
	}
	if dir, unmount, err := mountDev(ctx, dev, "vfat"); err == nil {
		defer unmount()
		return os.ReadFile(filepath.Join(dir, path))
	}
	mtype, err := lookTool("mtype", "mtools")
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, mtype, "-i", dev, "::"+path).Output()
}

// lookTool finds a tool on PATH or in the sbin directories, saying which
// Debian package has it when it is missing.
func lookTool(tool, pkg string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, tool)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (Debian package %s); the OS image must ship it (docs/os.md)", tool, pkg)
}

func runTool(ctx context.Context, tool string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", filepath.Base(tool), strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}
