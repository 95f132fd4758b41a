package cli

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

type seedImageOptions struct {
	kubeconfig, context, namespace, registration, output, baseImage, baseSHA256, imageType string
	osImage                                                                                string
	keep                                                                                   bool
	timeout                                                                                time.Duration
}

func newSeedImageCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "seed-image", Short: "Build installation media for machines (SeedImages)"}
	o := seedImageOptions{}
	build := &cobra.Command{
		Use:   "build --registration NAME -o FILE",
		Short: "Have the manager build a seed image for a MachineRegistration and download it",
		Long: `Create a SeedImage for the MachineRegistration, wait until the manager has
built it, download it and check its SHA-256 against the SeedImage's status.
The image is removed from the manager afterwards unless --keep is given.

Without --base-image the image is config-only media (volume label EFSEED)
holding edgefleet-node.yaml: the registration URL, the manager's CA and the
registration's auth settings. --type raw builds a GPT disk image whose ext4
partition "edgefleet-seed" (label EFSEED) holds the same files; a raw base
image keeps its partitions and gains (or has replaced) that partition.

With --os-image the media boot: the OS image (an OCI image following the
edgefleet OS image contract, docs/os.md) becomes a live system on a hybrid
BIOS+UEFI ISO (volume label EDGEFLEET), or with --type raw a GPT disk image
that boots UEFI, running edgefleet-node with the registration baked in
(docs/os/seed-media.md). Pin the image by digest (repo@sha256:...) to be
sure what boots; the digest used is printed either way.

The image holds the registration URL, which is the credential machines
register with: the file is written readable by its owner only (0600).`,
		Example: `  edgefleet seed-image build --registration lab -n machines -o seed.iso
  edgefleet seed-image build --registration lab --base-image https://example.com/os.iso --base-image-sha256 <hex> -o os-seed.iso
  edgefleet seed-image build --registration lab --base-image oci://registry.example/os/iso:1.2 -o os-seed.iso
  edgefleet seed-image build --registration lab --type raw --base-image os.img -o os-seed.img
  edgefleet seed-image build --registration lab --os-image registry.example/edgefleet/os:1.0 -o live.iso
  edgefleet seed-image build --registration lab --type raw --os-image registry.example/edgefleet/os@sha256:<digest> -o live.img`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := ctrl.LoggerInto(cmd.Context(), g.log)
			return runSeedImageBuild(ctx, o, cmd.OutOrStdout())
		},
	}
	f := build.Flags()
	f.StringVar(&o.registration, "registration", "", "name of the MachineRegistration (required)")
	f.StringVarP(&o.output, "output", "o", "", "file to write the image to (required)")
	f.StringVarP(&o.namespace, "namespace", "n", "fleet-default", "namespace of the MachineRegistration")
	f.StringVar(&o.baseImage, "base-image", "", "image to add the config to: a file in the manager's --seed-base-image-dir, an https URL (with --base-image-sha256), or an OCI image holding one .iso (.img for raw) file (oci://registry/repo:tag)")
	f.StringVar(&o.osImage, "os-image", "", "edgefleet OS image (OCI reference, registry/repo:tag or registry/repo@sha256:<digest>) to build bootable media from; exclusive with --base-image")
	f.StringVar(&o.baseSHA256, "base-image-sha256", "", "SHA-256 (hex) of the base image file: required for a URL, checked when given for the others")
	f.StringVar(&o.imageType, "type", "iso", "media to build: iso or raw (GPT disk image)")
	f.BoolVar(&o.keep, "keep", false, "keep the SeedImage (and its download URL) after downloading")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for the build")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the edgefleet API (default $KUBECONFIG, then ~/.kube/config)")
	f.StringVar(&o.context, "context", "", "kubeconfig context to use")
	_ = build.MarkFlagRequired("registration")
	_ = build.MarkFlagRequired("output")
	cmd.AddCommand(build)
	return cmd
}

