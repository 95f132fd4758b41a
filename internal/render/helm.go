package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/ignore"
	release "helm.sh/helm/v4/pkg/release/v1"
	ctrl "sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/kubenames"
)

// MaxReleaseNameLen is Helm's limit on release names.
const MaxReleaseNameLen = 53

// ReleaseName derives a DNS-safe Helm release name of at most 53 characters
// from a bundle name. A name that had to be changed gets a short hash of the
// original, so two bundles never share a release.
func ReleaseName(bundleName string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(bundleName) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.TrimRight(b.String(), "-")
	if name == bundleName && len(name) <= MaxReleaseNameLen && name != "" {
		return name
	}
	suffix := kubenames.HashHex(bundleName, 8)
	if name == "" {
		return "bundle-" + suffix
	}
	return kubenames.Shorten(name, MaxReleaseNameLen, suffix, "-")
}

// chartLocation finds the chart: helm.chart (a directory or a .tgz inside
// the bundle), else a Chart.yaml at the bundle root. ok is false when the
// bundle is not a Helm bundle.
func chartLocation(fs files, h *fleetv1.HelmOptions) (loc string, ok bool, err error) {
	if h != nil && h.Chart != "" {
		p, err := cleanPath(h.Chart)
		if err != nil {
			return "", false, &Error{File: "fleet.yaml", Err: fmt.Errorf("helm.chart: %w", err)}
		}
		return p, true, nil
	}
	if _, ok := fs["Chart.yaml"]; ok {
		return "", true, nil
	}
	return "", false, nil
}

// loadChart loads the chart at loc from the in-memory bundle. It returns the
// chart's directory in the bundle, used to point errors at the right file.
func loadChart(fs files, loc string, h *fleetv1.HelmOptions) (*chart.Chart, string, error) {
	if strings.HasSuffix(loc, ".tgz") || strings.HasSuffix(loc, ".tar.gz") {
		data, ok := fs[loc]
		if !ok {
			return nil, "", missingChart(loc, h)
		}
		c, err := loader.LoadArchive(bytes.NewReader(data))
		if err != nil {
			return nil, "", &Error{File: loc, Err: fmt.Errorf("loading chart archive: %w", err)}
		}
		return c, path.Dir(loc), nil
	}
	if _, ok := fs[joinPath(loc, "Chart.yaml")]; !ok {
		return nil, "", missingChart(loc, h)
	}
	chartFiles := fs.under(loc)
	rules := ignore.Empty()
	if data, ok := chartFiles[".helmignore"]; ok {
		r, err := ignore.Parse(bytes.NewReader(data))
		if err != nil {
			return nil, "", &Error{File: joinPath(loc, ".helmignore"), Err: err}
		}
		rules = r
	}
	rules.AddDefaults()
	var bf []*archive.BufferedFile
	for _, n := range chartFiles.sortedNames() {
		if loc == "" && (n == "fleet.yaml" || n == "fleet.yml") {
			continue
		}
		if ignored(rules, n) {
			continue
		}
		bf = append(bf, &archive.BufferedFile{Name: n, Data: chartFiles[n]})
	}
	c, err := loader.LoadFiles(bf)
	if err != nil {
		return nil, "", &Error{File: joinPath(loc, "Chart.yaml"), Err: fmt.Errorf("loading chart: %w", err)}
	}
	return c, loc, nil
}

func missingChart(loc string, h *fleetv1.HelmOptions) error {
	what := fmt.Sprintf("the bundle has no chart at %q (no %s)", displayDir(loc), joinPath(loc, "Chart.yaml"))
	if h != nil && h.Repo != "" || strings.Contains(loc, ":") {
		what += "; remote charts are downloaded into the bundle by `edgefleet apply`, run it again"
	}
	return &Error{File: "fleet.yaml", Err: fmt.Errorf("helm.chart: %s", what)}
}

