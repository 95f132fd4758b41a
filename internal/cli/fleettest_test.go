package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFleetTestAsManagerRendersWhatAClusterReceives: --as-manager answers
// what the manager would deploy to a cluster with those labels.
func TestFleetTestAsManagerRendersWhatAClusterReceives(t *testing.T) {
	repo := t.TempDir()
	files := map[string]string{
		"web/fleet.yaml": `defaultNamespace: web
helm:
  chart: ./chart
  values:
    env: ${ .ClusterLabels.env }
    size: ${ .ClusterValues.size }
targetCustomizations:
- name: prod
  clusterSelector: {matchLabels: {env: prod}}
  helm:
    values:
      replicas: 3
- name: lab
  clusterSelector: {matchLabels: {env: lab}}
  doNotDeploy: true
targets:
- clusterSelector: {}
`,
		"web/chart/Chart.yaml":        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		"web/chart/values.yaml":       "replicas: 1\n",
		"web/chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  env: {{ .Values.env | quote }}\n  size: {{ .Values.size | quote }}\n  replicas: {{ .Values.replicas | quote }}\n",
		"eu-only/fleet.yaml":          "targets:\n- clusterSelector: {matchLabels: {region: eu}}\n",
		"eu-only/cm.yaml":             "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: eu\n",
		"values.yaml":                 "size: large\n",
	}
	for name, data := range files {
		p := filepath.Join(repo, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		labels  []string
		want    []string
		notWant []string
		wantErr string
	}{
		{name: "prod in eu gets the customization and the eu bundle", labels: []string{"env=prod", "region=eu"},
			want: []string{`env: prod`, `replicas: "3"`, `size: large`, "name: eu", "RawYAML"}},
		{name: "dev in us gets defaults and no eu bundle", labels: []string{"env=dev", "region=us"},
			want: []string{`env: dev`, `replicas: "1"`, "not deployed to this cluster", "region=eu"}, notWant: []string{"name: eu\n"}},
		{name: "doNotDeploy skips", labels: []string{"env=lab"},
			want: []string{"Bundle shop-web: not deployed"}, notWant: []string{"env: lab"}},
		{name: "bad label flag", labels: []string{"env"}, wantErr: "key=value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			o := fleetTestOptions{asManager: true, namespace: "fleet-local", name: "shop", clusterName: "edge-1", labels: tt.labels, clusterValues: filepath.Join(repo, "values.yaml")}
			err := runFleetTest(context.Background(), o, []string{filepath.Join(repo, "web"), filepath.Join(repo, "eu-only")}, &out, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
		})
	}
}
