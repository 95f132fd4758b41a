package bundlereader

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// check is a minimal assertion helper: the project's tests use the standard
// library only.
type check struct{ t *testing.T }

func (c check) eq(got, want any) {
	c.t.Helper()
	if !reflect.DeepEqual(got, want) {
		c.t.Errorf("got  %#v\nwant %#v", got, want)
	}
}

func (c check) true(ok bool, msg string, args ...any) {
	c.t.Helper()
	if !ok {
		c.t.Errorf(msg, args...)
	}
}

func (c check) noErr(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatalf("unexpected error: %v", err)
	}
}

func (c check) errContains(err error, want string) {
	c.t.Helper()
	if err == nil {
		c.t.Fatalf("expected an error containing %q, got none", want)
	}
	if !strings.Contains(err.Error(), want) {
		c.t.Errorf("error %q\ndoes not contain %q", err, want)
	}
}

func (c check) has(names []string, want ...string) {
	c.t.Helper()
	for _, w := range want {
		found := false
		for _, n := range names {
			found = found || n == w
		}
		if !found {
			c.t.Errorf("%v does not contain %q", names, w)
		}
	}
}

// writeTree writes files (path → content) below a new temp dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func byName(bundles []*Bundle) map[string]*Bundle {
	out := map[string]*Bundle{}
	for _, b := range bundles {
		out[b.Bundle.Name] = b
	}
	return out
}