// ignored applies .helmignore to a file and each of its directories.
func ignored(rules *ignore.Rules, name string) bool {
	parts := strings.Split(name, "/")
	for i := 1; i < len(parts); i++ {
		if rules.Ignore(strings.Join(parts[:i], "/"), fileInfo{name: parts[i-1], dir: true}) {
			return true
		}
	}
	return rules.Ignore(name, fileInfo{name: parts[len(parts)-1]})
}

type fileInfo struct {
	name string
	dir  bool
}

func (f fileInfo) Name() string { return f.name }
func (f fileInfo) Size() int64  { return 0 }
func (f fileInfo) Mode() fs.FileMode {
	if f.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (f fileInfo) ModTime() time.Time { return time.Time{} }
func (f fileInfo) IsDir() bool        { return f.dir }
func (f fileInfo) Sys() any           { return nil }

// renderChart runs a client-only `helm install --dry-run` with the same
// post-renderer the agent installs with, and returns the release manifest
// (CRDs included, hooks excluded: Helm deletes or replaces hooks itself, so
// they are not desired state to watch).
func renderChart(ctx context.Context, c *chart.Chart, values map[string]any, r *Result, h *fleetv1.HelmOptions, tc TemplateContext, chartDir string) ([]byte, error) {
	log := ctrl.FromContext(ctx).V(4)
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(logr.ToSlogHandler(log)))
	inst := action.NewInstall(cfg)
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = r.ReleaseName
	inst.Namespace = r.Namespace
	inst.IncludeCRDs = true
	inst.Replace = true
	inst.PostRenderer = r.PostRenderer
	// DNS lookups in templates are on unless disabled, as in Fleet.
	inst.EnableDNS = h == nil || !h.DisableDNS
	if h != nil {
		inst.SkipSchemaValidation = h.SkipSchemaValidation
	}
	if tc.KubeVersion != "" {
		kv, err := common.ParseKubeVersion(tc.KubeVersion)
		if err != nil {
			return nil, fmt.Errorf("parsing cluster Kubernetes version %q: %w", tc.KubeVersion, err)
		}
		inst.KubeVersion = kv
	}
	inst.APIVersions = tc.APIVersions
	rel, err := inst.RunWithContext(ctx, c, values)
	if err != nil {
		return nil, helmError(err, chartDir)
	}
	rr, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("helm returned an unexpected release type %T", rel)
	}
	return []byte(rr.Manifest), nil
}

var (
	// template: mychart/templates/cm.yaml:7:12: executing ...
	helmTemplateRE = regexp.MustCompile(`template: ([^\s:]+):(\d+)`)
	// parse error at (mychart/templates/cm.yaml:7): ...
	// execution error at (mychart/templates/cm.yaml:7:11): ... (required, fail)
	helmParseRE = regexp.MustCompile(`error at \(([^\s:]+):(\d+)`)
	// YAML parse error on mychart/templates/cm.yaml: ...
	helmYAMLRE = regexp.MustCompile(`YAML parse error on ([^\s:]+):`)
)

// helmError points a Helm failure at the chart file it names. Errors that are
// already *Error (from the post-renderer) pass through.
func helmError(err error, chartDir string) error {
	var re *Error
	if errors.As(err, &re) {
		return re
	}
	msg := err.Error()
	for _, rx := range []*regexp.Regexp{helmParseRE, helmTemplateRE, helmYAMLRE} {
		m := rx.FindStringSubmatch(msg)
		if m == nil {
			continue
		}
		line := 0
		if len(m) > 2 {
			line, _ = strconv.Atoi(m[2])
		}
		return &Error{File: chartFile(chartDir, m[1]), Line: line, Err: fmt.Errorf("helm template: %s", msg)}
	}
	return &Error{File: joinPath(chartDir, "Chart.yaml"), Err: fmt.Errorf("helm template: %w", err)}
}

// chartFile maps a Helm template name ("mychart/templates/x.yaml",
// "mychart/charts/sub/templates/y.yaml") to its path in the bundle.
func chartFile(chartDir, name string) string {
	if _, rest, ok := strings.Cut(name, "/"); ok {
		return joinPath(chartDir, rest)
	}
	return joinPath(chartDir, name)
}
