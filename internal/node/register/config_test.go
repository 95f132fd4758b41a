package register

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoadConfigResolvesCAPathAndDefaults(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(p, []byte("registration:\n  url: https://m/r\n  ca-cert: ca.pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Registration.CACert != filepath.Join(dir, "ca.pem") || cfg.StateDir != DefaultStateDir {
		t.Fatalf("got %+v", cfg)
	}
	if _, _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing config accepted")
	}
}
