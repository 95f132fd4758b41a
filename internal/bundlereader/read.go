// Package bundlereader turns directories into Bundles the way Rancher Fleet
// does (fleet.yaml format unchanged): it finds the bundle directories,
// reads fleet.yaml strictly, merges Helm values files, downloads remote
// charts into the bundle, composes targets and collects every file into a
// content manifest. It only reads; `edgefleet apply` and GitRepo sync write.
package bundlereader

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"helm.sh/helm/v4/pkg/registry"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/kubenames"
)

// Options shape how directories become bundles.
type Options struct {
	// Name names the set of bundles (`edgefleet apply NAME`, or the GitRepo):
	// it prefixes derived bundle names and is the BundleSetLabel value.
	Name string
	// Namespace of the Bundles.
	Namespace string
	// Labels are added to every bundle (fleet.yaml labels win).
	Labels map[string]string
	// Targets are the targets from outside the directory (a GitRepo's
	// targets, or `--targets-file`); fleet.yaml overrideTargets replace them.
	Targets []fleetv1.BundleTarget
	// Paused pauses every bundle.
	Paused bool
	// BaseDir, when set, is what bundle names are derived relative to
	// (Fleet's GitRepo naming: "<repo>-<path from the repository root>").
	// When empty, names are relative to each path given to Read, whose own
	// bundle is named Name.
	BaseDir string
	// RegistryPlainHTTP talks to OCI registries over plain HTTP (a local
	// test registry on 127.0.0.1).
	RegistryPlainHTTP bool
	// HTTPClient downloads charts; http.DefaultClient when nil.
	HTTPClient *http.Client
	// Root confines every file the reader opens: paths, symbolic links and
	// fleet.yaml references resolve beneath it (os.Root), and a link that
	// leaves it is an error naming the path. When empty it is BaseDir (a
	// GitRepo's checkout), else each path given to Read is its own root.
	Root string
	// Limits bound the bytes read (defaults when zero).
	Limits Limits
	// FleetYAML, when set, is the fleet.yaml of each path's top directory
	// instead of the file in it (`edgefleet test -f`, as Fleet's
	// `fleet test -f`): that directory is a bundle even without YAML files.
	FleetYAML *FleetYAMLOverride
	// Strict fails on unknown or unsupported fleet.yaml keys (edgefleet's
	// behaviour before Fleet compatibility; `--strict` for CI). By default
	// they are ignored, as Fleet does, and reported in Bundle.Warnings.
	Strict bool
}

// FleetYAMLOverride is a fleet.yaml given apart from its directory.
type FleetYAMLOverride struct {
	// Name is how messages name it (the file given, or "stdin").
	Name string
	Data []byte
}

// Bundle is one bundle read from a directory: the Bundle object (without
// resources or contentsID) and the files it deploys.
type Bundle struct {
	Bundle   *fleetv1.Bundle
	Manifest *content.Manifest
	// Dir is the directory it was read from, as given.
	Dir string
	// Warnings are fleet.yaml keys that were ignored (unknown, or not
	// supported yet), each naming file and line.
	Warnings []Warning
	// FleetCLITargets are the targets as Rancher Fleet's CLI (`fleet test`)
	// lists them for this bundle, in its order: fleet.yaml targets, then
	// targetCustomizations, then the outer targets (or overrideTargets);
	// the default target only when that is empty. FleetCLIRestrictions are
	// the outer targets: when set, the entries before them are
	// customizations and cannot be matched.
	FleetCLITargets      []fleetv1.BundleTarget
	FleetCLIRestrictions int
}

