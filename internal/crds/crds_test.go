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

package crds

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	fleetv1alpha1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1alpha1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1alpha1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/config/crd"
)

// expectedKinds lists every kind the API must serve, by group.
var expectedKinds = map[string][]string{
	fleetv1alpha1.GroupVersion.Group: {
		"Bundle", "BundleDeployment", "BundleNamespaceMapping", "Cluster", "ClusterGroup", "ClusterRegistrationToken", "Content", "GitRepo",
		"GitRepoRestriction", "HelmOp",
	},
	machinesv1alpha1.GroupVersion.Group: {
		"BMC", "MachineInventory", "MachineRegistration", "ManagedOSImage", "ManagedOSVersion", "ManagedOSVersionChannel", "SeedImage",
	},
	provisioningv1alpha1.GroupVersion.Group: {"ClusterMachine", "ProvisionedCluster"},
}

// noStatus lists the namespaced kinds that have no status: a
// ManagedOSVersion is a catalogue entry (Elemental's semantics), written by
// its channel and read by ManagedOSImages; nothing reconciles it.
// GitRepoRestriction and BundleNamespaceMapping are Fleet's policy kinds,
// with top-level fields and no status in Fleet either.
var noStatus = map[string]bool{
	"managedosversions.machines.edgefleet.io":    true,
	"gitreporestrictions.fleet.edgefleet.io":     true,
	"bundlenamespacemappings.fleet.edgefleet.io": true,
}

func loadCRDs(t *testing.T) []*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	crds, err := crd.CustomResourceDefinitions()
	if err != nil {
		t.Fatalf("parsing embedded CRDs: %v", err)
	}
	return crds
}

// storageKinds are plain data (no spec, status or conditions), cluster-scoped
// so one copy serves every namespace, and kept out of `kubectl get edgefleet`.
var storageKinds = map[string]bool{"contents.fleet.edgefleet.io": true}

func TestEmbeddedCRDs(t *testing.T) {
	allowedGroups := map[string]string{
		fleetv1alpha1.GroupVersion.Group:        "fleet",
		machinesv1alpha1.GroupVersion.Group:     "machines",
		provisioningv1alpha1.GroupVersion.Group: "provisioning",
	}
	for _, def := range loadCRDs(t) {
		t.Run(def.Name, func(t *testing.T) {
			category, ok := allowedGroups[def.Spec.Group]
			if !ok {
				t.Fatalf("group %q is not one of %v", def.Spec.Group, allowedGroups)
			}
			if want := def.Spec.Names.Plural + "." + def.Spec.Group; def.Name != want {
				t.Errorf("name = %q, want %q", def.Name, want)
			}
			if storageKinds[def.Name] {
				if def.Spec.Scope != apiextensionsv1.ClusterScoped {
					t.Errorf("scope = %q, want Cluster", def.Spec.Scope)
				}
				if len(def.Spec.Names.Categories) != 0 {
					t.Errorf("storage kind in categories %v", def.Spec.Names.Categories)
				}
				return
			}
			if def.Spec.Scope != apiextensionsv1.NamespaceScoped {
				t.Errorf("scope = %q, want Namespaced", def.Spec.Scope)
			}
			for _, c := range []string{"edgefleet", category} {
				if !slices.Contains(def.Spec.Names.Categories, c) {
					t.Errorf("categories %v do not include %q", def.Spec.Names.Categories, c)
				}
			}
			if len(def.Spec.Versions) == 0 {
				t.Fatal("no versions")
			}
			storage := 0
			for _, v := range def.Spec.Versions {
				if v.Storage {
					storage++
				}
				if !v.Served {
					t.Errorf("version %s is not served", v.Name)
				}
				if len(v.AdditionalPrinterColumns) == 0 {
					t.Errorf("version %s has no printer columns", v.Name)
				}
				if noStatus[def.Name] {
					continue
				}
				if v.Subresources == nil || v.Subresources.Status == nil {
					t.Errorf("version %s has no status subresource", v.Name)
				}
				if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
					t.Errorf("version %s has no schema", v.Name)
					continue
				}
				status, ok := v.Schema.OpenAPIV3Schema.Properties["status"]
				if !ok {
					t.Errorf("version %s schema has no status", v.Name)
					continue
				}
				conds, ok := status.Properties["conditions"]
				if !ok {
					t.Errorf("version %s status has no conditions", v.Name)
				} else if conds.XListType == nil || *conds.XListType != "map" || !slices.Equal(conds.XListMapKeys, []string{"type"}) {
					t.Errorf("version %s status.conditions is not a list map keyed by type", v.Name)
				}
				if _, ok := status.Properties["observedGeneration"]; !ok {
					t.Errorf("version %s status has no observedGeneration", v.Name)
				}
			}
			if storage != 1 {
				t.Errorf("%d storage versions, want 1", storage)
			}
		})
	}
}

