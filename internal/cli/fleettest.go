package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlereader"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/render"
	"github.com/edgefleet/edgefleet/internal/targeting"
)

type fleetTestOptions struct {
	namespace     string
	name          string
	clusterName   string
	labels        []string
	groups        []string
	groupLabels   []string
	target        string
	quiet         bool
	asManager     bool
	strict        bool
	clusterValues string
	targetsFile   string
	plainHTTP     bool
	// file and bundleFile are fleet test's -f and -b; stdin is read for
	// "-f -".
	file, bundleFile string
	stdin            io.Reader
}

func newFleetTestCommand() *cobra.Command {
	o := fleetTestOptions{}
	cmd := &cobra.Command{
		Use:   "test [DIR...]",
		Short: "Match bundles to a cluster and render what it would receive, without any cluster (Fleet's `fleet test`)",
		Long: `Read each DIR as 'edgefleet apply' does, match every bundle to an imagined
cluster and print the rendered YAML (Helm with templated values, Kustomize,
raw YAML with overlays). Nothing is written anywhere: use it in the CI of a
Fleet repository.

By default it answers as Rancher Fleet's ` + "`fleet test`" + ` does when called the same
way, so a repository's CI keeps working by renaming the binary:
  - the cluster is described by -N (name), -l (labels), -g (its group) and
    -L (the group's labels); with none of -l, -g, -L, -t it is in the
    "default" cluster group;
  - the first matching entry of the bundle's targets wins, and
    targetCustomizations count as targets (unless --targets-file gives
    outer targets, which then restrict them, as in Fleet);
  - -t NAME picks a target by name;
  - "# Matched: <target>" goes to stderr, the YAML to stdout; a bundle that
    matches nothing is an error ("no match found");
  - -f FILE reads FILE ("-": stdin) as the fleet.yaml of DIR instead of
    DIR/fleet.yaml; -b FILE matches and renders a Bundle resource (YAML with
    inline spec.resources, Fleet's or edgefleet's apiVersion) instead of a
    directory, and then DIR and -f are ignored, as in Fleet.

--as-manager answers instead what the manager would deploy to a cluster
with those labels and groups: the first matching target (restricted by the
outer targets), then the first matching customization merged over it (all
of them with targetCustomizationMode: AllMatches); a bundle that is not
deployed there is a comment, not an error.`,
		Example: `  edgefleet test ./deploy                       # the "default" group, as fleet test
  edgefleet test -l env=prod -l region=eu ./deploy
  edgefleet test -t prod ./deploy
  edgefleet test --as-manager --cluster-name edge-7 -g stores --cluster-values values.yaml .`,
		RunE: func(cmd *cobra.Command, dirs []string) error {
			if len(dirs) == 0 {
				dirs = []string{"."}
			}
			o.stdin = cmd.InOrStdin()
			return runFleetTest(cmd.Context(), o, dirs, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.namespace, "namespace", "n", defaultApplyNamespace, "namespace the bundles and the cluster would live in")
	f.StringVar(&o.name, "name", "", "the NAME you give 'edgefleet apply' (names the bundles; default: the directory's name)")
	f.StringVarP(&o.clusterName, "cluster-name", "N", "", `name of the imagined cluster (with --as-manager, default "local")`)
	f.StringArrayVarP(&o.labels, "label", "l", nil, "cluster labels key=value (repeatable, or comma-separated)")
	f.StringArrayVarP(&o.groups, "group", "g", nil, "a ClusterGroup the imagined cluster belongs to (repeatable with --as-manager)")
	f.StringArrayVarP(&o.groupLabels, "group-label", "L", nil, "labels key=value of the cluster's group (repeatable, or comma-separated)")
	f.StringVarP(&o.target, "target", "t", "", "match this target (by name) instead of matching the cluster")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print only the match, not the resources")
	f.BoolVar(&o.asManager, "as-manager", false, "answer what the manager would deploy (targets, restrictions, customizations merged) instead of fleet test's first match")
	f.BoolVar(&o.strict, "strict", false, "fail on unknown or unsupported fleet.yaml keys instead of ignoring them with a warning")
	f.StringVar(&o.clusterValues, "cluster-values", "", "YAML file with the cluster's templateValues (.ClusterValues in Helm values)")
	f.StringVar(&o.targetsFile, "targets-file", "", "YAML file with targets for every bundle, as with apply")
	f.StringVarP(&o.file, "file", "f", "", `the fleet.yaml of DIR ("-": stdin) instead of DIR/fleet.yaml (fleet test -f)`)
	f.StringVarP(&o.bundleFile, "bundle-file", "b", "", "match and render this Bundle resource (inline spec.resources) instead of reading DIR (fleet test -b)")
	f.BoolVar(&o.plainHTTP, "helm-repo-insecure-plain-http", false, "pull charts from OCI registries over plain HTTP (local test registries only)")
	return cmd
}

// parseKeyValues reads repeatable, comma-separated key=value flags.
func parseKeyValues(flag string, vals []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range vals {
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("--%s %q: use key=value", flag, kv)
			}
			out[k] = val
		}
	}
	return out, nil
}