func sortedKeys(m map[string]*Bundle) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func resourceNames(b *Bundle) []string {
	var names []string
	for _, r := range b.Manifest.Resources {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return names
}

func values(t *testing.T, h *fleetv1.HelmOptions) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(h.Values.Raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\n"

func TestReadDirectories(t *testing.T) {
	chartYAML := "apiVersion: v2\nname: mychart\nversion: 0.1.0\n"
	tests := []struct {
		name  string
		files map[string]string
		opts  Options
		check func(g check, bundles map[string]*Bundle)
	}{
		{
			name:  "raw YAML root becomes one bundle named after the set",
			files: map[string]string{"a.yaml": cm, "sub/b.yml": cm, "README.md": "# hi"},
			check: func(g check, bs map[string]*Bundle) {
				g.eq(len(bs), 1)
				b := bs["myapp"]
				g.true(b != nil, "missing %s", "b")
				g.eq(resourceNames(b), []string{"README.md", "a.yaml", "sub/b.yml"})
				g.eq(b.Bundle.Labels[fleetv1.BundleSetLabel], "myapp")
				g.eq(b.Bundle.Namespace, "fleet-local")
				g.eq(b.Bundle.Spec.Targets, []fleetv1.BundleTarget{DefaultTarget})
				g.eq(len(b.Bundle.Spec.TargetRestrictions), 0)
			},
		},
		{
			name: "subdirectories with fleet.yaml are their own bundles and leave the parent",
			files: map[string]string{
				"a.yaml":                cm,
				"apps/web/fleet.yaml":   "defaultNamespace: web\n",
				"apps/web/deploy.yaml":  cm,
				"apps/web/conf/x.yaml":  cm,
				"apps/db/fleet.yaml":    "name: database\nlabels:\n  tier: data\n",
				"apps/db/x.yaml":        cm,
				"apps/plain/more.yaml":  cm,
				"docs/notes/index.html": "<p>",
			},
			check: func(g check, bs map[string]*Bundle) {
				g.eq(len(bs), 3)
				g.eq(resourceNames(bs["myapp"]), []string{"a.yaml", "apps/plain/more.yaml", "docs/notes/index.html"})
				web := bs["myapp-apps-web"]
				g.true(web != nil, "missing %s", "web")
				g.eq(resourceNames(web), []string{"conf/x.yaml", "deploy.yaml"})
				g.eq(web.Bundle.Spec.DefaultNamespace, "web")
				db := bs["database"]
				g.true(db != nil, "missing %s", "db")
				g.eq(db.Bundle.Labels, map[string]string{"tier": "data", fleetv1.BundleSetLabel: "myapp"})
			},
		},
		{
			name:  "a root without fleet.yaml or YAML files of its own is no bundle",
			files: map[string]string{"README.md": "x", "web/fleet.yaml": "", "web/a.yaml": cm},
			check: func(g check, bs map[string]*Bundle) {
				g.eq(len(bs), 1)
				_, ok := bs["myapp-web"]
				g.true(ok, "no bundle %s", "myapp-web")
			},
		},
		{
			name: ".fleetignore applies to its directory and below, .git and hidden files are skipped",
			files: map[string]string{
				".fleetignore":       "# comment\n*.bak\nsecret/\nignored/\n",
				"a.yaml":             cm,
				"a.yaml.bak":         "old",
				"secret/x.yaml":      cm,
				"sub/.fleetignore":   "local.yaml\n",
				"sub/local.yaml":     cm,
				"sub/keep.yaml":      cm,
				"sub/deep/y.bak":     "old",
				"other/local.yaml":   cm,
				".git/config":        "[core]",
				".hidden.yaml":       "not: [valid",
				"svc/fleet.yaml":     "",
				"svc/z.bak":          "old",
				"svc/z.yaml":         cm,
				"ignored/fleet.yaml": "",
			},
			opts: Options{},
			check: func(g check, bs map[string]*Bundle) {
				g.eq(len(bs), 2)
				g.eq(resourceNames(bs["myapp"]), []string{"a.yaml", "other/local.yaml", "sub/keep.yaml"})
				g.eq(resourceNames(bs["myapp-svc"]), []string{"z.yaml"})
			},
		},
		{
			name: "local Helm chart with valuesFiles merged over values in order",
			files: map[string]string{
				"fleet.yaml": `helm:
  chart: ./chart
  releaseName: web
  values:
    a: 1
    nested: {x: 1, y: 1}
  valuesFiles: [v1.yaml, values/v2.yaml]
  valuesFrom:
  - configMapKeyRef: {name: cfg}
`,
				"v1.yaml":                 "nested:\n  y: 2\nb: 2\n",
				"values/v2.yaml":          "b: 3\nlist: [1, 2]\n",
				"chart/Chart.yaml":        chartYAML,
				"chart/values.yaml":       "replicas: 1\n",
				"chart/.helmignore":       "*.md\n",
				"chart/templates/cm.yaml": "metadata:\n  name: {{ .Release.Name }}\n{{- if .Values.x }}\n  x: y\n{{- end }}\n",
			},
			check: func(g check, bs map[string]*Bundle) {
				h := bs["myapp"].Bundle.Spec.Helm
				g.eq(h.Chart, "./chart")
				g.eq(len(h.ValuesFiles), 0)
				g.eq(len(h.ValuesFrom), 1)
				g.eq(values(t, h), map[string]any{
					"a": 1.0, "b": 3.0, "nested": map[string]any{"x": 1.0, "y": 2.0}, "list": []any{1.0, 2.0},
				})
				g.has(resourceNames(bs["myapp"]), "chart/Chart.yaml", "chart/templates/cm.yaml", "chart/.helmignore", "v1.yaml")
			},
		},
		{
			name: "Helm chart at the root and a kustomization in a nested bundle",
			files: map[string]string{
				"Chart.yaml":                            chartYAML,
				"templates/x.yaml":                      "{{ include \"x\" . }}\n",
				"kust/fleet.yaml":                       "kustomize:\n  dir: overlays/prod\n",
				"kust/kustomization.yaml":               "resources: [cm.yaml]\n",
				"kust/cm.yaml":                          cm,
				"kust/overlays/prod/kustomization.yaml": "resources: [../../]\n",
			},
			check: func(g check, bs map[string]*Bundle) {
				g.eq(resourceNames(bs["myapp"]), []string{"Chart.yaml", "templates/x.yaml"})
				k := bs["myapp-kust"]
				g.eq(k.Bundle.Spec.Kustomize.Dir, "overlays/prod")
				g.has(resourceNames(k), "kustomization.yaml")
			},
		},
		{
			name: "targets and targetCustomizations compose like Fleet",
			files: map[string]string{
				"fleet.yaml": `targets:
- name: prod
  clusterSelector: {matchLabels: {env: prod}}
targetCustomizations:
- name: big
  clusterSelector: {matchLabels: {size: big}}
  helm: {values: {replicas: 5}}
- clusterName: edge-1
  doNotDeploy: true
`,
				"a.yaml": cm,
			},
			check: func(g check, bs map[string]*Bundle) {
				s := bs["myapp"].Bundle.Spec
				var names []string
				for _, t := range s.Targets {
					names = append(names, t.Name)
				}
				g.eq(names, []string{"big", "target001", "prod"})
				g.eq(s.Targets[1].DoNotDeploy, true)
				g.eq(s.TargetRestrictions, []fleetv1.BundleTargetRestriction{{
					Name: "prod", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}},
				}})
			},
		},
		{
			name: "outer targets restrict; fleet.yaml targets become customizations",
			files: map[string]string{
				"fleet.yaml": "targets:\n- name: fy\n  clusterGroup: a\n",
				"a.yaml":     cm,
			},
			opts: Options{Targets: []fleetv1.BundleTarget{{Name: "repo", ClusterGroup: "edge"}}},
			check: func(g check, bs map[string]*Bundle) {
				s := bs["myapp"].Bundle.Spec
				g.eq(s.Targets, []fleetv1.BundleTarget{{Name: "fy", ClusterGroup: "a"}, {Name: "repo", ClusterGroup: "edge"}})
				g.eq(s.TargetRestrictions, []fleetv1.BundleTargetRestriction{{Name: "repo", ClusterGroup: "edge"}})
			},
		},
		{
			name: "overrideTargets replace outer targets; customizations only alone get the default target",
			files: map[string]string{
				"fleet.yaml":   "overrideTargets:\n- clusterGroup: mine\n",
				"a.yaml":       cm,
				"c/fleet.yaml": "targetCustomizations:\n- name: c\n  clusterName: x\n  namespace: other\n",
			},
			opts: Options{Targets: []fleetv1.BundleTarget{{Name: "repo", ClusterGroup: "edge"}}},
			check: func(g check, bs map[string]*Bundle) {
				s := bs["myapp"].Bundle.Spec
				g.eq(s.Targets, []fleetv1.BundleTarget{{Name: "target000", ClusterGroup: "mine"}})
				g.eq(len(s.TargetRestrictions), 0)
				c := bs["myapp-c"].Bundle.Spec
				g.eq(len(c.Targets), 2)
				g.eq(c.Targets[1], fleetv1.BundleTarget{Name: "repo", ClusterGroup: "edge"})
				g.eq(c.TargetRestrictions, []fleetv1.BundleTargetRestriction{{Name: "repo", ClusterGroup: "edge"}})
			},
		},
		{
			name:  "binary files are gzip+base64 encoded; labels and paused from options",
			files: map[string]string{"a.yaml": cm, "logo.png": "\x89PNG\x00\xff\xfe"},
			opts:  Options{Labels: map[string]string{"team": "x"}, Paused: true},
			check: func(g check, bs map[string]*Bundle) {
				b := bs["myapp"]
				g.eq(b.Bundle.Spec.Paused, true)
				g.eq(b.Bundle.Labels["team"], "x")
				for _, r := range b.Manifest.Resources {
					if r.Name == "logo.png" {
						g.eq(r.Encoding, fleetv1.BundleResourceEncodingBase64Gzip)
						data, err := Decoded(r)
						g.noErr(err)
						g.eq(string(data), "\x89PNG\x00\xff\xfe")
					} else {
						g.eq(len(r.Encoding), 0)
					}
				}
			},
		},
		{
			name: "long paths give DNS-safe names of at most 53 characters",
			files: map[string]string{
				"Some_Very/Long.Directory/Name-That/Goes/On/And/On/And/On/fleet.yaml": "",
			},
			check: func(g check, bs map[string]*Bundle) {
				g.eq(len(bs), 1)
				for name := range bs {
					g.true(len(name) <= MaxNameLength, "%q is too long", name)
					g.true(regexp.MustCompile(`^myapp-some-very-long-directory-name-that-[a-z-]+-[0-9a-f]{5}$`).MatchString(name), "unexpected name %q", name)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := check{t}
			root := writeTree(t, tc.files)
			opts := tc.opts
			opts.Name, opts.Namespace = "myapp", "fleet-local"
			bundles, err := Read(context.Background(), opts, root)
			g.noErr(err)
			tc.check(g, byName(bundles))
		})
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		opts  Options
		want  string
	}{
		{"unknown top-level field", map[string]string{"fleet.yaml": "defaultNamespace: x\nhelmm: {}\n"}, Options{Strict: true}, `fleet.yaml:2: unknown field "helmm" (did you mean "helm"?)`},
		{"unknown nested field", map[string]string{"fleet.yaml": "helm:\n  chart: ./c\n  chartt: x\n"}, Options{Strict: true}, `fleet.yaml:3: unknown field "chartt" in helm`},
		{"unknown field in a customization", map[string]string{"fleet.yaml": "targetCustomizations:\n- name: a\n  clusterSelecter: {}\n"}, Options{Strict: true}, `fleet.yaml:3: unknown field "clusterSelecter" in targetCustomizations[0]`},
		{"fields edgefleet fills in", map[string]string{"fleet.yaml": "contentsID: s-1\n"}, Options{Strict: true}, `fleet.yaml:1: unknown field "contentsID"`},
		{"unsupported Fleet feature", map[string]string{"fleet.yaml": "imageScans: []\n"}, Options{Strict: true}, `fleet.yaml:1: unknown field "imageScans": image scanning is not supported`},
		{"wrong type", map[string]string{"fleet.yaml": "a: 1\n"[:0] + "paused: \"yes\"\n"}, Options{}, `fleet.yaml:1: paused: expected true or false, got "yes"`},
		{"wrong type nested", map[string]string{"fleet.yaml": "helm:\n  timeoutSeconds: soon\n"}, Options{}, `fleet.yaml:2: helm.timeoutSeconds: expected a whole number`},
		{"labels must be strings", map[string]string{"fleet.yaml": "labels:\n  version: 1.5\n"}, Options{}, `fleet.yaml:2: labels.version: expected a string, got number 1.5 (quote the value`},
		{"not a map", map[string]string{"fleet.yaml": "- a\n- b\n"}, Options{}, `fleet.yaml:1: expected a map of settings, got a list`},
		{"fleet.yaml syntax", map[string]string{"fleet.yaml": "helm:\n  chart: [\n"}, Options{}, `fleet.yaml:2: invalid YAML`},
		{"invalid YAML manifest", map[string]string{"deploy/app.yaml": "a: b\n---\nkind: x\n  bad: indent\n"}, Options{}, filepath.Join("deploy", "app.yaml") + `:4: invalid YAML`},
		{"missing chart", map[string]string{"fleet.yaml": "helm:\n  chart: ./nochart\n"}, Options{}, `fleet.yaml:2: helm.chart: `},
		{"go-getter chart source", map[string]string{"fleet.yaml": "helm:\n  chart: git::https://github.com/org/charts//web?ref=v1\n"}, Options{}, `fleet.yaml:2: helm.chart "git::https://github.com/org/charts//web?ref=v1": go-getter sources (git::, s3::, gcs::, hg::) are not supported`},
		{"chart outside the bundle", map[string]string{"fleet.yaml": "helm:\n  chart: ../c\n"}, Options{}, `points outside the bundle directory`},
		{"missing valuesFiles", map[string]string{"fleet.yaml": "helm:\n  valuesFiles:\n  - a.yaml\n  - missing.yaml\n", "a.yaml": "x: 1\n"}, Options{}, `fleet.yaml:4: helm.valuesFiles: `},
		{"values not a map", map[string]string{"fleet.yaml": "helm:\n  chart: ./chart\n  values: [1, 2]\n", "chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n"}, Options{}, `fleet.yaml:3: helm.values: expected a map of values`},
		{"values file not a map", map[string]string{"fleet.yaml": "helm:\n  valuesFiles: [v.yaml]\n", "v.yaml": "- 1\n"}, Options{}, `v.yaml:1: Helm values must be a map`},
		{"invalid selector", map[string]string{"fleet.yaml": "targets:\n- clusterSelector:\n    matchExpressions:\n    - {key: env, operator: Sometimes}\n"}, Options{}, `fleet.yaml:2: clusterSelector: invalid label selector`},
		{"repo without chart", map[string]string{"fleet.yaml": "helm:\n  repo: https://charts.example.com\n"}, Options{}, `fleet.yaml:2: helm.repo is set but helm.chart is empty`},
		{"missing kustomize dir", map[string]string{"fleet.yaml": "kustomize:\n  dir: nope\n"}, Options{}, `fleet.yaml:2: kustomize.dir:`},
		{"invalid bundle name", map[string]string{"fleet.yaml": "name: My_App\n"}, Options{}, `fleet.yaml:1: name "My_App" is not a valid Kubernetes name`},
		{"duplicate names", map[string]string{"a/fleet.yaml": "name: same\n", "b/fleet.yaml": "name: same\n"}, Options{}, `both make a bundle named "same"`},
		{"invalid extra label", map[string]string{"a.yaml": cm}, Options{Labels: map[string]string{"bad key": "v"}}, `label key "bad key" is invalid`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := check{t}
			root := writeTree(t, tc.files)
			opts := tc.opts
			opts.Name = "myapp"
			bundles, err := Read(context.Background(), opts, root)
			g.errContains(err, tc.want)
			g.eq(len(bundles), 0)
		})
	}
}