// Read reads every path into bundles. Any problem (bad fleet.yaml, invalid
// YAML, missing chart or values file, unreachable chart repository) is an
// error naming file and line, and no bundles are returned.
func Read(ctx context.Context, opts Options, paths ...string) ([]*Bundle, error) {
	if opts.Name == "" {
		return nil, fmt.Errorf("a bundle set name is required")
	}
	if errs := validation.IsValidLabelValue(opts.Name); len(errs) > 0 {
		return nil, fmt.Errorf("name %q cannot be used as a label value: %s", opts.Name, strings.Join(errs, "; "))
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no directories given")
	}
	for k, v := range opts.Labels {
		if err := kubenames.ValidateLabel(k, v); err != nil {
			return nil, err
		}
	}
	base := ""
	if opts.BaseDir != "" {
		abs, err := filepath.Abs(opts.BaseDir)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", opts.BaseDir, err)
		}
		base = abs
	}
	r := &reader{opts: opts, charts: map[string]*downloadedChart{}, budget: &budget{limits: opts.Limits.withDefaults()}, trees: map[string]*tree{}}
	defer r.close()
	var out []*Bundle
	seen := map[string]string{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", p, err)
		}
		t, dir, err := r.treeFor(abs, p)
		if err != nil {
			return nil, err
		}
		dirs, err := scan(ctx, t, dir, p, opts.FleetYAML != nil)
		if err != nil {
			return nil, err
		}
		nameBase := abs
		switch {
		case base != "":
			nameBase = base
		case len(paths) > 1:
			// Several paths: each root is named by its folder (NAME-web,
			// NAME-infra), as GitRepo paths are, so they cannot collide.
			nameBase = filepath.Dir(abs)
		}
		for _, d := range dirs {
			rel, err := filepath.Rel(nameBase, d.abs)
			if err != nil {
				return nil, err
			}
			b, err := r.build(ctx, t, d, derivedName(opts.Name, rel))
			if err != nil {
				return nil, err
			}
			if other, dup := seen[b.Bundle.Name]; dup {
				return nil, fmt.Errorf("%s and %s both make a bundle named %q: set a different name in one fleet.yaml", other, d.display, b.Bundle.Name)
			}
			seen[b.Bundle.Name] = d.display
			out = append(out, b)
		}
	}
	return out, nil
}

// treeFor opens (once) the root that confines path abs and returns it with
// abs relative to it.
func (r *reader) treeFor(abs, shown string) (*tree, string, error) {
	rootDir, rootName := abs, shown
	switch {
	case r.opts.Root != "":
		rootDir, rootName = r.opts.Root, r.opts.Root
	case r.opts.BaseDir != "":
		rootDir, rootName = r.opts.BaseDir, "the repository"
	}
	rootDir, err := filepath.Abs(rootDir)
	if err != nil {
		return nil, "", fmt.Errorf("resolving %s: %w", rootDir, err)
	}
	rel, err := relInRoot(rootDir, abs, shown, rootName)
	if err != nil {
		return nil, "", err
	}
	t, ok := r.trees[rootDir]
	if !ok {
		if t, err = openTree(rootDir, rootName, r.budget); err != nil {
			return nil, "", err
		}
		r.trees[rootDir] = t
	}
	return t, rel, nil
}

func (r *reader) close() {
	for _, t := range r.trees {
		t.close()
	}
}

func derivedName(setName, rel string) string {
	rel = filepath.ToSlash(rel)
	if rel == "." || rel == "" {
		return SafeName(setName)
	}
	return SafeName(setName + "/" + rel)
}

// reader holds what is shared by all bundles of one Read.
type reader struct {
	opts     Options
	charts   map[string]*downloadedChart
	registry *registry.Client
	budget   *budget
	trees    map[string]*tree // by absolute root directory
}

// builder assembles one bundle.
type builder struct {
	r         *reader
	t         *tree
	dir       *bundleDir
	fleetFile string // fleet.yaml as shown to the user
	node      *yaml.Node
	warnings  []Warning
	resources []fleetv1.BundleResource
	files     map[string]bool
	charts    map[string]bool
}

func (b *builder) fleetErr(at []any, format string, args ...any) error {
	return yamlFileError(b.fleetFile, lineOf(b.node, at...), format, args...)
}

func (b *builder) hasFile(name string) bool { return b.files[name] }

