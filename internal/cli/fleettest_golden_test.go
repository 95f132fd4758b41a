package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of TestFleetTestGolden")

// TestFleetTestGolden runs `edgefleet test` the way Fleet users call
// `fleet test` on testdata/fleetrepo — a Fleet repository that uses every
// fleet.yaml key of Fleet's reference — and compares stdout and stderr with
// testdata/golden/<case>.{stdout,stderr}. Run with -update to rewrite them
// after an intended change, and review the diff.
func TestFleetTestGolden(t *testing.T) {
	repo, err := filepath.Abs(filepath.Join("testdata", "fleetrepo"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		// fleet test without -l/-g/-t: the "default" group. The helm bundle's
		// customization "everything-else" ({} selector) is the first entry
		// that matches; the raw bundle's targets need labels: no match.
		{"helm-default-group", []string{"test", "helm"}},
		{"raw-default-group-no-match", []string{"test", "raw"}},
		// With labels, customizations count as targets: the first that
		// matches wins (prod), as in Fleet's CLI.
		{"helm-labels-prod", []string{"test", "-N", "edge-1", "-l", "env=prod,region=eu", "helm"}},
		{"helm-group-europe", []string{"test", "-g", "europe", "helm"}},
		{"helm-target-by-name", []string{"test", "-t", "eu", "helm"}},
		{"helm-group-labels", []string{"test", "-q", "-L", "geo=eu", "helm"}},
		{"helm-lab-doNotDeploy-entry", []string{"test", "-q", "-l", "env=lab", "helm"}},
		{"raw-labels-eu-overlay", []string{"test", "-l", "region=eu", "raw"}},
		{"raw-labels-edge-target", []string{"test", "-l", "kind=edge", "raw"}},
		{"kustomize-prod", []string{"test", "-l", "env=prod", "kustomize"}},
		{"override-group", []string{"test", "-g", "stores", "override"}},
		// The manager's rules, for comparison: AllMatches merges prod and eu.
		{"helm-as-manager-prod-eu", []string{"test", "--as-manager", "--cluster-name", "edge-1", "-l", "env=prod", "-g", "default", "-g", "europe", "helm"}},
		{"helm-as-manager-lab", []string{"test", "--as-manager", "-l", "env=lab", "-g", "default", "helm"}},
		{"strict-fails", []string{"test", "--strict", "helm"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			root := NewRoot(&stdout, &stderr)
			args := append([]string{}, tc.args...)
			last := len(args) - 1
			args[last] = filepath.Join(repo, args[last])
			root.SetArgs(args)
			root.SilenceErrors, root.SilenceUsage = true, true
			if err := root.ExecuteContext(context.Background()); err != nil {
				stderr.WriteString("error: " + err.Error() + "\n")
			}
			for ext, got := range map[string]string{"stdout": stdout.String(), "stderr": stderr.String()} {
				got = strings.ReplaceAll(got, repo, "<repo>")
				file := filepath.Join("testdata", "golden", tc.name+"."+ext)
				if *updateGolden {
					if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(file)
				if err != nil {
					t.Fatalf("%v (run go test -run TestFleetTestGolden -update)", err)
				}
				if got != string(want) {
					t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", ext, file, got, want)
				}
			}
		})
	}
}