// TestReadWarnsAboutUnknownKeys: by default a fleet.yaml with keys
// edgefleet does not know is read as Fleet reads it (the keys are ignored),
// and each ignored key is a warning with file, line and the closest known
// key; downstreamResources is carried into the Bundle but warned about.
func TestReadWarnsAboutUnknownKeys(t *testing.T) {
	g := check{t}
	root := writeTree(t, map[string]string{
		"fleet.yaml": "defaultNamespace: x\nhelmm: {}\nimageScans: []\ncontentsID: s-1\nhelm:\n  releaseName: my.release\n  chartt: x\ntargetCustomizations:\n- name: a\n  clusterSelecter: {}\n  clusterName: c\ndownstreamResources:\n- {kind: Secret, name: creds}\n",
		"a.yaml":     cm,
	})
	bundles, err := Read(context.Background(), Options{Name: "myapp"}, root)
	g.noErr(err)
	g.eq(len(bundles), 1)
	b := bundles[0]
	var got []string
	for _, w := range b.Warnings {
		got = append(got, w.String())
	}
	fy := filepath.Join(root, "fleet.yaml")
	g.eq(got, []string{
		fy + `:2: unknown field "helmm" (did you mean "helm"?); ignored`,
		fy + `:3: unknown field "imageScans": image scanning is not supported by edgefleet; ignored`,
		got[2], // the list of known fields; checked below
		fy + `:7: unknown field "chartt" in helm (did you mean "chart"?); ignored`,
		fy + `:10: unknown field "clusterSelecter" in targetCustomizations[0] (did you mean "clusterSelector"?); ignored`,
		fy + `:12: downstreamResources: not supported yet: the 1 Secret/ConfigMap(s) listed are not copied to clusters; create them downstream (e.g. in another bundle)`,
	})
	g.true(strings.HasPrefix(got[2], fy+`:4: unknown field "contentsID"`), "contentsID warning: %s", got[2])
	s := b.Bundle.Spec
	g.eq(s.DefaultNamespace, "x")
	g.eq(s.ContentsID, "")
	g.eq(s.Helm.ReleaseName, "my.release")
	g.eq(s.DownstreamResources, []fleetv1.DownstreamResource{{Kind: "Secret", Name: "creds"}})
	g.eq(s.Targets[0].ClusterSelector == nil, true)
	g.eq(s.Targets[0].ClusterName, "c")

	// Strict: the same file fails at its first unknown key.
	_, err = Read(context.Background(), Options{Name: "myapp", Strict: true}, root)
	g.errContains(err, `fleet.yaml:2: unknown field "helmm" (did you mean "helm"?)`)
	// Strict with only downstreamResources: fails naming it.
	root2 := writeTree(t, map[string]string{"fleet.yaml": "downstreamResources:\n- {kind: ConfigMap, name: c}\n", "a.yaml": cm})
	_, err = Read(context.Background(), Options{Name: "myapp", Strict: true}, root2)
	g.errContains(err, `fleet.yaml:1: downstreamResources: not supported yet`)
}

