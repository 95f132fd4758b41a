package osimage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/edgefleet/edgefleet/internal/debpkg"
)

// systemdPackages are the roots of the systemd variant; the image holds
// their whole Depends/Pre-Depends closure, unpacked (no maintainer script
// runs: what those scripts would create, the builder writes, or systemd
// creates at boot — sysusers, tmpfiles, machine-id).
var systemdPackages = []string{
	"systemd-sysv", "udev", "login", "base-files", "base-passwd", "bash", "coreutils", "dash", "util-linux", "mount",
	"grep", "sed", "findutils", "iproute2", "procps", "gdisk", "e2fsprogs", "dosfstools", "squashfs-tools", "grub-common",
}

// dependencyClosure asks apt for every package pkgs need (Depends and
// Pre-Depends, recursively; alternatives all included), sorted.
func dependencyClosure(ctx context.Context, pkgs []string) ([]string, error) {
	args := append([]string{"depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
		"--no-replaces", "--no-enhances"}, pkgs...)
	out, err := exec.CommandContext(ctx, "apt-cache", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache depends %s: %w (run apt-get update?)", strings.Join(pkgs, " "), err)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, " ") || strings.HasPrefix(l, "<") {
			continue // dependency lines and virtual packages
		}
		seen[strings.TrimSpace(l)] = true
	}
	var all []string
	for p := range seen {
		all = append(all, p)
	}
	sort.Strings(all)
	return all, nil
}

// skipInSystemdImage are folders of packages nobody reads on a machine.
var skipInSystemdImage = []string{"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "usr/share/bug"}

// systemdUserland unpacks the closure, then adds the accounts, the
// edgefleet units and the network config.
func (b *builder) systemdUserland(t *tree) error {
	for _, dir := range b.debDirs {
		if err := unpackInto(t, dir); err != nil {
			return err
		}
	}
	if !t.has("usr/lib/systemd/systemd") {
		return fmt.Errorf("the systemd variant has no /lib/systemd/systemd after unpacking")
	}
	for _, acct := range []string{"passwd", "group"} {
		host := filepath.Join(b.pkgDir("base-passwd"), "usr", "share", "base-passwd", acct+".master")
		if _, err := os.Stat(host); err != nil {
			return fmt.Errorf("base-passwd: %w", err)
		}
		t.addFile("etc/"+acct, 0o644, host)
	}
	t.addData("etc/machine-id", 0o444, nil) // empty: systemd makes one at each boot
	t.addFile(NodePath, 0o755, b.o.NodeBinary)
	for _, e := range []struct{ src, dst string }{
		{"files/edgefleet-node.service", "etc/systemd/system/edgefleet-node.service"},
		{"files/edgefleet-os.service", "etc/systemd/system/edgefleet-os.service"},
		{"files/80-dhcp.network", "etc/systemd/network/80-dhcp.network"},
	} {
		if err := addEmbedded(t, e.src, e.dst, 0o644); err != nil {
			return err
		}
	}
	if err := addEmbedded(t, "files/os-report", "usr/lib/edgefleet/os-report", 0o755); err != nil {
		return err
	}
	// getty-static starts gettys on tty2-6 when D-Bus is missing (it is):
	// 20 s of a TCG boot for consoles nobody has.
	t.addSymlink("etc/systemd/system/getty-static.service", "/dev/null")
	// What `systemctl enable` would link.
	t.addSymlink("etc/systemd/system/default.target", "/lib/systemd/system/multi-user.target")
	t.addSymlink("etc/systemd/system/multi-user.target.wants/edgefleet-node.service", "/etc/systemd/system/edgefleet-node.service")
	t.addSymlink("etc/systemd/system/multi-user.target.wants/edgefleet-os.service", "/etc/systemd/system/edgefleet-os.service")
	t.addSymlink("etc/systemd/system/multi-user.target.wants/systemd-networkd.service", "/lib/systemd/system/systemd-networkd.service")
	t.addSymlink("etc/systemd/system/sockets.target.wants/systemd-networkd.socket", "/lib/systemd/system/systemd-networkd.socket")
	t.addSymlink("etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service", "/lib/systemd/system/systemd-networkd-wait-online.service")
	return nil
}

func (b *builder) pkgDir(name string) string {
	for _, d := range b.debDirs {
		if strings.HasPrefix(filepath.Base(d), name+"_") {
			return d
		}
	}
	return ""
}

// unpackInto adds every file of an unpacked package to t (usr-merged).
func unpackInto(t *tree, root string) error {
	return filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || rel == debpkg.CompleteMarker {
			return nil
		}
		key := usrMerged(filepath.ToSlash(rel))
		for _, skip := range skipInSystemdImage {
			if key == skip || strings.HasPrefix(key, skip+"/") {
				if de.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		perm := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch {
		case fi.IsDir():
			if key == "usr/bin" || key == "usr/sbin" || key == "usr/lib" || key == "usr/lib64" {
				return nil // stays what the top-level links point to
			}
			t.mkdirAll(key, perm)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			t.addSymlink(key, target)
		case fi.Mode().IsRegular():
			t.addFile(key, perm, p)
		}
		return nil
	})
}
