package render

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
)

// bundle builds a manifest from path → content, in a stable order.
func bundle(fs map[string]string) *content.Manifest {
	m := &content.Manifest{}
	for _, n := range sortedKeys(fs) {
		m.Resources = append(m.Resources, fleetv1.BundleResource{Name: n, Content: fs[n]})
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jsonValues converts YAML to the JSON held in helm.values.
func jsonValues(t testing.TB, y string) *runtime.RawExtension {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatalf("values %q: %v", y, err)
	}
	return &runtime.RawExtension{Raw: j}
}

// ids lists objects as "Kind/namespace/name" in result order.
func ids(objs []*unstructured.Unstructured) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
	}
	return out
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %q in %v", kind, name, ids(objs))
	return nil
}

func mustRender(t *testing.T, m *content.Manifest, opts fleetv1.BundleDeploymentOptions, tc TemplateContext) *Result {
	t.Helper()
	r, err := Render(context.Background(), m, opts, tc)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return r
}

func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

const rawApp = `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: "1"
---
# a comment-only document is skipped
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: explicit
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
`

const rawCluster = `apiVersion: v1
kind: Namespace
metadata:
  name: extra
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: reader
rules: []
`

func TestRenderRawNamespaces(t *testing.T) {
	tests := []struct {
		name string
		opts fleetv1.BundleDeploymentOptions
		fs   map[string]string
		want []string
		ns   string
	}{
		{
			name: "no namespace options: default",
			fs:   map[string]string{"app.yaml": rawApp, "cluster.yaml": rawCluster, "fleet.yaml": "defaultNamespace: ignored-by-render\n"},
			want: []string{"Namespace//extra", "ClusterRole//reader", "ConfigMap/default/settings", "Deployment/explicit/web"},
			ns:   "default",
		},
		{
			name: "defaultNamespace fills only missing namespaces",
			opts: fleetv1.BundleDeploymentOptions{DefaultNamespace: "apps"},
			fs:   map[string]string{"app.yaml": rawApp, "cluster.yaml": rawCluster},
			want: []string{"Namespace//extra", "ClusterRole//reader", "ConfigMap/apps/settings", "Deployment/explicit/web"},
			ns:   "apps",
		},
		{
			name: "namespace forces every object into it",
			opts: fleetv1.BundleDeploymentOptions{DefaultNamespace: "apps", Namespace: "forced"},
			fs:   map[string]string{"app.yaml": rawApp},
			want: []string{"ConfigMap/forced/settings", "Deployment/forced/web"},
			ns:   "forced",
		},
		{
			name: "json files and nested directories are read, overlays and nested bundles are not",
			fs: map[string]string{
				"deploy/cm.json":            `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-json"}}`,
				"overlays/x/cm.yaml":        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: overlay-only\n",
				"sub/fleet.yaml":            "namespace: other\n",
				"sub/cm.yaml":               "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other-bundle\n",
				"README.md":                 "# not yaml",
				"deploy/sa.yml":             "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n",
				"deploy/list.yaml":          "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: s1\n",
				"deploy/empty.yaml":         "",
				"deploy/only-comments.yaml": "# nothing\n",
			},
			want: []string{"ServiceAccount/default/sa", "Secret/default/s1", "ConfigMap/default/from-json"},
			ns:   "default",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRender(t, bundle(tt.fs), tt.opts, TemplateContext{BundleName: "raw"})
			equal(t, "kind", r.Kind, KindRawYAML)
			equal(t, "namespace", r.Namespace, tt.ns)
			equal(t, "objects", ids(r.Objects), tt.want)
			if r.Chart != nil || r.PostRenderer != nil {
				t.Errorf("raw bundle got a chart or post-renderer")
			}
		})
	}
}

