package seedimage_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/seedimage"
	sit "github.com/edgefleet/edgefleet/internal/seedimage/seedimagetest"
)

var seedFiles = map[string][]byte{
	"edgefleet-node.yaml": []byte("registration:\n  url: https://manager.example/v1/machines/register/x\n"),
	"cloud-config.yaml":   []byte("#cloud-config\nusers: [{name: ops}]\n"),
}

func build(t *testing.T, in seedimage.Input) (string, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "seed.out")
	t0 := time.Now()
	sum, err := seedimage.Build(context.Background(), in, out)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(out)
	t.Logf("built %s image (base %q) in %s: %d bytes", in.Kind, in.BaseImage, time.Since(t0).Round(time.Millisecond), st.Size())
	return out, sum
}

func assertFiles(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	for n, c := range want {
		got, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || string(got) != string(c) {
			t.Errorf("%s on the media: %q (%v), want %q", n, got, err, c)
		}
	}
}

// seedPartition finds the config partition and reads its files back.
func seedPartition(t *testing.T, disk string) (sit.Partition, string) {
	t.Helper()
	for _, p := range sit.Partitions(t, disk) {
		if p.Name == seedimage.RawPartitionName {
			dir, label := sit.ReadExt4(t, sit.ExtractPartition(t, disk, p))
			if label != seedimage.VolumeID {
				t.Errorf("config partition label %q, want %q", label, seedimage.VolumeID)
			}
			return p, dir
		}
	}
	t.Fatalf("%s has no %s partition: %+v", disk, seedimage.RawPartitionName, sit.Partitions(t, disk))
	return sit.Partition{}, ""
}

// A raw image without a base is a GPT disk with one ext4 partition holding
// the config files.
func TestBuildRawConfigOnly(t *testing.T) {
	sit.RequireTools(t, "sgdisk", "mkfs.ext4", "debugfs", "e2label")
	img, _ := build(t, seedimage.Input{Kind: seedimage.KindRaw, Files: seedFiles})
	if parts := sit.Partitions(t, img); len(parts) != 1 {
		t.Fatalf("partitions %+v, want only the config partition", parts)
	}
	p, dir := seedPartition(t, img)
	if p.First != 2048 {
		t.Errorf("config partition starts at sector %d, want 2048 (1 MiB aligned)", p.First)
	}
	assertFiles(t, dir, seedFiles)
}

// makeBaseDisk is an OS disk image: an EFI partition and an ext4 root
// holding os-release, with room left at the end.
func makeBaseDisk(t *testing.T) string {
	t.Helper()
	disk := filepath.Join(t.TempDir(), "os.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 24<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sgdisk", "-o", "-n", "1:2048:+2M", "-t", "1:ef00", "-c", "1:EFI", "-n", "2:0:+16M", "-t", "2:8300", "-c", "2:COS_STATE", disk).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "os-release"), []byte("NAME=TestOS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := filepath.Join(t.TempDir(), "root.ext4")
	if err := os.WriteFile(fs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fs, 16<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "COS_STATE", "-d", root, fs).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	var state sit.Partition
	for _, p := range sit.Partitions(t, disk) {
		if p.Name == "COS_STATE" {
			state = p
		}
	}
	data, err := os.ReadFile(fs)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, state.First*512); err != nil {
		t.Fatal(err)
	}
	return disk
}

// A base raw image keeps its partitions and gains the config partition; a
// base that already has one (an image built before) gets it replaced.
func TestBuildRawOnBaseImage(t *testing.T) {
	sit.RequireTools(t, "sgdisk", "mkfs.ext4", "debugfs", "e2label")
	base := makeBaseDisk(t)
	img, _ := build(t, seedimage.Input{Kind: seedimage.KindRaw, Files: seedFiles, BaseImage: base, Sources: localDirOf(base)})
	parts := sit.Partitions(t, img)
	if len(parts) != 3 || parts[0].Name != "EFI" || parts[1].Name != "COS_STATE" || parts[2].Name != seedimage.RawPartitionName {
		t.Fatalf("partitions %+v: want EFI, COS_STATE and the config partition after them", parts)
	}
	if parts[2].First <= parts[1].Last || parts[2].First%2048 != 0 {
		t.Errorf("config partition at %d, after %d, not 1 MiB aligned", parts[2].First, parts[1].Last)
	}
	root, _ := sit.ReadExt4(t, sit.ExtractPartition(t, img, parts[1]))
	assertFiles(t, root, map[string][]byte{"os-release": []byte("NAME=TestOS\n")})
	_, dir := seedPartition(t, img)
	assertFiles(t, dir, seedFiles)

	// Again on the result, with other files: replaced in place.
	other := map[string][]byte{"edgefleet-node.yaml": []byte("registration:\n  url: https://other.example/v1/machines/register/y\n")}
	again, _ := build(t, seedimage.Input{Kind: seedimage.KindRaw, Files: other, BaseImage: filepath.Base(img), Sources: localDirOf(img)})
	if got := sit.Partitions(t, again); len(got) != 3 || got[2] != parts[2] {
		t.Fatalf("partitions %+v, want %+v unchanged", got, parts)
	}
	_, dir = seedPartition(t, again)
	assertFiles(t, dir, other)
	if _, err := os.Stat(filepath.Join(dir, "cloud-config.yaml")); err == nil {
		t.Error("the replaced config partition still holds the old cloud-config")
	}
}

