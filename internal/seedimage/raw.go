package seedimage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf16"
)

// Raw disk images: a GPT disk whose config partition (GPT name
// RawPartitionName, ext4 labelled VolumeID) holds the same files as
// config-only ISO media. Built with sgdisk (Debian gdisk) and mkfs.ext4 -d
// (e2fsprogs) on plain files: nothing is mounted.
const (
	// RawPartitionName is the GPT partition name of the config partition;
	// a base image that has one gets it replaced, others get one appended.
	RawPartitionName = "edgefleet-seed"
	sectorSize       = 512
	// alignSectors aligns partitions to 1 MiB, as partitioning tools do.
	alignSectors = 2048
	// gptTailSectors is the room the backup GPT needs at the end of a disk.
	gptTailSectors = 34
	minRawFSBytes  = 4 << 20
	linuxFSType    = "8300"
)

// buildRaw writes a raw disk image to out: base (a raw GPT disk image, or ""
// for a disk holding only the config partition) with the files of stage in
// its config partition.
func buildRaw(ctx context.Context, stage string, base *os.File, out, work string) error {
	sgdisk, err := lookSbin("sgdisk", "gdisk")
	if err != nil {
		return err
	}
	mkfs, err := lookSbin("mkfs.ext4", "e2fsprogs")
	if err != nil {
		return err
	}
	need, err := fsSizeFor(stage)
	if err != nil {
		return err
	}
	var start, sectors int64
	if base == nil {
		start, sectors = alignSectors, need/sectorSize
		if err := truncate(out, (start+sectors+alignSectors)*sectorSize); err != nil {
			return err
		}
		if err := run(ctx, sgdisk, "-o", "-n", partArg(1, start, sectors), "-c", "1:"+RawPartitionName, "-t", "1:"+linuxFSType, out); err != nil {
			return err
		}
	} else {
		if start, sectors, err = placeConfigPartition(ctx, sgdisk, base, out, need); err != nil {
			return err
		}
	}
	fs := filepath.Join(work, "seed.ext4")
	if err := truncate(fs, sectors*sectorSize); err != nil {
		return err
	}
	// root_owner: the files belong to root on the machine, whoever built them.
	if err := run(ctx, mkfs, "-q", "-F", "-L", VolumeID, "-d", stage, "-E", "root_owner=0:0", fs); err != nil {
		return fmt.Errorf("the config partition (%d bytes) cannot hold the seed files: %w", sectors*sectorSize, err)
	}
	return copyAt(out, fs, start*sectorSize)
}

// placeConfigPartition copies base to out and returns the config
// partition's extent: the base's own RawPartitionName partition if it has
// one (its content is replaced), else a new partition after the last one,
// growing the disk.
func placeConfigPartition(ctx context.Context, sgdisk string, base *os.File, out string, need int64) (start, sectors int64, err error) {
	if err := copySparse(ctx, base, out); err != nil {
		return 0, 0, fmt.Errorf("copying it: %w", err)
	}
	parts, err := readGPT(out)
	if err != nil {
		return 0, 0, err
	}
	var last int64
	free := 0
	for _, p := range parts {
		if p.Name == RawPartitionName {
			return p.First, p.Last - p.First + 1, nil
		}
		if p.Used() {
			last = max(last, p.Last)
		} else if free == 0 {
			free = p.Index
		}
	}
	if free == 0 {
		return 0, 0, fmt.Errorf("its partition table is full (%d entries): no room for the %s partition", len(parts), RawPartitionName)
	}
	start = (last/alignSectors + 1) * alignSectors
	sectors = need / sectorSize
	st, err := os.Stat(out)
	if err != nil {
		return 0, 0, err
	}
	// Clear the old backup GPT (the last 33 sectors) so no stale table is
	// left in the middle of the grown disk.
	if err := zeroRange(out, st.Size()-(gptTailSectors-1)*sectorSize, (gptTailSectors-1)*sectorSize); err != nil {
		return 0, 0, err
	}
	if size := (start + sectors + alignSectors) * sectorSize; size > st.Size() {
		if err := os.Truncate(out, size); err != nil {
			return 0, 0, err
		}
	}
	n := strconv.Itoa(free)
	if err := run(ctx, sgdisk, "-e", "-n", partArg(free, start, sectors), "-c", n+":"+RawPartitionName, "-t", n+":"+linuxFSType, out); err != nil {
		return 0, 0, err
	}
	return start, sectors, nil
}

