// Package render turns a bundle manifest plus the options for one cluster
// into what that cluster receives: a Helm chart with values (installed as a
// real Helm release), or the final objects of raw YAML and Kustomize bundles.
// The agent and `edgefleet test` both call it, so what a user previews is what
// a cluster gets.
//
// The semantics are Rancher Fleet's fleet.yaml:
//
//   - Kind: helm.chart set, or a Chart.yaml at the bundle root, is Helm;
//     else kustomize.dir set, or a kustomization at the root, is Kustomize;
//     else every *.yaml, *.yml and *.json file (multi-document) is raw YAML,
//     except fleet.yaml, overlays/, kustomization files and directories that
//     hold their own fleet.yaml or Chart.yaml.
//   - yaml.overlays (raw YAML): overlays/<name>/<path> replaces <path>;
//     overlays/<name>/<f>_patch.yaml patches <f>.yaml with a JSON patch (a
//     list), a strategic merge patch (built-in kinds) or a JSON merge patch.
//   - Helm values: chart defaults < helm.values < helm.valuesFiles present in
//     the bundle. Strings "global.fleet.clusterLabels.<label>" become the
//     label's value, and global.fleet.clusterLabels holds all labels. Unless
//     helm.disablePreProcess is set, strings are Go templates with sprig and
//     Fleet's ${ } delimiters over .ClusterName, .ClusterNamespace,
//     .ClusterLabels, .ClusterAnnotations and .ClusterValues. A value that is
//     only a template keeps the type of its output (numbers, booleans, maps).
//     As in Fleet, a reference to a missing label or value is an error (Go's
//     missingkey=error) naming the value's path, not a silent empty string,
//     so a typo cannot ship an empty setting to every cluster; write
//     ${ index .ClusterLabels "env" | default "dev" } for optional keys.
//   - A kustomization in kustomize.dir (or the root) of a Helm bundle
//     post-renders the chart's output (Result.PostRenderer); the chart output
//     is fleet-manifests.yaml, prepended to the kustomization's resources.
//   - Namespaces: namespaced objects without one get defaultNamespace (else
//     "default"); options.namespace forces every object into it and makes a
//     cluster-scoped object an error.
//
// Result.Objects are sorted in apply order: Namespaces, CRDs, other
// cluster-scoped objects, namespaced objects, then webhook configurations
// and APIServices (which need the bundle's Services to exist); within a group
// by Helm's kind install order, then kind, namespace and name.
package render

import (
	"context"
	"fmt"
	"path"
	"strings"

	"helm.sh/helm/v4/pkg/postrenderer"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	chart "helm.sh/helm/v4/pkg/chart/v2"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
)

// TemplateContext describes the cluster a bundle is rendered for. Helm
// values templates see the first five fields with the names Fleet users
// know: .ClusterName, .ClusterNamespace, .ClusterLabels,
// .ClusterAnnotations, .ClusterValues.
type TemplateContext struct {
	ClusterName        string
	ClusterNamespace   string
	ClusterLabels      map[string]string
	ClusterAnnotations map[string]string
	ClusterValues      map[string]any

	// BundleName derives the release name when helm.releaseName is empty.
	BundleName string

	// KubeVersion ("v1.37.1") and APIVersions ("apps/v1", "example.com/v1/Foo")
	// are what charts see as .Capabilities; empty means Helm's defaults.
	KubeVersion string
	APIVersions []string

	// IsClusterScoped overrides ClusterScopedKinds, e.g. with the target
	// cluster's RESTMapper. CRDs in the bundle still take precedence.
	IsClusterScoped func(schema.GroupVersionKind) bool
}

// Kind says how a bundle is deployed.
type Kind string

const (
	KindHelm      Kind = "Helm"
	KindKustomize Kind = "Kustomize"
	KindRawYAML   Kind = "RawYAML"
)

