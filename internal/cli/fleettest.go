package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlereader"
	"github.com/edgefleet/edgefleet/internal/render"
	"github.com/edgefleet/edgefleet/internal/targeting"
)

type fleetTestOptions struct {
	namespace     string
	name          string
	clusterName   string
	labels        []string
	groups        []string
	clusterValues string
	targetsFile   string
	plainHTTP     bool
}

func newFleetTestCommand() *cobra.Command {
	o := fleetTestOptions{}
	cmd := &cobra.Command{
		Use:   "test [DIR...]",
		Short: "Print exactly what a cluster with given labels would receive from directories, without any cluster",
		Long: `Read each DIR as 'edgefleet apply' does, pick the targets and target
customizations a cluster with the given name, labels and groups matches (the
manager's own rules), render every bundle as its agent would (Helm with
templated values, Kustomize, raw YAML with overlays) and print the final YAML.
Nothing is written anywhere; use it in the CI of a Fleet repository.`,
		Example: `  edgefleet test -l env=prod -l region=eu ./deploy
  edgefleet test --cluster-name edge-7 --group stores --cluster-values values.yaml .`,
		RunE: func(cmd *cobra.Command, dirs []string) error {
			if len(dirs) == 0 {
				dirs = []string{"."}
			}
			return runFleetTest(cmd.Context(), o, dirs, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.namespace, "namespace", "n", defaultApplyNamespace, "namespace the bundles and the cluster would live in")
	f.StringVar(&o.name, "name", "", "the NAME you give 'edgefleet apply' (names the bundles; default: the directory's name)")
	f.StringVar(&o.clusterName, "cluster-name", "local", "name of the imagined cluster")
	f.StringArrayVarP(&o.labels, "label", "l", nil, "a label key=value of the imagined cluster (repeatable)")
	f.StringArrayVar(&o.groups, "group", nil, "a ClusterGroup the imagined cluster belongs to (repeatable; matched by clusterGroup)")
	f.StringVar(&o.clusterValues, "cluster-values", "", "YAML file with the cluster's templateValues (.ClusterValues in Helm values)")
	f.StringVar(&o.targetsFile, "targets-file", "", "YAML file with targets for every bundle, as with apply")
	f.BoolVar(&o.plainHTTP, "helm-repo-insecure-plain-http", false, "pull charts from OCI registries over plain HTTP (local test registries only)")
	return cmd
}

func runFleetTest(ctx context.Context, o fleetTestOptions, dirs []string, out io.Writer) error {
	labels := map[string]string{}
	for _, kv := range o.labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--label %q: use key=value", kv)
		}
		labels[k] = v
	}
	cluster := &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: o.clusterName, Namespace: o.namespace, Labels: labels}}
	var values map[string]any
	if o.clusterValues != "" {
		data, err := os.ReadFile(o.clusterValues)
		if err != nil {
			return err
		}
		if err := yaml.Unmarshal(data, &values); err != nil {
			return fmt.Errorf("%s: %w", o.clusterValues, err)
		}
		raw, _ := json.Marshal(values)
		cluster.Spec.TemplateValues = &runtime.RawExtension{Raw: raw}
	}
	// The imagined cluster is in exactly the named groups: each group selects all clusters.
	var groups []*fleetv1.ClusterGroup
	for _, g := range o.groups {
		groups = append(groups, &fleetv1.ClusterGroup{
			ObjectMeta: metav1.ObjectMeta{Name: g, Namespace: o.namespace},
			Spec:       fleetv1.ClusterGroupSpec{Selector: &metav1.LabelSelector{}},
		})
	}
	ropts := bundlereader.Options{Name: setName(o.name, dirs), Namespace: o.namespace, Labels: map[string]string{}, RegistryPlainHTTP: o.plainHTTP}
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
	for _, b := range bundles {
		matcher, err := targeting.NewBundleMatcher(b.Bundle)
		if err != nil {
			return fmt.Errorf("bundle %s: %w", b.Bundle.Name, err)
		}
		opts, target, ok := matcher.Target(cluster, groups)
		if !ok {
			fmt.Fprintf(out, "# Bundle %s: not deployed to this cluster (no target matches, or doNotDeploy); targets: %s\n", b.Bundle.Name, describeTargets(b.Bundle))
			continue
		}
		res, err := render.Render(ctx, b.Manifest, opts, render.TemplateContext{
			BundleName:       b.Bundle.Name,
			ClusterName:      cluster.Name,
			ClusterNamespace: cluster.Namespace,
			ClusterLabels:    labels,
			ClusterValues:    values,
		})
		if err != nil {
			return fmt.Errorf("bundle %s (%s): %w", b.Bundle.Name, b.Dir, err)
		}
		fmt.Fprintf(out, "# Bundle %s: target %s, %s", b.Bundle.Name, target, res.Kind)
		if res.Kind == render.KindHelm {
			fmt.Fprintf(out, " release %s", res.ReleaseName)
		}
		fmt.Fprintf(out, ", namespace %s\n", res.Namespace)
		for _, obj := range res.Objects {
			data, err := yaml.Marshal(obj.Object)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "---\n%s", data)
		}
	}
	return nil
}

// setName is the NAME of `edgefleet apply NAME DIR...` when --name is not
// given: the directory's name, or their parent's when there are several.
func setName(name string, dirs []string) string {
	if name != "" {
		return name
	}
	abs, err := filepath.Abs(dirs[0])
	if err != nil {
		return "test"
	}
	if len(dirs) > 1 {
		abs = filepath.Dir(abs)
	}
	return bundlereader.SafeName(filepath.Base(abs))
}

// describeTargets lists the bundle's deploy targets (not customizations) so a
// user sees why an imagined cluster was not picked.
func describeTargets(b *fleetv1.Bundle) string {
	var parts []string
	for _, t := range b.Spec.Targets[targeting.CustomizationCount(b):] {
		var crit []string
		if t.ClusterName != "" {
			crit = append(crit, "clusterName="+t.ClusterName)
		}
		if t.ClusterGroup != "" {
			crit = append(crit, "clusterGroup="+t.ClusterGroup)
		}
		if t.ClusterSelector != nil {
			crit = append(crit, "clusterSelector="+metav1.FormatLabelSelector(t.ClusterSelector))
		}
		if t.ClusterGroupSelector != nil {
			crit = append(crit, "clusterGroupSelector="+metav1.FormatLabelSelector(t.ClusterGroupSelector))
		}
		if t.DoNotDeploy {
			crit = append(crit, "doNotDeploy")
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", t.Name, strings.Join(crit, ", ")))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}