func TestRenderRawOverlays(t *testing.T) {
	fs := map[string]string{
		"app.yaml": rawApp,
		"svc.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n",
		"widget.yaml": `apiVersion: example.com/v1
kind: Widget
metadata:
  name: w
spec:
  size: small
  colors: [red]
`,
		// replaces svc.yaml entirely
		"overlays/prod/svc.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-prod\nspec:\n  ports:\n  - port: 443\n",
		// strategic merge: the container list merges by name
		"overlays/prod/app_patch.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 5
  template:
    spec:
      containers:
      - name: sidecar
        image: envoy:1
`,
		// merge patch for a custom resource: lists are replaced
		"overlays/prod/widget_patch.yaml": "spec:\n  colors: [blue]\n",
		// a later overlay patches the result of an earlier one, with a JSON patch
		"overlays/big/widget_patch.json": `[{"op":"replace","path":"/spec/size","value":"large"}]`,
	}
	opts := fleetv1.BundleDeploymentOptions{YAML: &fleetv1.YAMLOptions{Overlays: []string{"prod", "big"}}}
	r := mustRender(t, bundle(fs), opts, TemplateContext{})
	equal(t, "objects", ids(r.Objects), []string{"ConfigMap/default/settings", "Service/default/web-prod", "Deployment/explicit/web", "Widget/default/w"})

	dep := find(t, r.Objects, "Deployment", "web")
	replicas, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas")
	equal(t, "replicas", replicas, 5)
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	var names []string
	for _, c := range containers {
		names = append(names, c.(map[string]any)["name"].(string))
	}
	sort.Strings(names)
	equal(t, "containers", names, []string{"sidecar", "web"})

	w := find(t, r.Objects, "Widget", "w")
	equal(t, "widget spec", w.Object["spec"], map[string]any{"size": "large", "colors": []any{"blue"}})

	// Without overlays the base files are used unchanged.
	r = mustRender(t, bundle(fs), fleetv1.BundleDeploymentOptions{}, TemplateContext{})
	equal(t, "objects", ids(r.Objects), []string{"ConfigMap/default/settings", "Service/default/web", "Deployment/explicit/web", "Widget/default/w"})
}

// testChart is a chart whose output shows the values it got.
var testChart = map[string]string{
	"chart/Chart.yaml":  "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
	"chart/values.yaml": "replicas: 1\nenv: none\nname: demo\nfromFile: chart\n",
	"chart/templates/deploy.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Values.name }}
  labels:
    env: {{ .Values.env | quote }}
    fromFile: {{ .Values.fromFile | quote }}
    cluster: {{ .Values.global.fleet.clusterLabels.env | default "none" | quote }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: demo}
  template:
    metadata:
      labels: {app: demo}
    spec:
      containers:
      - name: app
        image: busybox
`,
	"chart/templates/sa.yaml":    "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {{ .Release.Name }}\n",
	"chart/templates/NOTES.txt":  "installed {{ .Release.Name }}\n",
	"chart/templates/hook.yaml":  "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    helm.sh/hook: pre-install\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: busybox}]\n",
	"chart/crds/widgets.yaml":    widgetCRD,
	"chart/templates/_help.tpl":  `{{- define "x" }}x{{ end }}`,
	"chart/templates/empty.yaml": "{{- if false }}\nnothing\n{{- end }}\n",
}

const widgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`

func withFiles(base map[string]string, extra map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func TestRenderHelmPerCluster(t *testing.T) {
	opts := fleetv1.BundleDeploymentOptions{
		DefaultNamespace: "demo",
		Helm: &fleetv1.HelmOptions{
			Chart: "./chart",
			Values: jsonValues(t, `
replicas: ${ .ClusterValues.replicas }
env: ${ .ClusterLabels.env }
name: app-${ .ClusterName }
`),
		},
	}
	tests := []struct {
		tc                  TemplateContext
		name, env, replicas string
		clusterLabel        string
	}{
		{
			tc:   TemplateContext{ClusterName: "edge-1", BundleName: "demo", ClusterLabels: map[string]string{"env": "prod"}, ClusterValues: map[string]any{"replicas": 3}},
			name: "app-edge-1", env: "prod", replicas: "3", clusterLabel: "prod",
		},
		{
			tc:   TemplateContext{ClusterName: "edge-2", BundleName: "demo", ClusterLabels: map[string]string{"env": "dev"}, ClusterValues: map[string]any{"replicas": 1}},
			name: "app-edge-2", env: "dev", replicas: "1", clusterLabel: "dev",
		},
	}
	for _, tt := range tests {
		t.Run(tt.tc.ClusterName, func(t *testing.T) {
			r := mustRender(t, bundle(testChart), opts, tt.tc)
			equal(t, "kind", r.Kind, KindHelm)
			equal(t, "release", r.ReleaseName, "demo")
			equal(t, "chart", r.Chart.Name(), "demo")
			if r.PostRenderer == nil {
				t.Fatal("Helm result has no post-renderer for the agent's install")
			}
			// Values are typed as the template output reads: a number stays a number.
			if _, isString := r.Values["replicas"].(string); isString {
				t.Errorf("replicas is a string %q, want a number", r.Values["replicas"])
			}
			equal(t, "objects", ids(r.Objects), []string{
				"CustomResourceDefinition//widgets.example.com",
				"ServiceAccount/demo/demo",
				"Deployment/demo/" + tt.name,
			})
			d := find(t, r.Objects, "Deployment", tt.name)
			replicas, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas")
			equal(t, "replicas", replicas, tt.replicas)
			equal(t, "env label", d.GetLabels()["env"], tt.env)
			equal(t, "injected cluster label", d.GetLabels()["cluster"], tt.clusterLabel)
			equal(t, "chart default kept", d.GetLabels()["fromFile"], "chart")
		})
	}
}

func TestRenderHelmValuesPrecedence(t *testing.T) {
	fs := withFiles(testChart, map[string]string{
		"values-a.yaml":       "env: from-a\nfromFile: a\nname: from-a\n",
		"chart/values-b.yaml": "fromFile: b\n",
	})
	tests := []struct {
		name       string
		files      []string
		preprocess bool
		env, from  string
		deployName string
	}{
		{name: "values only", env: "from-values", from: "chart", deployName: "from-values"},
		{name: "file a over values", files: []string{"values-a.yaml"}, env: "from-a", from: "a", deployName: "from-a"},
		{name: "later file wins, chart-relative path", files: []string{"values-a.yaml", "values-b.yaml"}, env: "from-a", from: "b", deployName: "from-a"},
		{name: "missing files were merged by apply", files: []string{"gone.yaml"}, env: "from-values", from: "chart", deployName: "from-values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{
				Chart:       "chart",
				Values:      jsonValues(t, "env: from-values\nname: from-values\n"),
				ValuesFiles: tt.files,
			}}
			r := mustRender(t, bundle(fs), opts, TemplateContext{BundleName: "b"})
			d := find(t, r.Objects, "Deployment", tt.deployName)
			equal(t, "env", d.GetLabels()["env"], tt.env)
			equal(t, "fromFile", d.GetLabels()["fromFile"], tt.from)
		})
	}
}

func TestRenderHelmDisablePreProcess(t *testing.T) {
	fs := withFiles(testChart, nil)
	fs["chart/templates/cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: script\ndata:\n  run: {{ .Values.script | quote }}\n"
	fs["chart/values.yaml"] += "script: none\n"
	opts := fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{
		Chart:             "chart",
		Values:            jsonValues(t, "script: 'echo ${ .ClusterName } $${HOME}'\nenv: global.fleet.clusterLabels.env\n"),
		DisablePreProcess: true,
	}}
	r := mustRender(t, bundle(fs), opts, TemplateContext{ClusterName: "c1", ClusterLabels: map[string]string{"env": "prod"}})
	cm := find(t, r.Objects, "ConfigMap", "script")
	equal(t, "script", cm.Object["data"].(map[string]any)["run"], "echo ${ .ClusterName } $${HOME}")
	// Label references are resolved even without pre-processing, as in Fleet.
	equal(t, "env", find(t, r.Objects, "Deployment", "demo").GetLabels()["env"], "prod")
}

func TestRenderHelmForcedNamespaceAndRootChart(t *testing.T) {
	fs := map[string]string{
		"fleet.yaml":          "namespace: forced\n",
		"Chart.yaml":          "apiVersion: v2\nname: rootchart\nversion: 1.0.0\n",
		"templates/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: elsewhere\n",
		"templates/cm2.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n",
		".helmignore":         "ignored/\n",
		"ignored/broken.yaml": "{{ this is not a template",
	}
	r := mustRender(t, bundle(fs), fleetv1.BundleDeploymentOptions{Namespace: "forced"}, TemplateContext{BundleName: "Team/App.v2"})
	equal(t, "objects", ids(r.Objects), []string{"ConfigMap/forced/a", "ConfigMap/forced/b"})
	equal(t, "release name", r.ReleaseName, ReleaseName("Team/App.v2"))
	// The agent's install runs the same post-renderer: it moves objects too.
	out, err := r.PostRenderer.Run(bytes.NewBufferString("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "namespace: forced") {
		t.Errorf("post-renderer output does not move the object:\n%s", out)
	}
}

var kustomizeFiles = map[string]string{
	"base/kustomization.yaml": "resources:\n- deploy.yaml\n- svc.yaml\n",
	"base/deploy.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
`,
	"base/svc.yaml":                   "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n",
	"overlays/dev/kustomization.yaml": "resources:\n- ../../base\nnamePrefix: dev-\nnamespace: dev\n",
	"overlays/prod/kustomization.yaml": `resources:
- ../../base
namePrefix: prod-
patches:
- target: {kind: Deployment, name: web}
  patch: |
    - op: replace
      path: /spec/replicas
      value: 4
`,
}

