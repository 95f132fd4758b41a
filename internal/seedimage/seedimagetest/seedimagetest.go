// Package seedimagetest reads seed images back with the tools a user has
// (sgdisk, debugfs, xorriso) and serves OCI images from an in-process
// registry on loopback, for tests of seed images.
package seedimagetest

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// RequireTools skips the test when one of the tools is not installed. It
// adds /usr/sbin and /sbin to PATH (sgdisk, mkfs.ext4, debugfs live there and
// a Debian user's PATH lacks them).
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	path := os.Getenv("PATH")
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if !slices.Contains(filepath.SplitList(path), dir) {
			path += string(filepath.ListSeparator) + dir
		}
	}
	t.Setenv("PATH", path)
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (hack/install-deps.sh)", tool)
		}
	}
}

// Partition is a GPT partition as sgdisk -p prints it.
type Partition struct {
	Number      int
	First, Last int64
	Name        string
}

var partLine = regexp.MustCompile(`^\s*(\d+)\s+(\d+)\s+(\d+)\s+\S+ \S+\s+\S+\s*(.*)$`)

// Partitions lists the GPT partitions of a disk image with sgdisk -p, and
// fails the test if sgdisk -v finds a problem with the table.
func Partitions(t testing.TB, disk string) []Partition {
	t.Helper()
	if out, err := exec.Command("sgdisk", "-v", disk).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v %s: %v\n%s", disk, err, out)
	}
	out, err := exec.Command("sgdisk", "-p", disk).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -p %s: %v\n%s", disk, err, out)
	}
	var parts []Partition
	for _, l := range strings.Split(string(out), "\n") {
		m := partLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		first, _ := strconv.ParseInt(m[2], 10, 64)
		last, _ := strconv.ParseInt(m[3], 10, 64)
		parts = append(parts, Partition{Number: n, First: first, Last: last, Name: strings.TrimSpace(m[4])})
	}
	return parts
}

// ExtractPartition copies partition p (512-byte sectors) of disk to a file.
func ExtractPartition(t testing.TB, disk string, p Partition) string {
	t.Helper()
	in, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out := filepath.Join(t.TempDir(), "part"+strconv.Itoa(p.Number)+".img")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, io.NewSectionReader(in, p.First*512, (p.Last-p.First+1)*512)); err != nil {
		t.Fatal(err)
	}
	return out
}

// ReadExt4 copies the files of an ext4 image to a directory with debugfs
// and returns the directory and the filesystem's label.
func ReadExt4(t testing.TB, fs string) (dir, label string) {
	t.Helper()
	dir = t.TempDir()
	if out, err := exec.Command("debugfs", "-R", "rdump / "+dir, fs).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump %s: %v\n%s", fs, err, out)
	}
	out, err := exec.Command("e2label", fs).Output()
	if err != nil {
		t.Fatalf("e2label %s: %v", fs, err)
	}
	return dir, strings.TrimSpace(string(out))
}

// ReadISO extracts an ISO with xorriso.
func ReadISO(t testing.TB, iso string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", dir).CombinedOutput(); err != nil {
		t.Fatalf("xorriso extract %s: %v\n%s", iso, err, out)
	}
	return dir
}

// MakeISO builds an ISO holding files with xorriso.
func MakeISO(t testing.TB, label string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	iso := filepath.Join(t.TempDir(), "base.iso")
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-V", label, "-J", "-R", "-o", iso, dir).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}
	return iso
}

// StartRegistry serves an OCI registry in this process on 127.0.0.1 and
// returns its host:port.
func StartRegistry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Push pushes an image with one layer per map (path in the image → content
// file on disk) to ref and returns ref.
func Push(t testing.TB, ref string, layers ...map[string]string) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img := empty.Image
	for _, files := range layers {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			data, err := os.ReadFile(files[n])
			if err != nil {
				t.Fatal(err)
			}
			if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write(data); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return ref
}

// Entry is one file, directory or symlink of an image layer.
type Entry struct {
	Name string
	// Data of a regular file; Link makes a symlink; Dir a directory.
	Data []byte
	Link string
	Dir  bool
	Mode int64
}

// PushEntries pushes a linux/amd64 image of one layer holding entries, with
// labels in its config, and returns ref@digest.
func PushEntries(t testing.TB, ref string, labels map[string]string, entries ...Entry) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Mode: e.Mode, Size: int64(len(e.Data)), Typeflag: tar.TypeReg}
		switch {
		case e.Dir:
			h.Typeflag, h.Size = tar.TypeDir, 0
		case e.Link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.Link, 0
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if e.Dir {
				h.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Labels = labels
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return r.Context().Digest(d.String()).String()
}
