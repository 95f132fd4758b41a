package osimage

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestUsrMerged(t *testing.T) {
	for in, want := range map[string]string{
		"/sbin/mkfs.ext4":                  "usr/sbin/mkfs.ext4",
		"bin/mount":                        "usr/bin/mount",
		"/lib/x86_64-linux-gnu/libc.so.6":  "usr/lib/x86_64-linux-gnu/libc.so.6",
		"/lib64/ld-linux-x86-64.so.2":      "usr/lib64/ld-linux-x86-64.so.2",
		"/usr/bin/mksquashfs":              "usr/bin/mksquashfs",
		"/etc/mke2fs.conf":                 "etc/mke2fs.conf",
		"/binaries/x":                      "binaries/x",
		"/usr/../sbin/../lib/./modules/x1": "usr/lib/modules/x1",
	} {
		if got := usrMerged(in); got != want {
			t.Errorf("usrMerged(%q) = %q, want %q", in, got, want)
		}
	}
}

func sampleTree() *tree {
	t := newTree()
	t.addData("init", 0o755, []byte("#!/bin/sh\necho hi\n"))
	t.addData("etc/odd", 0o600, []byte("x")) // a size that needs padding
	t.addSymlink("bin", "usr/bin")
	t.mkdirAll("tmp", 0o777)
	t.addData("usr/bin/tool", 0o755, bytes.Repeat([]byte{1, 2, 3}, 1000))
	return t
}

// TestArchivesAreReproducible: the same tree gives the same bytes, entries
// sorted, whatever the order files were added in.
func TestArchivesAreReproducible(t *testing.T) {
	var a, b, c, d bytes.Buffer
	if err := sampleTree().writeTar(&a, epoch); err != nil {
		t.Fatal(err)
	}
	if err := sampleTree().writeTar(&b, epoch); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("tar differs between two writes of the same tree")
	}
	if err := sampleTree().writeCpio(&c, epoch); err != nil {
		t.Fatal(err)
	}
	if err := sampleTree().writeCpio(&d, epoch); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Bytes(), d.Bytes()) {
		t.Error("cpio differs between two writes of the same tree")
	}
	tr := tar.NewReader(&a)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if !h.ModTime.Equal(time.Unix(0, 0)) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %v uid %d gid %d", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		names = append(names, h.Name)
	}
	want := []string{"bin", "etc/", "etc/odd", "init", "tmp/", "usr/", "usr/bin/", "usr/bin/tool"}
	if len(names) != len(want) {
		t.Fatalf("tar entries %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Errorf("tar entry %d = %s, want %s", i, names[i], want[i])
		}
	}
}

// TestCpioExtracts: GNU cpio unpacks the initramfs format we write.
func TestCpioExtracts(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not found")
	}
	var buf bytes.Buffer
	if err := sampleTree().writeCpio(&buf, epoch); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idm", "--quiet", "--no-absolute-filenames")
	cmd.Dir, cmd.Stdin = dir, &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "init")); err != nil || string(b) != "#!/bin/sh\necho hi\n" {
		t.Errorf("init = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "init")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("init mode %v, %v", fi.Mode(), err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "usr/bin/tool")); err != nil || len(b) != 3000 {
		t.Errorf("tool: %d bytes, %v", len(b), err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin")); err != nil || l != "usr/bin" {
		t.Errorf("bin -> %q, %v", l, err)
	}
}

func TestPruneCache(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	old := now.Add(-2 * pruneAfter)
	mk := func(name string, mtime time.Time) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	mk("test-1.0.0-0123456789abcdef", old)        // superseded, unused: pruned
	mk("test-1.0.0-1111111111111111", now)        // superseded but recently used: kept
	mk("test-1.0.0-2222222222222222", old)        // the one in use: kept
	mk("test-1.0.0-broken-3333333333333333", old) // another image (broken): kept
	mk("test-1.0.1-4444444444444444", old)        // another version: kept
	mk(".build-123", old)                         // interrupted build: pruned
	mk(".build-456", now)                         // a build running now: kept
	pruneCache(dir, "test-1.0.0-", filepath.Join(dir, "test-1.0.0-2222222222222222"), now)
	for name, want := range map[string]bool{
		"test-1.0.0-0123456789abcdef": false, "test-1.0.0-1111111111111111": true, "test-1.0.0-2222222222222222": true,
		"test-1.0.0-broken-3333333333333333": true, "test-1.0.1-4444444444444444": true, ".build-123": false, ".build-456": true,
	} {
		_, err := os.Stat(filepath.Join(dir, name))
		if got := err == nil; got != want {
			t.Errorf("%s: exists %v, want %v", name, got, want)
		}
	}
}