func TestRenderKustomize(t *testing.T) {
	tests := []struct {
		name     string
		dir      string
		opts     fleetv1.BundleDeploymentOptions
		want     []string
		replicas int64
	}{
		{name: "dev sets its own namespace", dir: "overlays/dev", opts: fleetv1.BundleDeploymentOptions{DefaultNamespace: "ignored"},
			want: []string{"Service/dev/dev-web", "Deployment/dev/dev-web"}, replicas: 1},
		{name: "prod gets defaultNamespace", dir: "./overlays/prod", opts: fleetv1.BundleDeploymentOptions{DefaultNamespace: "apps"},
			want: []string{"Service/apps/prod-web", "Deployment/apps/prod-web"}, replicas: 4},
		{name: "base", dir: "base", want: []string{"Service/default/web", "Deployment/default/web"}, replicas: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Kustomize = &fleetv1.KustomizeOptions{Dir: tt.dir}
			r := mustRender(t, bundle(kustomizeFiles), tt.opts, TemplateContext{})
			equal(t, "kind", r.Kind, KindKustomize)
			equal(t, "objects", ids(r.Objects), tt.want)
			replicas, _, _ := unstructured.NestedInt64(r.Objects[1].Object, "spec", "replicas")
			equal(t, "replicas", replicas, tt.replicas)
		})
	}
	// A kustomization at the root is used without kustomize.dir.
	root := map[string]string{
		"kustomization.yaml": "resources:\n- cm.yaml\nlabels:\n- pairs:\n    team: a\n",
		"cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
	}
	r := mustRender(t, bundle(root), fleetv1.BundleDeploymentOptions{}, TemplateContext{})
	equal(t, "kind", r.Kind, KindKustomize)
	equal(t, "label", r.Objects[0].GetLabels()["team"], "a")
}

