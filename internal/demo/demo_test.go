package demo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func writeExec(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestFindKubeBinDir(t *testing.T) {
	full := t.TempDir()
	for _, b := range []string{"kube-apiserver", "etcd"} {
		writeExec(t, filepath.Join(full, b), "#!/bin/sh\n")
	}
	empty := t.TempDir()
	repo := t.TempDir()
	recorded := filepath.Join(repo, ".cache/kube-bin-dir")
	if err := os.MkdirAll(filepath.Dir(recorded), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name               string
		explicit, env, bin string
		record             string
		want, wantErr      string
	}{
		{name: "flag", explicit: full, bin: empty, want: full},
		{name: "flag without the binaries is an error, not a fallback", explicit: empty, env: full, wantErr: "--kube-bin-dir " + empty + " has no kube-apiserver and etcd: run `make kube-binaries`"},
		{name: "environment", env: full, bin: empty, want: full},
		{name: "recorded by make kube-binaries", record: full + "\n", bin: empty, want: full},
		{name: "next to the binaries", bin: full, want: full},
		{name: "nowhere", bin: empty, wantErr: "run `make build kube-binaries`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("EDGEFLEET_KUBE_BIN_DIR", tc.env)
			_ = os.Remove(recorded)
			if tc.record != "" {
				if err := os.WriteFile(recorded, []byte(tc.record), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := findKubeBinDir(tc.explicit, tc.bin, repo)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// Bad invocations fail before anything is started or written, with a
// message saying what to do.
func TestRunRefusesBadSetups(t *testing.T) {
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "precious"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	binsOnly := t.TempDir()
	for _, b := range []string{"edgefleet", "edgefleet-node", "edgefleet-agent"} {
		writeExec(t, filepath.Join(binsOnly, "bin", b), "#!/bin/sh\n")
	}
	for _, tc := range []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"no machines", Options{Machines: 0}, "--machines 0: at least 1"},
		{"binaries missing", Options{Machines: 1, BinDir: t.TempDir()}, "run `make build kube-binaries`"},
		{"not a checkout", Options{Machines: 1, BinDir: filepath.Join(binsOnly, "bin")}, "no edgefleet checkout around"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			tc.o.Out = &out
			err := Run(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(out.String(), "Clean up") {
				t.Errorf("cleanup ran although nothing was created:\n%s", out.String())
			}
		})
	}
	t.Run("a data dir that is not empty is left alone", func(t *testing.T) {
		d := &demo{o: Options{DataDir: nonEmpty}, p: &progress{out: &bytes.Buffer{}}}
		err := d.makeDataDir()
		if err == nil || !strings.Contains(err.Error(), "is not empty") {
			t.Fatalf("error %v", err)
		}
		d.cleanup()
		if _, err := os.Stat(filepath.Join(nonEmpty, "precious")); err != nil {
			t.Errorf("the user's file is gone: %v", err)
		}
	})
}

func TestProgressPlain(t *testing.T) {
	var out bytes.Buffer
	p := &progress{out: &out}
	p.begin("first")
	p.note("a warning %d", 1)
	p.begin("second") // ends the first as done
	p.end(errors.New("boom"))
	p.end(nil) // nothing running: no line
	got := out.String()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	want := []string{`[ .. ]  1. first`, `       a warning 1`, `[ OK ]  1. first (`, `[ .. ]  2. second`, `[FAIL]  2. second (`}
	if len(lines) != len(want) {
		t.Fatalf("lines:\n%s", got)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d %q, want prefix %q", i, lines[i], w)
		}
	}
	if !strings.HasSuffix(lines[4], "): boom") || strings.ContainsAny(got, "\r\033") {
		t.Errorf("output:\n%q", got)
	}
}

func TestProgressTTY(t *testing.T) {
	var out syncWriter
	p := &progress{out: &out, tty: true}
	p.begin("spinning")
	time.Sleep(250 * time.Millisecond)
	p.end(nil)
	got := out.String()
	if !strings.Contains(got, "\r\033[K") || !strings.ContainsAny(got, strings.Join(spinnerFrames, "")) {
		t.Errorf("no spinner redrawn in place:\n%q", got)
	}
	if !regexp.MustCompile(`\r\033\[K\[ OK \]  1\. spinning \([0-9.]+m?s\)\n$`).MatchString(got) {
		t.Errorf("the step does not end with its done line:\n%q", got)
	}
}

// The simulated OS stands in for `edgefleet-node upgrade` only: the upgrade
// plan's call becomes `simulated-os upgrade` with the image and the
// machine's config and state; every other command goes to the real binary
// unchanged.
func TestSimulatedOSShim(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "calls")
	real := filepath.Join(dir, "real-node")
	writeExec(t, real, "#!/bin/sh\necho \"$*\" >> "+record+"\n")
	d := &demo{bins: binaries{node: real}}
	m := &machine{name: "worker-1", dir: filepath.Join(dir, "m"), config: "/cfg/node.yaml", osState: "/st/os.json"}
	if err := os.MkdirAll(filepath.Join(m.dir, "simos"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.writeSimulatedOS(m); err != nil {
		t.Fatal(err)
	}
	shim := filepath.Join(m.dir, "simos", "edgefleet-node")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"upgrade", "--image", "reg/os:v2", "--reboot"}, "simulated-os upgrade --config /cfg/node.yaml --state-file /st/os.json --image reg/os:v2"},
		{[]string{"kubernetes", "up", "--root", "/r"}, "kubernetes up --root /r"},
	} {
		_ = os.Remove(record)
		if out, err := exec.Command(shim, tc.args...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", tc.args, err, out)
		}
		got, _ := os.ReadFile(record)
		if strings.TrimSpace(string(got)) != tc.want {
			t.Errorf("%v ran %q, want %q", tc.args, got, tc.want)
		}
	}
}

type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestCut(t *testing.T) {
	for _, tc := range []struct {
		s     string
		width int
		want  string
	}{
		{"short", 80, "short"},
		{"exactly", 7, "exactly"},
		{" ⠋ 12. Roll OS upgrade v1 → v2", 12, " ⠋ 12. Roll…"},
		{"unlimited", 0, "unlimited"},
	} {
		if got := cut(tc.s, tc.width); got != tc.want {
			t.Errorf("cut(%q, %d) = %q, want %q", tc.s, tc.width, got, tc.want)
		}
	}
}
