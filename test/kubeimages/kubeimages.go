// Package kubeimages builds the images the edgefleet distribution's tests
// run, with go-containerregistry and nothing from the internet: the pod
// sandbox (pause), a workload (hello) and a "kubernetes binaries" image,
// and serves them from a registry on loopback.
package kubeimages

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Registry is an OCI registry on 127.0.0.1.
type Registry struct {
	Host string // 127.0.0.1:port
	Port int
}

// StartRegistry serves an in-memory registry until the test ends.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	return &Registry{Host: fmt.Sprintf("127.0.0.1:%d", port), Port: port}
}

// Push stores img as repo:tag and returns the reference by digest.
func (r *Registry) Push(t testing.TB, repo, tag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.Host + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, _ := img.Digest()
	return r.Host + "/" + repo + "@" + d.String()
}

// GoImage builds a one-binary image from a main package of this module
// (static, CGO off) with the binary as entrypoint.
func GoImage(t testing.TB, pkg, entry string) v1.Image {
	t.Helper()
	bin := filepath.Join(t.TempDir(), entry)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v: %s", pkg, err, out)
	}
	img, err := FilesImage(map[string]string{"/" + entry: bin})
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Entrypoint: []string{"/" + entry}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// FilesImage is a linux/amd64 image with one layer holding the files
// (image path → host file), all mode 0755.
func FilesImage(files map[string]string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for dst, src := range files {
		for d := filepath.Dir(dst); d != "/" && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
		_ = src
	}
	for d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: 0o755}); err != nil {
			return nil, err
		}
	}
	for dst, src := range files {
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		fi, _ := f.Stat()
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dst[1:], Mode: 0o755, Size: fi.Size()}); err != nil {
			f.Close()
			return nil, err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	return mutate.ConfigFile(img, cf)
}

// CoreDNSImage is the cluster DNS image: the CoreDNS that
// hack/build-coredns.sh builds (cached by version; built on first use) at
// /coredns, its entrypoint as in upstream's image. repo is the repository
// root.
func CoreDNSImage(t testing.TB, repo string) v1.Image {
	t.Helper()
	cmd := exec.Command(filepath.Join(repo, "hack", "build-coredns.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("building CoreDNS (hack/build-coredns.sh): %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	img, err := FilesImage(map[string]string{"/coredns": lines[len(lines)-1]})
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Entrypoint: []string{"/coredns"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}
