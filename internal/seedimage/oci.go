package seedimage

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ociPrefix marks an OCI image reference in baseImage; a reference without
// it (registry.example/os/iso:1.2) is accepted too.
const ociPrefix = "oci://"

// pullBase pulls the image ref and writes the single file in it whose name
// ends with one of exts to to. The image's layers are read flattened (later
// layers and whiteouts win), as a container would see its filesystem.
// Registries are reached under src's policy (HTTPS, public addresses unless
// allowed) and the file is checked against want when set.
// Pulls are anonymous: the manager has no registry credentials.
func pullBase(ctx context.Context, ref string, exts []string, to string, limit int64, src Sources, want string) error {
	r, err := name.ParseReference(strings.TrimPrefix(ref, ociPrefix))
	if err != nil {
		return fmt.Errorf("baseImage %q is not a valid OCI image reference: %w", ref, err)
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithAuth(authn.Anonymous),
		remote.WithTransport(src.transport()))
	if err != nil {
		return fmt.Errorf("pulling baseImage %s: %w", ref, err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var found []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the layers of baseImage %s: %w", ref, err)
		}
		if h.Typeflag != tar.TypeReg || !hasExt(h.Name, exts) {
			continue
		}
		found = append(found, "/"+strings.TrimPrefix(path.Clean("/"+h.Name), "/"))
		if len(found) > 1 {
			continue
		}
		if h.Size > limit {
			return fmt.Errorf("%s in baseImage %s is %d bytes, more than the %d allowed", found[0], ref, h.Size, limit)
		}
		if err := writeFrom(ctx, to, tr, limit, want, found[0]+" in baseImage "+ref); err != nil {
			return fmt.Errorf("extracting %s from baseImage %s: %w", found[0], ref, err)
		}
	}
	switch len(found) {
	case 0:
		return fmt.Errorf("baseImage %s holds no %s file: put exactly one in the image (for example COPY os.iso /)", ref, strings.Join(exts, " or "))
	case 1:
		return nil
	default:
		return fmt.Errorf("baseImage %s holds %d %s files (%s): it must hold exactly one", ref, len(found), strings.Join(exts, "/"), strings.Join(found, ", "))
	}
}

func hasExt(p string, exts []string) bool {
	for _, e := range exts {
		if strings.HasSuffix(strings.ToLower(p), e) {
			return true
		}
	}
	return false
}

// writeFrom writes r (at most limit bytes) to to and checks its SHA-256
// against want when set.
func writeFrom(ctx context.Context, to string, r io.Reader, limit int64, want, what string) error {
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	sum := newChecksum(want)
	err = copyBounded(ctx, io.MultiWriter(f, sum), r, limit, what)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = sum.verify(what)
	}
	return err
}

// isOCIReference tells an image reference from a path or URL: oci://…, or
// a reference whose first component is a registry host (it has a "." or ":"
// or is localhost, Docker's rule), so "registry.example/os/iso:1" is pulled
// while "os.iso" or "images/os.iso" are not sent to Docker Hub.
func isOCIReference(base string) bool {
	if strings.HasPrefix(base, ociPrefix) {
		return true
	}
	if strings.HasPrefix(base, "/") || strings.HasPrefix(base, ".") || strings.Contains(base, "://") {
		return false
	}
	host, rest, ok := strings.Cut(base, "/")
	if !ok || rest == "" || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return false
	}
	_, err := name.ParseReference(base)
	return err == nil
}
