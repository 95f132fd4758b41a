package apply_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/apply"
	"github.com/edgefleet/edgefleet/test/harness"
)

func objects(t *testing.T, docs ...string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, d := range docs {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(d), &u.Object); err != nil {
			t.Fatalf("parsing test manifest: %v", err)
		}
		out = append(out, u)
	}
	return out
}

const (
	configMapYAML = `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {color: blue}
`
	deploymentYAML = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:1.27, ports: [{containerPort: 80}]}]
`
	crdYAML = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
`
	widgetYAML = `
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3}
`
)

func TestApplyCheckPrune(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a kube-apiserver")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := harness.StartClusters(t, 1, harness.ClusterOptions{})[0].Client
	a := &apply.Applier{Client: c}
	target := apply.Target{
		Namespace: "cluster-a", Name: "app", DeploymentID: "s-1:x", DefaultNamespace: "app",
		Options: fleetv1.BundleDeploymentOptions{NamespaceLabels: map[string]string{"team": "blue"}},
	}
	prepare := func(t *testing.T, tgt apply.Target, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
		t.Helper()
		p, err := apply.Prepare(objs, tgt, c.RESTMapper())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	desired := prepare(t, target, objects(t, widgetYAML, configMapYAML, deploymentYAML, crdYAML))

	t.Run("applies objects labelled, CRDs before their resources, into a created namespace", func(t *testing.T) {
		if err := a.Apply(ctx, target, "RawYAML", desired); err != nil {
			t.Fatal(err)
		}
		w := &unstructured.Unstructured{}
		w.SetAPIVersion("example.com/v1")
		w.SetKind("Widget")
		if err := c.Get(ctx, client.ObjectKey{Namespace: "app", Name: "w1"}, w); err != nil {
			t.Fatalf("widget not applied: %v", err)
		}
		if got := w.GetLabels()[fleetv1.BundleDeploymentLabel]; got != "cluster-a.app" {
			t.Errorf("widget label %s = %q, want cluster-a.app", fleetv1.BundleDeploymentLabel, got)
		}
		if got := w.GetAnnotations()[fleetv1.DeploymentIDAnnotation]; got != "s-1:x" {
			t.Errorf("widget annotation %s = %q", fleetv1.DeploymentIDAnnotation, got)
		}
		ns := &corev1.Namespace{}
		if err := c.Get(ctx, client.ObjectKey{Name: "app"}, ns); err != nil {
			t.Fatal(err)
		}
		if ns.Labels["team"] != "blue" {
			t.Errorf("namespace labels = %v, want team=blue from namespaceLabels", ns.Labels)
		}
	})

	t.Run("a Helm bundle's namespace gets namespaceLabels and namespaceAnnotations", func(t *testing.T) {
		// Helm creates the namespace bare; an admin's own label stays.
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "helm-app", Labels: map[string]string{"admin": "set"}}}); err != nil {
			t.Fatal(err)
		}
		for _, nsName := range []string{"helm-app", "helm-new"} {
			tgt := apply.Target{Namespace: "cluster-a", Name: "helm", DefaultNamespace: nsName, Options: fleetv1.BundleDeploymentOptions{
				NamespaceLabels: map[string]string{"team": "green"}, NamespaceAnnotations: map[string]string{"owner": "shop"}}}
			if err := a.EnsureNamespaceMeta(ctx, tgt); err != nil {
				t.Fatal(err)
			}
			ns := &corev1.Namespace{}
			if err := c.Get(ctx, client.ObjectKey{Name: nsName}, ns); err != nil {
				t.Fatal(err)
			}
			if ns.Labels["team"] != "green" || ns.Annotations["owner"] != "shop" || (nsName == "helm-app" && ns.Labels["admin"] != "set") {
				t.Errorf("namespace %s labels %v annotations %v", nsName, ns.Labels, ns.Annotations)
			}
		}
	})

	t.Run("freshly applied objects with server-defaulted fields are not modified", func(t *testing.T) {
		r, err := a.Check(ctx, desired, nil, target.Options)
		if err != nil {
			t.Fatal(err)
		}
		if !r.NonModified() {
			t.Fatalf("modified right after apply: %+v", r.Modified)
		}
		if len(r.Resources) != 4 {
			t.Errorf("resources = %d, want 4", len(r.Resources))
		}
	})

	t.Run("an edited ConfigMap is modified, and applying again reverts it", func(t *testing.T) {
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "app", Name: "settings"}, cm); err != nil {
			t.Fatal(err)
		}
		cm.Data["color"] = "red"
		if err := c.Update(ctx, cm); err != nil {
			t.Fatal(err)
		}
		r, err := a.Check(ctx, desired, nil, target.Options)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Modified) != 1 || r.Modified[0].Kind != "ConfigMap" || r.Modified[0].Name != "settings" || !strings.Contains(r.Modified[0].Patch, `"color":"blue"`) {
			t.Fatalf("modified = %+v, want only ConfigMap settings with a patch back to blue", r.Modified)
		}
		ignoring := target.Options
		ignoring.Diff = &fleetv1.DiffOptions{ComparePatches: []fleetv1.ComparePatch{{Kind: "ConfigMap", Name: "settings", JSONPointers: []string{"/data/color"}}}}
		if r, err := a.Check(ctx, desired, nil, ignoring); err != nil || !r.NonModified() {
			t.Fatalf("with comparePatches ignoring /data/color: modified = %+v, err %v", r, err)
		}
		if err := a.Apply(ctx, target, "RawYAML", desired); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "app", Name: "settings"}, cm); err != nil || cm.Data["color"] != "blue" {
			t.Fatalf("after re-apply color = %q (err %v), want blue", cm.Data["color"], err)
		}
	})

	t.Run("an object dropped from the bundle is pruned", func(t *testing.T) {
		t2 := target
		t2.DeploymentID = "s-2:x"
		smaller := prepare(t, t2, objects(t, widgetYAML, deploymentYAML, crdYAML))
		if err := a.Apply(ctx, t2, "RawYAML", smaller); err != nil {
			t.Fatal(err)
		}
		err := c.Get(ctx, client.ObjectKey{Namespace: "app", Name: "settings"}, &corev1.ConfigMap{})
		if !apierrors.IsNotFound(err) {
			t.Fatalf("ConfigMap settings still there after it left the bundle (err %v)", err)
		}
		desired = smaller
	})

	t.Run("a CRD dropped from the bundle stays, its custom resources are pruned", func(t *testing.T) {
		t3 := target
		t3.DeploymentID = "s-3:x"
		if err := a.Apply(ctx, t3, "RawYAML", prepare(t, t3, objects(t, deploymentYAML))); err != nil {
			t.Fatal(err)
		}
		crd := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition"}}
		if err := c.Get(ctx, client.ObjectKey{Name: "widgets.example.com"}, crd); err != nil || crd.GetDeletionTimestamp() != nil {
			t.Fatalf("CRD pruned with the bundle's default deleteCRDResources=false: %v %v", err, crd.GetDeletionTimestamp())
		}
		w := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": "Widget"}}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "app", Name: "w1"}, w); !apierrors.IsNotFound(err) {
			t.Fatalf("the bundle's own Widget was not pruned: %v", err)
		}
		if err := a.Apply(ctx, target, "RawYAML", desired); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a rejected object fails with the object and the reason", func(t *testing.T) {
		bad := prepare(t, target, objects(t, `
apiVersion: v1
kind: ConfigMap
metadata: {name: "Not_A_Valid_Name"}
`))
		err := a.Apply(ctx, target, "RawYAML", bad)
		if err == nil || !strings.Contains(err.Error(), "ConfigMap app/Not_A_Valid_Name") || !strings.Contains(err.Error(), "Invalid value") {
			t.Fatalf("error = %v, want one naming the ConfigMap and the invalid value", err)
		}
	})

	t.Run("delete with keepResources keeps objects, without removes them", func(t *testing.T) {
		inv, err := apply.ReadInventory(ctx, c, target.Namespace, target.Name)
		if err != nil || inv == nil {
			t.Fatalf("inventory = %v, %v", inv, err)
		}
		if err := a.Delete(ctx, "cluster-a", "kept", inv, true, false); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "app", Name: "web"}, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment"}}); err != nil {
			t.Fatalf("keepResources deleted the Deployment: %v", err)
		}
		if err := a.Delete(ctx, target.Namespace, target.Name, inv, false, false); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "app", Name: "web"}, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment"}}); !apierrors.IsNotFound(err) {
			t.Fatalf("Deployment still there after delete: %v", err)
		}
		if inv, err := apply.ReadInventory(ctx, c, target.Namespace, target.Name); err != nil || inv != nil {
			t.Fatalf("inventory after delete = %v, %v", inv, err)
		}
	})

	crd := func() error {
		return c.Get(ctx, client.ObjectKey{Name: "widgets.example.com"}, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition"}})
	}
	t.Run("delete keeps the bundle's CRDs unless deleteCRDResources", func(t *testing.T) {
		if err := crd(); err != nil {
			t.Fatalf("the CRD went with the bundle (deleteCRDResources false): %v", err)
		}
		if err := a.Apply(ctx, target, "RawYAML", desired); err != nil {
			t.Fatal(err)
		}
		inv, err := apply.ReadInventory(ctx, c, target.Namespace, target.Name)
		if err != nil || inv == nil {
			t.Fatalf("inventory = %v, %v", inv, err)
		}
		if err := a.Delete(ctx, target.Namespace, target.Name, inv, false, true); err != nil {
			t.Fatal(err)
		}
		// A CRD goes once the API server removed its custom resources.
		deadline := time.Now().Add(30 * time.Second)
		for err := crd(); !apierrors.IsNotFound(err); err = crd() {
			if time.Now().After(deadline) {
				t.Fatalf("CRD still there 30s after a delete with deleteCRDResources: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

func TestWithoutCRDs(t *testing.T) {
	crd := apply.Ref{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition", Name: "widgets.example.com"}
	lookalike := apply.Ref{APIVersion: "example.com/v1", Kind: "CustomResourceDefinition", Name: "x"}
	cm := apply.Ref{APIVersion: "v1", Kind: "ConfigMap", Namespace: "app", Name: "settings"}
	for _, tc := range []struct {
		name       string
		deleteCRDs bool
		want       []apply.Ref
	}{
		{"CRDs are kept by default", false, []apply.Ref{lookalike, cm}},
		{"deleteCRDResources deletes them too", true, []apply.Ref{crd, lookalike, cm}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := apply.WithoutCRDs([]apply.Ref{crd, lookalike, cm}, tc.deleteCRDs)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}
