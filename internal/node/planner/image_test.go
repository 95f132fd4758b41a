package planner

import (
	"archive/tar"
	"bytes"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// pushImage pushes a one-layer image with files (path → content, all
// executable) to a real registry on loopback and returns its reference.
func pushImage(t *testing.T, files map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for p, c := range files {
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o755, Size: int64(len(c)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(srv.URL, "http://") + "/installer:v1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// An instruction with an image runs its /run.sh (system-agent's default)
// from the extracted image.
func TestImageInstructions(t *testing.T) {
	ref := pushImage(t, map[string]string{
		"run.sh":  "#!/bin/sh\necho \"installer in $PWD\"; cat ./payload > \"$EDGEFLEET_PLAN_ROOT/installed\"\n",
		"payload": "k3s v1.33\n",
	})
	l := newLab(t)
	images := t.TempDir()
	e, err := New(Options{Root: l.root, StateDir: l.state, Images: &RegistryImages{Dir: images}, Now: l.clk.now})
	if err != nil {
		t.Fatal(err)
	}
	l.e = e
	l.set(t, nodeplan.Plan{Instructions: []nodeplan.Instruction{{CommonInstruction: nodeplan.CommonInstruction{Name: "install", Image: ref}, SaveOutput: true}}})
	r := l.apply(t)
	if r.State != StateApplied {
		t.Fatalf("report %+v, failure %+v", r, r.Failure)
	}
	if b, _ := os.ReadFile(filepath.Join(l.root, "installed")); string(b) != "k3s v1.33\n" {
		t.Errorf("installed %q", b)
	}
	if !strings.Contains(r.Instructions[0].Output, "installer in "+images) {
		t.Errorf("output %q", r.Instructions[0].Output)
	}

	t.Run("unknown image fails the instruction", func(t *testing.T) {
		l.set(t, nodeplan.Plan{Instructions: []nodeplan.Instruction{{CommonInstruction: nodeplan.CommonInstruction{Name: "missing", Image: strings.Replace(ref, "installer:v1", "nope:v9", 1)}}}})
		r := l.apply(t)
		if r.State != StateFailed || r.Failure.Instruction != "missing" || !strings.Contains(r.Failure.Message, "extracting image") {
			t.Fatalf("report %+v", r.Failure)
		}
	})
}

func TestImageInstructionsNeedAnImageStore(t *testing.T) {
	l := newLab(t)
	l.set(t, nodeplan.Plan{Instructions: []nodeplan.Instruction{{CommonInstruction: nodeplan.CommonInstruction{Name: "i", Image: "example.com/x:1"}}}})
	if r := l.apply(t); r.State != StateFailed || !strings.Contains(r.Failure.Message, "runs no image instructions") {
		t.Fatalf("report %+v", r.Failure)
	}
}

// A hostile image layer cannot place files outside the extraction
// directory: not with "..", absolute paths, or links pointing out.
func TestUntarStaysInside(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "img")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "../escape-dotdot", Typeflag: tar.TypeReg}, "x")
	add(&tar.Header{Name: "/abs-escape", Typeflag: tar.TypeReg}, "x")
	add(&tar.Header{Name: "run.sh", Typeflag: tar.TypeReg, Mode: 0o755}, "#!/bin/sh\n")
	add(&tar.Header{Name: "out", Typeflag: tar.TypeSymlink, Linkname: parent}, "")
	add(&tar.Header{Name: "out/escape-link", Typeflag: tar.TypeReg}, "x")
	_ = tw.Close()
	err := untar(dir, &buf)
	if err == nil || !strings.Contains(err.Error(), "out/escape-link") {
		t.Errorf("writing through a link out of the image: %v", err)
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 {
		t.Errorf("files outside the image directory: %v", ents)
	}
	for _, p := range []string{"escape-dotdot", "abs-escape", "run.sh"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s not extracted inside: %v", p, err)
		}
	}
}
