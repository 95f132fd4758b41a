package bundlereader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"go.yaml.in/yaml/v3"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	"helm.sh/helm/v4/pkg/registry"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	sigsyaml "sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// ChartDir is the directory, inside a bundle's manifest, that holds charts
// downloaded from repositories and registries, so agents never need access
// to them.
const ChartDir = ".chart"

// maxChartArchiveSize bounds a downloaded chart archive.
const maxChartArchiveSize = 64 << 20

// downloadedChart is a chart fetched from a repository, registry or URL.
type downloadedChart struct {
	dir     string // inside the manifest, e.g. ".chart/1a2b3c4d5e6f"
	version string
	files   []*archive.BufferedFile
}

// mergeValuesFiles reads h.valuesFiles (relative to the bundle dir) and
// deep-merges them over h.values in order, then drops valuesFiles: the
// bundle carries the merged values. where is the YAML path of h in fleet.yaml.
func (b *builder) mergeValuesFiles(h *fleetv1.HelmOptions, where []any) error {
	if h == nil || len(h.ValuesFiles) == 0 {
		return nil
	}
	values := map[string]any{}
	if h.Values != nil && len(h.Values.Raw) > 0 {
		if err := json.Unmarshal(h.Values.Raw, &values); err != nil {
			return b.fleetErr(append(where, "values"), "helm values: %v", err)
		}
	}
	for i, name := range h.ValuesFiles {
		at := append(append([]any(nil), where...), "valuesFiles", i)
		rel, shown, err := b.insideBundle(name)
		if err != nil {
			return b.fleetErr(at, "helm.valuesFiles: %v", err)
		}
		data, err := b.t.readFile(rel, shown, b.r.budget.limits.MaxFileBytes, "one file")
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return b.fleetErr(at, "helm.valuesFiles: %s does not exist (paths are relative to %s)", shown, b.dir.display)
			}
			return b.fleetErr(at, "helm.valuesFiles: %v", err)
		}
		node, err := parseYAMLDocument(shown, data)
		if err != nil {
			return err
		}
		if node == nil {
			continue
		}
		if node.Kind != yaml.MappingNode {
			return yamlFileError(shown, node.Line, "Helm values must be a map, got %s", describe(node))
		}
		var fileValues map[string]any
		if err := node.Decode(&fileValues); err != nil {
			return yamlSyntaxError(shown, err)
		}
		values = mergeMaps(values, jsonable(fileValues).(map[string]any))
	}
	raw, err := json.Marshal(values)
	if err != nil {
		return fmt.Errorf("encoding merged Helm values for %s: %w", b.dir.display, err)
	}
	h.Values = &runtime.RawExtension{Raw: raw}
	h.ValuesFiles = nil
	return nil
}