func (r *reader) build(ctx context.Context, t *tree, d *bundleDir, name string) (*Bundle, error) {
	b := &builder{r: r, t: t, dir: d, files: map[string]bool{}, charts: map[string]bool{}}
	for _, f := range d.files {
		data, err := t.readFile(f.path, f.display, r.budget.limits.MaxFileBytes, "one file")
		if err != nil {
			return nil, err
		}
		if f.checkYAML && isYAMLName(f.name) {
			if err := validateYAMLStream(f.display, data); err != nil {
				return nil, err
			}
		}
		b.files[f.name] = true
		b.resources = append(b.resources, fileResource(f.name, data))
	}

	fy := &FleetYAML{}
	if d.fleetYAMLOverridden {
		b.fleetFile = r.opts.FleetYAML.Name
		if limit := r.budget.limits.MaxFleetYAMLBytes; int64(len(r.opts.FleetYAML.Data)) > limit {
			return nil, fmt.Errorf("reading %s: larger than the limit of %s for a fleet.yaml", b.fleetFile, sizeString(limit))
		}
		var err error
		if fy, b.node, b.warnings, err = parseFleetYAML(b.fleetFile, r.opts.FleetYAML.Data, r.opts.Strict); err != nil {
			return nil, err
		}
	} else if d.fleetYAML != "" {
		b.fleetFile = filepath.Join(d.display, filepath.Base(d.fleetYAML))
		data, err := t.readFile(d.fleetYAML, b.fleetFile, r.budget.limits.MaxFleetYAMLBytes, "a fleet.yaml")
		if err != nil {
			return nil, err
		}
		if fy, b.node, b.warnings, err = parseFleetYAML(b.fleetFile, data, r.opts.Strict); err != nil {
			return nil, err
		}
	}
	if fy.Name != "" {
		if errs := validation.IsDNS1123Subdomain(fy.Name); len(errs) > 0 {
			return nil, b.fleetErr([]any{"name"}, "name %q is not a valid Kubernetes name: %s", fy.Name, strings.Join(errs, "; "))
		}
		name = fy.Name
	}
	labels := map[string]string{}
	for k, v := range r.opts.Labels {
		labels[k] = v
	}
	for k, v := range fy.Labels {
		if err := kubenames.ValidateLabel(k, v); err != nil {
			return nil, b.fleetErr([]any{"labels", k}, "%v", err)
		}
		labels[k] = v
	}
	labels[fleetv1.BundleSetLabel] = r.opts.Name

	// Targets inherit the bundle's chart as written, not as resolved below.
	originalHelm := fy.Helm.DeepCopy()
	spec := fy.BundleSpec
	spec.Paused = spec.Paused || r.opts.Paused
	if err := b.resolveHelm(ctx, &spec.BundleDeploymentOptions, nil, []any{"helm"}); err != nil {
		return nil, err
	}
	if err := b.updateDependencies(ctx, spec.Helm, []any{"helm"}); err != nil {
		return nil, err
	}
	if err := b.checkOptions(&spec.BundleDeploymentOptions, nil); err != nil {
		return nil, err
	}
	for _, list := range []struct {
		key     string
		targets []fleetv1.BundleTarget
	}{{"targets", fy.Targets}, {"targetCustomizations", fy.TargetCustomizations}} {
		for i := range list.targets {
			at := []any{list.key, i}
			t := &list.targets[i]
			if err := b.resolveHelm(ctx, &t.BundleDeploymentOptions, originalHelm, append(at, "helm")); err != nil {
				return nil, err
			}
			if err := b.updateTargetDependencies(ctx, spec.Helm, t.Helm, append(at, "helm")); err != nil {
				return nil, err
			}
			if err := b.checkOptions(&t.BundleDeploymentOptions, at); err != nil {
				return nil, err
			}
			if err := b.checkSelectors(at, t.ClusterSelector, t.ClusterGroupSelector); err != nil {
				return nil, err
			}
		}
	}
	for i, t := range fy.OverrideTargets {
		if err := b.checkSelectors([]any{"overrideTargets", i}, t.ClusterSelector, t.ClusterGroupSelector); err != nil {
			return nil, err
		}
	}
	for i, dep := range spec.DependsOn {
		if dep.Name == "" && dep.Selector == nil {
			return nil, b.fleetErr([]any{"dependsOn", i}, "dependsOn[%d]: set name or selector", i)
		}
		if dep.Selector != nil {
			if _, err := metav1.LabelSelectorAsSelector(dep.Selector); err != nil {
				return nil, b.fleetErr([]any{"dependsOn", i, "selector"}, "dependsOn[%d].selector: %v", i, err)
			}
		}
	}
	spec.Targets, spec.TargetRestrictions = composeTargets(fy, r.opts.Targets)
	if err := b.checkUnsupported(&spec, fy); err != nil {
		return nil, err
	}

	bundle := &fleetv1.Bundle{
		TypeMeta: metav1.TypeMeta{APIVersion: fleetv1.GroupVersion.String(), Kind: "Bundle"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: r.opts.Namespace,
			Labels:    labels,
		},
		Spec: spec,
	}
	sort.SliceStable(b.warnings, func(i, j int) bool { return b.warnings[i].Line < b.warnings[j].Line })
	if len(b.warnings) > 0 {
		// Relative to the repository: a GitRepo's checkout directory
		// changes with every commit and must not change the Bundle.
		shown := make([]Warning, len(b.warnings))
		for i, w := range b.warnings {
			if r.opts.BaseDir != "" {
				if abs, err := filepath.Abs(r.opts.BaseDir); err == nil {
					w.File = strings.TrimPrefix(w.File, abs+string(filepath.Separator))
				}
			}
			shown[i] = w
		}
		bundle.Annotations = map[string]string{fleetv1.FleetYAMLWarningsAnnotation: warningsText(shown, maxWarningsAnnotation)}
	}
	cliTargets, cliRestrictions := fleetCLITargets(fy, r.opts.Targets)
	return &Bundle{Bundle: bundle, Manifest: &content.Manifest{Resources: b.resources}, Dir: d.display, Warnings: b.warnings,
		FleetCLITargets: cliTargets, FleetCLIRestrictions: cliRestrictions}, nil
}

