package cloudconfig

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in     string
		wantWarnings []string
		wantErr      string
	}{
		{"supported keys", "#cloud-config\nusers: [{name: ops, passwd: x}]\nwrite_files: [{path: /etc/x, content: y}]\nruncmd: [\"echo hi\", [touch, /tmp/x]]\n", nil, ""},
		{"unsupported keys warn", "packages: [vim]\nstages: {}\nruncmd: []\n", []string{`"packages" is not supported`, `"stages" is not supported`}, ""},
		{"relative path", "write_files: [{path: etc/x}]\n", nil, "not an absolute path"},
		{"unknown encoding", "write_files: [{path: /x, encoding: gzip}]\n", nil, "encoding \"gzip\" is not supported"},
		{"user without name", "users: [{passwd: x}]\n", nil, "users[0] has no name"},
		{"not yaml", "users: [\n", nil, "not a cloud-config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, warnings, err := Parse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(warnings) != len(tt.wantWarnings) {
				t.Fatalf("warnings = %v, want %v", warnings, tt.wantWarnings)
			}
			for i, w := range tt.wantWarnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %q lacks %q", warnings[i], w)
				}
			}
		})
	}
}

// TestApplyDirOnce: files are written and commands run at the first boot
// only; a changed file is applied again.
func TestApplyDirOnce(t *testing.T) {
	root, oem, state := t.TempDir(), t.TempDir(), t.TempDir()
	counter := filepath.Join(root, "count")
	cfg := "#cloud-config\nwrite_files:\n- path: /etc/motd\n  content: aGVsbG8K\n  encoding: b64\n  permissions: '0600'\nruncmd:\n- echo x >> " + counter + "\n"
	if err := os.WriteFile(filepath.Join(oem, "90_registration.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var warned []string
	warn := func(s string) { warned = append(warned, s) }
	for range 2 {
		if err := ApplyDir(context.Background(), oem, root, state, warn); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/motd")); string(b) != "hello\n" {
		t.Errorf("motd = %q", b)
	}
	if st, _ := os.Stat(filepath.Join(root, "etc/motd")); st.Mode().Perm() != 0o600 {
		t.Errorf("motd mode %v", st.Mode())
	}
	if b, _ := os.ReadFile(counter); string(b) != "x\n" {
		t.Errorf("runcmd ran %q times, want once", b)
	}
	os.WriteFile(filepath.Join(oem, "90_registration.yaml"), []byte(cfg+"packages: [vim]\n"), 0o600)
	if err := ApplyDir(context.Background(), oem, root, state, warn); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(counter); string(b) != "x\nx\n" {
		t.Errorf("changed file not applied again: %q", b)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "packages") {
		t.Errorf("warnings = %v", warned)
	}
}