func TestRenderHelmKustomizePostRender(t *testing.T) {
	fs := withFiles(testChart, map[string]string{
		"post/kustomization.yaml": `labels:
- pairs:
    post-rendered: "yes"
patches:
- target: {kind: Deployment}
  patch: |
    - op: replace
      path: /spec/replicas
      value: 7
`,
	})
	opts := fleetv1.BundleDeploymentOptions{
		DefaultNamespace: "demo",
		Helm:             &fleetv1.HelmOptions{Chart: "chart"},
		Kustomize:        &fleetv1.KustomizeOptions{Dir: "post"},
	}
	r := mustRender(t, bundle(fs), opts, TemplateContext{BundleName: "demo"})
	equal(t, "kind", r.Kind, KindHelm)
	d := find(t, r.Objects, "Deployment", "demo")
	replicas, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas")
	equal(t, "replicas", replicas, 7)
	for _, o := range r.Objects {
		if o.GetKind() == "CustomResourceDefinition" {
			continue // Helm installs crds/ itself, without post-rendering
		}
		if o.GetLabels()["post-rendered"] != "yes" {
			t.Errorf("%s/%s was not post-rendered", o.GetKind(), o.GetName())
		}
		if _, ok := o.GetAnnotations()[helmFilenameAnnotation]; ok {
			t.Errorf("%s/%s keeps Helm's internal annotation", o.GetKind(), o.GetName())
		}
	}
}