// schemeKinds returns the kinds the API packages register, by group,
// leaving out list kinds and the option types registered for every group.
func schemeKinds(t *testing.T) map[string][]string {
	t.Helper()
	s := runtime.NewScheme()
	if err := fleetv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := machinesv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := provisioningv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	pkgs := map[schema.GroupVersion]string{
		fleetv1alpha1.GroupVersion:        reflect.TypeFor[fleetv1alpha1.Cluster]().PkgPath(),
		machinesv1alpha1.GroupVersion:     reflect.TypeFor[machinesv1alpha1.SeedImage]().PkgPath(),
		provisioningv1alpha1.GroupVersion: reflect.TypeFor[provisioningv1alpha1.ProvisionedCluster]().PkgPath(),
	}
	kinds := map[string][]string{}
	for gv, pkg := range pkgs {
		for kind, typ := range s.KnownTypes(gv) {
			if typ.PkgPath() != pkg || strings.HasSuffix(kind, "List") {
				continue
			}
			kinds[gv.Group] = append(kinds[gv.Group], kind)
		}
		sort.Strings(kinds[gv.Group])
	}
	return kinds
}

func TestEveryKindHasACRD(t *testing.T) {
	crdKinds := map[string][]string{}
	for _, def := range loadCRDs(t) {
		crdKinds[def.Spec.Group] = append(crdKinds[def.Spec.Group], def.Spec.Names.Kind)
	}
	for g := range crdKinds {
		sort.Strings(crdKinds[g])
	}
	fromScheme := schemeKinds(t)

	for group, want := range expectedKinds {
		t.Run(group, func(t *testing.T) {
			want = slices.Sorted(slices.Values(want))
			if got := crdKinds[group]; !slices.Equal(got, want) {
				t.Errorf("CRD kinds = %v, want %v", got, want)
			}
			if got := fromScheme[group]; !slices.Equal(got, want) {
				t.Errorf("scheme kinds = %v, want %v", got, want)
			}
		})
	}
	if len(crdKinds) != len(expectedKinds) {
		t.Errorf("CRDs span groups %v, want %d groups", slices.Sorted(maps.Keys(crdKinds)), len(expectedKinds))
	}
}

// TestPrinterColumns checks every column the way the API server's table
// convertor reads it, and evaluates the label-based MachineInventory columns.
func TestPrinterColumns(t *testing.T) {
	for _, def := range loadCRDs(t) {
		for _, v := range def.Spec.Versions {
			for _, col := range v.AdditionalPrinterColumns {
				t.Run(def.Spec.Names.Kind+"/"+col.Name, func(t *testing.T) {
					if !strings.HasPrefix(col.JSONPath, ".") {
						t.Errorf("jsonPath %q does not start with '.'", col.JSONPath)
					}
					if err := jsonpath.New(col.Name).Parse(fmt.Sprintf("{%s}", col.JSONPath)); err != nil {
						t.Errorf("jsonPath %q does not parse: %v", col.JSONPath, err)
					}
					switch col.Type {
					case "integer", "number", "string", "boolean", "date":
					default:
						t.Errorf("column type %q is not valid", col.Type)
					}
				})
			}
		}
	}

	labels := map[string]string{
		machinesv1alpha1.LabelManufacturer: "Acme",
		machinesv1alpha1.LabelProductName:  "EdgeBox-3",
		machinesv1alpha1.LabelArchitecture: "arm64",
	}
	inv := map[string]any{"metadata": map[string]any{"labels": map[string]any{}}}
	for k, v := range labels {
		inv["metadata"].(map[string]any)["labels"].(map[string]any)[k] = v
	}
	found := 0
	for _, def := range loadCRDs(t) {
		if def.Spec.Names.Kind != "MachineInventory" {
			continue
		}
		for _, col := range def.Spec.Versions[0].AdditionalPrinterColumns {
			if !strings.HasPrefix(col.JSONPath, ".metadata.labels.") {
				continue
			}
			found++
			jp := jsonpath.New(col.Name)
			if err := jp.Parse(fmt.Sprintf("{%s}", col.JSONPath)); err != nil {
				t.Fatalf("column %s: %v", col.Name, err)
			}
			var sb strings.Builder
			if err := jp.Execute(&sb, inv); err != nil {
				t.Fatalf("column %s: %v", col.Name, err)
			}
			if !slices.Contains(slices.Collect(maps.Values(labels)), sb.String()) {
				t.Errorf("column %s (%s) printed %q, want one of the label values", col.Name, col.JSONPath, sb.String())
			}
			if col.Priority != 10 {
				t.Errorf("column %s has priority %d, want 10 (-o wide)", col.Name, col.Priority)
			}
		}
	}
	if found != len(labels) {
		t.Errorf("found %d label columns on MachineInventory, want %d", found, len(labels))
	}
}

