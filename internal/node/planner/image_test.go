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
// from the extracted image; hostile paths in the image stay inside its
// directory.
func TestImageInstructions(t *testing.T) {
	ref := pushImage(t, map[string]string{
		"run.sh":             "#!/bin/sh\necho \"installer in $PWD\"; cat ./payload > \"$EDGEFLEET_PLAN_ROOT/installed\"\n",
		"payload":            "k3s v1.33\n",
		"../../../escape.sh": "#!/bin/sh\n",
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
		t.Fatalf("report %+v", r)
	}
	if b, _ := os.ReadFile(filepath.Join(l.root, "installed")); string(b) != "k3s v1.33\n" {
		t.Errorf("installed %q", b)
	}
	if !strings.Contains(r.Instructions[0].Output, "installer in "+images) {
		t.Errorf("output %q", r.Instructions[0].Output)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(images), "escape.sh")); len(m) > 0 {
		t.Errorf("the image wrote outside its directory: %v", m)
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
