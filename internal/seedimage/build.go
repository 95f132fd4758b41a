// Package seedimage builds and serves SeedImages: installation media carrying
// a MachineRegistration's URL, the manager's CA and cloud-config, which
// edgefleet-node reads to register. Images are built inside the manager with
// xorriso (Debian package xorriso), served with a random token and removed
// after cleanupAfterMinutes.
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

// VolumeID is the ISO volume label of config-only media; the node's OS mounts
// a medium with this label at /run/edgefleet/seed.
const VolumeID = "EFSEED"

// Input is what goes into an image.
type Input struct {
	// Files are written at the root of the image (name → content).
	Files map[string][]byte
	// BaseImage is an ISO to add the files to: an absolute path on the
	// manager's host or an http(s) URL. Empty builds config-only media.
	BaseImage string
	// MaxBaseBytes bounds a downloaded base image.
	MaxBaseBytes int64
}

// Build writes the ISO to out and returns its hex SHA-256.
func Build(ctx context.Context, in Input, out string) (string, error) {
	xorriso, err := exec.LookPath("xorriso")
	if err != nil {
		return "", errors.New("xorriso is not installed on the manager's host: install the Debian package xorriso")
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
	tmp := filepath.Join(work, "image.iso")
	var args []string
	if in.BaseImage == "" {
		args = []string{"-as", "mkisofs", "-V", VolumeID, "-J", "-R", "-o", tmp, stage}
	} else {
		base, err := fetchBase(ctx, in.BaseImage, work, in.MaxBaseBytes)
		if err != nil {
			return "", err
		}
		// Remaster: keep the base image's boot records, add the files.
		args = []string{"-indev", base, "-outdev", tmp, "-boot_image", "any", "replay", "-map", stage, "/", "-commit"}
	}
	cmd := exec.CommandContext(ctx, xorriso, args...)
	if outText, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("xorriso %s: %v: %s", strings.Join(args, " "), err, lastLines(string(outText), 5))
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

func fetchBase(ctx context.Context, base, work string, limit int64) (string, error) {
	if strings.HasPrefix(base, "oci://") || strings.HasPrefix(base, "oci:") {
		return "", fmt.Errorf("baseImage %q: OCI base images are not supported yet; give a path on the manager's host or an http(s) URL", base)
	}
	u, err := url.Parse(base)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		return download(ctx, base, filepath.Join(work, "base.iso"), limit)
	}
	if !filepath.IsAbs(base) {
		return "", fmt.Errorf("baseImage %q is neither an absolute path on the manager's host nor an http(s) URL", base)
	}
	if _, err := os.Stat(base); err != nil {
		return "", fmt.Errorf("baseImage: %w", err)
	}
	return base, nil
}

func download(ctx context.Context, from, to string, limit int64) (string, error) {
	if limit <= 0 {
		limit = 16 << 30
	}
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
