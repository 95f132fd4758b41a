// Package seedimage builds and serves SeedImages: installation media carrying
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
	"time"
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
	// BaseImage is the image to add the files to: an absolute path on the
	// manager's host, an http(s) URL, or an OCI image reference
	// (oci://registry/repo:tag or registry/repo:tag) holding exactly one
	// .iso file (.img or .raw for KindRaw). Empty builds config-only media.
	BaseImage string
	// MaxBaseBytes bounds a downloaded or pulled base image (default 16 GiB).
	MaxBaseBytes int64
}

// Build writes the image to out and returns its hex SHA-256: an ISO
// (xorriso) or a raw GPT disk image (sgdisk, mkfs.ext4).
func Build(ctx context.Context, in Input, out string) (string, error) {
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
	base := ""
	if in.BaseImage != "" {
		if base, err = fetchBase(ctx, in.BaseImage, kind, work, in.MaxBaseBytes); err != nil {
			return "", err
		}
	}
	tmp := filepath.Join(work, "image")
	if kind == KindRaw {
		err = buildRaw(ctx, stage, base, tmp, work)
		if err != nil && base != "" {
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

func buildISO(ctx context.Context, stage, base, out string) error {
	xorriso, err := exec.LookPath("xorriso")
	if err != nil {
		return errors.New("xorriso is not installed on the manager's host: install the Debian package xorriso")
	}
	var args []string
	if base == "" {
		args = []string{"-as", "mkisofs", "-V", VolumeID, "-J", "-R", "-o", out, stage}
	} else {
		// Remaster: keep the base image's boot records, add the files.
		args = []string{"-indev", base, "-outdev", out, "-boot_image", "any", "replay", "-map", stage, "/", "-commit"}
	}
	return run(ctx, xorriso, args...)
}

// fetchBase makes the base image a local file and returns its path.
func fetchBase(ctx context.Context, base, kind, work string, limit int64) (string, error) {
	if limit <= 0 {
		limit = 16 << 30
	}
	local := filepath.Join(work, "base."+map[string]string{KindISO: "iso", KindRaw: "img"}[kind])
	if isOCIReference(base) {
		exts := []string{".iso"}
		if kind == KindRaw {
			exts = []string{".img", ".raw"}
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		return local, pullBase(ctx, base, exts, local, limit)
	}
	u, err := url.Parse(base)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		return download(ctx, base, local, limit)
	}
	if !filepath.IsAbs(base) {
		return "", fmt.Errorf("baseImage %q is neither an absolute path on the manager's host, an http(s) URL nor an OCI image reference (oci://registry/repository:tag)", base)
	}
	if _, err := os.Stat(base); err != nil {
		return "", fmt.Errorf("baseImage: %w", err)
	}
	return base, nil
}

func download(ctx context.Context, from, to string, limit int64) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, from, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("downloading baseImage %s: %w", from, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("downloading baseImage %s: %s", from, resp.Status)
	}
	f, err := os.Create(to)
	if err != nil {
		return "", err
	}
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return "", fmt.Errorf("downloading baseImage %s: %w", from, err)
	}
	if n > limit {
		return "", fmt.Errorf("baseImage %s is larger than %d bytes", from, limit)
	}
	return to, f.Close()
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
