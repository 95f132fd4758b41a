// Command os-image builds edgefleet's reference OS image (`make os-image`,
// docs/os.md): an OCI image layout under ~/.cache/edgefleet/os, optionally
// pushed to a registry. The work is in internal/osimage.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgefleet/edgefleet/internal/osimage"
)

func main() {
	var o osimage.Options
	var push string
	flag.StringVar(&o.Variant, "variant", osimage.VariantTest, "image variant: test (busybox, small) or systemd")
	flag.StringVar(&o.Name, "name", osimage.DefaultName, "OS name (os-release NAME, label "+osimage.LabelName+")")
	flag.StringVar(&o.Version, "version", "", "OS version (os-release VERSION_ID, label "+osimage.LabelVersion+"); required")
	flag.BoolVar(&o.Broken, "broken", false, "build an image whose boot init panics (tests boot assessment and rollback)")
	flag.StringVar(&o.NodeBinary, "node-binary", "bin/edgefleet-node", "the edgefleet-node binary (linux/amd64) to put into the image")
	flag.StringVar(&o.KernelPackage, "kernel-package", "", "Debian kernel package (default: what linux-image-cloud-amd64 depends on)")
	flag.StringVar(&o.CacheDir, "cache", "", "build cache (default $EDGEFLEET_OS_CACHE or ~/.cache/edgefleet/os)")
	flag.StringVar(&push, "push", "", "also push the image to this registry reference (e.g. 127.0.0.1:5000/os:1.0.0)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "os-image: unexpected arguments %v\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o.Log = os.Stderr
	if err := run(ctx, o, push); err != nil {
		fmt.Fprintf(os.Stderr, "os-image: %v\n", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, o osimage.Options, push string) error {
	r, err := osimage.Build(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("layout  %s\ndigest  %s\nkernel  %s\ninitrd  %s\n", r.Layout, r.Digest, r.Kernel, r.Initrd)
	if push == "" {
		return nil
	}
	img, err := r.Image()
	if err != nil {
		return err
	}
	ref, err := osimage.Push(ctx, img, push)
	if err != nil {
		return err
	}
	fmt.Printf("pushed  %s\n", ref)
	return nil
}