func runSeedImageBuild(ctx context.Context, o seedImageOptions, out io.Writer) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	restCfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w (pass --kubeconfig <data-dir>/kubeconfig)", err)
	}
	c, err := client.New(restCfg, client.Options{Scheme: server.Scheme()})
	if err != nil {
		return err
	}
	if t := machinesv1.SeedImageType(o.imageType); t != machinesv1.SeedImageISO && t != machinesv1.SeedImageRaw {
		return fmt.Errorf("--type %q: use iso or raw", o.imageType)
	}
	if o.osImage != "" && (o.baseImage != "" || o.baseSHA256 != "") {
		return errors.New("--os-image builds bootable media from an OS image; --base-image and --base-image-sha256 add the registration to an existing image: give one or the other")
	}
	mr := &machinesv1.MachineRegistration{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: o.namespace, Name: o.registration}, mr); err != nil {
		return fmt.Errorf("reading MachineRegistration %s/%s: %w", o.namespace, o.registration, err)
	}
	si := &machinesv1.SeedImage{
		ObjectMeta: metav1.ObjectMeta{GenerateName: o.registration + "-", Namespace: o.namespace},
		Spec:       machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: o.registration}, Type: machinesv1.SeedImageType(o.imageType), BaseImage: o.baseImage, BaseImageSHA256: o.baseSHA256, OSImage: o.osImage},
	}
	if err := c.Create(ctx, si); err != nil {
		return fmt.Errorf("creating the SeedImage: %w", err)
	}
	if !o.keep {
		defer func() { _ = c.Delete(context.WithoutCancel(ctx), si) }()
	}
	fmt.Fprintf(out, "SeedImage %s/%s created, waiting for the build\n", si.Namespace, si.Name)
	deadline := time.Now().Add(o.timeout)
	for si.Status.State != machinesv1.SeedImageReady {
		if si.Status.State == machinesv1.SeedImageFailed {
			return fmt.Errorf("the build of SeedImage %s failed: %s", si.Name, readyMessage(si))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("SeedImage %s not built after %s (state %q: %s)", si.Name, o.timeout, si.Status.State, readyMessage(si))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(si), si); err != nil {
			return err
		}
	}
	httpClient, err := managerHTTPClient(ctx, c, restCfg)
	if err != nil {
		return err
	}
	if err := downloadVerified(ctx, httpClient, si.Status.DownloadURL, si.Status.Checksum, o.output); err != nil {
		return err
	}
	if si.Status.OSImageDigest != "" {
		fmt.Fprintf(out, "OS image %s is %s\n", o.osImage, si.Status.OSImageDigest)
	}
	fmt.Fprintf(out, "wrote %s (sha256 %s)\n", o.output, si.Status.Checksum)
	return nil
}

func readyMessage(si *machinesv1.SeedImage) string {
	for _, c := range si.Status.Conditions {
		if c.Type == machinesv1.ReadyCondition {
			return c.Message
		}
	}
	return ""
}

// managerHTTPClient trusts the manager endpoint's CA as the manager
// publishes it in ConfigMap edgefleet-system/edgefleet-endpoint (both
// modes; the kubeconfig's CA is kube-apiserver's, not the endpoint's). The
// image is also checked against the checksum read from the API.
func managerHTTPClient(ctx context.Context, c client.Client, _ *rest.Config) (*http.Client, error) {
	cm, err := endpointInfo(ctx, c)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(cm.Data["ca.crt"])) {
		return nil, fmt.Errorf("ConfigMap %s/%s has no CA certificate under ca.crt; restart the manager to publish it again", clusterjoin.SystemNamespace, clusterjoin.EndpointConfigMap)
	}
	return &http.Client{Timeout: 30 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

func downloadVerified(ctx context.Context, hc *http.Client, url, checksum, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("downloading %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("downloading %s: %s", url, resp.Status)
	}
	// 0600: the media carries the registration URL, a credential. A
	// leftover .part from an earlier run is replaced, not reused with its
	// mode.
	tmp := path + ".part"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("downloading %s: %w", url, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != checksum {
		os.Remove(tmp)
		return fmt.Errorf("downloaded image has sha256 %s, the SeedImage says %s: not written", got, checksum)
	}
	return os.Rename(tmp, path)
}