func TestRenderEncodings(t *testing.T) {
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n"
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	fmt.Fprintf(zw, cm, "zipped")
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	m := &content.Manifest{Resources: []fleetv1.BundleResource{
		{Name: "plain.yaml", Content: fmt.Sprintf(cm, "plain")},
		{Name: "b64.yaml", Content: base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(cm, "b64"))), Encoding: "base64"},
		{Name: "gz.yaml", Content: base64.StdEncoding.EncodeToString(gz.Bytes()), Encoding: "base64+gz"},
	}}
	r := mustRender(t, m, fleetv1.BundleDeploymentOptions{}, TemplateContext{})
	equal(t, "objects", ids(r.Objects), []string{"ConfigMap/default/b64", "ConfigMap/default/plain", "ConfigMap/default/zipped"})

	m.Resources[0].Encoding = "rot13"
	_, err := Render(context.Background(), m, fleetv1.BundleDeploymentOptions{}, TemplateContext{})
	if err == nil || !strings.Contains(err.Error(), "plain.yaml") || !strings.Contains(err.Error(), "rot13") {
		t.Errorf("unknown encoding: got %v", err)
	}
}

func TestReleaseName(t *testing.T) {
	long := strings.Repeat("very-long-bundle-name-", 5)
	tests := []struct {
		in, want string
	}{
		{"my-app", "my-app"},
		{"gitrepo-path-to-app", "gitrepo-path-to-app"},
		{"My.App/v2", "my-app-v2-" + ReleaseName("My.App/v2")[len("my-app-v2-"):]},
		{long, ""},
		{"", ""},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got := ReleaseName(tt.in)
		if tt.want != "" && got != tt.want {
			t.Errorf("ReleaseName(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if len(got) > MaxReleaseNameLen || got == "" {
			t.Errorf("ReleaseName(%q) = %q: empty or longer than %d", tt.in, got, MaxReleaseNameLen)
		}
		for _, r := range got {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				t.Errorf("ReleaseName(%q) = %q has %q", tt.in, got, r)
			}
		}
		if got[0] == '-' || got[len(got)-1] == '-' {
			t.Errorf("ReleaseName(%q) = %q starts or ends with '-'", tt.in, got)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("ReleaseName(%q) == ReleaseName(%q) = %q", tt.in, other, got)
		}
		seen[got] = tt.in
	}
	// Names that differ only where they were truncated or sanitised stay distinct.
	if ReleaseName(long+"a") == ReleaseName(long+"b") || ReleaseName("a.b") == ReleaseName("a-b") {
		t.Error("distinct bundle names share a release name")
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	var fs = map[string]string{}
	for i := range 20 {
		fs[fmt.Sprintf("f%02d.yaml", i)] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%02d\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: n%02d\n", 19-i, i)
	}
	first := ids(mustRender(t, bundle(fs), fleetv1.BundleDeploymentOptions{}, TemplateContext{}).Objects)
	if !strings.HasPrefix(first[0], "Namespace/") || !strings.HasPrefix(first[len(first)-1], "ConfigMap/") {
		t.Errorf("namespaces are not first: %v", first)
	}
	for range 5 {
		// Reverse the file order in the manifest: output must not change.
		m := bundle(fs)
		for i, j := 0, len(m.Resources)-1; i < j; i, j = i+1, j-1 {
			m.Resources[i], m.Resources[j] = m.Resources[j], m.Resources[i]
		}
		got := ids(mustRender(t, m, fleetv1.BundleDeploymentOptions{}, TemplateContext{}).Objects)
		equal(t, "order", got, first)
	}
}

func BenchmarkRenderRaw(b *testing.B) {
	fs := map[string]string{}
	for f := range 20 {
		var sb strings.Builder
		for i := range 10 {
			fmt.Fprintf(&sb, `---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-%02d-%02d
  labels: {app: app-%02d-%02d, tier: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: app-%02d-%02d}
  template:
    metadata:
      labels: {app: app-%02d-%02d}
    spec:
      containers:
      - name: app
        image: registry.example.com/app:1.0.%d
        ports: [{containerPort: 8080}]
        env: [{name: MODE, value: production}]
`, f, i, f, i, f, i, f, i, i)
		}
		fs[fmt.Sprintf("apps/file%02d.yaml", f)] = sb.String()
	}
	m := bundle(fs)
	opts := fleetv1.BundleDeploymentOptions{DefaultNamespace: "apps"}
	b.ReportAllocs()
	for b.Loop() {
		r, err := Render(context.Background(), m, opts, TemplateContext{})
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Objects) != 200 {
			b.Fatalf("got %d objects", len(r.Objects))
		}
	}
}