func TestNames(t *testing.T) {
	names := Names()
	var want []string
	for _, def := range loadCRDs(t) {
		want = append(want, def.Name)
	}
	sort.Strings(want)
	if !slices.Equal(names, want) {
		t.Errorf("Names() = %v, want %v", names, want)
	}
	kinds := 0
	for _, k := range expectedKinds {
		kinds += len(k)
	}
	if len(names) != kinds {
		t.Errorf("Names() has %d entries, want %d", len(names), kinds)
	}
}

func TestApplyObject(t *testing.T) {
	def := loadCRDs(t)[0]
	def.Status.StoredVersions = []string{"v1alpha1"}
	obj, err := applyObject(def)
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.GroupVersionKind(); got != crdGVK {
		t.Errorf("GVK = %v, want %v", got, crdGVK)
	}
	if _, ok := obj.Object["status"]; ok {
		t.Error("status is sent with the apply request")
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(obj.Object, "metadata", "creationTimestamp"); found {
		t.Error("metadata.creationTimestamp is sent with the apply request")
	}
	if obj.GetName() != def.Name {
		t.Errorf("name = %q, want %q", obj.GetName(), def.Name)
	}
	if _, found, _ := unstructured.NestedSlice(obj.Object, "spec", "versions"); !found {
		t.Error("spec.versions missing")
	}
}

func TestEstablished(t *testing.T) {
	names := apiextensionsv1.CustomResourceDefinitionNames{Plural: "bundles", Kind: "Bundle"}
	cond := func(typ apiextensionsv1.CustomResourceDefinitionConditionType, status apiextensionsv1.ConditionStatus) apiextensionsv1.CustomResourceDefinitionCondition {
		return apiextensionsv1.CustomResourceDefinitionCondition{Type: typ, Status: status, Reason: "Test", Message: "test message"}
	}
	now := metav1.Now()
	tests := []struct {
		name       string
		conditions []apiextensionsv1.CustomResourceDefinitionCondition
		accepted   apiextensionsv1.CustomResourceDefinitionNames
		deleting   bool
		want       bool
		wantReason string
	}{
		{
			name:       "no conditions yet",
			accepted:   names,
			wantReason: "NamesAccepted not reported",
		},
		{
			name:       "names accepted, not established",
			conditions: []apiextensionsv1.CustomResourceDefinitionCondition{cond(apiextensionsv1.NamesAccepted, apiextensionsv1.ConditionTrue)},
			accepted:   names,
			wantReason: "Established not reported",
		},
		{
			name: "names conflict",
			conditions: []apiextensionsv1.CustomResourceDefinitionCondition{
				cond(apiextensionsv1.NamesAccepted, apiextensionsv1.ConditionFalse),
				cond(apiextensionsv1.Established, apiextensionsv1.ConditionFalse),
			},
			wantReason: "NamesAccepted is False",
		},
		{
			name: "established but accepted names stale",
			conditions: []apiextensionsv1.CustomResourceDefinitionCondition{
				cond(apiextensionsv1.NamesAccepted, apiextensionsv1.ConditionTrue),
				cond(apiextensionsv1.Established, apiextensionsv1.ConditionTrue),
			},
			accepted:   apiextensionsv1.CustomResourceDefinitionNames{Plural: "old", Kind: "Old"},
			wantReason: "accepted names",
		},
		{
			name: "being deleted",
			conditions: []apiextensionsv1.CustomResourceDefinitionCondition{
				cond(apiextensionsv1.NamesAccepted, apiextensionsv1.ConditionTrue),
				cond(apiextensionsv1.Established, apiextensionsv1.ConditionTrue),
			},
			accepted:   names,
			deleting:   true,
			wantReason: "being deleted",
		},
		{
			name: "ready",
			conditions: []apiextensionsv1.CustomResourceDefinitionCondition{
				cond(apiextensionsv1.Established, apiextensionsv1.ConditionTrue),
				cond(apiextensionsv1.NamesAccepted, apiextensionsv1.ConditionTrue),
			},
			accepted: names,
			want:     true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			def := &apiextensionsv1.CustomResourceDefinition{
				Spec: apiextensionsv1.CustomResourceDefinitionSpec{Names: names},
				Status: apiextensionsv1.CustomResourceDefinitionStatus{
					Conditions:    tt.conditions,
					AcceptedNames: tt.accepted,
				},
			}
			if tt.deleting {
				def.DeletionTimestamp = &now
			}
			got, reason := established(def)
			if got != tt.want {
				t.Errorf("established() = %v (%s), want %v", got, reason, tt.want)
			}
			if !strings.Contains(reason, tt.wantReason) {
				t.Errorf("reason = %q, want it to contain %q", reason, tt.wantReason)
			}
		})
	}
}