func runFleetTest(ctx context.Context, o fleetTestOptions, dirs []string, out, errOut io.Writer) error {
	labels, err := parseKeyValues("label", o.labels)
	if err != nil {
		return err
	}
	groupLabels, err := parseKeyValues("group-label", o.groupLabels)
	if err != nil {
		return err
	}
	if !o.asManager && len(o.groups) > 1 {
		return fmt.Errorf("-g/--group: fleet test takes one group; pass several only with --as-manager")
	}
	if !o.asManager && len(o.groupLabels) == 0 && len(o.groups) == 0 && len(o.labels) == 0 && o.target == "" {
		// fleet test's rule: a cluster described by nothing is in the
		// "default" cluster group.
		o.groups = []string{"default"}
	}
	if !o.asManager && len(o.groups) == 0 && len(o.groupLabels) > 0 {
		// fleet test -L without -g: a group without a name, with those labels.
		o.groups = []string{""}
	}
	if o.asManager && o.clusterName == "" {
		o.clusterName = "local"
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
			ObjectMeta: metav1.ObjectMeta{Name: g, Namespace: o.namespace, Labels: groupLabels},
			Spec:       fleetv1.ClusterGroupSpec{Selector: &metav1.LabelSelector{}},
		})
	}
	ropts := bundlereader.Options{Name: setName(o.name, dirs), Namespace: o.namespace, Labels: map[string]string{}, RegistryPlainHTTP: o.plainHTTP, Strict: o.strict}
	if o.targetsFile != "" {
		targets, err := bundlereader.ReadTargetsFile(o.targetsFile)
		if err != nil {
			return err
		}
		ropts.Targets = targets
	}
	var bundles []*bundlereader.Bundle
	switch {
	case o.bundleFile != "":
		// fleet test -b: the Bundle as written; DIR and -f do not apply.
		b, err := readBundleFile(o.bundleFile, o.namespace)
		if err != nil {
			return err
		}
		bundles = []*bundlereader.Bundle{b}
	default:
		if o.file != "" {
			if len(dirs) > 1 {
				return fmt.Errorf("-f/--file is the fleet.yaml of one DIR; %d were given", len(dirs))
			}
			override, err := readFleetYAMLFlag(o.file, o.stdin)
			if err != nil {
				return err
			}
			ropts.FleetYAML = override
		}
		if bundles, err = bundlereader.Read(ctx, ropts, dirs...); err != nil {
			return err
		}
	}
	printWarnings(errOut, bundles)
	tc := func(b *bundlereader.Bundle) render.TemplateContext {
		return render.TemplateContext{
			BundleName:       b.Bundle.Name,
			ClusterName:      cluster.Name,
			ClusterNamespace: cluster.Namespace,
			ClusterLabels:    labels,
			ClusterValues:    values,
		}
	}
	if !o.asManager {
		return fleetTestMatch(ctx, o, bundles, cluster, groups, tc, out, errOut)
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
		res, err := render.Render(ctx, b.Manifest, opts, tc(b))
		if err != nil {
			return fmt.Errorf("bundle %s (%s): %w", b.Bundle.Name, b.Dir, err)
		}
		fmt.Fprintf(out, "# Bundle %s: target %s, %s", b.Bundle.Name, target, res.Kind)
		if res.Kind == render.KindHelm {
			fmt.Fprintf(out, " release %s", res.ReleaseName)
		}
		fmt.Fprintf(out, ", namespace %s\n", res.Namespace)
		if err := printObjects(out, res); err != nil {
			return err
		}
	}
	return nil
}

// fleetTestMatch answers as `fleet test`: for each bundle the first entry of
// Fleet's target list that matches the cluster (or -t's), "# Matched:" on
// stderr, the bundle rendered with that entry's options on stdout.
func fleetTestMatch(ctx context.Context, o fleetTestOptions, bundles []*bundlereader.Bundle, cluster *fleetv1.Cluster, groups []*fleetv1.ClusterGroup,
	tc func(*bundlereader.Bundle) render.TemplateContext, out, errOut io.Writer) error {
	var unmatched []string
	for _, b := range bundles {
		t, err := fleetTestTarget(b, o.target, cluster, groups)
		if err != nil {
			return fmt.Errorf("bundle %s: %w", b.Bundle.Name, err)
		}
		if t == nil {
			fmt.Fprintf(errOut, "# No match: bundle %s (targets: %s)\n", b.Bundle.Name, describeTargetList(b.FleetCLITargets))
			unmatched = append(unmatched, b.Bundle.Name)
			continue
		}
		if len(bundles) > 1 {
			fmt.Fprintf(errOut, "# Bundle %s\n", b.Bundle.Name)
		}
		fmt.Fprintf(errOut, "# Matched: %s\n", t.Name)
		if o.quiet {
			continue
		}
		opts := targeting.Merge(b.Bundle.Spec.BundleDeploymentOptions, t.BundleDeploymentOptions)
		res, err := render.Render(ctx, b.Manifest, opts, tc(b))
		if err != nil {
			return fmt.Errorf("bundle %s (%s): %w", b.Bundle.Name, b.Dir, err)
		}
		if err := printObjects(out, res); err != nil {
			return err
		}
	}
	if len(unmatched) > 0 {
		return fmt.Errorf("no match found for bundle(s) %s", strings.Join(unmatched, ", "))
	}
	return nil
}

