package osimage

import (
	"bytes"
	"compress/gzip"
	"io/fs"
)

// Archive is a file tree written the way the builder writes its initrds:
// a gzip-compressed cpio "newc" archive, entries sorted, owned 0:0, with
// fixed times. Test rigs build their small initramfs images with it, so
// there is one cpio writer in the tree.
type Archive struct{ t *tree }

// NewArchive returns an empty archive.
func NewArchive() *Archive { return &Archive{t: newTree()} }

// Dir adds a directory (and its parents) with mode 0755.
func (a *Archive) Dir(p string) { a.t.mkdirAll(p, 0o755) }

// File adds a regular file holding data.
func (a *Archive) File(p string, perm fs.FileMode, data []byte) { a.t.addData(p, perm, data) }

// Symlink adds a symbolic link to target.
func (a *Archive) Symlink(p, target string) { a.t.addSymlink(p, target) }

// CharDev adds a character device node (e.g. dev/console, 5:1), which the
// kernel needs before init mounts anything.
func (a *Archive) CharDev(p string, perm fs.FileMode, major, minor uint32) {
	a.t.addCharDev(p, perm, major, minor)
}

// Initramfs returns the archive as a gzip'd cpio the kernel unpacks.
func (a *Archive) Initramfs() ([]byte, error) {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if err := a.t.writeCpio(zw, epoch); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