func TestReadNamesRelativeToBaseDir(t *testing.T) {
	g := check{t}
	root := writeTree(t, map[string]string{"apps/web/a.yaml": cm, "apps/web/db/fleet.yaml": ""})
	bundles, err := Read(context.Background(), Options{Name: "repo", BaseDir: root}, filepath.Join(root, "apps", "web"))
	g.noErr(err)
	g.has(sortedKeys(byName(bundles)), "repo-apps-web", "repo-apps-web-db")
}

func TestParseTargets(t *testing.T) {
	g := check{t}
	ts, err := ParseTargets("targets.yaml", []byte("targets:\n- name: a\n  clusterGroup: g\n"))
	g.noErr(err)
	g.eq(ts, []fleetv1.BundleTarget{{Name: "a", ClusterGroup: "g"}})

	ts, err = ParseTargets("targets.yaml", []byte("- clusterName: c\n"))
	g.noErr(err)
	g.eq(ts, []fleetv1.BundleTarget{{ClusterName: "c"}})

	_, err = ParseTargets("targets.yaml", []byte("targets:\n- name: a\n  clustergroup: g\n"))
	g.errContains(err, `targets.yaml:3: unknown field "clustergroup" in targets[0] (did you mean "clusterGroup"?)`)

	_, err = ParseTargets("targets.yaml", []byte("targets:\n- clusterSelector:\n    matchLabels: {\"a b\": c}\n"))
	g.errContains(err, `targets.yaml:2: clusterSelector: invalid label selector`)
}

func TestSafeName(t *testing.T) {
	tests := map[string]string{
		"myapp":                 "myapp",
		"MyApp/apps/Web_UI":     "myapp-apps-web-ui",
		"a//b..c":               "a-b-c",
		"-x-/":                  "x",
		strings.Repeat("a", 53): strings.Repeat("a", 53),
	}
	for in, want := range tests {
		if got := SafeName(in); got != want {
			t.Errorf("SafeName(%q) = %q, want %q", in, got, want)
		}
	}
	long1, long2 := SafeName(strings.Repeat("a", 60)+"1"), SafeName(strings.Repeat("a", 60)+"2")
	if len(long1) != MaxNameLength || long1 == long2 {
		t.Errorf("long names must be %d characters and distinct: %q %q", MaxNameLength, long1, long2)
	}
}
