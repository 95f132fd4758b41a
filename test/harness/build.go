package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildWithVersion builds cmd/<binary> from this checkout with
// internal/version.Version set to version, as `make build` stamps a
// release: how tests get an "older" or "newer" binary when the repository
// has no earlier release tag to build from. The binary goes to a test
// temporary directory.
func BuildWithVersion(t testing.TB, binary, version string) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), binary+"-"+version)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags",
		"-s -w -X github.com/edgefleet/edgefleet/internal/version.Version="+version, "-o", out, "./cmd/"+binary)
	cmd.Dir = root
	if binary != "edgefleet" {
		// As the Makefile builds the device binaries: static, and the
		// build cache is shared with `make build`.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatal(fmt.Errorf("building %s %s: %v\n%s", binary, version, err, b))
	}
	return out
}