// mergeMaps deep-merges over into base: maps merge key by key, anything
// else in over replaces base's value (Helm's rule).
func mergeMaps(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if om, ok := v.(map[string]any); ok {
			if bm, ok := out[k].(map[string]any); ok {
				out[k] = mergeMaps(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// resolveChart makes h point at a chart inside the bundle: a local chart
// path is checked, and a chart from a repository, an OCI registry or a URL
// is downloaded into the manifest under ChartDir and h rewritten to it.
// goGetterForced matches go-getter's forced-getter prefix ("git::https://…").
var goGetterForced = regexp.MustCompile(`^[a-z0-9]+::`)

func (b *builder) resolveChart(ctx context.Context, h *fleetv1.HelmOptions, where []any) error {
	if h == nil || (h.Chart == "" && h.Repo == "") {
		return nil
	}
	chartAt := append(append([]any(nil), where...), "chart")
	var (
		dl  *downloadedChart
		err error
	)
	switch {
	case h.Repo != "" && h.Chart == "":
		return b.fleetErr(append(where, "repo"), "helm.repo is set but helm.chart is empty: set chart to the chart's name in %s", h.Repo)
	case h.Repo != "" && strings.HasPrefix(h.Repo, "oci://"):
		dl, err = b.r.fetchOCI(ctx, strings.TrimSuffix(h.Repo, "/")+"/"+h.Chart, h.Version)
	case h.Repo != "":
		dl, err = b.r.fetchFromRepo(ctx, h.Repo, h.Chart, h.Version)
	case strings.HasPrefix(h.Chart, "oci://"):
		dl, err = b.r.fetchOCI(ctx, h.Chart, h.Version)
	case strings.HasPrefix(h.Chart, "http://") || strings.HasPrefix(h.Chart, "https://"):
		dl, err = b.r.fetchURL(ctx, h.Chart)
	case goGetterForced.MatchString(h.Chart):
		return b.fleetErr(chartAt, "helm.chart %q: go-getter sources (git::, s3::, gcs::, hg::) are not supported (docs/fleet-yaml.md); vendor the chart in the repository, add its git repository as a GitRepo path, or use an https:// chart archive, a Helm repository (repo + chart) or oci://", h.Chart)
	default:
		return b.checkLocalChart(h.Chart, chartAt)
	}
	if err != nil {
		return b.fleetErr(chartAt, "%w", err)
	}
	if err := b.addChart(dl); err != nil {
		return b.fleetErr(chartAt, "%v", err)
	}
	h.Chart, h.Repo, h.Version = dl.dir, "", dl.version
	return nil
}

func (b *builder) checkLocalChart(chart string, at []any) error {
	name, shown, err := b.insideBundle(chart)
	if err != nil {
		return b.fleetErr(at, "helm.chart: %v", err)
	}
	info, err := b.t.stat(name, shown)
	if isEscape(err) {
		return b.fleetErr(at, "helm.chart: %v", err)
	}
	if err != nil {
		return b.fleetErr(at, "helm.chart: %s does not exist; give a chart directory inside %s, a chart archive, a repo and chart name, or an oci:// reference", shown, b.dir.display)
	}
	rel := filepath.ToSlash(filepath.Clean(filepath.FromSlash(chart)))
	if info.IsDir() {
		if _, err := b.t.stat(filepath.Join(name, "Chart.yaml"), filepath.Join(shown, "Chart.yaml")); err != nil {
			if isEscape(err) {
				return b.fleetErr(at, "helm.chart: %v", err)
			}
			return b.fleetErr(at, "helm.chart: %s has no Chart.yaml", shown)
		}
		if !b.hasFile(path.Join(rel, "Chart.yaml")) {
			return b.fleetErr(at, "helm.chart: %s is excluded from the bundle (hidden, .fleetignore'd or part of a nested bundle)", shown)
		}
		return nil
	}
	if !b.hasFile(rel) {
		return b.fleetErr(at, "helm.chart: %s is excluded from the bundle (hidden, .fleetignore'd or part of a nested bundle)", shown)
	}
	return nil
}

// insideBundle resolves a path from fleet.yaml relative to the bundle
// directory and refuses paths that leave it by name; the tree refuses
// links that leave the root.
func (b *builder) insideBundle(p string) (name, shown string, err error) {
	if filepath.IsAbs(p) {
		return "", "", fmt.Errorf("%q must be relative to the bundle directory", p)
	}
	clean := filepath.Clean(filepath.FromSlash(p))
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", "", fmt.Errorf("%q points outside the bundle directory %s", p, b.dir.display)
	}
	return filepath.Join(b.dir.path, clean), filepath.Join(b.dir.display, clean), nil
}

func (r *reader) httpClient() *http.Client {
	if r.opts.HTTPClient != nil {
		return r.opts.HTTPClient
	}
	return http.DefaultClient
}

func (r *reader) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("downloading %s: %w", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("downloading %s: HTTP %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxChartArchiveSize+1))
	if err != nil {
		return nil, fmt.Errorf("downloading %s: %w", u, err)
	}
	if len(data) > maxChartArchiveSize {
		return nil, fmt.Errorf("downloading %s: larger than %d bytes", u, maxChartArchiveSize)
	}
	return data, nil
}

type repoIndex struct {
	Entries map[string][]struct {
		Version string   `json:"version"`
		URLs    []string `json:"urls"`
		Digest  string   `json:"digest"`
	} `json:"entries"`
}

// fetchFromRepo resolves version (an exact version or a semver range; empty
// means the latest release) against the repository's index.yaml and
// downloads the highest matching chart.
func (r *reader) fetchFromRepo(ctx context.Context, repo, chart, version string) (*downloadedChart, error) {
	key := "repo|" + repo + "|" + chart + "|" + version
	if dl, ok := r.charts[key]; ok {
		return dl, nil
	}
	base, err := url.Parse(strings.TrimSuffix(repo, "/") + "/")
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("helm.repo %q is not an http(s) URL", repo)
	}
	ctx = withCredentialOrigin(ctx, base)
	data, err := r.get(ctx, base.JoinPath("index.yaml").String())
	if err != nil {
		return nil, fmt.Errorf("reading the index of Helm repository %s: %w", repo, err)
	}
	var idx repoIndex
	if err := sigsyaml.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("parsing the index of Helm repository %s: %w", repo, err)
	}
	entries, ok := idx.Entries[chart]
	if !ok || len(entries) == 0 {
		return nil, fmt.Errorf("chart %q not found in Helm repository %s", chart, repo)
	}
	versions := make([]string, 0, len(entries))
	for _, e := range entries {
		versions = append(versions, e.Version)
	}
	best, err := pickVersion(versions, version)
	if err != nil {
		return nil, fmt.Errorf("chart %q in %s: %w", chart, repo, err)
	}
	entry := entries[best]
	if len(entry.URLs) == 0 {
		return nil, fmt.Errorf("chart %q version %s in %s has no download URL", chart, entry.Version, repo)
	}
	ref, err := url.Parse(entry.URLs[0])
	if err != nil {
		return nil, fmt.Errorf("chart %q version %s in %s: bad URL %q: %w", chart, entry.Version, repo, entry.URLs[0], err)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Downloading Helm chart", "repo", redactUserinfo(repo), "chart", chart, "version", entry.Version)
	archiveData, err := r.get(ctx, base.ResolveReference(ref).String())
	if err != nil {
		return nil, err
	}
	if entry.Digest != "" {
		sum := sha256.Sum256(archiveData)
		if !strings.EqualFold(hex.EncodeToString(sum[:]), strings.TrimPrefix(entry.Digest, "sha256:")) {
			return nil, fmt.Errorf("chart %q version %s from %s does not match the digest in index.yaml", chart, entry.Version, repo)
		}
	}
	dl, err := unpackChart(archiveData, entry.Version)
	if err != nil {
		return nil, fmt.Errorf("chart %q version %s from %s: %w", chart, entry.Version, repo, err)
	}
	r.charts[key] = dl
	return dl, nil
}

// pickVersion returns the index of the highest version matching constraint
// ("" means any release, pre-releases only when asked for).
func pickVersion(versions []string, constraint string) (int, error) {
	c, err := semver.NewConstraint(orStar(constraint))
	if err != nil {
		return 0, fmt.Errorf("version %q is neither a version nor a range: %w", constraint, err)
	}
	best := -1
	var bestV *semver.Version
	for i, s := range versions {
		v, err := semver.NewVersion(s)
		if err != nil || !c.Check(v) {
			continue
		}
		if bestV == nil || v.GreaterThan(bestV) {
			best, bestV = i, v
		}
	}
	if best < 0 {
		shown := append([]string(nil), versions...)
		sort.Strings(shown)
		if len(shown) > 10 {
			shown = append(shown[:10], "...")
		}
		return 0, fmt.Errorf("no version matches %q (available: %s)", orStar(constraint), strings.Join(shown, ", "))
	}
	return best, nil
}

func orStar(s string) string {
	if strings.TrimSpace(s) == "" {
		return "*"
	}
	return s
}

func (r *reader) fetchURL(ctx context.Context, u string) (*downloadedChart, error) {
	key := "url|" + u
	if dl, ok := r.charts[key]; ok {
		return dl, nil
	}
	if parsed, err := url.Parse(u); err == nil {
		ctx = withCredentialOrigin(ctx, parsed)
	}
	data, err := r.get(ctx, u)
	if err != nil {
		return nil, err
	}
	dl, err := unpackChart(data, "")
	if err != nil {
		return nil, fmt.Errorf("chart archive %s: %w", u, err)
	}
	r.charts[key] = dl
	return dl, nil
}

// fetchOCI pulls a chart from an OCI registry; version may be a range,
// resolved against the repository's tags.
func (r *reader) fetchOCI(ctx context.Context, ref, version string) (*downloadedChart, error) {
	key := "oci|" + ref + "|" + version
	if dl, ok := r.charts[key]; ok {
		return dl, nil
	}
	name := strings.TrimPrefix(ref, "oci://")
	client, err := r.registryClient()
	if err != nil {
		return nil, err
	}
	if _, tag, ok := strings.Cut(path.Base(name), ":"); ok {
		if version != "" && version != tag {
			return nil, fmt.Errorf("%s has tag %q but helm.version is %q: set only one", ref, tag, version)
		}
	} else if !strings.Contains(name, "@") {
		tag := version
		if _, err := semver.StrictNewVersion(version); err != nil {
			tags, err := client.Tags(name)
			if err != nil {
				return nil, fmt.Errorf("listing tags of %s: %w", ref, err)
			}
			best, err := pickVersion(tags, version)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ref, err)
			}
			tag = tags[best]
		}
		name += ":" + strings.ReplaceAll(tag, "+", "_")
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Pulling Helm chart", "ref", name)
	res, err := client.Pull(name)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", name, err)
	}
	dl, err := unpackChart(res.Chart.Data, res.Chart.Meta.Version)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", name, err)
	}
	r.charts[key] = dl
	return dl, nil
}

