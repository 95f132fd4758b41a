package webui

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestUIUnit runs the UI's own unit tests (web/ui/src/*.test.ts, node:test)
// so `make test` covers them; it skips, saying why, without node or the
// UI's npm packages.
func TestUIUnit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("UI unit tests skipped: node is missing (Debian package nodejs; `make deps`)")
	}
	dir := filepath.Join("..", "..", "web", "ui")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "esbuild")); err != nil {
		t.Skip("UI unit tests skipped: the UI's npm packages are missing: run `make ui-deps`")
	}
	cmd := exec.Command(node, "test/unit.mjs")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("UI unit tests failed: %v\n%s", err, out)
	}
}
