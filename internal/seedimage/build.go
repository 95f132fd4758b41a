// Package seedimage builds and serves SeedImages (their controller is
// internal/controller/seedimage): installation media carrying
// a MachineRegistration's URL, the manager's CA and cloud-config, which
// edgefleet-node reads to register. Images are built inside the manager,
// ISOs with xorriso, raw disk images with sgdisk and mkfs.ext4 (Debian
// packages xorriso, gdisk, e2fsprogs), served with a random token and
// removed after cleanupAfterMinutes.
package seedimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// VolumeID is the volume label of config-only media (the ISO volume ID, the
// ext4 label of a raw image's config partition); the node's OS mounts a
// medium with this label at /run/edgefleet/seed.
const VolumeID = "EFSEED"

// Kinds of media (SeedImage spec.type).
const (
	KindISO = "iso"
	KindRaw = "raw"
)

// Input is what goes into an image.
type Input struct {
	// Files are written at the root of the image (name → content).
	Files map[string][]byte
	// Kind is KindISO (the default) or KindRaw.
	Kind string
	// BaseImage is the image to add the files to: a file in
	// Sources.LocalDir (its name, or an absolute path inside it), an http(s)
	// URL, or an OCI image reference (oci://registry/repo:tag or
	// registry/repo:tag) holding exactly one .iso file (.img or .raw for
	// KindRaw). Empty builds config-only media.
	BaseImage string
	// BaseImageSHA256 is the base image file's expected hex SHA-256:
	// required for URLs, checked when set for the others.
	BaseImageSHA256 string
	// Sources limits where base images come from.
	Sources Sources
	// MaxBaseBytes bounds a base image (default 16 GiB), and an OS image's
	// flattened filesystem.
	MaxBaseBytes int64
	// OSImage is an OS image (docs/os.md) to build bootable media from: an
	// OCI reference (registry/repository:tag or @sha256:…, oci:// allowed),
	// pulled under Sources' network policy. Exclusive with BaseImage.
	OSImage string
}

// Result describes built media.
type Result struct {
	// SHA256 is the image file's hex SHA-256.
	SHA256 string
	// OSImageDigest is the digest of the OS image pulled (Input.OSImage).
	OSImageDigest string
	// OSName and OSVersion are the OS image's labels, when it has them.
	OSName, OSVersion string
}

// DefaultMaxBaseBytes bounds a base image when Input has no limit.
const DefaultMaxBaseBytes = 16 << 30

// Build writes the image to out and returns its hex SHA-256: an ISO
// (xorriso) or a raw GPT disk image (sgdisk, mkfs.ext4).
func Build(ctx context.Context, in Input, out string) (string, error) {
	res, err := BuildMedia(ctx, in, out)
	return res.SHA256, err
}

// BuildMedia is Build, also reporting what an OS image resolved to.
func BuildMedia(ctx context.Context, in Input, out string) (Result, error) {
	var res Result
	sum, err := build(ctx, in, out, &res)
	res.SHA256 = sum
	return res, err
}

