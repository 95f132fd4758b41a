package register

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"minimal", "registration:\n  url: https://m:8443/v1/machines/register/abc\n", ""},
		{"fallbacks", "registration:\n  url: https://m/r\n  auth: tpm-or-fallback\n  fallback: [emulated-tpm, mac]\n", ""},
		{"http url", "registration:\n  url: http://m/r\n", "not an https URL"},
		{"no url", "registration: {}\n", "not an https URL"},
		{"bad auth", "registration:\n  url: https://m/r\n  auth: none\n", "registration.auth"},
		{"bad fallback", "registration:\n  url: https://m/r\n  fallback: [tpm]\n", "registration.fallback"},
		{"typo", "registration:\n  url: https://m/r\n  emulate-tmp: true\n", "unknown field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.in))
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

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
