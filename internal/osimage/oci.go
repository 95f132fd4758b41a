package osimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// writeImage writes t as a one-layer linux/amd64 OCI image into an image
// layout at dir and returns the manifest digest.
func writeImage(t *tree, dir string, o Options) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tarPath := filepath.Join(filepath.Dir(dir), "rootfs.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		return "", err
	}
	if err := t.writeTar(f, epoch); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	defer os.Remove(tarPath)
	layer, err := tarball.LayerFromFile(tarPath, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return "", err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "edgefleet os-image build (variant " + o.Variant + ")"},
	})
	if err != nil {
		return "", err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = "linux", "amd64", v1.Time{Time: epoch}
	cfg.Config.Cmd = []string{"/sbin/init"}
	cfg.Config.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Labels = map[string]string{
		LabelName:                          o.Name,
		LabelVersion:                       o.Version,
		"org.opencontainers.image.title":   o.Name,
		"org.opencontainers.image.version": o.Version,
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return "", err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return "", err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": o.Version})); err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// loadResult reads a finished build folder.
func loadResult(dir string) (*Result, error) {
	b, err := os.ReadFile(filepath.Join(dir, "digest"))
	if err != nil {
		return nil, err
	}
	r := &Result{
		Dir: dir, Layout: filepath.Join(dir, "oci"), Digest: strings.TrimSpace(string(b)),
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"), BootEFI: filepath.Join(dir, "bootx64.efi"),
	}
	for _, p := range []string{r.Layout, r.Kernel, r.Initrd, r.BootEFI} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("incomplete build %s: %w", dir, err)
		}
	}
	return r, nil
}

// Image opens the image of a build.
func (r *Result) Image() (v1.Image, error) {
	return ImageFromLayout(r.Layout)
}

// ImageFromLayout opens the single image of an OCI image layout.
func ImageFromLayout(dir string) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s is not an OCI image layout: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("OCI layout %s holds %d images, want 1", dir, len(m.Manifests))
	}
	return idx.Image(m.Manifests[0].Digest)
}

// Push writes img to the registry reference ref (credentials from the
// usual Docker config; loopback registries are spoken to over HTTP).
func Push(ctx context.Context, img v1.Image, ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("push reference %q: %w", ref, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("pushing to %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().Digest(d.String()).String(), nil
}

// Squashfs writes img's flattened filesystem as a squashfs root image (the
// form the installer and seed media store, contract §2 and §5), with
// mksquashfs (Debian's squashfs-tools) reading the tar stream.
func Squashfs(ctx context.Context, img v1.Image, out string) error {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		return errors.New("mksquashfs not found: install Debian's squashfs-tools")
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	cmd := exec.CommandContext(ctx, "mksquashfs", "-", out, "-tar", "-noappend", "-quiet", "-no-progress", "-mkfs-time", "0", "-all-time", "0")
	cmd.Stdin = rc
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mksquashfs %s: %w\n%s", out, err, stderr.String())
	}
	return nil
}