func build(ctx context.Context, in Input, out string, res *Result) (string, error) {
	kind := in.Kind
	if kind == "" {
		kind = KindISO
	}
	if kind != KindISO && kind != KindRaw {
		return "", fmt.Errorf("unknown image type %q: use iso or raw", in.Kind)
	}
	work, err := os.MkdirTemp(filepath.Dir(out), ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	stage := filepath.Join(work, "files")
	if err := os.Mkdir(stage, 0o700); err != nil {
		return "", err
	}
	for name, data := range in.Files {
		if err := os.WriteFile(filepath.Join(stage, name), data, 0o644); err != nil {
			return "", err
		}
	}
	if in.OSImage != "" {
		if in.BaseImage != "" {
			return "", fmt.Errorf("baseImage %s and osImage %s are both set: media are built from one or the other", in.BaseImage, in.OSImage)
		}
		return buildFromOSImage(ctx, in, kind, stage, work, out, res)
	}
	var base *os.File
	if in.BaseImage != "" {
		if base, err = fetchBase(ctx, in, kind, work); err != nil {
			return "", err
		}
		defer base.Close()
	}
	tmp := filepath.Join(work, "image")
	if kind == KindRaw {
		err = buildRaw(ctx, stage, base, tmp, work)
		if err != nil && base != nil {
			err = fmt.Errorf("adding the %s partition to baseImage %s: %w", RawPartitionName, in.BaseImage, err)
		}
	} else {
		err = buildISO(ctx, stage, base, tmp)
	}
	if err != nil {
		return "", err
	}
	sum, err := fileSHA256(tmp)
	if err != nil {
		return "", err
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	return sum, nil
}

func buildFromOSImage(ctx context.Context, in Input, kind, stage, work, out string, res *Result) (string, error) {
	limit := in.MaxBaseBytes
	if limit <= 0 {
		limit = DefaultMaxBaseBytes
	}
	pullCtx, cancel := context.WithTimeout(ctx, in.Sources.fetchTimeout())
	o, err := pullOSImage(pullCtx, in.OSImage, in.Sources, limit, work)
	cancel()
	if err != nil {
		return "", err
	}
	res.OSImageDigest, res.OSName, res.OSVersion = o.Digest, o.Name, o.Version
	tmp := filepath.Join(work, "image")
	if err := buildOSMedia(ctx, kind, o, stage, work, tmp); err != nil {
		return "", err
	}
	sum, err := fileSHA256(tmp)
	if err != nil {
		return "", err
	}
	return sum, os.Rename(tmp, out)
}

func buildISO(ctx context.Context, stage string, base *os.File, out string) error {
	xorriso, err := exec.LookPath("xorriso")
	if err != nil {
		return errors.New("xorriso is not installed on the manager's host: install the Debian package xorriso")
	}
	if base == nil {
		return run(ctx, xorriso, "-as", "mkisofs", "-V", VolumeID, "-J", "-R", "-o", out, stage)
	}
	// Remaster: keep the base image's boot records, add the files. xorriso
	// reads the file the manager opened (fd 3), never a path it could be
	// swapped at; stdio: keeps it from treating /dev/fd/3 as a drive.
	return runWith(ctx, []*os.File{base}, xorriso, "-indev", "stdio:/dev/fd/3", "-outdev", out, "-boot_image", "any", "replay", "-map", stage, "/", "-commit")
}

// fetchBase opens the base image: a file beneath Sources.LocalDir, or a
// URL or OCI image fetched into work under Sources' network policy. Every
// way is bounded in size and time and checked against BaseImageSHA256.
func fetchBase(ctx context.Context, in Input, kind, work string) (*os.File, error) {
	limit := in.MaxBaseBytes
	if limit <= 0 {
		limit = DefaultMaxBaseBytes
	}
	ctx, cancel := context.WithTimeout(ctx, in.Sources.fetchTimeout())
	defer cancel()
	base := in.BaseImage
	local := filepath.Join(work, "base."+map[string]string{KindISO: "iso", KindRaw: "img"}[kind])
	if isOCIReference(base) {
		exts := []string{".iso"}
		if kind == KindRaw {
			exts = []string{".img", ".raw"}
		}
		if err := pullBase(ctx, base, exts, local, limit, in.Sources, in.BaseImageSHA256); err != nil {
			os.Remove(local)
			return nil, err
		}
		return os.Open(local)
	}
	if strings.Contains(base, "://") {
		if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("baseImage %q is not a supported URL: use https://host/path (or oci://registry/repository:tag)", base)
		}
		if in.BaseImageSHA256 == "" {
			return nil, fmt.Errorf("baseImage %s is a URL: set spec.baseImageSHA256 to its SHA-256, which the download is checked against", base)
		}
		if err := download(ctx, in.Sources, base, local, limit, in.BaseImageSHA256); err != nil {
			os.Remove(local)
			return nil, err
		}
		return os.Open(local)
	}
	f, err := in.Sources.openLocal(base, limit)
	if err != nil {
		return nil, err
	}
	if in.BaseImageSHA256 != "" {
		if err := verifyLocal(ctx, f, base, limit, in.BaseImageSHA256); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// verifyLocal checks a local base image's checksum and rewinds it.
func verifyLocal(ctx context.Context, f *os.File, base string, limit int64, want string) error {
	sum := newChecksum(want)
	if err := copyBounded(ctx, sum, f, limit, "baseImage "+base); err != nil {
		return fmt.Errorf("reading baseImage %s: %w", base, err)
	}
	if err := sum.verify("baseImage " + base); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// download fetches from to to, verifying the SHA-256 while streaming; a
// partial or mismatching file is removed.
func download(ctx context.Context, src Sources, from, to string, limit int64, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, from, nil)
	if err != nil {
		return err
	}
	resp, err := src.httpClient().Do(req)
	if err != nil {
		return fmt.Errorf("downloading baseImage %s: %w", from, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("downloading baseImage %s: %s", from, resp.Status)
	}
	if resp.ContentLength > limit {
		return fmt.Errorf("baseImage %s is %d bytes, more than the %d allowed", from, resp.ContentLength, limit)
	}
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	sum := newChecksum(want)
	err = copyBounded(ctx, io.MultiWriter(f, sum), resp.Body, limit, "baseImage "+from)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = sum.verify("baseImage " + from)
	} else {
		err = fmt.Errorf("downloading baseImage %s: %w", from, err)
	}
	if err != nil {
		os.Remove(to)
	}
	return err
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
