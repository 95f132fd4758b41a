package imagebuild

import (
	"archive/tar"
	"context"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const testCA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func testSpec(t *testing.T) Spec {
	t.Helper()
	dir := t.TempDir()
	bins := map[string]string{}
	for _, arch := range []string{"arm64", "amd64"} {
		p := filepath.Join(dir, "agent-"+arch)
		if err := os.WriteFile(p, []byte("binary for "+arch), 0o755); err != nil {
			t.Fatal(err)
		}
		bins[arch] = p
	}
	return Spec{Name: "edgefleet-agent", Binaries: bins, Args: []string{"run"}, Version: "v1.2.3", Revision: "abc",
		CABundle: []byte(testCA), Created: time.Unix(1700000000, 0)}
}

func TestBuildIsReproducible(t *testing.T) {
	s := testSpec(t)
	first, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	// Touch the binaries: a new mtime must not change the image.
	for _, p := range s.Binaries {
		if err := os.Chtimes(p, time.Now(), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	second, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := first.Digest()
	d2, _ := second.Digest()
	if d1 != d2 {
		t.Fatalf("same inputs gave two digests: %s and %s", d1, d2)
	}
	// Written to disk twice, the layouts agree too.
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, dir := range []string{a, b} {
		if err := WriteLayout(dir, first, "v1.2.3"); err != nil {
			t.Fatal(err)
		}
	}
	ia, _ := os.ReadFile(filepath.Join(a, "index.json"))
	ib, _ := os.ReadFile(filepath.Join(b, "index.json"))
	if string(ia) != string(ib) {
		t.Fatalf("index.json differs:\n%s\n%s", ia, ib)
	}

	changed := s
	changed.Created = s.Created.Add(time.Second)
	third, err := Build(changed)
	if err != nil {
		t.Fatal(err)
	}
	if d3, _ := third.Digest(); d3 == d1 {
		t.Fatal("a different epoch gave the same digest: timestamps are not in the image")
	}
}

func TestBuildContents(t *testing.T) {
	idx, err := Build(testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 2 || m.Manifests[0].Platform.Architecture != "amd64" || m.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("want amd64 and arm64 in order, got %+v", m.Manifests)
	}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		arch := d.Platform.Architecture
		if cfg.Architecture != arch || cfg.OS != "linux" {
			t.Errorf("%s: config platform %s/%s", arch, cfg.OS, cfg.Architecture)
		}
		if cfg.Config.User != "65532:65532" {
			t.Errorf("%s: user %q, want numeric nonroot (runAsNonRoot needs it)", arch, cfg.Config.User)
		}
		if got := strings.Join(cfg.Config.Entrypoint, " "); got != "/usr/local/bin/edgefleet-agent run" {
			t.Errorf("%s: entrypoint %q", arch, got)
		}
		files := flatten(t, img)
		if got := files["usr/local/bin/edgefleet-agent"]; got != "binary for "+arch {
			t.Errorf("%s: binary content %q", arch, got)
		}
		if got := files["etc/ssl/certs/ca-certificates.crt"]; got != testCA {
			t.Errorf("%s: CA bundle %q", arch, got)
		}
		if !strings.Contains(files["etc/passwd"], "nonroot:x:65532:65532:") {
			t.Errorf("%s: /etc/passwd lacks the nonroot user: %q", arch, files["etc/passwd"])
		}
		if _, ok := files["tmp/"]; !ok {
			t.Errorf("%s: no /tmp", arch)
		}
	}
}

// flatten reads every layer's files (later layers win).
func flatten(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Uid != 0 && h.Name != "home/nonroot/" || !h.ModTime.Equal(time.Unix(1700000000, 0)) {
				t.Errorf("%s: uid %d mtime %s, want root and the epoch", h.Name, h.Uid, h.ModTime)
			}
			b, _ := io.ReadAll(tr)
			out[h.Name] = string(b)
		}
		rc.Close()
	}
	return out
}

func TestBuildRejectsBadSpecs(t *testing.T) {
	good := testSpec(t)
	for _, tc := range []struct {
		name string
		edit func(*Spec)
		want string
	}{
		{"no binaries", func(s *Spec) { s.Binaries = nil }, "no binaries"},
		{"missing binary", func(s *Spec) { s.Binaries = map[string]string{"amd64": "/nonexistent"} }, "build the binary first"},
		{"path in name", func(s *Spec) { s.Name = "a/b" }, "plain file name"},
		{"no CA", func(s *Spec) { s.CABundle = nil }, "empty CA bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.edit(&s)
			_, err := Build(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestPushToRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	idx, err := Build(testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := Push(context.Background(), u.Host+"/edgefleet/edgefleet-agent:v1.2.3", idx, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if !strings.HasSuffix(pinned, "/edgefleet/edgefleet-agent@"+want.String()) {
		t.Fatalf("pinned reference %q does not end in the index digest %s", pinned, want)
	}
	ref, err := name.ParseReference(pinned, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("pulling back %s: %v", pinned, err)
	}
	if d, _ := got.Digest(); d != want {
		t.Fatalf("registry holds %s, pushed %s", d, want)
	}
	// A client on arm64 resolves the tag to the arm64 image.
	img, err := remote.Image(ref, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _ := img.ConfigFile(); cfg.Architecture != "arm64" {
		t.Fatalf("arm64 pull got %s", cfg.Architecture)
	}
}

func TestLayoutAndDockerArchives(t *testing.T) {
	idx, err := Build(testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteLayout(filepath.Join(dir, "oci"), idx, "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, _ := ii.IndexManifest()
	want, _ := idx.Digest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != want {
		t.Fatalf("layout index %+v does not point at the image index %s", im.Manifests, want)
	}
	tars, err := WriteDockerArchives(dir, "ghcr.io/edgefleet/edgefleet-agent:v1.2.3", idx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tars) != 2 {
		t.Fatalf("want one tarball per arch, got %v", tars)
	}
	for _, p := range tars {
		img, err := tarball.ImageFromPath(p, nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		cfg, _ := img.ConfigFile()
		if !strings.HasSuffix(p, "-"+cfg.Architecture+".tar") {
			t.Errorf("%s holds %s", p, cfg.Architecture)
		}
	}
}

func TestCABundleFromDebian(t *testing.T) {
	dir := t.TempDir()
	if _, err := CABundleFromDebian(dir); err == nil || !strings.Contains(err.Error(), "no certificates") {
		t.Fatalf("empty folder: err = %v", err)
	}
	moz := filepath.Join(dir, "usr/share/ca-certificates/mozilla")
	os.MkdirAll(moz, 0o755)
	os.WriteFile(filepath.Join(moz, "B.crt"), []byte("B\n\n"), 0o644)
	os.WriteFile(filepath.Join(moz, "A.crt"), []byte("A"), 0o644)
	got, err := CABundleFromDebian(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "A\nB\n" {
		t.Fatalf("bundle %q, want sorted certificates each ending in a newline", got)
	}
}
