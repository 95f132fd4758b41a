package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApplyOutputIsPrivate: `edgefleet apply -o FILE` writes the rendered
// bundles (which carry the repository's Secrets and values) readable by the
// owner only, narrowing an existing file too.
func TestApplyOutputIsPrivate(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.yaml": configMap("a")})
	out := filepath.Join(t.TempDir(), "bundles.yaml")
	for _, existing := range []bool{false, true} {
		if existing {
			if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(out, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := runCLI(t, "apply", "-o", out, "private", dir); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Fatalf("existing=%v: %s has mode %o, want 600", existing, out, perm)
		}
		if data, _ := os.ReadFile(out); !strings.Contains(string(data), "kind: Bundle") {
			t.Fatalf("output lacks the bundle:\n%s", data)
		}
	}
}

// TestApplyRefusesLinksOutOfTheDirectory: a local directory read by
// `edgefleet apply` is confined like a git checkout: a link out of it is
// an error naming the link, and nothing is written.
func TestApplyRefusesLinksOutOfTheDirectory(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret.yaml")
	if err := os.WriteFile(secret, []byte(configMap("CANARY-apply")), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.yaml": configMap("a")})
	if err := os.Symlink(secret, filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "bundles.yaml")
	stdout, err := runCLI(t, "apply", "-o", out, "leak", dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "b.yaml")) || !strings.Contains(err.Error(), "leads outside") {
		t.Fatalf("apply of a directory with a link out of it: %v", err)
	}
	if _, statErr := os.Stat(out); statErr == nil || strings.Contains(stdout, "CANARY") {
		t.Fatal("apply wrote output despite the error")
	}
}