// fleetTestTarget is Fleet's BundleMatch.Match (or MatchForTarget with -t):
// entries before the outer targets are customizations when outer targets
// exist, and the cluster must then also match one outer target.
func fleetTestTarget(b *bundlereader.Bundle, name string, cluster *fleetv1.Cluster, groups []*fleetv1.ClusterGroup) (*fleetv1.BundleTarget, error) {
	ts := b.FleetCLITargets
	if name != "" {
		for i := range ts {
			if ts[i].Name == name {
				return &ts[i], nil
			}
		}
		return nil, nil
	}
	nCustom := 0
	if b.FleetCLIRestrictions > 0 {
		nCustom = len(ts) - b.FleetCLIRestrictions
	}
	restrictions := ts[nCustom:]
	// Fleet evaluates a target and the restrictions group by group.
	tryGroups := [][]*fleetv1.ClusterGroup{nil}
	if len(groups) > 0 {
		tryGroups = nil
		for _, g := range groups {
			tryGroups = append(tryGroups, []*fleetv1.ClusterGroup{g})
		}
	}
	for i := nCustom; i < len(ts); i++ {
		c := targeting.FromTarget(&ts[i])
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("target %q: %w", ts[i].Name, err)
		}
		for _, g := range tryGroups {
			if !targeting.Matches(c, cluster, g) {
				continue
			}
			if b.FleetCLIRestrictions > 0 && !slices.ContainsFunc(restrictions, func(r fleetv1.BundleTarget) bool { return targeting.Matches(targeting.FromTarget(&r), cluster, g) }) {
				continue
			}
			return &ts[i], nil
		}
	}
	return nil, nil
}

// maxFleetYAMLFlag bounds what -f reads (the reader's own limit for a
// fleet.yaml is 1 MiB; this only stops an endless stdin).
const maxFleetYAMLFlag = 4 << 20

func readFleetYAMLFlag(file string, stdin io.Reader) (*bundlereader.FleetYAMLOverride, error) {
	name, r := file, stdin
	if file == "-" {
		name = "stdin"
		if r == nil {
			r = os.Stdin
		}
	} else {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("-f: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxFleetYAMLFlag))
	if err != nil {
		return nil, fmt.Errorf("-f: reading %s: %w", name, err)
	}
	return &bundlereader.FleetYAMLOverride{Name: name, Data: data}, nil
}

// readBundleFile reads a Bundle resource for -b: its targets are matched
// as written (entries before the restrictions are customizations, as in
// Fleet) and its inline resources rendered.
func readBundleFile(file, namespace string) (*bundlereader.Bundle, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-b: %w", err)
	}
	var b fleetv1.Bundle
	if err := yaml.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("-b %s: not a Bundle: %w", file, err)
	}
	if b.Kind != "" && b.Kind != "Bundle" {
		return nil, fmt.Errorf("-b %s: kind %q, want a Bundle", file, b.Kind)
	}
	if len(b.Spec.Resources) == 0 {
		if b.Spec.ContentsID != "" {
			return nil, fmt.Errorf("-b %s: the Bundle has no inline spec.resources, only contentsID %s (stored in the manager): pass its directory instead", file, b.Spec.ContentsID)
		}
		return nil, fmt.Errorf("-b %s: the Bundle has no spec.resources", file)
	}
	m := &content.Manifest{}
	for _, r := range b.Spec.Resources {
		data, err := bundlereader.Decoded(r)
		if err != nil {
			return nil, fmt.Errorf("-b %s: resource %s: %w", file, r.Name, err)
		}
		m.Resources = append(m.Resources, fleetv1.BundleResource{Name: r.Name, Content: string(data)})
	}
	if b.Name == "" {
		b.Name = bundlereader.SafeName(strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)))
	}
	if b.Namespace == "" {
		b.Namespace = namespace
	}
	b.Spec.Resources = nil
	restrictions := 0
	if len(b.Spec.TargetRestrictions) > 0 {
		restrictions = len(b.Spec.Targets) - targeting.CustomizationCount(&b)
	}
	return &bundlereader.Bundle{Bundle: &b, Manifest: m, Dir: file, FleetCLITargets: b.Spec.Targets, FleetCLIRestrictions: restrictions}, nil
}

func printObjects(out io.Writer, res *render.Result) error {
	for _, obj := range res.Objects {
		data, err := yaml.Marshal(obj.Object)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "---\n%s", data)
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
	return describeTargetList(b.Spec.Targets[targeting.CustomizationCount(b):])
}

func describeTargetList(ts []fleetv1.BundleTarget) string {
	var parts []string
	for _, t := range ts {
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
