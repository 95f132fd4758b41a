package planner

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// writeFiles puts the plan's files and directories below root, in order.
// Every write goes through an os.Root, so nothing lands outside root
// whatever the paths or the links on disk say; on top of that a path whose
// parent components include a symlink is refused outright, since the plan
// comes over the network and the agent runs as root: a symlink planted by
// anything on the machine must not redirect a write. A symlink at the final
// path is replaced, never followed (rename).
func writeFiles(root string, files []nodeplan.File) error {
	if len(files) == 0 {
		return nil
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("opening the plan root %s: %w", root, err)
	}
	defer r.Close()
	for i, f := range files {
		if err := writeOne(r, f); err != nil {
			return fmt.Errorf("files[%d] %s: %w", i, f.Path, err)
		}
	}
	return nil
}

func writeOne(r *os.Root, f nodeplan.File) error {
	if err := nodeplan.CheckPath(f.Path); err != nil {
		return err
	}
	mode, err := f.Mode()
	if err != nil {
		return err
	}
	rel := strings.TrimPrefix(f.Path, "/")
	if err := ensureParents(r, path.Dir(rel)); err != nil {
		return err
	}
	if f.Directory {
		return ensureDir(r, rel, fs.FileMode(mode), f.UID, f.GID)
	}
	if fi, err := r.Lstat(rel); err == nil && fi.IsDir() {
		return errors.New("a directory exists at this path; the plan asks for a file")
	}
	tmp := path.Join(path.Dir(rel), "."+path.Base(rel)+".edgefleet-"+randomSuffix())
	out, err := r.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, werr := out.Write(f.Data())
	if werr == nil {
		werr = out.Sync()
	}
	if cerr := out.Close(); werr == nil {
		werr = cerr
	}
	// Mode and owner are set on the temporary file, so the file never
	// exists at its path with the wrong ones.
	// chown clears setuid/setgid bits: it comes first.
	if werr == nil {
		werr = r.Lchown(tmp, f.UID, f.GID)
	}
	if werr == nil {
		werr = r.Chmod(tmp, modeBits(mode))
	}
	if werr == nil {
		werr = r.Rename(tmp, rel)
	}
	if werr != nil {
		_ = r.Remove(tmp)
	}
	return werr
}

// ensureParents creates the missing directories of dir (0755, root-owned
// as the agent) and refuses symlinks and non-directories among them.
func ensureParents(r *os.Root, dir string) error {
	if dir == "." || dir == "" {
		return nil
	}
	cur := ""
	for part := range strings.SplitSeq(dir, "/") {
		cur = path.Join(cur, part)
		fi, err := r.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := r.Mkdir(cur, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("/%s is a symlink: the node agent writes no file through a symlink (replace the link with the directory, or write the file at the link's target)", cur)
		case !fi.IsDir():
			return fmt.Errorf("/%s is not a directory", cur)
		}
	}
	return nil
}

func ensureDir(r *os.Root, rel string, mode fs.FileMode, uid, gid int) error {
	fi, err := r.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := r.Mkdir(rel, 0o700); err != nil {
			return err
		}
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return errors.New("a symlink exists at this path; the plan asks for a directory and the node agent does not follow links")
	case !fi.IsDir():
		return errors.New("a file exists at this path; the plan asks for a directory")
	}
	if err := r.Lchown(rel, uid, gid); err != nil {
		return err
	}
	return r.Chmod(rel, modeBits(uint32(mode)))
}

// modeBits maps the octal mode, setuid/setgid/sticky included, to Go's.
func modeBits(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
