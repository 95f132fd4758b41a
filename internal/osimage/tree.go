package osimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// tree is a filesystem assembled in memory (file contents stay on disk until
// written), so the same tree can be written as a tar layer or a cpio
// initramfs, always in sorted order with fixed owners and times: the same
// inputs give the same bytes.
type tree struct {
	entries map[string]*entry
}

type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindSymlink
	kindCharDev
)

type entry struct {
	kind         entryKind
	perm         fs.FileMode
	data         []byte // kindFile: contents when src is empty
	src          string // kindFile: read from this host file
	link         string // kindSymlink: target
	major, minor uint32 // kindCharDev
}

func newTree() *tree { return &tree{entries: map[string]*entry{}} }

// clean turns p into the tree's key: relative, slash-separated, no dots.
func clean(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

func (t *tree) has(p string) bool { _, ok := t.entries[clean(p)]; return ok }

// mkdirAll adds p and its parents as directories (0755 unless already present).
func (t *tree) mkdirAll(p string, perm fs.FileMode) {
	p = clean(p)
	if p == "" {
		return
	}
	t.mkdirAll(path.Dir(p), 0o755)
	if e, ok := t.entries[p]; ok && e.kind == kindDir {
		return
	}
	t.entries[p] = &entry{kind: kindDir, perm: perm}
}

func (t *tree) add(p string, e *entry) {
	p = clean(p)
	t.mkdirAll(path.Dir(p), 0o755)
	t.entries[p] = e
}

func (t *tree) addData(p string, perm fs.FileMode, data []byte) {
	t.add(p, &entry{kind: kindFile, perm: perm, data: data})
}

func (t *tree) addFile(p string, perm fs.FileMode, src string) {
	t.add(p, &entry{kind: kindFile, perm: perm, src: src})
}

func (t *tree) addSymlink(p, target string) {
	t.add(p, &entry{kind: kindSymlink, perm: 0o777, link: target})
}

func (t *tree) addCharDev(p string, perm fs.FileMode, major, minor uint32) {
	t.add(p, &entry{kind: kindCharDev, perm: perm, major: major, minor: minor})
}

func (t *tree) sortedPaths() []string {
	ps := make([]string, 0, len(t.entries))
	for p := range t.entries {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

func (e *entry) open() (io.ReadCloser, int64, error) {
	if e.src == "" {
		return io.NopCloser(bytes.NewReader(e.data)), int64(len(e.data)), nil
	}
	f, err := os.Open(e.src)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// writeTar writes the tree as a tar stream (an OCI layer) with mtime.
func (t *tree) writeTar(w io.Writer, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, p := range t.sortedPaths() {
		e := t.entries[p]
		h := &tar.Header{Name: p, Mode: tarMode(e.perm), ModTime: mtime, Format: tar.FormatPAX}
		switch e.kind {
		case kindDir:
			h.Typeflag, h.Name = tar.TypeDir, p+"/"
		case kindSymlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		case kindCharDev:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, int64(e.major), int64(e.minor)
		case kindFile:
			h.Typeflag = tar.TypeReg
		}
		if e.kind != kindFile {
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		rc, size, err := e.open()
		if err != nil {
			return err
		}
		h.Size = size
		if err := tw.WriteHeader(h); err != nil {
			rc.Close()
			return err
		}
		n, err := io.Copy(tw, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if n != size {
			return fmt.Errorf("%s changed size while being written", p)
		}
	}
	return tw.Close()
}

func tarMode(m fs.FileMode) int64 {
	v := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// writeCpio writes the tree as a cpio "newc" archive, the format the Linux
// kernel unpacks as an initramfs.
func (t *tree) writeCpio(w io.Writer, mtime time.Time) error {
	cw := &cpioWriter{w: w}
	for i, p := range t.sortedPaths() {
		e := t.entries[p]
		mode := uint32(tarMode(e.perm))
		var data io.ReadCloser
		var size int64
		switch e.kind {
		case kindDir:
			mode |= 0o040000
		case kindSymlink:
			mode |= 0o120000
			data, size = io.NopCloser(strings.NewReader(e.link)), int64(len(e.link))
		case kindCharDev:
			mode |= 0o020000
		case kindFile:
			mode |= 0o100000
			var err error
			if data, size, err = e.open(); err != nil {
				return err
			}
		}
		nlink := uint32(1)
		if e.kind == kindDir {
			nlink = 2
		}
		err := cw.entry(p, cpioHeader{ino: uint32(i + 1), mode: mode, nlink: nlink, mtime: uint32(mtime.Unix()), size: uint32(size), rmajor: e.major, rminor: e.minor}, data)
		if data != nil {
			data.Close()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return cw.entry("TRAILER!!!", cpioHeader{nlink: 1}, nil)
}

type cpioHeader struct {
	ino, mode, nlink, mtime, size, rmajor, rminor uint32
}

type cpioWriter struct {
	w   io.Writer
	off int64
}

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.off += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.off % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

func (c *cpioWriter) entry(name string, h cpioHeader, data io.Reader) error {
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		h.ino, h.mode, 0, 0, h.nlink, h.mtime, h.size, 0, 0, h.rmajor, h.rminor, len(name)+1, 0)
	if err := c.write([]byte(hdr)); err != nil {
		return err
	}
	if err := c.write(append([]byte(name), 0)); err != nil {
		return err
	}
	if err := c.pad(); err != nil {
		return err
	}
	if data != nil {
		n, err := io.Copy(writerFunc(c.write), data)
		if err != nil {
			return err
		}
		if n != int64(h.size) {
			return fmt.Errorf("wrote %d bytes, header says %d", n, h.size)
		}
	}
	return c.pad()
}

type writerFunc func([]byte) error

func (f writerFunc) Write(b []byte) (int, error) {
	if err := f(b); err != nil {
		return 0, err
	}
	return len(b), nil
}
