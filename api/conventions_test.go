/*
Copyright 2026 The edgefleet Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package api_test checks the API conventions that are otherwise kept by
// hand (Kubernetes API conventions plus edgefleet's own), so a new kind or
// field cannot quietly break them. It reads the type declarations with
// go/ast, because markers live in comments, and the scheme by reflection.
package api_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
)

// groups are the API packages, by directory, with their AddToScheme.
var groups = map[string]func(*runtime.Scheme) error{
	"fleet/v1alpha1":        fleetv1.AddToScheme,
	"machines/v1alpha1":     machinesv1.AddToScheme,
	"provisioning/v1alpha1": provisioningv1.AddToScheme,
	"upgrade/v1alpha1":      upgradev1.AddToScheme,
}

// Known exceptions, each with its reason. Keep them few; a new entry needs
// a reason a reviewer accepts.
var (
	// noStatus: kinds without status (and so without conditions). They need
	// not be in the edgefleet category (storage is not something `kubectl
	// get edgefleet` should list; policy kinds may be).
	noStatus = map[string]string{
		"Content":                "immutable content-addressed data; nothing reconciles it, there is no state to report",
		"GitRepoRestriction":     "Fleet's kind: top-level fields, no spec or status; policy read by the GitRepo controller, which reports on the GitRepo",
		"BundleNamespaceMapping": "Fleet's kind: top-level selectors, no spec or status; read by the bundle controller, which reports on the Bundles",
		"ManagedOSVersion":       "data (a version and its image), written by hand or by its channel; nothing reconciles it (the channel and the ManagedOSImage using it report)",
	}
	// nonCamelJSON: json names that are not lowerCamelCase.
	nonCamelJSON = map[string]string{
		"cloud-config":       "Rancher Elemental's name; carried over unchanged (docs/spec/machineregistration.md)",
		"config-urls":        "Elemental install setting, handed to the installer as is",
		"device-selector":    "Elemental install setting, handed to the installer as is",
		"disable-boot-entry": "Elemental install setting, handed to the installer as is",
		"system-uri":         "Elemental install setting, handed to the installer as is",
		"emulate-tpm":        "Elemental registration setting",
		"emulated-tpm-seed":  "Elemental registration setting",
		"no-smbios":          "Elemental registration setting",
		"reset-persistent":   "Elemental reset setting",
		"no-format":          "Elemental install setting, accepted and ignored",
		"eject-cd":           "Elemental install setting, accepted and ignored",
		"config-dir":         "Elemental install setting, accepted and ignored",
		"reset-oem":          "Elemental reset setting",
		"system-agent":       "Elemental's config.elemental section, accepted unchanged",
		"secret-name":        "Elemental system-agent setting, accepted and ignored",
		"secret-namespace":   "Elemental system-agent setting, accepted and ignored",
	}
)

// field is one struct field of an API type, with its markers.
type field struct {
	typeName, name, jsonTag string
	expr                    ast.Expr
	markers                 []string
}

// apiType is one struct type of an API package.
type apiType struct {
	pkg, name string
	markers   []string // on the type
	fields    []field
}

func (t apiType) rootKind() bool {
	return hasMarker(t.markers, "+kubebuilder:object:root=true") && !strings.HasSuffix(t.name, "List")
}

func hasMarker(markers []string, prefix string) bool {
	return slices.ContainsFunc(markers, func(m string) bool { return strings.HasPrefix(m, prefix) })
}

func markersOf(groups ...*ast.CommentGroup) []string {
	var out []string
	for _, g := range groups {
		if g == nil {
			continue
		}
		for _, c := range g.List {
			if text := strings.TrimSpace(strings.TrimPrefix(c.Text, "//")); strings.HasPrefix(text, "+") {
				out = append(out, text)
			}
		}
	}
	return out
}

// loadTypes parses every non-generated, non-test file of the API packages.
func loadTypes(t *testing.T) []apiType {
	t.Helper()
	var types []apiType
	fset := token.NewFileSet()
	for dir := range groups {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", dir, err)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") || strings.HasPrefix(filepath.Base(path), "zz_generated") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.TYPE {
					continue
				}
				for _, spec := range gd.Specs {
					ts := spec.(*ast.TypeSpec)
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					at := apiType{pkg: dir, name: ts.Name.Name, markers: markersOf(gd.Doc, ts.Doc)}
					for _, fl := range st.Fields.List {
						tag := ""
						if fl.Tag != nil {
							tag = reflect.StructTag(strings.Trim(fl.Tag.Value, "`")).Get("json")
						}
						name := ""
						if len(fl.Names) > 0 {
							name = fl.Names[0].Name
						}
						at.fields = append(at.fields, field{typeName: ts.Name.Name, name: name, jsonTag: tag, expr: fl.Type, markers: markersOf(fl.Doc)})
					}
					types = append(types, at)
				}
			}
		}
	}
	if len(types) == 0 {
		t.Fatal("no API types found")
	}
	return types
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.StarExpr:
		return "*" + exprString(e.X)
	case *ast.ArrayType:
		return "[]" + exprString(e.Elt)
	case *ast.MapType:
		return "map[" + exprString(e.Key) + "]" + exprString(e.Value)
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	}
	return "?"
}

func find(types []apiType, pkg, name string) (apiType, bool) {
	for _, t := range types {
		if t.pkg == pkg && t.name == name {
			return t, true
		}
	}
	return apiType{}, false
}

func fieldNamed(t apiType, name string) (field, bool) {
	for _, f := range t.fields {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

// TestKindsHaveStatusConditionsAndColumns: every kind has the status
// subresource, Status.Conditions as a map list of metav1.Condition keyed by
// type, status.observedGeneration, printer columns (with Age) and the
// edgefleet category.
func TestKindsHaveStatusConditionsAndColumns(t *testing.T) {
	types := loadTypes(t)
	kinds := 0
	for _, k := range types {
		if !k.rootKind() {
			continue
		}
		kinds++
		t.Run(k.name, func(t *testing.T) {
			if !hasMarker(k.markers, "+kubebuilder:printcolumn:") {
				t.Errorf("%s has no +kubebuilder:printcolumn markers", k.name)
			} else if !hasMarker(k.markers, `+kubebuilder:printcolumn:name="Age"`) {
				t.Errorf("%s has no Age printer column", k.name)
			}
			if !slices.ContainsFunc(k.markers, func(m string) bool {
				return strings.HasPrefix(m, "+kubebuilder:resource:") && (strings.Contains(m, "categories=edgefleet") || strings.Contains(m, "categories={edgefleet"))
			}) && noStatus[k.name] == "" {
				t.Errorf("%s is not in the edgefleet category (+kubebuilder:resource:...,categories={edgefleet,...})", k.name)
			}
			if _, ok := noStatus[k.name]; ok {
				if _, has := fieldNamed(k, "Status"); has {
					t.Errorf("%s has a Status now: remove it from noStatus", k.name)
				}
				return
			}
			if !hasMarker(k.markers, "+kubebuilder:subresource:status") {
				t.Errorf("%s lacks +kubebuilder:subresource:status", k.name)
			}
			sf, ok := fieldNamed(k, "Status")
			if !ok {
				t.Fatalf("%s has no Status field", k.name)
			}
			st, ok := find(types, k.pkg, exprString(sf.expr))
			if !ok {
				t.Fatalf("%s: status type %s not found", k.name, exprString(sf.expr))
			}
			conds, ok := fieldNamed(st, "Conditions")
			switch {
			case !ok:
				t.Errorf("%s.Status has no Conditions", k.name)
			case exprString(conds.expr) != "[]metav1.Condition":
				t.Errorf("%s.Status.Conditions is %s, want []metav1.Condition", k.name, exprString(conds.expr))
			case !hasMarker(conds.markers, "+listType=map") || !hasMarker(conds.markers, "+listMapKey=type"):
				t.Errorf("%s.Status.Conditions needs +listType=map and +listMapKey=type", k.name)
			case conds.jsonTag != "conditions,omitempty":
				t.Errorf("%s.Status.Conditions json tag %q, want conditions,omitempty", k.name, conds.jsonTag)
			}
			if og, ok := fieldNamed(st, "ObservedGeneration"); !ok || exprString(og.expr) != "int64" {
				t.Errorf("%s.Status has no observedGeneration int64", k.name)
			}
		})
	}
	if kinds < 10 {
		t.Errorf("found %d kinds, want at least 10: is the parser still finding +kubebuilder:object:root?", kinds)
	}
}

var lowerCamel = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// TestFieldConventions: json names are lowerCamelCase, every field is
// explicitly +optional or +required, optional fields are omitted when empty, no floating point (it does not round-trip across
// languages: use resource.Quantity or a string), no int/uint of
// platform-dependent size.
func TestFieldConventions(t *testing.T) {
	for _, typ := range loadTypes(t) {
		for _, f := range typ.fields {
			where := typ.pkg + " " + typ.name + "." + f.name
			if f.name == "" { // embedded
				if !strings.Contains(f.jsonTag, "inline") && f.jsonTag != "" && f.jsonTag != "metadata,omitempty" {
					t.Errorf("%s: embedded field with json tag %q", where, f.jsonTag)
				}
				continue
			}
			if f.jsonTag == "" {
				t.Errorf("%s: exported field without a json tag", where)
				continue
			}
			name, opts, _ := strings.Cut(f.jsonTag, ",")
			if name == "metadata" || name == "apiVersion" || name == "kind" {
				continue
			}
			if !lowerCamel.MatchString(name) && nonCamelJSON[name] == "" {
				t.Errorf("%s: json name %q is not lowerCamelCase", where, name)
			}
			if name != "spec" && name != "status" && name != "items" &&
				!hasMarker(f.markers, "+optional") && !hasMarker(f.markers, "+required") && !hasMarker(f.markers, "+kubebuilder:validation:Required") {
				t.Errorf("%s: mark it +optional or +required", where)
			}
			omits := strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
			if hasMarker(f.markers, "+optional") && !omits {
				t.Errorf("%s: +optional but json tag %q has neither omitempty nor omitzero", where, f.jsonTag)
			}
			if hasMarker(f.markers, "+required") && hasMarker(f.markers, "+optional") {
				t.Errorf("%s: both +required and +optional", where)
			}
			ts := exprString(f.expr)
			for _, bad := range []string{"float32", "float64", "int", "uint", "uint8", "uint16", "uint32", "uint64"} {
				if strings.TrimLeft(ts, "*[]") == bad || strings.HasSuffix(ts, "]"+bad) {
					t.Errorf("%s: type %s; use int32/int64, resource.Quantity or a string", where, ts)
				}
			}
		}
	}
}

// TestEveryKindIsRegistered: AddToScheme registers each kind and its list.
func TestEveryKindIsRegistered(t *testing.T) {
	types := loadTypes(t)
	for dir, add := range groups {
		s := runtime.NewScheme()
		if err := add(s); err != nil {
			t.Fatal(err)
		}
		var known []string
		for gvk := range s.AllKnownTypes() {
			known = append(known, gvk.Kind)
		}
		for _, k := range types {
			if k.pkg != dir || !k.rootKind() {
				continue
			}
			for _, want := range []string{k.name, k.name + "List"} {
				if !slices.Contains(known, want) {
					t.Errorf("%s: %s is not registered by AddToScheme", dir, want)
				}
			}
		}
	}
}

// TestOnlyApimachinery: the API module imports the standard library and
// k8s.io/apimachinery only, so clients do not inherit edgefleet's
// dependencies.
func TestOnlyApimachinery(t *testing.T) {
	fset := token.NewFileSet()
	for dir := range groups {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				p := strings.Trim(imp.Path.Value, `"`)
				first, _, _ := strings.Cut(p, "/")
				if strings.Contains(first, ".") && !strings.HasPrefix(p, "k8s.io/apimachinery/") && !strings.HasPrefix(p, "github.com/edgefleet/edgefleet/api/") {
					t.Errorf("%s/%s imports %s", dir, e.Name(), p)
				}
			}
		}
	}
}
