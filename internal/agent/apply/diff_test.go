package apply

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func configMap(data map[string]any, meta map[string]any) *unstructured.Unstructured {
	m := map[string]any{"name": "cm", "namespace": "ns"}
	for k, v := range meta {
		m[k] = v
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": m, "data": data,
	}}
}

func TestCompare(t *testing.T) {
	tests := []struct {
		name      string
		live      *unstructured.Unstructured
		want      *unstructured.Unstructured
		diff      *fleetv1.DiffOptions
		modified  bool
		wantPatch string
	}{
		{
			name:     "server-managed metadata and status are ignored",
			live:     configMap(map[string]any{"a": "1"}, map[string]any{"resourceVersion": "5", "uid": "x", "generation": int64(1), "managedFields": []any{"x"}}),
			want:     configMap(map[string]any{"a": "1"}, map[string]any{"resourceVersion": "6", "uid": "x", "generation": int64(2)}),
			modified: false,
		},
		{
			name:      "changed value is reported with a merge patch back to desired",
			live:      configMap(map[string]any{"a": "changed", "b": "2"}, nil),
			want:      configMap(map[string]any{"a": "1", "b": "2"}, nil),
			modified:  true,
			wantPatch: `{"data":{"a":"1"}}`,
		},
		{
			name:     "jsonPointers hide a field",
			live:     configMap(map[string]any{"a": "changed"}, nil),
			want:     configMap(map[string]any{"a": "1"}, nil),
			diff:     &fleetv1.DiffOptions{ComparePatches: []fleetv1.ComparePatch{{Kind: "ConfigMap", Name: "cm", JSONPointers: []string{"/data/a"}}}},
			modified: false,
		},
		{
			name:     "remove operation hides a field",
			live:     configMap(map[string]any{"a": "changed"}, nil),
			want:     configMap(map[string]any{"a": "1"}, nil),
			diff:     &fleetv1.DiffOptions{ComparePatches: []fleetv1.ComparePatch{{Kind: "ConfigMap", Operations: []fleetv1.Operation{{Op: "remove", Path: "/data"}}}}},
			modified: false,
		},
		{
			name:     "ignore operation hides the whole object",
			live:     configMap(map[string]any{"a": "changed"}, nil),
			want:     configMap(map[string]any{"a": "1"}, nil),
			diff:     &fleetv1.DiffOptions{ComparePatches: []fleetv1.ComparePatch{{APIVersion: "v1", Kind: "ConfigMap", Name: "cm", Namespace: "ns", Operations: []fleetv1.Operation{{Op: "ignore"}}}}},
			modified: false,
		},
		{
			name:      "a compare patch for another object does not hide drift",
			live:      configMap(map[string]any{"a": "changed"}, nil),
			want:      configMap(map[string]any{"a": "1"}, nil),
			diff:      &fleetv1.DiffOptions{ComparePatches: []fleetv1.ComparePatch{{Kind: "ConfigMap", Name: "other", Operations: []fleetv1.Operation{{Op: "ignore"}}}}},
			modified:  true,
			wantPatch: `{"data":{"a":"1"}}`,
		},
		{
			name:      "a removed field shows as null",
			live:      configMap(map[string]any{"a": "1", "x": "extra"}, nil),
			want:      configMap(map[string]any{"a": "1"}, nil),
			modified:  true,
			wantPatch: `{"data":{"x":null}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modified, patch := compare(tt.live, tt.want, tt.diff)
			if modified != tt.modified {
				t.Fatalf("modified = %v, want %v (patch %s)", modified, tt.modified, patch)
			}
			if patch != tt.wantPatch {
				t.Errorf("patch = %s, want %s", patch, tt.wantPatch)
			}
		})
	}
}

func TestRemovePointer(t *testing.T) {
	doc := map[string]any{
		"spec": map[string]any{
			"a/b":        "slash",
			"containers": []any{map[string]any{"image": "x", "name": "c"}},
		},
	}
	removePointer(doc, "/spec/a~1b")
	removePointer(doc, "/spec/containers/0/image")
	removePointer(doc, "/spec/containers/7/image") // out of range: no-op
	removePointer(doc, "/nothing/here")
	spec := doc["spec"].(map[string]any)
	if _, ok := spec["a/b"]; ok {
		t.Error("escaped key a/b not removed")
	}
	c := spec["containers"].([]any)[0].(map[string]any)
	if _, ok := c["image"]; ok || c["name"] != "c" {
		t.Errorf("container after removal = %v", c)
	}
}

func TestLabelValue(t *testing.T) {
	if got := LabelValue("cluster-ns", "bd"); got != "cluster-ns.bd" {
		t.Errorf("short value = %q", got)
	}
	long := LabelValue("cluster-fleet-default-some-very-long-cluster-name-0123456789", "bundle-with-a-long-name")
	if len(long) > 63 {
		t.Errorf("long value has %d characters, more than a label allows", len(long))
	}
	if long == LabelValue("cluster-fleet-default-some-very-long-cluster-name-0123456789", "bundle-with-a-long-name2") {
		t.Error("different long names map to one label value")
	}
}

func TestOrder(t *testing.T) {
	obj := func(apiVersion, kind, name string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(apiVersion)
		u.SetKind(kind)
		u.SetName(name)
		return u
	}
	ns, crds, rest := order([]*unstructured.Unstructured{
		obj("example.com/v1", "Widget", "w"),
		obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com"),
		obj("v1", "ConfigMap", "cm"),
		obj("v1", "Namespace", "app"),
	})
	if len(ns) != 1 || len(crds) != 1 || len(rest) != 2 || rest[0].GetKind() != "Widget" {
		t.Errorf("order = %d namespaces, %d CRDs, rest %v", len(ns), len(crds), rest)
	}
}
