package gitops

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// Limits on what one commit may write to the manager's disk. A git
// committer chooses every blob, so a checkout is bounded before anything is
// written; the bundle reader then bounds what it loads (bundlereader.Limits).
var (
	maxCheckoutBytes int64 = 1 << 30
	maxCheckoutFiles int64 = 100_000
)

// maxLinkTarget is PATH_MAX: no working link target is longer.
const maxLinkTarget = 4096

// writeCommit writes the files of commit to dir. Every write goes through
// an os.Root, so no entry of a (possibly forged) tree, nor a symbolic link
// written before it, can make the manager write outside dir. Symbolic links
// are written as they are: deciding where a link leads from its text is
// unsound (l0 -> ., l1 -> l0/.. climbs out), so the bundle reader, which
// opens every file beneath the checkout through an os.Root, refuses links
// that leave it and names them in the GitRepo's status. Submodules are not
// fetched.
func writeCommit(repo *git.Repository, hash plumbing.Hash, dir string) error {
	commit, err := repo.CommitObject(hash)
	if err != nil {
		return fmt.Errorf("reading commit %s: %w", hash, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return fmt.Errorf("reading the tree of %s: %w", hash, err)
	}
	if err := checkCheckoutSize(tree, hash); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("opening checkout directory: %w", err)
	}
	defer func() { _ = root.Close() }()
	escape := escapeSentinel(root)
	return tree.Files().ForEach(func(file *object.File) error {
		if !filepath.IsLocal(file.Name) {
			return nil
		}
		err := writeEntry(root, file)
		switch {
		case err == nil:
			return nil
		case escape != nil && errors.Is(err, escape), errors.Is(err, syscall.ELOOP):
			// git never writes through a link; a tree that does is forged.
			return &Error{Reason: fleetv1.UnsafeCommitReason, Err: fmt.Errorf("commit %s writes %s through a symbolic link out of the checkout: refused (the tree is forged)", hash, file.Name)}
		case errors.Is(err, fs.ErrExist):
			return &Error{Reason: fleetv1.UnsafeCommitReason, Err: fmt.Errorf("commit %s names %s twice: refused (the tree is forged)", hash, file.Name)}
		}
		return err
	})
}

// escapeSentinel is os.Root's unexported "path escapes from parent"
// error, learnt from a root so the check does not depend on its wording.
func escapeSentinel(root *os.Root) error {
	_, err := root.Lstat("..")
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return nil
}

// checkCheckoutSize refuses a commit whose files exceed the limits, before
// any of it is written.
func checkCheckoutSize(tree *object.Tree, hash plumbing.Hash) error {
	var files, bytes int64
	err := tree.Files().ForEach(func(file *object.File) error {
		files++
		bytes += file.Size
		if files > maxCheckoutFiles {
			return &Error{Reason: fleetv1.CheckoutTooLargeReason, Err: fmt.Errorf("commit %s has more than %d files, the limit of one checkout: keep the repository smaller or split it", hash, maxCheckoutFiles)}
		}
		if bytes > maxCheckoutBytes {
			return &Error{Reason: fleetv1.CheckoutTooLargeReason, Err: fmt.Errorf("commit %s has more than %d MiB of files (at %s), the limit of one checkout: keep large files out of the repository or split it", hash, maxCheckoutBytes>>20, file.Name)}
		}
		return nil
	})
	return err
}

func writeEntry(root *os.Root, file *object.File) error {
	name := filepath.FromSlash(file.Name)
	if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", file.Name, unwrapPath(err))
	}
	if file.Mode == filemode.Symlink {
		if file.Size > maxLinkTarget {
			return fmt.Errorf("writing %s: symbolic link target longer than %d bytes", file.Name, maxLinkTarget)
		}
		target, err := file.Contents()
		if err != nil {
			return fmt.Errorf("reading %s: %w", file.Name, err)
		}
		if err := root.Symlink(target, name); err != nil {
			return fmt.Errorf("writing %s: %w", file.Name, unwrapPath(err))
		}
		return nil
	}
	perm := os.FileMode(0o644)
	if file.Mode == filemode.Executable {
		perm = 0o755
	}
	r, err := file.Reader()
	if err != nil {
		return fmt.Errorf("reading %s: %w", file.Name, err)
	}
	defer func() { _ = r.Close() }()
	// O_EXCL: a forged tree that names a path twice cannot write through
	// the link or file written first.
	out, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return fmt.Errorf("writing %s: %w", file.Name, unwrapPath(err))
	}
	if _, err := io.Copy(out, io.LimitReader(r, file.Size)); err != nil {
		_ = out.Close()
		return fmt.Errorf("writing %s: %w", file.Name, err)
	}
	return out.Close()
}

// unwrapPath drops the *fs.PathError wrapper, whose text repeats the name.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
