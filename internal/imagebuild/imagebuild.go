// Package imagebuild builds edgefleet's container images without a container
// daemon, ko-style: a static Go binary as one layer on a minimal base layer
// (CA certificates from Debian's ca-certificates package, a nonroot user, a
// writable /tmp), one image per architecture gathered into an OCI index.
// Every timestamp is the given epoch and every file is owned by root with a
// fixed mode, so the same binaries give the same digests on any machine.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

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

// NonrootUID is the user (and group) images run as: Kubernetes'
// runAsNonRoot needs a numeric user in the image config.
const NonrootUID = 65532

// CABundlePath is where the base layer puts the CA bundle; SSL_CERT_FILE
// names it too, so Go's crypto/x509 finds it whatever its search list.
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

// BinDir holds the image's binary.
const BinDir = "/usr/local/bin"

// Spec describes one multi-architecture image.
type Spec struct {
	// Name is the binary's file name in BinDir and the image title.
	Name string
	// Binaries maps a GOARCH (amd64, arm64) to a static linux binary.
	Binaries map[string]string
	// Args follow the binary in the entrypoint, e.g. ["server"].
	Args []string
	// Env is added to the image config (KEY=value).
	Env []string
	// Version and Revision become OCI annotation labels.
	Version, Revision string
	// CABundle is the PEM bundle for CABundlePath (see CABundleFromDebian).
	CABundle []byte
	// Created is every timestamp in the image (SOURCE_DATE_EPOCH).
	Created time.Time
}

// Build returns the OCI index of s, one image per architecture in sorted
// order.
func Build(s Spec) (v1.ImageIndex, error) {
	if s.Name == "" || strings.ContainsAny(s.Name, "/ ") {
		return nil, fmt.Errorf("image name %q must be a plain file name", s.Name)
	}
	if len(s.Binaries) == 0 {
		return nil, fmt.Errorf("image %s: no binaries given", s.Name)
	}
	if len(s.CABundle) == 0 {
		return nil, fmt.Errorf("image %s: empty CA bundle", s.Name)
	}
	created := s.Created.UTC()
	base, err := layerFromEntries(created, baseEntries(s.CABundle))
	if err != nil {
		return nil, err
	}
	archs := make([]string, 0, len(s.Binaries))
	for a := range s.Binaries {
		archs = append(archs, a)
	}
	sort.Strings(archs)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range archs {
		img, err := buildArch(s, arch, base, created)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	return idx, nil
}

func buildArch(s Spec, arch string, base v1.Layer, created time.Time) (v1.Image, error) {
	binPath := s.Binaries[arch]
	st, err := os.Stat(binPath)
	if err != nil {
		return nil, fmt.Errorf("image %s/%s: %w (build the binary first: make images)", s.Name, arch, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("image %s/%s: %s is not a regular file", s.Name, arch, binPath)
	}
	binLayer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return fileTar(binPath, path.Join(BinDir, s.Name)[1:], st.Size(), created)
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range []struct {
		layer v1.Layer
		by    string
	}{{base, "edgefleet imagebuild: base (ca-certificates, nonroot user)"}, {binLayer, "edgefleet imagebuild: " + s.Name}} {
		img, err = mutate.Append(img, mutate.Addendum{Layer: l.layer, MediaType: types.OCILayer,
			History: v1.History{Created: v1.Time{Time: created}, CreatedBy: l.by}})
		if err != nil {
			return nil, err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = "linux", arch, v1.Time{Time: created}
	cfg.Config.Entrypoint = append([]string{path.Join(BinDir, s.Name)}, s.Args...)
	cfg.Config.Env = append([]string{"PATH=" + BinDir + ":/usr/bin:/bin", "SSL_CERT_FILE=" + CABundlePath}, s.Env...)
	cfg.Config.User = fmt.Sprintf("%d:%d", NonrootUID, NonrootUID)
	cfg.Config.WorkingDir = "/home/nonroot"
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":    s.Name,
		"org.opencontainers.image.version":  s.Version,
		"org.opencontainers.image.revision": s.Revision,
		"org.opencontainers.image.source":   "https://github.com/edgefleet/edgefleet",
	}
	return mutate.ConfigFile(img, cfg)
}

type entry struct {
	name string
	mode int64
	dir  bool
	uid  int
	data []byte
}

// baseEntries is the distroless-style base: passwd/group with root and
// nonroot, the CA bundle, a sticky /tmp and nonroot's home.
func baseEntries(ca []byte) []entry {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonrootUID, NonrootUID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonrootUID)
	return []entry{
		{name: "etc", dir: true, mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl", dir: true, mode: 0o755},
		{name: "etc/ssl/certs", dir: true, mode: 0o755},
		{name: CABundlePath[1:], mode: 0o644, data: ca},
		{name: "home", dir: true, mode: 0o755},
		{name: "home/nonroot", dir: true, mode: 0o700, uid: NonrootUID},
		{name: "root", dir: true, mode: 0o700},
		{name: "tmp", dir: true, mode: 0o1777},
		{name: "usr", dir: true, mode: 0o755},
		{name: "usr/local", dir: true, mode: 0o755},
		{name: "usr/local/bin", dir: true, mode: 0o755},
	}
}

func layerFromEntries(created time.Time, es []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: created, Uid: e.uid, Gid: e.uid, Format: tar.FormatPAX}
		if e.dir {
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// fileTar streams a tar holding only the file src at name (parents are in
// the base layer), mode 0755, owned by root, at time created.
func fileTar(src, name string, size int64, created time.Time) (io.ReadCloser, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer f.Close()
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: size, ModTime: created, Format: tar.FormatPAX})
		if err == nil {
			var n int64
			n, err = io.Copy(tw, f)
			if err == nil && n != size {
				err = fmt.Errorf("%s changed size while it was read", src)
			}
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// CABundleFromDebian concatenates the certificates the ca-certificates
// package ships (usr/share/ca-certificates/*/*.crt, unpacked at dir) in
// sorted order, which is what update-ca-certificates writes with the
// package's default configuration.
func CABundleFromDebian(dir string) ([]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "usr", "share", "ca-certificates", "*", "*.crt"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no certificates under %s/usr/share/ca-certificates: is it the unpacked ca-certificates package?", dir)
	}
	sort.Strings(files)
	var out bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out.Write(bytes.TrimSpace(b))
		out.WriteByte('\n')
	}
	return out.Bytes(), nil
}

// WriteLayout writes idx as an OCI image layout at dir (replacing it),
// annotated with tag as org.opencontainers.image.ref.name.
func WriteLayout(dir string, idx v1.ImageIndex, tag string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
}

// WriteDockerArchives writes one `docker load`-able tarball per
// architecture, <dir>/<name>-<arch>.tar, tagged ref, and returns the paths.
func WriteDockerArchives(dir, ref string, idx v1.ImageIndex) ([]string, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, path.Base(tag.RepositoryStr())+"-"+d.Platform.Architecture+".tar")
		if err := tarball.WriteToFile(p, tag, img); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Push pushes idx to ref (a tag) and returns ref pinned by digest,
// repo@sha256:…, with credentials from the Docker config like other tools.
func Push(ctx context.Context, ref string, idx v1.ImageIndex, opts ...name.Option) (string, error) {
	tag, err := name.NewTag(ref, opts...)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := remote.WriteIndex(tag, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return "", err
	}
	return tag.Context().Name() + "@" + d.String(), nil
}