func TestRenderHelmChartArchive(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range []struct{ name, body string }{
		{"packaged/Chart.yaml", "apiVersion: v2\nname: packaged\nversion: 2.0.0\n"},
		{"packaged/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Chart.Name }}-{{ .Chart.Version }}\n"},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	m := &content.Manifest{Resources: []fleetv1.BundleResource{{
		Name: "charts/packaged-2.0.0.tgz", Content: base64.StdEncoding.EncodeToString(buf.Bytes()), Encoding: "base64",
	}}}
	opts := fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Chart: "charts/packaged-2.0.0.tgz", ReleaseName: "pinned"}}
	r := mustRender(t, m, opts, TemplateContext{BundleName: "ignored"})
	equal(t, "release", r.ReleaseName, "pinned")
	equal(t, "objects", ids(r.Objects), []string{"ConfigMap/default/packaged-2.0.0"})
}

// TestRenderHelmTemplateValuesAndDNS: helm.templateValues computes whole
// values per cluster (the output is YAML, so a map stays a map) and
// replaces the key in values; chart templates may look names up in DNS
// unless helm.disableDNS is set (Fleet's default is DNS on).
func TestRenderHelmTemplateValuesAndDNS(t *testing.T) {
	fs := map[string]string{
		"chart/Chart.yaml": "apiVersion: v2\nname: tv\nversion: 0.1.0\n",
		"chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tv\ndata:\n" +
			"  region: {{ .Values.placement.region | quote }}\n  zones: {{ .Values.placement.zones | join \",\" | quote }}\n" +
			"  replicas: {{ .Values.replicas | quote }}\n  localhost: {{ getHostByName \"localhost\" | quote }}\n",
	}
	tc := TemplateContext{BundleName: "b", ClusterName: "edge-1", ClusterLabels: map[string]string{"region": "eu"}}
	for _, tt := range []struct {
		name       string
		disableDNS bool
		localhost  string
	}{{"DNS on by default", false, "127.0.0.1"}, {"disableDNS", true, ""}} {
		t.Run(tt.name, func(t *testing.T) {
			opts := fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{
				Chart:      "chart",
				Values:     jsonValues(t, "replicas: 1\nplacement: {region: none}\n"),
				DisableDNS: tt.disableDNS,
				TemplateValues: map[string]string{
					"placement": "region: ${ .ClusterLabels.region }\nzones: [${ .ClusterLabels.region }-a, ${ .ClusterLabels.region }-b]\n",
					"replicas":  "${ len .ClusterName }",
				},
			}}
			r := mustRender(t, bundle(fs), opts, tc)
			data := find(t, r.Objects, "ConfigMap", "tv").Object["data"].(map[string]any)
			equal(t, "region", data["region"], "eu")
			equal(t, "zones", data["zones"], "eu-a,eu-b")
			equal(t, "replicas", data["replicas"], "6")
			equal(t, "localhost", data["localhost"], tt.localhost)
		})
	}
	opts := fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Chart: "chart", TemplateValues: map[string]string{"placement": "${ .ClusterLabels.zone }"}}}
	if _, err := Render(context.Background(), bundle(fs), opts, tc); err == nil || !strings.Contains(err.Error(), "helm.templateValues.placement") {
		t.Errorf("missing label in templateValues: %v, want an error naming helm.templateValues.placement", err)
	}
}
