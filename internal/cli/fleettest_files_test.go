package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlereader"
)

// TestFleetTestFileFlag: -f names the fleet.yaml of DIR (a file elsewhere,
// or stdin with "-"), replacing DIR/fleet.yaml, as fleet test -f does.
func TestFleetTestFileFlag(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"app/fleet.yaml":              "helm:\n  values: {greeting: from-dir}\n",
		"app/chart/Chart.yaml":        "apiVersion: v2\nname: app\nversion: 0.1.0\n",
		"app/chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
		"ci/prod.yaml": `helm:
  chart: ./chart
  values: {greeting: from-file}
targetCustomizations:
- name: eu
  clusterSelector: {matchLabels: {region: eu}}
  helm:
    values: {greeting: from-eu}
`,
		"ci/base.yaml":  "helm:\n  chart: ./chart\n  values: {greeting: from-file}\n",
		"empty/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n",
	})
	dir := filepath.Join(root, "app")
	tests := []struct {
		name    string
		o       fleetTestOptions
		dirs    []string
		stdin   string
		want    []string
		notWant []string
		matched string
		wantErr string
	}{
		{name: "-f replaces the directory's fleet.yaml", dirs: []string{dir}, o: fleetTestOptions{file: filepath.Join(root, "ci/base.yaml")},
			want: []string{`greeting: from-file`}, notWant: []string{"from-dir"}, matched: "# Matched: default"},
		{name: "-f file with only customizations: fleet test matches nothing in the default group", dirs: []string{dir}, o: fleetTestOptions{file: filepath.Join(root, "ci/prod.yaml")}, wantErr: "no match found"},
		{name: "-f with labels matches its customizations", dirs: []string{dir}, o: fleetTestOptions{file: filepath.Join(root, "ci/prod.yaml"), labels: []string{"region=eu"}},
			want: []string{`greeting: from-eu`}, matched: "# Matched: eu"},
		{name: "-f - reads stdin", dirs: []string{dir}, o: fleetTestOptions{file: "-"}, stdin: "helm:\n  chart: ./chart\n  values: {greeting: from-stdin}\n",
			want: []string{`greeting: from-stdin`}},
		{name: "-f errors name the file", dirs: []string{dir}, o: fleetTestOptions{file: "-"}, stdin: "helm:\n  chart: [bad]\n", wantErr: "stdin:2"},
		{name: "-f takes one DIR", dirs: []string{dir, filepath.Join(root, "empty")}, o: fleetTestOptions{file: filepath.Join(root, "ci/prod.yaml")}, wantErr: "one DIR"},
		{name: "-f on a missing file", dirs: []string{dir}, o: fleetTestOptions{file: filepath.Join(root, "nope.yaml")}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			o := tt.o
			o.namespace, o.stdin = "fleet-local", strings.NewReader(tt.stdin)
			err := runFleetTest(context.Background(), o, tt.dirs, &out, &errOut)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\nstderr: %s", err, errOut.String())
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
			if tt.matched != "" && !strings.Contains(errOut.String(), tt.matched) {
				t.Errorf("stderr lacks %q: %s", tt.matched, errOut.String())
			}
		})
	}
}

// TestFleetTestBundleFileFlag: -b matches and renders a Bundle resource as
// written, Fleet's or edgefleet's, with inline (also base64+gz) resources;
// entries before the restrictions are customizations, as in Fleet.
func TestFleetTestBundleFileFlag(t *testing.T) {
	root := t.TempDir()
	gz, err := bundlereader.Compressed(fleetv1.BundleResource{Name: "cm.yaml", Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-bundle\n"})
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, root, map[string]string{
		"bundle.yaml": `apiVersion: fleet.cattle.io/v1alpha1
kind: Bundle
metadata:
  name: shop
  namespace: fleet-default
spec:
  defaultNamespace: shop
  resources:
  - name: cm.yaml
    encoding: base64+gz
    content: ` + gz.Content + `
  - name: svc.yaml
    content: |
      apiVersion: v1
      kind: Service
      metadata:
        name: shop
      spec:
        ports: [{port: 80}]
  targets:
  - name: eu-custom
    clusterSelector: {matchLabels: {region: eu}}
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
  targetRestrictions:
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
`,
		"stored.yaml": "apiVersion: fleet.edgefleet.io/v1alpha1\nkind: Bundle\nmetadata:\n  name: x\nspec:\n  contentsID: s-abc\n",
		"cm.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
	})
	tests := []struct {
		name    string
		o       fleetTestOptions
		want    []string
		matched string
		wantErr string
	}{
		{name: "a matching cluster gets the resources", o: fleetTestOptions{labels: []string{"env=prod", "region=eu"}},
			want: []string{"name: from-bundle", "kind: Service", "namespace: shop"}, matched: "# Matched: prod"},
		{name: "customizations are not targets", o: fleetTestOptions{labels: []string{"region=eu"}}, wantErr: "no match found"},
		{name: "-t picks a target by name", o: fleetTestOptions{target: "prod"}, matched: "# Matched: prod"},
		{name: "-b wins over DIR and -f, as in Fleet", o: fleetTestOptions{labels: []string{"env=prod"}, file: "does-not-matter.yaml"}, matched: "# Matched: prod"},
		{name: "contentsID only is refused with a hint", o: fleetTestOptions{bundleFile: "stored.yaml"}, wantErr: "no inline spec.resources"},
		{name: "not a Bundle", o: fleetTestOptions{bundleFile: "cm.yaml"}, wantErr: `kind "ConfigMap"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			o := tt.o
			if o.bundleFile == "" {
				o.bundleFile = "bundle.yaml"
			}
			o.bundleFile = filepath.Join(root, o.bundleFile)
			o.namespace = "fleet-local"
			err := runFleetTest(context.Background(), o, []string{filepath.Join(root, "no-such-dir")}, &out, &errOut)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\nstderr: %s", err, errOut.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if !strings.Contains(errOut.String(), tt.matched) {
				t.Errorf("stderr lacks %q: %s", tt.matched, errOut.String())
			}
		})
	}
}
