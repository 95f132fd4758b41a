package bundlereader

import (
	"context"
	"path"
	"strings"

	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	sigsyaml "sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// updateDependencies is Fleet's `helm dependency update` for a chart
// inside the bundle: every dependency its Chart.yaml lists that charts/
// does not hold is added to the bundle under <chart>/charts/<name>/ —
// file:// ones from the bundle itself (never from outside it), http(s)://
// and oci:// ones through the same guarded downloads as remote charts
// (limits, digests, credentials only for their origin). The chart in git is
// not modified. helm.disableDependencyUpdate skips it.
func (b *builder) updateDependencies(ctx context.Context, h *fleetv1.HelmOptions, at []any) error {
	if h == nil || h.DisableDependencyUpdate || h.Chart == "" || h.Repo != "" {
		return nil
	}
	chartDir := path.Clean(strings.TrimPrefix(h.Chart, "./"))
	if strings.HasPrefix(chartDir, ChartDir+"/") || !b.hasFile(chartDir+"/Chart.yaml") {
		return nil // a downloaded chart (packaged with its dependencies), or an archive
	}
	var md chartv2.Metadata
	if err := sigsyaml.Unmarshal([]byte(b.resourceContent(chartDir+"/Chart.yaml")), &md); err != nil {
		return nil // the renderer reports an unreadable Chart.yaml with its line
	}
	chartAt := append(append([]any(nil), at...), "chart")
	for _, dep := range md.Dependencies {
		if dep == nil || dep.Name == "" || b.hasDependency(chartDir, dep.Name) {
			continue
		}
		target := chartDir + "/charts/" + dep.Name
		repo := dep.Repository
		switch {
		case strings.HasPrefix(repo, "file://"):
			src := path.Clean(path.Join(chartDir, strings.TrimPrefix(repo, "file://")))
			if src == ".." || strings.HasPrefix(src, "../") || path.IsAbs(strings.TrimPrefix(repo, "file://")) {
				return b.fleetErr(chartAt, "chart dependency %q: %s is outside the bundle; vendor it in %s/charts/", dep.Name, repo, chartDir)
			}
			if !b.hasFile(src + "/Chart.yaml") {
				return b.fleetErr(chartAt, "chart dependency %q: %s has no Chart.yaml in the bundle (hidden, .fleetignore'd or missing)", dep.Name, repo)
			}
			b.copyTree(src, target)
		case strings.HasPrefix(repo, "http://"), strings.HasPrefix(repo, "https://"), strings.HasPrefix(repo, "oci://"):
			var dl *downloadedChart
			var err error
			if strings.HasPrefix(repo, "oci://") {
				dl, err = b.r.fetchOCI(ctx, strings.TrimSuffix(repo, "/")+"/"+dep.Name, dep.Version)
			} else {
				dl, err = b.r.fetchFromRepo(ctx, repo, dep.Name, dep.Version)
			}
			if err != nil {
				return b.fleetErr(chartAt, "chart dependency %q (helm dependency update; set helm.disableDependencyUpdate to skip): %v", dep.Name, err)
			}
			for _, f := range dl.files {
				name := target + "/" + f.Name
				if err := b.r.budget.charge(name, int64(len(f.Data))); err != nil {
					return b.fleetErr(chartAt, "%v", err)
				}
				b.files[name] = true
				b.resources = append(b.resources, fileResource(name, f.Data))
			}
		case repo == "":
			return b.fleetErr(chartAt, "chart dependency %q has no repository and is not in %s/charts/: vendor it there or set its repository", dep.Name, chartDir)
		default:
			return b.fleetErr(chartAt, "chart dependency %q: repository %q is a named repository (helm repo add), which the bundle cannot resolve; use its URL (https://… or oci://…) or vendor it in %s/charts/", dep.Name, repo, chartDir)
		}
	}
	return nil
}

// updateTargetDependencies runs the dependency update for the chart a
// target switches to (a local chart other than the bundle's), as Fleet
// does for every chart it deploys: without it, such a chart's missing
// dependencies only show when an agent renders it. The bundle's
// disableDependencyUpdate applies too (targets inherit it when merged).
// A chart already updated (the bundle's own) gains nothing twice.
func (b *builder) updateTargetDependencies(ctx context.Context, bundle, target *fleetv1.HelmOptions, at []any) error {
	if target == nil || target.Chart == "" {
		return nil
	}
	h := *target
	h.DisableDependencyUpdate = h.DisableDependencyUpdate || (bundle != nil && bundle.DisableDependencyUpdate)
	return b.updateDependencies(ctx, &h, at)
}

// hasDependency reports whether charts/ holds name, as a directory or as an
// archive (name-<version>.tgz).
func (b *builder) hasDependency(chartDir, name string) bool {
	if b.hasFile(chartDir + "/charts/" + name + "/Chart.yaml") {
		return true
	}
	prefix := chartDir + "/charts/" + name + "-"
	for f := range b.files {
		if strings.HasPrefix(f, prefix) && strings.HasSuffix(f, ".tgz") && !strings.Contains(strings.TrimPrefix(f, prefix), "/") {
			return true
		}
	}
	return false
}

func (b *builder) resourceContent(name string) string {
	for _, r := range b.resources {
		if r.Name == name {
			if data, err := Decoded(r); err == nil {
				return string(data)
			}
		}
	}
	return ""
}

// copyTree adds the bundle's files below src again below dst (a file://
// dependency: its bytes were already read and charged once).
func (b *builder) copyTree(src, dst string) {
	n := len(b.resources)
	for i := 0; i < n; i++ {
		r := b.resources[i]
		if rest, ok := strings.CutPrefix(r.Name, src+"/"); ok {
			c := r
			c.Name = dst + "/" + rest
			b.files[c.Name] = true
			b.resources = append(b.resources, c)
		}
	}
}