// Result is a bundle rendered for one cluster.
type Result struct {
	Kind Kind
	// Namespace is where namespaced objects without one go, and the Helm
	// release's namespace.
	Namespace string
	// ReleaseName names the Helm release; for other kinds it is the same
	// stable DNS-safe name, usable to label what the bundle deploys.
	ReleaseName string
	// Chart and Values are installed as a Helm release (Helm bundles only).
	// Values are the user's values for this cluster, without chart defaults.
	Chart  *chart.Chart
	Values map[string]any
	// PostRenderer must be passed to the Helm install/upgrade (Helm bundles
	// only): it applies the bundle's kustomization and namespace rules.
	PostRenderer postrenderer.PostRenderer
	// Objects are the final objects in apply order: what is applied for raw
	// YAML and Kustomize bundles, and the release manifest (without hooks)
	// for Helm bundles.
	Objects []*unstructured.Unstructured
}

// Render renders manifest m with opts for the cluster described by tc.
// Errors in the user's files are *Error.
func Render(ctx context.Context, m *content.Manifest, opts fleetv1.BundleDeploymentOptions, tc TemplateContext) (*Result, error) {
	fs, err := decodeFiles(m)
	if err != nil {
		return nil, err
	}
	ns, forced := namespaceFor(opts)
	r := &Result{Namespace: ns, ReleaseName: releaseNameFor(opts, tc)}

	kdir, err := kustomizeDir(opts)
	if err != nil {
		return nil, err
	}
	_, hasKustomization := fs.kustomizationIn(kdir)
	if kdir != "" && !hasKustomization {
		return nil, &Error{File: "fleet.yaml", Err: fmt.Errorf(
			"kustomize.dir %q: the bundle has no kustomization.yaml there", kdir)}
	}

	loc, isHelm, err := chartLocation(fs, opts.Helm)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	var srcs []source
	switch {
	case isHelm:
		r.Kind = KindHelm
		objs, srcs, err = renderHelm(ctx, fs, loc, kdir, hasKustomization, forced, opts, tc, r)
	case hasKustomization:
		r.Kind = KindKustomize
		var out []byte
		if out, err = kustomizeBuild(fs, kdir); err == nil {
			file, _ := fs.kustomizationIn(kdir)
			objs, srcs, err = parseObjects(file, out)
			for i := range srcs {
				srcs[i].line = 0
			}
		}
	default:
		r.Kind = KindRawYAML
		objs, srcs, err = renderRaw(fs, opts)
	}
	if err != nil {
		return nil, err
	}
	s := newScoper(tc.IsClusterScoped, objs)
	if r.Kind == KindHelm {
		// The post-renderer enforced a forced namespace on the templates;
		// CRDs from the chart's crds/ directory bypass it in Helm, and so here.
		forced = false
	}
	if err := setNamespaces(objs, srcs, ns, forced, s); err != nil {
		return nil, err
	}
	if err := checkDuplicates(objs, srcs); err != nil {
		return nil, err
	}
	sortObjects(objs, srcs, s)
	r.Objects = objs
	return r, nil
}

// namespaceFor returns the bundle's namespace and whether it is forced.
// "-" is Fleet's "cleared by a target customization".
func namespaceFor(opts fleetv1.BundleDeploymentOptions) (string, bool) {
	if opts.Namespace != "" && opts.Namespace != "-" {
		return opts.Namespace, true
	}
	if opts.DefaultNamespace != "" && opts.DefaultNamespace != "-" {
		return opts.DefaultNamespace, false
	}
	return "default", false
}

func releaseNameFor(opts fleetv1.BundleDeploymentOptions, tc TemplateContext) string {
	if opts.Helm != nil && opts.Helm.ReleaseName != "" {
		return opts.Helm.ReleaseName
	}
	return ReleaseName(tc.BundleName)
}

func kustomizeDir(opts fleetv1.BundleDeploymentOptions) (string, error) {
	if opts.Kustomize == nil || opts.Kustomize.Dir == "" {
		return "", nil
	}
	d, err := cleanPath(opts.Kustomize.Dir)
	if err != nil {
		return "", &Error{File: "fleet.yaml", Err: fmt.Errorf("kustomize.dir: %w", err)}
	}
	return d, nil
}

