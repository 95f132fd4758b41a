// Package debpkg fetches Debian packages from Debian's archive and unpacks
// them, cached under ~/.cache/edgefleet/deb (or $EDGEFLEET_DEB_CACHE): the
// OS image builder and the seed media use it to get kernels, GRUB, busybox
// and tools without installing anything on the host. Packages are fetched
// with `apt-get download` (so only from the archive apt is configured for)
// and unpacked with `dpkg-deb -x`; nothing runs their maintainer scripts.
package debpkg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CompleteMarker is the empty file at the top of every unpacked package
// folder: it is written last, so a folder without it is not used. Code that
// copies a package's files skips it.
const CompleteMarker = ".complete"

// Dir is the cache folder: $EDGEFLEET_DEB_CACHE, else ~/.cache/edgefleet/deb.
func Dir() string {
	if d := os.Getenv("EDGEFLEET_DEB_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "edgefleet", "deb")
}

// Fetch returns, for each package, a folder holding its unpacked files
// (as `dpkg-deb -x` leaves them, plus an empty CompleteMarker file). The
// version is apt's candidate; the folder is named <package>_<version>_<arch>
// (':' in the version written as %3a, as apt names the .deb), so a new
// version in the archive is a new folder and an unchanged one is a cache hit
// that downloads nothing.
func Fetch(ctx context.Context, pkgs ...string) ([]string, error) {
	if len(pkgs) == 0 {
		return nil, nil
	}
	cands, err := candidates(ctx, pkgs)
	if err != nil {
		return nil, err
	}
	root := Dir()
	archives := filepath.Join(root, "archives")
	if err := os.MkdirAll(archives, 0o755); err != nil {
		return nil, err
	}
	var download []string
	for _, p := range pkgs {
		c := cands[p]
		if complete(filepath.Join(root, c.base())) || exists(filepath.Join(archives, c.base()+".deb")) {
			continue
		}
		download = append(download, c.name+"="+c.version)
	}
	if len(download) > 0 {
		if err := aptDownload(ctx, archives, download); err != nil {
			return nil, err
		}
	}
	dirs := make([]string, len(pkgs))
	for i, p := range pkgs {
		c := cands[p]
		dir := filepath.Join(root, c.base())
		if !complete(dir) {
			deb := filepath.Join(archives, c.base()+".deb")
			if err := unpack(ctx, deb, dir); err != nil {
				return nil, err
			}
			os.Remove(deb) // the unpacked folder is the cache
		}
		dirs[i] = dir
	}
	return dirs, nil
}

type candidate struct{ name, version, arch string }

func (c candidate) base() string {
	return c.name + "_" + strings.ReplaceAll(c.version, ":", "%3a") + "_" + c.arch
}

// candidates asks apt which version of each package it would download.
func candidates(ctx context.Context, pkgs []string) (map[string]candidate, error) {
	for _, p := range pkgs {
		if p == "" || strings.HasPrefix(p, "-") || strings.ContainsAny(p, " =/\t\n") {
			return nil, fmt.Errorf("%q is not a Debian package name", p)
		}
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "apt-cache", append([]string{"show", "--no-all-versions"}, pkgs...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	got := map[string]candidate{}
	var cur candidate
	flush := func() {
		if cur.name != "" && cur.version != "" {
			if _, dup := got[cur.name]; !dup {
				got[cur.name] = cur
			}
		}
		cur = candidate{}
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch k {
		case "Package":
			cur.name = v
		case "Version":
			cur.version = v
		case "Architecture":
			cur.arch = v
		}
	}
	flush()
	var missing []string
	for _, p := range pkgs {
		if _, ok := got[p]; !ok {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		msg := strings.TrimSpace(stderr.String())
		if err != nil && msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("apt knows no candidate for Debian package(s) %s (%s): check the names, and run `apt-get update` if the package lists are missing or old", strings.Join(missing, ", "), msg)
	}
	return got, nil
}

// aptDownload downloads name=version items into a fresh folder, then moves
// the .deb files into dir, so a concurrent Fetch never sees half a file.
func aptDownload(ctx context.Context, dir string, items []string) error {
	tmp, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download", "-q"}, items...)...)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %w\n%s", strings.Join(items, " "), err, tail(out))
	}
	debs, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil {
		return err
	}
	for _, d := range debs {
		if err := os.Rename(d, filepath.Join(dir, filepath.Base(d))); err != nil {
			return err
		}
	}
	return nil
}

// unpack runs dpkg-deb -x into a temporary folder renamed to dir at the end.
func unpack(ctx context.Context, deb, dir string) error {
	if !exists(deb) {
		return fmt.Errorf("%s is missing after apt-get download", deb)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".unpack-")
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("dpkg-deb -x %s: %w\n%s", deb, err, tail(out))
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, CompleteMarker), nil, 0o644); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if complete(dir) { // another Fetch unpacked it first
			return nil
		}
		return fmt.Errorf("unpacking %s: %w (a folder without %s is left from an interrupted unpack: delete it)", filepath.Base(deb), err, CompleteMarker)
	}
	return nil
}

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, CompleteMarker))
	return err == nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil || !errors.Is(err, os.ErrNotExist)
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}
