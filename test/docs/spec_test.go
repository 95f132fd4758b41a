// Package docs checks that the user reference pages under docs/spec keep up
// with the CRDs: one page per kind, naming every spec and status field and
// every printer column.
package docs

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/edgefleet/edgefleet/config/crd"
)

// fieldPaths lists the property paths of s as the pages write them
// (`a.b`, `a[].b`), down to depth levels. It does not descend where the
// page describes the children once elsewhere: a row saying "Fields as …",
// a LabelSelector, and conditions (metav1.Condition).
func fieldPaths(page, prefix string, s *apiextensionsv1.JSONSchemaProps, depth int) []string {
	if depth == 0 || s == nil {
		return nil
	}
	var out []string
	for name, p := range s.Properties {
		path := prefix + name
		out = append(out, path)
		if name == "conditions" || strings.Contains(row(page, path), "Fields as") || strings.Contains(row(page, path), "LabelSelector") {
			continue
		}
		if p.Type == "array" && p.Items != nil && p.Items.Schema != nil {
			out = append(out, fieldPaths(page, path+"[].", p.Items.Schema, depth-1)...)
			continue
		}
		out = append(out, fieldPaths(page, path+".", &p, depth-1)...)
	}
	return out
}

// row is the table row of the page describing path, or "".
func row(page, path string) string {
	for line := range strings.Lines(page) {
		if strings.HasPrefix(line, "| `"+path+"` |") {
			return line
		}
	}
	return ""
}

func TestEveryKindHasACompleteSpecPage(t *testing.T) {
	defs, err := crd.CustomResourceDefinitions()
	if err != nil {
		t.Fatal(err)
	}
	if len(defs) == 0 {
		t.Fatal("no CRDs embedded")
	}
	downstream, err := crd.DownstreamCustomResourceDefinitions()
	if err != nil {
		t.Fatal(err)
	}
	defs = append(defs, downstream...)
	// pages names the page of kinds whose lower-case name is taken (plan.md
	// is the machine plan format).
	pages := map[string]string{"plans.upgrade.edgefleet.io": "upgradeplan.md"}
	for _, def := range defs {
		kind := def.Spec.Names.Kind
		t.Run(kind, func(t *testing.T) {
			pageFile := strings.ToLower(kind) + ".md"
			if p, ok := pages[def.Name]; ok {
				pageFile = p
			}
			file := filepath.Join("..", "..", "docs", "spec", pageFile)
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%s has no reference page: %v", kind, err)
			}
			page := string(data)
			for _, section := range []string{"## Spec", "## Status", "### Printer columns"} {
				if !strings.Contains(page, section) {
					t.Errorf("%s: no %q section", file, section)
				}
			}
			v := def.Spec.Versions[0]
			root := v.Schema.OpenAPIV3Schema
			var missing []string
			for _, part := range []string{"spec", "status"} {
				s, ok := root.Properties[part]
				if !ok {
					continue
				}
				// Two levels: deeper fields repeat shared types the pages
				// describe once ("Fields as ...").
				for _, p := range fieldPaths(page, "", &s, 2) {
					if !strings.Contains(page, "`"+p+"`") {
						missing = append(missing, part+"."+p)
					}
				}
			}
			if _, hasSpec := root.Properties["spec"]; !hasSpec {
				for name := range root.Properties {
					if name != "apiVersion" && name != "kind" && name != "metadata" && !strings.Contains(page, "`"+name+"`") {
						missing = append(missing, name)
					}
				}
			}
			for _, c := range v.AdditionalPrinterColumns {
				if !strings.Contains(page, "| "+c.Name+" ") {
					missing = append(missing, "printer column "+c.Name)
				}
			}
			if _, hasStatus := root.Properties["status"]; hasStatus && !strings.Contains(page, "### Conditions") {
				missing = append(missing, "the Conditions section")
			}
			sort.Strings(missing)
			if len(missing) > 0 {
				t.Errorf("%s does not describe: %s", file, strings.Join(missing, ", "))
			}
		})
	}
}
