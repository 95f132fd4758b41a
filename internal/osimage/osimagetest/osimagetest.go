// Package osimagetest builds real OS images for tests (the reference test
// image of internal/osimage, from Debian's packages, cached in
// ~/.cache/edgefleet/os): one edgefleet-node build per test binary, one
// image build per version, and the squashfs root image installers and seed
// media store.
package osimagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/edgefleet/edgefleet/internal/osimage"
)

var (
	nodeOnce sync.Once
	nodeBin  string
	nodeErr  error
)

// NodeBinary builds a static linux/amd64 edgefleet-node once per test
// binary (without version stamps, so unchanged code keeps hitting the image
// cache). It lives in the OS image cache, one per source tree (worktrees
// sharing the cache do not overwrite each other's), replaced atomically.
func NodeBinary(t testing.TB) string {
	t.Helper()
	nodeOnce.Do(func() { nodeBin, nodeErr = buildNode() })
	if nodeErr != nil {
		t.Fatal(nodeErr)
	}
	return nodeBin
}

func buildNode() (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	cache := os.Getenv("EDGEFLEET_OS_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache", "edgefleet", "os")
	}
	tree := sha256.Sum256(bytes.TrimSpace(gomod))
	dir := filepath.Join(cache, "node-bin", hex.EncodeToString(tree[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".edgefleet-node-")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", tmp.Name(), "github.com/edgefleet/edgefleet/cmd/edgefleet-node")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building edgefleet-node: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "edgefleet-node")
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// SkipWithoutBuilder skips the test in -short mode and when the tools the
// builder needs are missing (hack/install-deps.sh installs them).
func SkipWithoutBuilder(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds an OS image from Debian's archive: skipped in -short mode")
	}
	for _, c := range []string{"apt-get", "dpkg-deb", "grub-mkimage", "mksquashfs"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not found (hack/install-deps.sh installs it): skipping a test that builds an OS image", c)
		}
	}
}

// Image is a built OS image and its squashfs root image.
type Image struct {
	*osimage.Result
	// Squashfs is the image's filesystem as a squashfs file (what
	// EF_STATE/images/<slot>.squashfs and seed media hold); empty for
	// broken images.
	Squashfs string
}

var (
	mu     sync.Mutex
	images = map[string]*Image{}
)

// Build builds (or takes from the cache) the image o describes; an empty
// NodeBinary gets NodeBinary(t). Images are shared by the tests of a test
// binary.
func Build(t testing.TB, o osimage.Options) *Image {
	t.Helper()
	SkipWithoutBuilder(t)
	if o.NodeBinary == "" {
		o.NodeBinary = NodeBinary(t)
	}
	mu.Lock()
	defer mu.Unlock()
	key := fmt.Sprintf("%s|%s|%s|%v|%s", o.Variant, o.Name, o.Version, o.Broken, o.CacheDir)
	if img, ok := images[key]; ok {
		return img
	}
	r, err := osimage.Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	img := &Image{Result: r}
	if !o.Broken {
		img.Squashfs = filepath.Join(r.Dir, "rootfs.squashfs")
		if _, err := os.Stat(img.Squashfs); err != nil {
			oci, err := r.Image()
			if err != nil {
				t.Fatal(err)
			}
			tmp, err := os.CreateTemp(r.Dir, ".rootfs-*.squashfs")
			if err != nil {
				t.Fatal(err)
			}
			tmp.Close()
			if err := osimage.Squashfs(context.Background(), oci, tmp.Name()); err != nil {
				os.Remove(tmp.Name())
				t.Fatal(err)
			}
			if err := os.Rename(tmp.Name(), img.Squashfs); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("OS image %s %s: %s (cached %v)", o.Variant, o.Version, r.Digest, r.Cached)
	images[key] = img
	return img
}

// Version builds the test variant of version v (broken: its boot init
// panics).
func Version(t testing.TB, v string, broken bool) *Image {
	t.Helper()
	return Build(t, osimage.Options{Version: v, Broken: broken})
}
