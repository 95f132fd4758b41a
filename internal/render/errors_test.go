package render

import (
	"context"
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// TestRenderErrors checks that each kind of bad input fails with a
// *render.Error pointing at the file and line a user has to fix.
func TestRenderErrors(t *testing.T) {
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n"
	tests := []struct {
		name     string
		fs       map[string]string
		opts     fleetv1.BundleDeploymentOptions
		tc       TemplateContext
		file     string
		line     int
		contains []string
	}{
		{
			name: "invalid YAML in a later document",
			fs:   map[string]string{"app.yaml": cm + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n   oops: [\n"},
			file: "app.yaml", line: 10,
			contains: []string{"invalid YAML"},
		},
		{
			name: "object without name",
			fs:   map[string]string{"a.yaml": cm, "b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"},
			file: "b.yaml", line: 1,
			contains: []string{"metadata.name"},
		},
		{
			name: "document that is not an object",
			fs:   map[string]string{"a.yaml": "- just\n- a list\n"},
			file: "a.yaml", line: 1,
			contains: []string{"list", "not a Kubernetes object"},
		},
		{
			name:     "values not a map",
			fs:       testChart,
			opts:     fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Chart: "chart", Values: &runtime.RawExtension{Raw: []byte(`["a"]`)}}},
			file:     "fleet.yaml",
			contains: []string{"helm.values must be a map"},
		},
		{
			name:     "values file not a map",
			fs:       withFiles(testChart, map[string]string{"v.yaml": "just a string\n"}),
			opts:     fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Chart: "chart", ValuesFiles: []string{"v.yaml"}}},
			file:     "v.yaml",
			contains: []string{"must hold a map"},
		},
		{
			name:     "missing chart",
			fs:       map[string]string{"fleet.yaml": "helm: {}\n"},
			opts:     fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Chart: "./charts/app", Repo: "https://charts.example.com"}},
			file:     "fleet.yaml",
			contains: []string{"charts/app/Chart.yaml", "edgefleet apply"},
		},
		{
			name:     "template referencing a missing cluster label",
			fs:       testChart,
			opts:     fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Chart: "chart", Values: jsonValues(t, "image:\n  tags: [ok, '${ .ClusterLabels.tier }']\n")}},
			tc:       TemplateContext{ClusterLabels: map[string]string{"env": "prod"}},
			file:     "fleet.yaml",
			contains: []string{"helm.values.image.tags[1]", `"tier"`},
		},
		{
			name:     "unparsable values template",
			fs:       testChart,
			opts:     fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Chart: "chart", Values: jsonValues(t, "cmd: 'echo ${HOME}'\n")}},
			file:     "fleet.yaml",
			contains: []string{"helm.values.cmd", "disablePreProcess"},
		},
		{
			name: "helm template failure names the template and line",
			fs: withFiles(testChart, map[string]string{
				"chart/templates/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ required \"set name2\" .Values.name2 }}\n",
			}),
			opts: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Chart: "chart"}},
			file: "chart/templates/bad.yaml", line: 4,
			contains: []string{"set name2"},
		},
		{
			name: "kustomize failure",
			fs: map[string]string{
				"kustomization.yaml": "resources:\n- missing.yaml\n",
			},
			file:     "kustomization.yaml",
			contains: []string{"kustomize build", "missing.yaml"},
		},
		{
			name:     "kustomize.dir without kustomization",
			fs:       map[string]string{"app.yaml": cm},
			opts:     fleetv1.BundleDeploymentOptions{Kustomize: &fleetv1.KustomizeOptions{Dir: "overlays/dev"}},
			file:     "fleet.yaml",
			contains: []string{"overlays/dev"},
		},
		{
			name: "forced namespace with a cluster-scoped object",
			fs:   map[string]string{"app.yaml": cm, "rbac.yaml": "# rbac\n" + rawCluster},
			opts: fleetv1.BundleDeploymentOptions{Namespace: "apps"},
			file: "rbac.yaml", line: 2,
			contains: []string{`Namespace "extra" is cluster-scoped`, "defaultNamespace"},
		},
		{
			name: "forced namespace with a cluster-scoped object in a chart",
			fs: withFiles(testChart, map[string]string{
				"chart/templates/cr.yaml": "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: cr\n",
			}),
			opts:     fleetv1.BundleDeploymentOptions{Namespace: "apps", Helm: &fleetv1.HelmOptions{Chart: "chart"}},
			file:     "chart/templates/cr.yaml",
			contains: []string{`ClusterRole "cr" is cluster-scoped`},
		},
		{
			name: "duplicate object",
			fs:   map[string]string{"a.yaml": cm, "b.yaml": cm},
			file: "b.yaml", line: 1,
			contains: []string{"defined twice", "a.yaml:1"},
		},
		{
			name:     "patch without a base file",
			fs:       map[string]string{"a.yaml": cm, "overlays/x/gone_patch.yaml": "data: {}\n"},
			opts:     fleetv1.BundleDeploymentOptions{YAML: &fleetv1.YAMLOptions{Overlays: []string{"x"}}},
			file:     "overlays/x/gone_patch.yaml",
			contains: []string{"gone.yaml"},
		},
		{
			name:     "unknown overlay",
			fs:       map[string]string{"a.yaml": cm},
			opts:     fleetv1.BundleDeploymentOptions{YAML: &fleetv1.YAMLOptions{Overlays: []string{"nope"}}},
			file:     "fleet.yaml",
			contains: []string{"overlays/nope/"},
		},
		{
			name:     "path outside the bundle",
			fs:       map[string]string{"../escape.yaml": cm},
			file:     "../escape.yaml",
			contains: []string{"outside the bundle"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(context.Background(), bundle(tt.fs), tt.opts, tt.tc)
			if err == nil {
				t.Fatal("Render succeeded, want an error")
			}
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("error %q (%T) is not a *render.Error", err, err)
			}
			if re.File != tt.file || re.Line != tt.line {
				t.Errorf("error at %s:%d, want %s:%d (%v)", re.File, re.Line, tt.file, tt.line, err)
			}
			for _, c := range tt.contains {
				if !strings.Contains(err.Error(), c) {
					t.Errorf("error %q does not mention %q", err, c)
				}
			}
		})
	}
}