// lookSbin finds an administration tool: they live in /usr/sbin, which is
// not on the PATH of a non-root user on Debian.
func lookSbin(tool, pkg string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, tool)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed on the manager's host: install the Debian package %s", tool, pkg)
}

func partArg(n int, start, sectors int64) string {
	return fmt.Sprintf("%d:%d:%d", n, start, start+sectors-1)
}

// fsSizeFor is an ext4 size, in whole MiB, with room for the files twice
// over plus the filesystem's own metadata.
func fsSizeFor(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size() + 4096
		return nil
	})
	if err != nil {
		return 0, err
	}
	size := max(minRawFSBytes, 2*total+(2<<20))
	return (size + (1 << 20) - 1) &^ ((1 << 20) - 1), nil
}

// partition is one entry of a GPT partition table.
type partition struct {
	// Index is the 1-based partition number.
	Index       int
	TypeGUID    [16]byte
	First, Last int64
	Name        string
}

// Used reports whether the entry holds a partition.
func (p partition) Used() bool { return p.TypeGUID != [16]byte{} }

// readGPT reads the primary GPT of a disk image with 512-byte sectors.
func readGPT(disk string) ([]partition, error) {
	f, err := os.Open(disk)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hdr := make([]byte, 92)
	if _, err := f.ReadAt(hdr, sectorSize); err != nil {
		return nil, fmt.Errorf("reading its GPT header: %w", err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, errors.New("it has no GPT partition table (none at LBA 1 with 512-byte sectors): a raw base image must be a GPT disk image")
	}
	le := binary.LittleEndian
	entriesLBA, count, size := int64(le.Uint64(hdr[72:])), int(le.Uint32(hdr[80:])), int(le.Uint32(hdr[84:]))
	if count <= 0 || count > 1024 || size < 128 || size > 1024 {
		return nil, fmt.Errorf("its GPT header is invalid (%d entries of %d bytes)", count, size)
	}
	buf := make([]byte, count*size)
	if _, err := f.ReadAt(buf, entriesLBA*sectorSize); err != nil {
		return nil, fmt.Errorf("reading its GPT entries: %w", err)
	}
	parts := make([]partition, count)
	for i := range parts {
		e := buf[i*size : (i+1)*size]
		p := partition{Index: i + 1, First: int64(le.Uint64(e[32:])), Last: int64(le.Uint64(e[40:]))}
		copy(p.TypeGUID[:], e[:16])
		u := make([]uint16, 36)
		for j := range u {
			u[j] = le.Uint16(e[56+2*j:])
		}
		p.Name = strings.TrimRight(string(utf16.Decode(u)), "\x00")
		parts[i] = p
	}
	return parts, nil
}

func run(ctx context.Context, tool string, args ...string) error {
	return runWith(ctx, nil, tool, args...)
}

// runWith runs tool with files as its fds 3, 4, ...
func runWith(ctx context.Context, files []*os.File, tool string, args ...string) error {
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.ExtraFiles = files
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", filepath.Base(tool), strings.Join(args, " "), err, lastLines(string(out), 5))
	}
	return nil
}

func truncate(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// copyAt writes the content of src into dst at offset.
func copyAt(dst, src string, offset int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.NewOffsetWriter(out, offset), in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func zeroRange(path string, offset, n int64) error {
	if offset < 0 {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(make([]byte, n), offset); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// copySparse copies in to dst leaving all-zero MiB blocks as holes: OS
// disk images are mostly empty.
func copySparse(ctx context.Context, in *os.File, dst string) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	var size int64
	for {
		if err := ctx.Err(); err != nil {
			out.Close()
			return err
		}
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			if bytes.Equal(buf[:n], zero[:n]) {
				_, werr := out.Seek(int64(n), io.SeekCurrent)
				err = errors.Join(err, werr)
			} else if _, werr := out.Write(buf[:n]); werr != nil {
				out.Close()
				return werr
			}
			size += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			out.Close()
			return err
		}
	}
	if err := out.Truncate(size); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