func (r *reader) registryClient() (*registry.Client, error) {
	if r.registry != nil {
		return r.registry, nil
	}
	opts := []registry.ClientOption{registry.ClientOptHTTPClient(r.httpClient())}
	if r.opts.RegistryPlainHTTP {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	c, err := registry.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the OCI registry client: %w", err)
	}
	r.registry = c
	return c, nil
}

// unpackChart checks that data is a chart archive and returns its files
// (without the archive's top directory) placed under a content-addressed
// directory below ChartDir.
func unpackChart(data []byte, version string) (*downloadedChart, error) {
	if _, err := loader.LoadArchive(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("not a valid chart archive: %w", err)
	}
	files, err := archive.LoadArchiveFiles(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not a valid chart archive: %w", err)
	}
	if version == "" {
		version = chartVersion(files)
	}
	sum := sha256.Sum256(data)
	return &downloadedChart{dir: ChartDir + "/" + hex.EncodeToString(sum[:])[:12], version: version, files: files}, nil
}

// chartVersion reads the version from the archive's Chart.yaml.
func chartVersion(files []*archive.BufferedFile) string {
	for _, f := range files {
		if f.Name == "Chart.yaml" {
			var meta struct {
				Version string `json:"version"`
			}
			if sigsyaml.Unmarshal(f.Data, &meta) == nil {
				return meta.Version
			}
		}
	}
	return ""
}
