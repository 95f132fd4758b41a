package seedimage

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
// Registries are reached over HTTPS only, except loopback ones (a registry
// on 127.0.0.1 in tests or a local mirror), which may be plain HTTP.
// Pulls are anonymous: the manager has no registry credentials.
func pullBase(ctx context.Context, ref string, exts []string, to string, limit int64) error {
	r, err := name.ParseReference(strings.TrimPrefix(ref, ociPrefix))
	if err != nil {
		return fmt.Errorf("baseImage %q is not a valid OCI image reference: %w", ref, err)
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithAuth(authn.Anonymous),
		remote.WithTransport(loopbackOnlyPlainHTTP{remote.DefaultTransport}))
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
		if err := writeFrom(to, tr); err != nil {
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

func writeFrom(to string, r io.Reader) error {
	f, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loopbackOnlyPlainHTTP refuses plain-HTTP requests to anything but a
// loopback address. go-containerregistry falls back to HTTP for private
// (RFC 1918) and .local registries, where anyone on the path could swap the
// base image.
type loopbackOnlyPlainHTTP struct{ next http.RoundTripper }

func (t loopbackOnlyPlainHTTP) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !isLoopback(req.URL.Hostname()) {
		return nil, fmt.Errorf("refusing plain HTTP to registry %s: only loopback registries may be reached without TLS; serve the registry over HTTPS", req.URL.Host)
	}
	return t.next.RoundTrip(req)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
