// Command images builds the manager and cluster agent container images from
// binaries already cross-compiled into <bin-dir>/linux-<arch>/ (make images
// does that), writes them as OCI layouts and docker-archive tarballs, and
// with --registry pushes them. The agent is built first so the manager image
// can name it by digest ($EDGEFLEET_AGENT_IMAGE). See docs/install.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/debpkg"
	"github.com/edgefleet/edgefleet/internal/imagebuild"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run() error {
	binDir := flag.String("bin-dir", "bin", "folder with linux-<arch>/edgefleet and linux-<arch>/edgefleet-agent")
	out := flag.String("out", "bin/images", "output folder: <image>.oci/ layouts and <image>-<arch>.tar docker archives")
	archs := flag.String("archs", "amd64,arm64", "architectures, comma-separated")
	version := flag.String("version", "dev", "image tag and version label")
	revision := flag.String("revision", "", "source revision label")
	epoch := flag.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "seconds since 1970 for every timestamp in the images (default $SOURCE_DATE_EPOCH, else 0)")
	repo := flag.String("repo", "ghcr.io/edgefleet", "repository prefix the images are named under")
	push := flag.Bool("push", false, "push both images to --repo after building")
	insecure := flag.Bool("insecure", false, "allow plain HTTP to the registry (loopback test registries)")
	flag.Parse()

	secs := int64(0)
	if *epoch != "" {
		var err error
		if secs, err = strconv.ParseInt(*epoch, 10, 64); err != nil {
			return fmt.Errorf("--source-date-epoch %q is not a number of seconds", *epoch)
		}
	}
	ctx := context.Background()
	dirs, err := debpkg.Fetch(ctx, "ca-certificates")
	if err != nil {
		return err
	}
	ca, err := imagebuild.CABundleFromDebian(dirs[0])
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	var opts []name.Option
	if *insecure {
		opts = append(opts, name.Insecure)
	}
	spec := func(bin string, args []string, env []string) imagebuild.Spec {
		s := imagebuild.Spec{Name: bin, Binaries: map[string]string{}, Args: args, Env: env, Version: *version,
			Revision: *revision, CABundle: ca, Created: time.Unix(secs, 0)}
		for _, a := range strings.Split(*archs, ",") {
			s.Binaries[a] = filepath.Join(*binDir, "linux-"+a, bin)
		}
		return s
	}

	agentRef := *repo + "/edgefleet-agent:" + *version
	agent, err := build(ctx, spec("edgefleet-agent", nil, nil), agentRef, *out, *push, opts)
	if err != nil {
		return err
	}
	d, err := agent.Digest()
	if err != nil {
		return err
	}
	tag, err := name.NewTag(agentRef, opts...)
	if err != nil {
		return err
	}
	pinned := tag.Context().Name() + "@" + d.String()
	_, err = build(ctx, spec("edgefleet", nil, []string{clusterregistration.EnvAgentImage + "=" + pinned}), *repo+"/edgefleet:"+*version, *out, *push, opts)
	return err
}

func build(ctx context.Context, s imagebuild.Spec, ref, out string, push bool, opts []name.Option) (v1.ImageIndex, error) {
	idx, err := imagebuild.Build(s)
	if err != nil {
		return nil, err
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	if err := imagebuild.WriteLayout(filepath.Join(out, s.Name+".oci"), idx, tag); err != nil {
		return nil, err
	}
	if _, err := imagebuild.WriteDockerArchives(out, ref, idx); err != nil {
		return nil, err
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	fmt.Printf("%s %s (OCI layout %s)\n", ref, d, filepath.Join(out, s.Name+".oci"))
	if push {
		pinned, err := imagebuild.Push(ctx, ref, idx, opts...)
		if err != nil {
			return nil, err
		}
		fmt.Println("pushed", pinned)
	}
	return idx, nil
}