// fakeAPIServer records applied CRDs and serves them back, marking them
// established unless their name is in notEstablished.
type fakeAPIServer struct {
	mu             sync.Mutex
	applied        map[string]*unstructured.Unstructured
	owners         map[string]string
	notEstablished map[string]bool
}

func (f *fakeAPIServer) client() client.Client {
	return fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Apply: func(_ context.Context, _ client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			u, ok := obj.(interface {
				GetName() string
				UnstructuredContent() map[string]any
			})
			if !ok {
				return fmt.Errorf("unexpected apply configuration %T", obj)
			}
			applyOpts := &client.ApplyOptions{}
			applyOpts.ApplyOptions(opts)
			if applyOpts.Force == nil || !*applyOpts.Force {
				return fmt.Errorf("apply of %s without force", u.GetName())
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.applied[u.GetName()] = &unstructured.Unstructured{Object: runtime.DeepCopyJSON(u.UnstructuredContent())}
			f.owners[u.GetName()] = applyOpts.FieldManager
			return nil
		},
		Get: func(_ context.Context, _ client.WithWatch, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			stored, ok := f.applied[key.Name]
			if !ok {
				return apierrors.NewNotFound(schema.GroupResource{Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions"}, key.Name)
			}
			out, ok := obj.(*unstructured.Unstructured)
			if !ok {
				return fmt.Errorf("unexpected object type %T", obj)
			}
			out.Object = runtime.DeepCopyJSON(stored.Object)
			status := apiextensionsv1.ConditionTrue
			if f.notEstablished[key.Name] {
				status = apiextensionsv1.ConditionFalse
			}
			names, _, _ := unstructured.NestedMap(out.Object, "spec", "names")
			return unstructured.SetNestedField(out.Object, map[string]any{
				"acceptedNames": names,
				"conditions": []any{
					map[string]any{"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
					map[string]any{"type": "Established", "status": string(status), "reason": "InitialNamesAccepted"},
				},
			}, "status")
		},
	}).Build()
}

func newFakeAPIServer() *fakeAPIServer {
	return &fakeAPIServer{
		applied:        map[string]*unstructured.Unstructured{},
		owners:         map[string]string{},
		notEstablished: map[string]bool{},
	}
}

func TestInstall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := newFakeAPIServer()
	if err := Install(ctx, srv.client(), logr.Discard()); err != nil {
		t.Fatalf("Install() = %v", err)
	}
	got := slices.Sorted(maps.Keys(srv.applied))
	if want := Names(); !slices.Equal(got, want) {
		t.Errorf("applied %v, want %v", got, want)
	}
	for name, owner := range srv.owners {
		if owner != FieldOwner {
			t.Errorf("%s applied with field owner %q, want %q", name, owner, FieldOwner)
		}
	}
	// A second run upgrades in place.
	if err := Install(ctx, srv.client(), logr.Discard()); err != nil {
		t.Fatalf("second Install() = %v", err)
	}
}

func TestInstallReportsCRDsNotEstablished(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv := newFakeAPIServer()
	srv.notEstablished["bundles.fleet.edgefleet.io"] = true
	err := Install(ctx, srv.client(), logr.Discard())
	if err == nil {
		t.Fatal("Install() succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "bundles.fleet.edgefleet.io") || !strings.Contains(err.Error(), "Established is False") {
		t.Errorf("error %q does not name the CRD and its condition", err)
	}
	if strings.Contains(err.Error(), "gitrepos.fleet.edgefleet.io") {
		t.Errorf("error %q names a CRD that is established", err)
	}
}
