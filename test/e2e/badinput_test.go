package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgefleet/edgefleet/test/harness"
)

// TestBadInputFailsWithOneClearLine runs the binary with each mistake a user
// makes and checks the exit code, the message, and that nothing keeps running.
func TestBadInputFailsWithOneClearLine(t *testing.T) {
	t.Parallel()
	bin := harness.EdgefleetBinary(t)
	kubeBin := harness.KubeBinDir(t)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadKubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(deadKubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"server", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{"port in use", []string{"server", "--data-dir", filepath.Join(t.TempDir(), "d"), "--listen", busy.Addr().String(), "--kube-bin-dir", kubeBin}, "cannot listen on " + busy.Addr().String()},
		{"data dir is a file", []string{"server", "--data-dir", filepath.Join(notADir, "sub"), "--listen", "127.0.0.1:0", "--kube-bin-dir", kubeBin}, "--data-dir"},
		{"kubeconfig does not reach a cluster", []string{"server", "--kubeconfig", deadKubeconfig, "--listen", "127.0.0.1:0"}, "cannot reach the cluster"},
		{"kubeconfig missing", []string{"server", "--kubeconfig", filepath.Join(t.TempDir(), "nope"), "--listen", "127.0.0.1:0"}, "--kubeconfig"},
		{"binaries missing", []string{"server", "--data-dir", filepath.Join(t.TempDir(), "d"), "--listen", "127.0.0.1:0", "--kube-bin-dir", t.TempDir()}, "make kube-binaries"},
		{"bad log level", []string{"version", "--log-level", "loud"}, "--log-level"},
		{"bad external url", []string{"server", "--data-dir", filepath.Join(t.TempDir(), "d"), "--listen", "127.0.0.1:0", "--external-url", "http://x"}, "--external-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, tt.args...)
			cmd.Env = append(os.Environ(), "EDGEFLEET_KUBE_BIN_DIR=")
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("exit 0, want failure; output:\n%s", out)
			}
			text := string(out)
			if !strings.Contains(text, tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, text)
			}
			last := strings.TrimSpace(text[strings.LastIndex(strings.TrimSpace(text), "\n")+1:])
			if !strings.HasPrefix(last, "edgefleet: error: ") {
				t.Fatalf("last line is not one clear error line: %q", last)
			}
		})
	}
	if data, _ := os.ReadFile(notADir); string(data) != "keep me" {
		t.Fatal("user data was changed")
	}
}