// checkUnsupported warns about settings that are read and carried into the
// Bundle but not acted on yet (strict: fails).
func (b *builder) checkUnsupported(spec *fleetv1.BundleSpec, fy *FleetYAML) error {
	warn := func(at []any, format string, args ...any) error {
		w := Warning{File: b.fleetFile, Line: lineOf(b.node, at...), Message: fmt.Sprintf(format, args...)}
		if b.r.opts.Strict {
			return errors.New(w.String())
		}
		b.warnings = append(b.warnings, w)
		return nil
	}
	check := func(o *fleetv1.BundleDeploymentOptions, at []any) error {
		if len(o.DownstreamResources) > 0 {
			return warn(append(append([]any(nil), at...), "downstreamResources"), "downstreamResources: not supported yet: the %d Secret/ConfigMap(s) listed are not copied to clusters; create them downstream (e.g. in another bundle)", len(o.DownstreamResources))
		}
		return nil
	}
	if err := check(&spec.BundleDeploymentOptions, nil); err != nil {
		return err
	}
	for i := range fy.TargetCustomizations {
		if err := check(&fy.TargetCustomizations[i].BundleDeploymentOptions, []any{"targetCustomizations", i}); err != nil {
			return err
		}
	}
	return nil
}

// resolveHelm merges valuesFiles and resolves the chart of one set of
// options. A target that changes chart, repo or version inherits the other
// two from the bundle (original, before its own chart was resolved), as in
// Fleet, so its chart is downloaded as well.
func (b *builder) resolveHelm(ctx context.Context, o *fleetv1.BundleDeploymentOptions, original *fleetv1.HelmOptions, at []any) error {
	h := o.Helm
	if h == nil {
		return nil
	}
	if err := b.mergeValuesFiles(h, at); err != nil {
		return err
	}
	if original != nil {
		if h.Chart == "" && h.Repo == "" && h.Version == "" {
			return nil
		}
		if h.Repo == "" && h.Chart == "" {
			h.Repo = original.Repo
		}
		if h.Chart == "" {
			h.Chart = original.Chart
		}
		if h.Version == "" {
			h.Version = original.Version
		}
	}
	return b.resolveChart(ctx, h, at)
}

func (b *builder) checkOptions(o *fleetv1.BundleDeploymentOptions, at []any) error {
	if o.Kustomize != nil && o.Kustomize.Dir != "" {
		where := append(append([]any(nil), at...), "kustomize", "dir")
		name, shown, err := b.insideBundle(o.Kustomize.Dir)
		if err != nil {
			return b.fleetErr(where, "kustomize.dir: %v", err)
		}
		info, err := b.t.stat(name, shown)
		if isEscape(err) {
			return b.fleetErr(where, "kustomize.dir: %v", err)
		}
		if err != nil || !info.IsDir() {
			return b.fleetErr(where, "kustomize.dir: %s is not a directory", shown)
		}
	}
	return nil
}

func (b *builder) checkSelectors(at []any, cluster, group *metav1.LabelSelector) error {
	for _, s := range []struct {
		key string
		sel *metav1.LabelSelector
	}{{"clusterSelector", cluster}, {"clusterGroupSelector", group}} {
		if s.sel == nil {
			continue
		}
		if _, err := metav1.LabelSelectorAsSelector(s.sel); err != nil {
			return b.fleetErr(append(append([]any(nil), at...), s.key), "%s: invalid label selector: %v", s.key, err)
		}
	}
	return nil
}

// addChart adds a downloaded chart's files to the manifest once.
func (b *builder) addChart(dl *downloadedChart) error {
	if b.charts[dl.dir] {
		return nil
	}
	b.charts[dl.dir] = true
	for _, f := range dl.files {
		if err := b.r.budget.charge(dl.dir+"/"+f.Name, int64(len(f.Data))); err != nil {
			return err
		}
		name := dl.dir + "/" + f.Name
		b.files[name] = true
		b.resources = append(b.resources, fileResource(name, f.Data))
	}
	return nil
}

// fileResource stores text as is and anything else gzip+base64 encoded.
func fileResource(name string, data []byte) fleetv1.BundleResource {
	if utf8.Valid(data) {
		return fleetv1.BundleResource{Name: name, Content: string(data)}
	}
	return fleetv1.BundleResource{Name: name, Content: gzipBase64(data), Encoding: fleetv1.BundleResourceEncodingBase64Gzip}
}
