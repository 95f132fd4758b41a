package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlereader"
	"github.com/edgefleet/edgefleet/internal/bundlewriter"
)

// defaultApplyNamespace is Fleet's default for `fleet apply -n`.
const defaultApplyNamespace = "fleet-local"

type applyOptions struct {
	namespace   string
	kubeconfig  string
	context     string
	output      string
	targetsFile string
	labels      []string
	paused      bool
	plainHTTP   bool
	strict      bool
}

func newApplyCommand(g *globals) *cobra.Command {
	o := applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply NAME DIR...",
		Short: "Turn directories into Bundles (Fleet's fleet.yaml format) and write them",
		Long: `Read each DIR the way Rancher Fleet does and write the resulting Bundles.

DIR becomes a bundle if it has a fleet.yaml or YAML files of its own; every
subdirectory with a fleet.yaml is a bundle of its own. .git and hidden files
are skipped, .fleetignore (gitignore syntax) is honoured. Charts from Helm
repositories, OCI registries or URLs are downloaded into the bundle, so
clusters never need access to them.

Every bundle is labelled ` + fleetv1.BundleSetLabel + `=NAME. Bundles of that set
in the namespace that this run did not produce are deleted (pruned).
Everything is read and checked before anything is written: on any error
nothing changes. Every file is read beneath DIR: a symbolic link that is
absolute or leads outside DIR is an error naming it. -o FILE is written
readable by its owner only (0600): bundles carry Secrets and values.`,
		Example: `  edgefleet apply myapp ./deploy
  edgefleet apply -n fleet-default --targets-file targets.yaml myapp ./apps ./infra
  edgefleet apply -o - myapp ./deploy      # print the Bundles, write nothing`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := ctrl.LoggerInto(cmd.Context(), g.log)
			return runApply(ctx, o, args[0], args[1:], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.namespace, "namespace", "n", defaultApplyNamespace, "namespace of the Bundles (Fleet's default)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the edgefleet API (default $KUBECONFIG, then ~/.kube/config)")
	f.StringVar(&o.context, "context", "", "kubeconfig context to use")
	f.StringVarP(&o.output, "output", "o", "", `write the Bundles as YAML to this file ("-" for stdout) instead of applying them`)
	f.StringVar(&o.targetsFile, "targets-file", "", "YAML file with the targets for every bundle (fleet.yaml overrideTargets still win)")
	f.StringArrayVar(&o.labels, "label", nil, "extra label key=value for every bundle (repeatable)")
	f.BoolVar(&o.paused, "paused", false, "create the bundles paused: changes are staged, not rolled out")
	f.BoolVar(&o.plainHTTP, "helm-repo-insecure-plain-http", false, "pull charts from OCI registries over plain HTTP (local test registries only)")
	f.BoolVar(&o.strict, "strict", false, "fail on unknown or unsupported fleet.yaml keys instead of ignoring them with a warning (for CI)")
	return cmd
}

// printWarnings writes the fleet.yaml keys that were ignored to stderr.
func printWarnings(errOut io.Writer, bundles []*bundlereader.Bundle) {
	for _, b := range bundles {
		for _, w := range b.Warnings {
			fmt.Fprintf(errOut, "warning: %s\n", w)
		}
	}
}

func runApply(ctx context.Context, o applyOptions, name string, dirs []string, out, errOut io.Writer) error {
	ropts := bundlereader.Options{
		Name:              name,
		Namespace:         o.namespace,
		Labels:            map[string]string{},
		Paused:            o.paused,
		RegistryPlainHTTP: o.plainHTTP,
		Strict:            o.strict,
	}
	for _, kv := range o.labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--label %q: use key=value", kv)
		}
		ropts.Labels[k] = v
	}
	if o.targetsFile != "" {
		targets, err := bundlereader.ReadTargetsFile(o.targetsFile)
		if err != nil {
			return err
		}
		ropts.Targets = targets
	}
	bundles, err := bundlereader.Read(ctx, ropts, dirs...)
	if err != nil {
		return err
	}
	printWarnings(errOut, bundles)
	if len(bundles) == 0 {
		return fmt.Errorf("no bundles in %s: a directory needs a fleet.yaml or YAML files; nothing was applied (to remove the bundles of %q, run: kubectl delete bundles -n %s -l %s=%s)",
			strings.Join(dirs, ", "), name, o.namespace, fleetv1.BundleSetLabel, name)
	}
	if o.output != "" {
		return writeBundlesYAML(bundles, o.output, out)
	}
	c, err := applyClient(o)
	if err != nil {
		return err
	}
	return applyBundles(ctx, c, o.namespace, name, bundles, out)
}

func applyClient(o applyOptions) (client.Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w (pass --kubeconfig; an embedded edgefleet server writes <data-dir>/kubeconfig)", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := fleetv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", cfg.Host, err)
	}
	return c, nil
}

// writeBundlesYAML prints the bundles with their files inline, each gzip +
// base64 encoded as Fleet does, so the output can be applied with kubectl.
func writeBundlesYAML(bundles []*bundlereader.Bundle, dest string, stdout io.Writer) error {
	var buf bytes.Buffer
	for i, b := range bundles {
		obj := b.Bundle.DeepCopy()
		for _, r := range b.Manifest.Resources {
			cr, err := bundlereader.Compressed(r)
			if err != nil {
				return err
			}
			obj.Spec.Resources = append(obj.Spec.Resources, cr)
		}
		data, err := yaml.Marshal(obj)
		if err != nil {
			return fmt.Errorf("encoding bundle %s: %w", obj.Name, err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(data)
	}
	if dest == "-" {
		_, err := stdout.Write(buf.Bytes())
		return err
	}
	if err := writePrivate(dest, buf.Bytes()); err != nil {
		return fmt.Errorf("writing %s: %w", dest, err)
	}
	return nil
}

// writePrivate writes data readable by the owner only: rendered bundles
// carry whatever the repository holds, Secrets and Helm values included.
// An existing regular file is narrowed to 0600 too.
func writePrivate(dest string, data []byte) error {
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if info, err := f.Stat(); err == nil && info.Mode().IsRegular() && info.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			_ = f.Close()
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// applyBundles checks the namespace exists, then writes the bundles and
// prunes the set's bundles that are gone (internal/bundlewriter), printing
// each change as kubectl does.
func applyBundles(ctx context.Context, c client.Client, namespace, set string, bundles []*bundlereader.Bundle, out io.Writer) error {
	var ns corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: namespace}, &ns); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace %q does not exist: create it (kubectl create namespace %s) or pass -n", namespace, namespace)
		}
		return fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	_, err := bundlewriter.Write(ctx, c, namespace, set, bundles, bundlewriter.Options{
		OnChange: func(ch bundlewriter.Change) { fmt.Fprintf(out, "bundle/%s %s\n", ch.Name, ch.Action) },
	})
	return err
}
