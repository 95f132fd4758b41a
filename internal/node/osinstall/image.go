package osinstall

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Paths inside an OS image (contract §1, docs/os.md).
const (
	ImageKernel    = "boot/vmlinuz"
	ImageInitrd    = "boot/initrd"
	ImageNodeAgent = "usr/bin/edgefleet-node"
	ImageOSRelease = "etc/os-release"
	ImageGrubEFI   = "usr/lib/edgefleet/grub/bootx64.efi"
	// ImageGrubBIOSCore and ImageGrubBIOSBoot are optional: GRUB for BIOS
	// firmware (i386-pc core.img and boot.img).
	ImageGrubBIOSCore = "usr/lib/edgefleet/grub/i386-pc/core.img"
	ImageGrubBIOSBoot = "usr/lib/edgefleet/grub/i386-pc/boot.img"

	LabelOSName    = "io.edgefleet.os.name"
	LabelOSVersion = "io.edgefleet.os.version"
)

// PullOptions say where an OS image comes from and how to fetch it.
type PullOptions struct {
	// Image is the OS image reference; "oci:" and "docker:" prefixes
	// (Elemental's system-uri) are accepted.
	Image string
	// DockerConfig is a docker config.json with registry credentials; empty
	// uses $DOCKER_CONFIG / ~/.docker/config.json when present.
	DockerConfig string
	// CacheDir keeps downloaded layers by digest, so a pull that failed half
	// way does not download the finished layers again.
	CacheDir string
	// WorkDir receives the squashfs and the boot files.
	WorkDir string
	// Attempts per layer and per manifest (default 5), with doubling waits
	// from RetryWait (default 1s).
	Attempts  int
	RetryWait time.Duration
	// Transport is the HTTP transport (tests); nil uses the default.
	Transport http.RoundTripper
	// Log receives progress lines.
	Log func(format string, args ...any)
}

// OSImage is a pulled, checked and flattened OS image, ready to write to a
// slot.
type OSImage struct {
	Ref      string `json:"image"`
	Digest   string `json:"digest"`
	Name     string `json:"name,omitempty"`
	Version  string `json:"version,omitempty"`
	Squashfs string `json:"-"`
	Kernel   string `json:"-"`
	Initrd   string `json:"-"`
	GrubEFI  string `json:"-"`
	// GrubBIOSCore and GrubBIOSBoot are "" when the image has no BIOS
	// boot code (the disk then boots with UEFI only).
	GrubBIOSCore string `json:"-"`
	GrubBIOSBoot string `json:"-"`
	// Size is the bytes a slot of this image takes (squashfs, kernel, initrd).
	Size int64 `json:"size"`
}

// ImageError is an OS image that does not follow the contract.
type ImageError struct{ Missing []string }

func (e *ImageError) Error() string {
	return fmt.Sprintf("the image is not an edgefleet OS image: it lacks %s (see docs/os.md, the OS image contract)", strings.Join(e.Missing, ", "))
}

