package planner

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// MaxImageBytes bounds what an image instruction may extract.
const MaxImageBytes = 4 << 30

// RegistryImages pulls instruction images from their registries
// (go-containerregistry; credentials from the usual docker config) and
// extracts their flattened filesystem to Dir/<digest>, once per digest, as
// rancher-system-agent does with its installer images. Extraction goes
// through an os.Root: an image's paths and links cannot place files outside
// its directory.
type RegistryImages struct {
	Dir string
}

// Extract returns the directory holding ref's filesystem.
func (s *RegistryImages) Extract(ctx context.Context, ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("not an image reference: %w", err)
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return "", err
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(s.Dir, digest.Algorithm+"-"+digest.Hex)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(s.Dir, ".extract-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	rc := mutate.Extract(img)
	defer rc.Close()
	if err := untar(tmp, rc); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, fs.ErrExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return "", err
		}
	}
	return dir, nil
}

// untar writes a flattened image filesystem below dir.
func untar(dir string, r io.Reader) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the image: %w", err)
		}
		p := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if p == "" {
			continue
		}
		if parent := path.Dir(p); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return fmt.Errorf("image path %s: %w", h.Name, err)
			}
		}
		mode := fs.FileMode(h.Mode) & fs.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("image path %s: %w", h.Name, err)
			}
			_ = root.Chmod(p, mode)
		case tar.TypeReg:
			total += h.Size
			if total > MaxImageBytes {
				return fmt.Errorf("the image holds more than %d bytes", int64(MaxImageBytes))
			}
			_ = root.Remove(p)
			f, err := root.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return fmt.Errorf("image path %s: %w", h.Name, err)
			}
			_, err = io.Copy(f, io.LimitReader(tr, h.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("image path %s: %w", h.Name, err)
			}
			_ = root.Chmod(p, mode)
		case tar.TypeSymlink:
			_ = root.Remove(p)
			if err := root.Symlink(h.Linkname, p); err != nil {
				return fmt.Errorf("image link %s: %w", h.Name, err)
			}
		case tar.TypeLink:
			_ = root.Remove(p)
			if err := root.Link(strings.TrimPrefix(path.Clean("/"+h.Linkname), "/"), p); err != nil {
				return fmt.Errorf("image link %s: %w", h.Name, err)
			}
		default:
			// Devices and fifos have no place in an installer image.
		}
	}
}
