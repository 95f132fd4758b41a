// Package osinstalltest builds small OS images that follow the OS image
// contract and serves them from a real OCI registry on loopback
// (go-containerregistry's pkg/registry), for installer tests.
package osinstalltest

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image describes a test OS image.
type Image struct {
	Name, Version string
	// Files are added or replace the defaults (path without leading /).
	Files map[string][]byte
	// Omit removes default files, e.g. "boot/vmlinuz".
	Omit []string
	// Padding adds an incompressible file of this size (a bigger image).
	Padding int
}

// Build returns a two-layer image: a base layer with the contract's files
// and a layer with os-release (so flattening is exercised). The kernel is
// a symlink to a versioned file, as Debian ships it.
func Build(t testing.TB, spec Image) v1.Image {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "edgefleet-test"
	}
	base := map[string][]byte{
		"boot/vmlinuz-6.1.0-test":            []byte("kernel " + spec.Version),
		"boot/initrd":                        []byte("initrd " + spec.Version),
		"usr/bin/edgefleet-node":             []byte("#!/bin/sh\necho edgefleet-node: started\n"),
		"usr/lib/edgefleet/grub/bootx64.efi": []byte("MZ fake grub efi " + spec.Version),
		"etc/os-release":                     []byte("NAME=old\nVERSION_ID=0\n"),
	}
	links := map[string]string{"boot/vmlinuz": "vmlinuz-6.1.0-test"}
	top := map[string][]byte{
		"etc/os-release": fmt.Appendf(nil, "NAME=%q\nVERSION_ID=%q\n", spec.Name, spec.Version),
	}
	for k, v := range spec.Files {
		top[k] = v
	}
	if spec.Padding > 0 {
		pad := make([]byte, spec.Padding)
		_, _ = rand.Read(pad)
		top["var/padding"] = pad
	}
	for _, o := range spec.Omit {
		delete(base, o)
		delete(top, o)
		delete(links, o)
		if o == "boot/vmlinuz" {
			delete(base, "boot/vmlinuz-6.1.0-test")
		}
	}
	img, err := mutate.AppendLayers(empty.Image, layer(t, base, links), layer(t, top, nil))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Labels = map[string]string{"io.edgefleet.os.name": spec.Name, "io.edgefleet.os.version": spec.Version}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func layer(t testing.TB, files map[string][]byte, links map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for p := range files {
		for d := p; strings.Contains(d, "/"); {
			d = d[:strings.LastIndex(d, "/")]
			dirs[d] = true
		}
	}
	for d := range dirs {
		_ = tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)})
	}
	for p, c := range files {
		_ = tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(c)), ModTime: time.Unix(0, 0)})
		_, _ = tw.Write(c)
	}
	for p, target := range links {
		_ = tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeSymlink, Linkname: target, ModTime: time.Unix(0, 0)})
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Registry is a loopback OCI registry that counts blob downloads and can
// be told to fail them.
type Registry struct {
	Host string
	mu   sync.Mutex
	// blobGets counts GETs per blob digest.
	blobGets map[string]int
	// alias: manifest reference → the reference served instead (a registry
	// answering a digest with other content).
	alias map[string]string
	// fail: blob digest → how many more GETs answer 500.
	fail map[string]int
	// Auth, when set, is the "user:password" every request must carry.
	Auth string
}

// NewRegistry starts a registry for the test's lifetime.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{blobGets: map[string]int{}, fail: map[string]int{}, alias: map[string]string{}}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.Auth != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u+":"+p != r.Auth {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		if i := strings.LastIndex(req.URL.Path, "/manifests/"); i >= 0 {
			r.mu.Lock()
			if to, ok := r.alias[req.URL.Path[i+len("/manifests/"):]]; ok {
				req.URL.Path = req.URL.Path[:i] + "/manifests/" + to
			}
			r.mu.Unlock()
		}
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") {
			d := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
			r.mu.Lock()
			r.blobGets[d]++
			failing := r.fail[d] > 0
			if failing {
				r.fail[d]--
			}
			r.mu.Unlock()
			if failing {
				http.Error(w, "injected failure", http.StatusInternalServerError)
				return
			}
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// BlobGets is how often the blob was downloaded.
func (r *Registry) BlobGets(d v1.Hash) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[d.String()]
}

// FailBlob makes the next n downloads of blob d fail with 500.
func (r *Registry) FailBlob(d v1.Hash, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail[d.String()] = n
}

// Alias serves the manifest of reference to when from is asked for.
func (r *Registry) Alias(from, to string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alias[from] = to
}

// Push stores img as repo:tag and returns the tag reference.
func (r *Registry) Push(t testing.TB, repo, tag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.Host + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{}
	if r.Auth != "" {
		u, p, _ := strings.Cut(r.Auth, ":")
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: u, Password: p}))
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

// RequireTools skips the test when a tool is missing (hack/install-deps.sh
// installs them).
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			found := false
			for _, d := range []string{"/usr/sbin/", "/sbin/"} {
				if _, err := exec.LookPath(d + tool); err == nil {
					found = true
				}
			}
			if !found {
				t.Skipf("%s not installed: run hack/install-deps.sh", tool)
			}
		}
	}
}