// Pull fetches the OS image, checks it against the contract and writes its
// flattened filesystem as a squashfs plus the boot files into WorkDir.
func Pull(ctx context.Context, o PullOptions) (*OSImage, error) {
	o.defaults()
	refStr := strings.TrimPrefix(strings.TrimPrefix(o.Image, "oci:"), "docker:")
	ref, err := name.ParseReference(refStr)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", o.Image, err)
	}
	kc, err := keychain(o.DockerConfig)
	if err != nil {
		return nil, err
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}),
		remote.WithRetryBackoff(remote.Backoff{Duration: o.RetryWait, Factor: 2, Steps: o.Attempts})}
	if o.Transport != nil {
		ropts = append(ropts, remote.WithTransport(o.Transport))
	}
	var img v1.Image
	err = retry(ctx, o, "fetching the manifest of "+ref.String(), func() error {
		img, err = remote.Image(ref, ropts...)
		return err
	})
	if _, pinned := ref.(name.Digest); err != nil && pinned && strings.Contains(err.Error(), "does not match requested digest") {
		return nil, fmt.Errorf("OS image %s: the registry served content with another digest, refusing to install it: %w", ref, err)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot fetch OS image %s (is the registry reachable, and are credentials needed?): %w", ref, err)
	}
	dig, err := img.Digest()
	if err != nil {
		return nil, err
	}
	if d, ok := ref.(name.Digest); ok && d.DigestStr() != dig.String() {
		return nil, fmt.Errorf("OS image %s has digest %s, not the pinned %s: refusing to install it", ref.Context(), dig, d.DigestStr())
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image config: %w", err)
	}
	if cfg.OS != "" && cfg.OS != "linux" || cfg.Architecture != "" && cfg.Architecture != "amd64" {
		return nil, fmt.Errorf("OS image %s is for %s/%s, this installer writes linux/amd64", ref, cfg.OS, cfg.Architecture)
	}
	layers, err := fetchLayers(ctx, img, o)
	if err != nil {
		return nil, err
	}
	flat, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	out := &OSImage{Ref: refStr, Digest: dig.String(), Name: cfg.Config.Labels[LabelOSName], Version: cfg.Config.Labels[LabelOSVersion]}
	if err := flatten(ctx, flat, o.WorkDir, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (o *PullOptions) defaults() {
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.RetryWait <= 0 {
		o.RetryWait = time.Second
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
}

// retry runs f up to o.Attempts times with doubling waits.
func retry(ctx context.Context, o PullOptions, what string, f func() error) error {
	wait := o.RetryWait
	var err error
	for i := 1; i <= o.Attempts; i++ {
		if err = f(); err == nil {
			return nil
		}
		if i == o.Attempts || ctx.Err() != nil {
			break
		}
		o.Log("%s failed (attempt %d of %d, next in %s): %v", what, i, o.Attempts, wait, err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
	return err
}

// fetchLayers downloads every layer's compressed blob into the cache
// (verified against its digest, then renamed into place) unless it is there
// already, and returns layers read from the cache.
func fetchLayers(ctx context.Context, img v1.Image, o PullOptions) ([]v1.Layer, error) {
	ls, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the layer cache: %w", err)
	}
	var out []v1.Layer
	for i, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		p := filepath.Join(o.CacheDir, d.Algorithm+"-"+d.Hex)
		if _, err := os.Stat(p); err != nil {
			o.Log("fetching layer %d/%d %s", i+1, len(ls), d)
			if err := retry(ctx, o, "fetching layer "+d.String(), func() error { return download(l, d, p) }); err != nil {
				return nil, fmt.Errorf("cannot fetch layer %s (layers fetched so far are kept in %s and not fetched again): %w", d, o.CacheDir, err)
			}
		} else {
			o.Log("layer %d/%d %s: cached", i+1, len(ls), d)
		}
		cl, err := tarball.LayerFromFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, cl)
	}
	return out, nil
}

func download(l v1.Layer, d v1.Hash, dst string) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp := dst + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
		return fmt.Errorf("layer content has digest sha256:%s, not %s", got, d)
	}
	return os.Rename(tmp, dst)
}