func renderHelm(ctx context.Context, fs files, loc, kdir string, kustomize, forced bool, opts fleetv1.BundleDeploymentOptions, tc TemplateContext, r *Result) ([]*unstructured.Unstructured, []source, error) {
	c, chartDir, err := loadChart(fs, loc, opts.Helm)
	if err != nil {
		return nil, nil, err
	}
	values, err := helmValues(fs, chartDir, opts.Helm, tc)
	if err != nil {
		return nil, nil, err
	}
	r.Chart, r.Values = c, values
	r.PostRenderer = &postRenderer{
		fs:              fs,
		kustomizeDir:    kdir,
		kustomize:       kustomize,
		chartDir:        chartDir,
		namespace:       r.Namespace,
		forced:          forced,
		isClusterScoped: tc.IsClusterScoped,
	}
	manifest, err := renderChart(ctx, c, values, r, opts.Helm, tc, chartDir)
	if err != nil {
		return nil, nil, err
	}
	objs, srcs, err := parseObjects(joinPath(chartDir, "templates"), manifest)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the rendered release manifest: %w", err)
	}
	return objs, srcs, nil
}

// renderRaw reads the objects of a raw YAML bundle after its overlays.
func renderRaw(fs files, opts fleetv1.BundleDeploymentOptions) ([]*unstructured.Unstructured, []source, error) {
	var overlays []string
	if opts.YAML != nil {
		overlays = opts.YAML.Overlays
	}
	fs, err := applyOverlays(fs, overlays)
	if err != nil {
		return nil, nil, err
	}
	skip := skippedDirs(fs)
	var objs []*unstructured.Unstructured
	var srcs []source
	for _, n := range fs.sortedNames() {
		if !isManifestFile(n) || skipped(n, skip) {
			continue
		}
		o, s, err := parseObjects(n, fs[n])
		if err != nil {
			return nil, nil, err
		}
		objs = append(objs, o...)
		srcs = append(srcs, s...)
	}
	return objs, srcs, nil
}

func isManifestFile(n string) bool {
	base := path.Base(n)
	switch base {
	case "fleet.yaml", "fleet.yml", "kustomization.yaml", "kustomization.yml":
		return false
	}
	if n == overlaysDir || strings.HasPrefix(n, overlaysDir+"/") {
		return false
	}
	ext := path.Ext(n)
	return ext == ".yaml" || ext == ".yml" || ext == ".json"
}

// skippedDirs are directories that are not raw manifests: nested bundles
// (their own fleet.yaml) and charts.
func skippedDirs(fs files) []string {
	var dirs []string
	for n := range fs {
		base := path.Base(n)
		if dir := path.Dir(n); dir != "." && (base == "fleet.yaml" || base == "fleet.yml" || base == "Chart.yaml") {
			dirs = append(dirs, dir+"/")
		}
	}
	return dirs
}

func skipped(n string, dirs []string) bool {
	for _, d := range dirs {
		if strings.HasPrefix(n, d) {
			return true
		}
	}
	return false
}

// checkDuplicates rejects two objects with the same identity: only one of
// them could be applied, and which one would depend on order.
func checkDuplicates(objs []*unstructured.Unstructured, srcs []source) error {
	seen := make(map[string]int, len(objs))
	for i, o := range objs {
		gk := o.GroupVersionKind().GroupKind()
		key := gk.String() + "/" + o.GetNamespace() + "/" + o.GetName()
		if o.GetName() == "" {
			continue // generateName
		}
		if j, ok := seen[key]; ok {
			first := srcs[j].file
			if srcs[j].line > 0 {
				first = fmt.Sprintf("%s:%d", first, srcs[j].line)
			}
			return &Error{File: srcs[i].file, Line: srcs[i].line, Err: fmt.Errorf(
				"%s %q in namespace %q is defined twice (also in %s)", o.GetKind(), o.GetName(), o.GetNamespace(), first)}
		}
		seen[key] = i
	}
	return nil
}
