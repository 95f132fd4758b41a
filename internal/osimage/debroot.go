package osimage

import (
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/edgefleet/edgefleet/internal/debpkg"
)

// usrMerged maps a path from a Debian package to where it lives in the
// image: like Debian since bookworm, /bin, /sbin, /lib and /lib64 are
// symlinks into /usr, so /sbin/mkfs.ext4 is stored as usr/sbin/mkfs.ext4.
func usrMerged(p string) string {
	p = clean(p)
	for _, top := range []string{"bin", "sbin", "lib", "lib64"} {
		if p == top || strings.HasPrefix(p, top+"/") {
			return "usr/" + p
		}
	}
	return p
}

// debFiles indexes the files of unpacked Debian packages by their
// usr-merged path, to copy chosen files (and what they need) into a tree.
type debFiles struct {
	files map[string]string // usr-merged path -> host path
}

func indexDebs(dirs []string) (*debFiles, error) {
	d := &debFiles{files: map[string]string{}}
	for _, root := range dirs {
		err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if de.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			if rel == debpkg.CompleteMarker {
				return nil
			}
			key := usrMerged(filepath.ToSlash(rel))
			if _, dup := d.files[key]; !dup {
				d.files[key] = p
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// install copies p (any spelling, /sbin/x or /usr/sbin/x) into t, following
// symlinks (each link and its target are copied) and, for ELF programs and
// libraries, every shared library they need and the dynamic loader.
func (d *debFiles) install(t *tree, p string) error {
	return d.installDepth(t, p, 0)
}

func (d *debFiles) installDepth(t *tree, p string, depth int) error {
	if depth > 40 {
		return fmt.Errorf("%s: too many levels of symbolic links", p)
	}
	key := usrMerged(p)
	if t.has(key) {
		return nil
	}
	host, ok := d.files[key]
	if !ok {
		return fmt.Errorf("/%s is in none of the fetched Debian packages", key)
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(host)
		if err != nil {
			return err
		}
		t.addSymlink(key, target)
		if !path.IsAbs(target) {
			// Relative links resolve from the link's folder as Debian shipped it.
			target = path.Join(path.Dir("/"+clean(p)), target)
		}
		return d.installDepth(t, target, depth+1)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("/%s: unsupported file type %v", key, fi.Mode().Type())
	}
	t.addFile(key, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid), host)
	return d.installLibs(t, key, host)
}

// libDirs are where Debian's dynamic loader looks for libraries (amd64).
var libDirs = []string{"usr/lib/x86_64-linux-gnu", "usr/lib", "usr/lib64"}

func (d *debFiles) installLibs(t *tree, key, host string) error {
	f, err := elf.Open(host)
	if err != nil {
		return nil // not an ELF file: nothing to resolve
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return fmt.Errorf("/%s: reading its interpreter: %w", key, err)
		}
		interp := strings.TrimRight(string(b), "\x00")
		if err := d.installDepth(t, interp, 0); err != nil {
			return fmt.Errorf("the loader of /%s: %w", key, err)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil // static binaries and non-dynamic objects
	}
	for _, lib := range libs {
		found := false
		for _, dir := range libDirs {
			if _, ok := d.files[dir+"/"+lib]; ok {
				if err := d.installDepth(t, dir+"/"+lib, 0); err != nil {
					return err
				}
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("/%s needs %s, which is in none of the fetched Debian packages: add its package to the variant's library list", key, lib)
		}
	}
	return nil
}

// installELFLibs resolves the libraries of a host file put into the tree by
// other means (the edgefleet-node binary): a dynamically linked one gets its
// libraries from the packages, a static one needs nothing.
func (d *debFiles) installELFLibs(t *tree, key, host string) error {
	return d.installLibs(t, clean(key), host)
}