// flatten streams the image's merged filesystem into sqfstar, and keeps the
// boot files and os-release it passes on the way.
func flatten(ctx context.Context, img v1.Image, work string, out *OSImage) error {
	sqfstar, err := lookTool("sqfstar", "squashfs-tools")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	out.Squashfs = filepath.Join(work, "root.squashfs")
	os.Remove(out.Squashfs)
	cmd := exec.CommandContext(ctx, sqfstar, "-quiet", "-no-progress", "-comp", "zstd", "-force-uid", "0", "-force-gid", "0", out.Squashfs)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	seen, scanErr := scanTar(io.TeeReader(rc, stdin), work)
	if scanErr == nil {
		// The tar reader stops at the end marker; sqfstar wants the rest.
		_, scanErr = io.Copy(stdin, rc)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("making the squashfs: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	if scanErr != nil {
		return fmt.Errorf("reading the image's filesystem: %w", scanErr)
	}
	var missing []string
	resolve := func(p string) string {
		for range 8 {
			t, ok := seen.links[p]
			if !ok {
				break
			}
			if !path.IsAbs(t) {
				t = path.Join(path.Dir(p), t)
			}
			p = strings.TrimPrefix(path.Clean(t), "/")
		}
		return seen.files[p]
	}
	for _, f := range []struct {
		p   string
		dst *string
	}{{ImageKernel, &out.Kernel}, {ImageInitrd, &out.Initrd}, {ImageGrubEFI, &out.GrubEFI}, {ImageOSRelease, nil}, {ImageNodeAgent, nil}} {
		local := resolve(f.p)
		if local == "" && !seen.present[f.p] {
			missing = append(missing, "/"+f.p)
			continue
		}
		if f.dst != nil {
			if local == "" {
				missing = append(missing, "/"+f.p+" (as a regular file)")
				continue
			}
			*f.dst = local
		}
	}
	if len(missing) > 0 {
		return &ImageError{Missing: missing}
	}
	out.GrubBIOSCore, out.GrubBIOSBoot = resolve(ImageGrubBIOSCore), resolve(ImageGrubBIOSBoot)
	if out.GrubBIOSCore == "" || out.GrubBIOSBoot == "" {
		out.GrubBIOSCore, out.GrubBIOSBoot = "", ""
	}
	rel := parseOSRelease(seen.osRelease)
	if out.Name == "" {
		out.Name = rel["NAME"]
	}
	if out.Version == "" {
		out.Version = rel["VERSION_ID"]
	}
	for _, p := range []string{out.Squashfs, out.Kernel, out.Initrd} {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		out.Size += st.Size()
	}
	return nil
}

type tarSeen struct {
	files     map[string]string // image path → local copy
	links     map[string]string
	present   map[string]bool
	osRelease []byte
}

// scanTar copies the files the installer needs out of the stream: anything
// under boot/ and the GRUB EFI binary.
func scanTar(r io.Reader, work string) (*tarSeen, error) {
	s := &tarSeen{files: map[string]string{}, links: map[string]string{}, present: map[string]bool{}}
	tr := tar.NewReader(r)
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return s, nil
		}
		if err != nil {
			return s, err
		}
		p := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		s.present[p] = true
		switch h.Typeflag {
		case tar.TypeSymlink:
			s.links[p] = h.Linkname
		case tar.TypeLink:
			s.links[p] = "/" + strings.TrimPrefix(h.Linkname, "/")
		case tar.TypeReg:
			if p == ImageOSRelease || p == "usr/lib/os-release" {
				b, _ := io.ReadAll(io.LimitReader(tr, 64<<10))
				if p == ImageOSRelease || s.osRelease == nil {
					s.osRelease = b
				}
				continue
			}
			if !strings.HasPrefix(p, "boot/") && p != ImageGrubEFI && p != ImageGrubBIOSCore && p != ImageGrubBIOSBoot {
				continue
			}
			n++
			local := filepath.Join(work, fmt.Sprintf("file-%d", n))
			f, err := os.Create(local)
			if err != nil {
				return s, err
			}
			_, err = io.Copy(f, tr)
			f.Close()
			if err != nil {
				return s, err
			}
			s.files[p] = local
		}
	}
}

func parseOSRelease(b []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && !strings.HasPrefix(k, "#") {
			m[k] = strings.Trim(v, `"'`)
		}
	}
	return m
}

// keychain reads registry credentials from a docker config file.
func keychain(path string) (authn.Keychain, error) {
	if path == "" {
		return authn.DefaultKeychain, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading registry credentials: %w", err)
	}
	var cfg struct {
		Auths map[string]authn.AuthConfig `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("%s is not a docker config.json: %w", path, err)
	}
	return fileKeychain(cfg.Auths), nil
}

type fileKeychain map[string]authn.AuthConfig

func (k fileKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	for _, key := range []string{r.RegistryStr(), "https://" + r.RegistryStr(), "http://" + r.RegistryStr()} {
		if c, ok := k[key]; ok {
			return authn.FromConfig(c), nil
		}
	}
	return authn.Anonymous, nil
}
