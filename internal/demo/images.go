package demo

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/edgefleet/edgefleet/internal/imagebuild"
)

// imageRegistry is an in-memory OCI registry on 127.0.0.1 (go-containerregistry),
// forwarded into every machine's loopback; the formed cluster pulls
// registry.k8s.io and edgefleet.test through it as mirrors.
type imageRegistry struct {
	host string
	port int
}

// ImageHost is the registry name the demo's images are referenced by;
// the formed cluster mirrors it to the loopback registry.
const ImageHost = "edgefleet.test"

// AgentImage is the fleet agent image the manager's import manifest names.
const AgentImage = ImageHost + "/edgefleet/edgefleet-agent:demo"

func (d *demo) images(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	d.onCleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	d.reg = &imageRegistry{host: fmt.Sprintf("127.0.0.1:%d", port), port: port}

	caBundle, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		return fmt.Errorf("the CA bundle for the agent image: %w (Debian package ca-certificates)", err)
	}
	buildDir := filepath.Join(d.dataDir, "images")
	if err := os.MkdirAll(buildDir, 0o755); err != nil {
		return err
	}
	// pause is the pod sandbox (registry.k8s.io/pause:3.10 through the
	// mirror), hello the app; both tiny static Go programs of the checkout.
	type image struct{ name, bin, ref string }
	imgs := []image{
		{"pause", "", d.reg.host + "/pause:3.10"},
		{"hello", "", d.reg.host + "/hello:v1"},
		{"edgefleet-agent", d.bins.agent, d.reg.host + "/edgefleet/edgefleet-agent:demo"},
	}
	for _, img := range imgs {
		bin := img.bin
		if bin == "" {
			bin = filepath.Join(buildDir, img.name)
			cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./test/kubeimages/"+img.name)
			cmd.Dir = d.bins.repo
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("building the %s image's program: %v: %s", img.name, err, out)
			}
		}
		idx, err := imagebuild.Build(imagebuild.Spec{Name: img.name, Binaries: map[string]string{runtime.GOARCH: bin}, CABundle: caBundle, Created: time.Unix(0, 0)})
		if err != nil {
			return fmt.Errorf("the %s image: %w", img.name, err)
		}
		if _, err := imagebuild.Push(ctx, img.ref, idx); err != nil {
			return fmt.Errorf("pushing %s: %w", img.ref, err)
		}
	}
	return nil
}
