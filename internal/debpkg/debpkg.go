// Package debpkg fetches Debian packages from Debian's archive (apt-get
// download, the host's configured sources) and unpacks them (dpkg-deb -x)
// into a cache keyed by package, version and architecture, so tests and
// image builders get the same bytes on every run without installing
// anything on the host.
package debpkg

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// CacheEnv overrides the cache directory (default ~/.cache/edgefleet/deb).
const CacheEnv = "EDGEFLEET_DEB_CACHE"

// CacheDir is where packages are downloaded and unpacked.
func CacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "edgefleet", "deb"), nil
}

// validName is Debian's package name syntax (Policy 5.6.1): the names are
// passed to apt-get, never as options.
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

// Fetch downloads and unpacks each package (the host's candidate version)
// and returns, in order, the directories holding their unpacked files.
// A package already in the cache is not downloaded again.
func Fetch(ctx context.Context, pkgs ...string) ([]string, error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	dirs := make([]string, 0, len(pkgs))
	for _, p := range pkgs {
		d, err := fetchOne(ctx, cache, p)
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

func fetchOne(ctx context.Context, cache, pkg string) (string, error) {
	if !validName.MatchString(pkg) {
		return "", fmt.Errorf("%q is not a Debian package name", pkg)
	}
	ver, arch, err := candidate(ctx, pkg)
	if err != nil {
		return "", err
	}
	// The key is what apt-get download names the file (":" in epochs
	// becomes "%3a").
	key := pkg + "_" + strings.ReplaceAll(ver, ":", "%3a") + "_" + arch
	dir := filepath.Join(cache, key)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	// Download and unpack in a private temporary directory, then rename:
	// parallel test processes never see a half-unpacked package.
	tmp, err := os.MkdirTemp(cache, ".fetch-"+pkg+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if out, err := command(ctx, tmp, "apt-get", "download", "-q", pkg+"="+ver); err != nil {
		return "", fmt.Errorf("apt-get download %s=%s: %w: %s (run apt-get update if the archive moved on)", pkg, ver, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d .deb files, want 1", pkg, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := command(ctx, tmp, "dpkg-deb", "-x", debs[0], root); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %w: %s", filepath.Base(debs[0]), err, out)
	}
	if err := os.WriteFile(filepath.Join(root, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(root, dir); err != nil {
		// Another process won the race: its copy is the same package.
		if _, serr := os.Stat(filepath.Join(dir, ".complete")); serr == nil {
			return dir, nil
		}
		return "", err
	}
	return dir, nil
}

// candidate is the version and architecture apt would install.
func candidate(ctx context.Context, pkg string) (version, arch string, err error) {
	out, err := command(ctx, "", "apt-cache", "show", "--no-all-versions", pkg)
	if err != nil {
		return "", "", fmt.Errorf("package %s is not known to apt (apt-cache show: %v: %s); run apt-get update", pkg, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Version: "); ok && version == "" {
			version = strings.TrimSpace(v)
		}
		if a, ok := strings.CutPrefix(line, "Architecture: "); ok && arch == "" {
			arch = strings.TrimSpace(a)
		}
	}
	if version == "" || arch == "" {
		return "", "", fmt.Errorf("apt-cache show %s: no version or architecture", pkg)
	}
	return version, arch, nil
}

func command(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return bytes.TrimSpace(out.Bytes()), err
}
