package releases

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ file, wantErr string }{
		"good":                       {"edgefleet:\n  v1.37.2: {dir: /opt/k/v1.37.2}\n  v1.37.1: {image: r/k@sha256:00}\nk3s: [v1.33.5+k3s1]\n", ""},
		"k3s spelling for edgefleet": {"edgefleet:\n  v1.33.5+k3s1: {image: r/k}\n", "not like v1.37.1"},
		"both sources":               {"edgefleet:\n  v1.37.1: {image: r/k, dir: /k}\n", "exactly one"},
		"rke2 without suffix":        {"rke2: [v1.33.5]\n", "rke2's spelling"},
		"unknown key":                {"talos: [v1]\n", "unknown field"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v := c.Versions()["edgefleet"]; len(v) != 2 || v[0] != "v1.37.1" {
				t.Fatalf("versions = %v", c.Versions())
			}
			if c.Binaries()["v1.37.2"].Dir != "/opt/k/v1.37.2" {
				t.Fatalf("binaries = %v", c.Binaries())
			}
		})
	}
	var none *Catalog
	if none.Versions() != nil || none.Binaries() != nil {
		t.Fatal("a nil catalog must offer no list (any version goes)")
	}
}
