package bundlereader

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// Default limits on what one Read takes in. A git committer controls every
// byte of a repository, so the manager bounds what it loads into memory and
// stores; the defaults are far above what a Fleet repository needs (the
// largest bundles in our tests are ~20 MiB of manifests).
const (
	DefaultMaxFileBytes      = 32 << 20
	DefaultMaxFleetYAMLBytes = 1 << 20
	DefaultMaxTotalBytes     = 256 << 20
)

// Limits bound what one Read takes in. Zero fields mean the defaults.
type Limits struct {
	// MaxFileBytes bounds one file of a bundle, a values file or a chart file.
	MaxFileBytes int64
	// MaxFleetYAMLBytes bounds one fleet.yaml (and .fleetignore).
	MaxFleetYAMLBytes int64
	// MaxTotalBytes bounds everything one Read takes in: files, fleet.yaml
	// files, values files and downloaded charts, over all paths.
	MaxTotalBytes int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = DefaultMaxFileBytes
	}
	if l.MaxFleetYAMLBytes <= 0 {
		l.MaxFleetYAMLBytes = DefaultMaxFleetYAMLBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = DefaultMaxTotalBytes
	}
	return l
}

// budget is the byte budget shared by every tree of one Read.
type budget struct {
	limits Limits
	used   int64
}

func (b *budget) charge(shown string, n int64) error {
	b.used += n
	if b.used > b.limits.MaxTotalBytes {
		return fmt.Errorf("reading %s: the bundles read so far exceed the limit of %s in total; exclude large files with .fleetignore or split the repository", shown, sizeString(b.limits.MaxTotalBytes))
	}
	return nil
}

// tree reads files beneath one root directory only. Every open goes
// through an *os.Root, so the kernel-level resolution refuses any path,
// symbolic link or chain of links (l0 -> ., l1 -> l0/..) that leaves the
// root, and absolute links, whatever the text of the link looks like.
// Links that stay inside keep working.
type tree struct {
	root *os.Root
	// abs is the root directory's absolute path, used only for names.
	abs string
	// name describes the root in messages ("the repository", "./deploy").
	name   string
	budget *budget
}

// escapeSentinel is os.Root's (unexported) "path escapes from parent"
// error, learnt from the root itself so the check does not depend on its
// wording.
var (
	escapeOnce     sync.Once
	escapeSentinel error
)

func openTree(abs, name string, b *budget) (*tree, error) {
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, unwrapPath(err))
	}
	escapeOnce.Do(func() {
		_, err := root.Lstat("..")
		var pe *fs.PathError
		if errors.As(err, &pe) {
			escapeSentinel = pe.Err
		}
	})
	return &tree{root: root, abs: abs, name: name, budget: b}, nil
}

func (t *tree) close() { _ = t.root.Close() }

// escapeError is a path that leaves the root.
type escapeError struct{ shown, root string }

func (e *escapeError) Error() string {
	return fmt.Sprintf("%s: a symbolic link on this path is absolute or leads outside %s; links must be relative and stay inside it", e.shown, e.root)
}

// isEscape tells whether err is a path leaving the root.
func isEscape(err error) bool {
	var e *escapeError
	return errors.As(err, &e)
}

// fail turns an error of the root into one naming the path as shown to the
// user; a path leaving the root becomes an escapeError.
func (t *tree) fail(shown string, err error) error {
	if err == nil {
		return nil
	}
	inner := unwrapPath(err)
	if escapeSentinel != nil && errors.Is(inner, escapeSentinel) {
		return &escapeError{shown: shown, root: t.name}
	}
	if errors.Is(inner, syscall.ELOOP) {
		return fmt.Errorf("reading %s: %w: a loop, or more links on one path than the reader follows (8)", shown, inner)
	}
	return fmt.Errorf("reading %s: %w", shown, inner)
}

// unwrapPath drops the *fs.PathError wrapper, whose text repeats the
// internal name and operation ("statat a/b: ...").
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// stat follows links (inside the root only).
func (t *tree) stat(name, shown string) (fs.FileInfo, error) {
	info, err := t.root.Stat(rootName(name))
	return info, t.fail(shown, err)
}

// readDir lists a directory, sorted by name.
func (t *tree) readDir(name, shown string) ([]fs.DirEntry, error) {
	f, err := t.root.Open(rootName(name))
	if err != nil {
		return nil, t.fail(shown, err)
	}
	defer func() { _ = f.Close() }()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, t.fail(shown, err)
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
}

// readFile reads a regular file of at most limit bytes, charged to the
// Read's budget. what names the limit in the message ("one file").
func (t *tree) readFile(name, shown string, limit int64, what string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer; the file is
	// checked to be regular on the open handle, so nothing can swap it.
	f, err := t.root.OpenFile(rootName(name), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, t.fail(shown, err)
	}
	defer func() { _ = f.Close() }()
	info, err := f.Stat()
	if err != nil {
		return nil, t.fail(shown, err)
	}
	if !info.Mode().IsRegular() {
		// FIFOs and devices would block or never end.
		return nil, fmt.Errorf("reading %s: not a regular file", shown)
	}
	tooBig := func() error {
		return fmt.Errorf("reading %s: larger than the limit of %s for %s; exclude it with .fleetignore or keep it out of the bundle", shown, sizeString(limit), what)
	}
	if info.Size() > limit {
		return nil, tooBig()
	}
	// The file may grow while it is read: the bound is the read itself.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, t.fail(shown, err)
	}
	if int64(len(data)) > limit {
		return nil, tooBig()
	}
	if err := t.budget.charge(shown, int64(len(data))); err != nil {
		return nil, err
	}
	return data, nil
}

// rootName is a root-relative name as os.Root wants it ("" is the root).
func rootName(name string) string {
	if name == "" {
		return "."
	}
	return name
}

// relInRoot is p (absolute) relative to the root directory abs, or an
// error when p is not below it.
func relInRoot(abs, p, shown, rootShown string) (string, error) {
	rel, err := filepath.Rel(abs, p)
	if err != nil || !filepath.IsLocal(rel) && rel != "." {
		return "", fmt.Errorf("%s is outside %s", shown, rootShown)
	}
	if rel == "." {
		return "", nil
	}
	return rel, nil
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

// IsDirBeneath tells whether p, below root, is a directory, following
// symbolic links beneath root only (a GitRepo path glob's matches). A path
// whose links leave root is an error, so the caller can pass it to Read,
// which names it, instead of telling a repository what exists on the host.
func IsDirBeneath(root, p string) (bool, error) {
	rootAbs, err := filepath.Abs(root)
	if err != nil {
		return false, err
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return false, err
	}
	rel, err := relInRoot(rootAbs, abs, p, root)
	if err != nil {
		return false, err
	}
	t, err := openTree(rootAbs, "the repository", &budget{})
	if err != nil {
		return false, err
	}
	defer t.close()
	info, err := t.stat(rel, p)
	if err != nil {
		if isEscape(err) {
			return false, err
		}
		return false, nil
	}
	return info.IsDir(), nil
}