// Base images from an OCI registry: the single .iso (or .img for raw) in the
// image's layers is remastered; zero or several are an error that says so.
func TestBuildFromOCIImage(t *testing.T) {
	sit.RequireTools(t, "xorriso", "sgdisk", "mkfs.ext4", "debugfs", "e2label")
	reg := sit.StartRegistry(t)
	iso := sit.MakeISO(t, "TESTOS", map[string]string{"os-release": "NAME=TestOS\n"})
	readme := filepath.Join(t.TempDir(), "README")
	if err := os.WriteFile(readme, []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The ISO in a second layer, under a directory, next to other files.
	isoRef := sit.Push(t, reg+"/os/iso:1", map[string]string{"README": readme}, map[string]string{"images/os.iso": iso})
	// The registry is on loopback and plain HTTP: allowed explicitly.
	insecure := seedimage.Sources{AllowInsecure: true}
	out, _ := build(t, seedimage.Input{Files: seedFiles, BaseImage: "oci://" + isoRef, Sources: insecure})
	files := sit.ReadISO(t, out)
	assertFiles(t, files, map[string][]byte{"os-release": []byte("NAME=TestOS\n")})
	assertFiles(t, files, seedFiles)

	// A plain reference (no oci://) to an image holding a raw disk.
	rawRef := sit.Push(t, reg+"/os/raw:1", map[string]string{"disk/os.img": makeBaseDisk(t)})
	img, _ := build(t, seedimage.Input{Kind: seedimage.KindRaw, Files: seedFiles, BaseImage: rawRef, Sources: insecure})
	if parts := sit.Partitions(t, img); len(parts) != 3 {
		t.Fatalf("partitions %+v, want the base's two and the config partition", parts)
	}
	_, dir := seedPartition(t, img)
	assertFiles(t, dir, seedFiles)

	for _, tc := range []struct {
		name, ref, kind, want string
		limit                 int64
		sum                   string
		secure                bool
	}{
		{name: "no iso", ref: sit.Push(t, reg+"/os/empty:1", map[string]string{"README": readme}), want: "holds no .iso file"},
		{name: "two isos", ref: sit.Push(t, reg+"/os/two:1", map[string]string{"a.iso": iso, "b/c.iso": iso}), want: "holds 2 .iso files (/a.iso, /b/c.iso)"},
		{name: "iso for raw", ref: isoRef, kind: seedimage.KindRaw, want: "holds no .img or .raw file"},
		{name: "unknown tag", ref: reg + "/os/iso:2", want: "pulling baseImage"},
		{name: "too large", ref: isoRef, limit: 1024, want: "more than the 1024 allowed"},
		{name: "checksum mismatch", ref: isoRef, sum: strings.Repeat("0", 64), want: "but spec.baseImageSHA256 is 000"},
		{name: "plain HTTP refused by default", ref: isoRef, secure: true, want: "refusing plain HTTP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := insecure
			if tc.secure {
				src = seedimage.Sources{}
			}
			_, err := seedimage.Build(context.Background(), seedimage.Input{Kind: tc.kind, Files: seedFiles, BaseImage: "oci://" + tc.ref, MaxBaseBytes: tc.limit, BaseImageSHA256: tc.sum, Sources: src}, filepath.Join(t.TempDir(), "out"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// Inputs that cannot be built fail with an error naming the problem.
func TestBuildRejectsBadBaseImages(t *testing.T) {
	sit.RequireTools(t, "xorriso", "sgdisk", "mkfs.ext4")
	notGPT := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(notGPT, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   seedimage.Input
		want string
	}{
		{"raw base without GPT", seedimage.Input{Kind: seedimage.KindRaw, BaseImage: notGPT, Sources: localDirOf(notGPT)}, "has no GPT partition table"},
		{"local path without a base image directory", seedimage.Input{BaseImage: "images/os.iso"}, "reads no local base images"},
		{"missing file", seedimage.Input{BaseImage: "os.iso", Sources: localDirOf(notGPT)}, "no such file in the manager's base image directory"},
		{"URL without a checksum", seedimage.Input{BaseImage: "https://images.example/os.iso"}, "set spec.baseImageSHA256"},
		{"unsupported URL", seedimage.Input{BaseImage: "file:///etc/passwd"}, "not a supported URL"},
		{"unknown type", seedimage.Input{Kind: "vhd"}, `unknown image type "vhd"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Files = seedFiles
			_, err := seedimage.Build(context.Background(), tc.in, filepath.Join(t.TempDir(), "out"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// localDirOf allows local base images from the directory holding file.
func localDirOf(file string) seedimage.Sources {
	return seedimage.Sources{LocalDir: filepath.Dir(file)}
}
