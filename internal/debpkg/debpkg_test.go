package debpkg_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/debpkg"
)

func needApt(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("downloads from Debian's archive: skipped in -short mode")
	}
	for _, c := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not found: debpkg needs Debian's apt and dpkg", c)
		}
	}
}

// TestFetchUnpacksAndCaches: a package comes back unpacked, and a second
// Fetch is served from the cache without downloading again.
func TestFetchUnpacksAndCaches(t *testing.T) {
	needApt(t)
	t.Setenv("EDGEFLEET_DEB_CACHE", t.TempDir())
	ctx := context.Background()
	dirs, err := debpkg.Fetch(ctx, "busybox-static")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 1 || !strings.HasPrefix(filepath.Base(dirs[0]), "busybox-static_") {
		t.Fatalf("dirs = %v", dirs)
	}
	for _, f := range []string{"bin/busybox", debpkg.CompleteMarker} {
		if _, err := os.Stat(filepath.Join(dirs[0], f)); err != nil {
			t.Fatalf("%s not unpacked: %v", f, err)
		}
	}
	marker := filepath.Join(dirs[0], debpkg.CompleteMarker)
	old := time.Unix(1000, 0)
	if err := os.Chtimes(marker, old, old); err != nil {
		t.Fatal(err)
	}
	again, err := debpkg.Fetch(ctx, "busybox-static")
	if err != nil || again[0] != dirs[0] {
		t.Fatalf("second Fetch = %v, %v", again, err)
	}
	if fi, err := os.Stat(marker); err != nil || !fi.ModTime().Equal(old) {
		t.Error("the second Fetch unpacked the package again")
	}
	if debs, _ := filepath.Glob(filepath.Join(debpkg.Dir(), "archives", "*.deb")); len(debs) != 0 {
		t.Errorf(".deb files kept after unpacking: %v", debs)
	}
}

func TestFetchRejectsBadNames(t *testing.T) {
	needApt(t)
	t.Setenv("EDGEFLEET_DEB_CACHE", t.TempDir())
	for _, name := range []string{"no-such-package-edgefleet", "-o=evil", "a b"} {
		_, err := debpkg.Fetch(context.Background(), name)
		if err == nil {
			t.Errorf("Fetch(%q) succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("Fetch(%q): error does not name the package: %v", name, err)
		}
	}
}
