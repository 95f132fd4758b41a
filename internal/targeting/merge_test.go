package targeting

import (
	"reflect"
	"testing"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
)

func TestMerge(t *testing.T) {
	cm := func(name string) fleetv1.ValueFrom {
		return fleetv1.ValueFrom{ConfigMapKeyRef: &fleetv1.ConfigMapKeySelector{Name: name}}
	}
	tests := []struct {
		name   string
		base   fleetv1.BundleDeploymentOptions
		custom fleetv1.BundleDeploymentOptions
		check  func(t *testing.T, got fleetv1.BundleDeploymentOptions)
	}{
		{
			name:   "scalars replaced when set",
			base:   fleetv1.BundleDeploymentOptions{Namespace: "a", ServiceAccount: "sa", DefaultNamespace: "d"},
			custom: fleetv1.BundleDeploymentOptions{Namespace: "b"},
			check: func(t *testing.T, got fleetv1.BundleDeploymentOptions) {
				if got.Namespace != "b" || got.ServiceAccount != "sa" || got.DefaultNamespace != "d" {
					t.Errorf("got %+v", got)
				}
			},
		},
		{
			name: "Fleet's newer options: booleans ORed, templateValues and downstreamResources by key",
			base: fleetv1.BundleDeploymentOptions{DeleteCRDResources: true, Helm: &fleetv1.HelmOptions{DisableDNS: true, TemplateValues: map[string]string{"a": "1", "b": "2"}},
				DownstreamResources: []fleetv1.DownstreamResource{{Kind: "Secret", Name: "s"}, {Kind: "ConfigMap", Name: "c"}}},
			custom: fleetv1.BundleDeploymentOptions{CreateNamespace: true, Helm: &fleetv1.HelmOptions{DisableDependencyUpdate: true, TemplateValues: map[string]string{"b": "3"}},
				DownstreamResources: []fleetv1.DownstreamResource{{Kind: "Secret", Name: "s2"}}},
			check: func(t *testing.T, got fleetv1.BundleDeploymentOptions) {
				h := got.Helm
				if !got.DeleteCRDResources || !got.CreateNamespace || !h.DisableDNS || !h.DisableDependencyUpdate ||
					!reflect.DeepEqual(h.TemplateValues, map[string]string{"a": "1", "b": "3"}) || len(got.DownstreamResources) != 3 {
					t.Errorf("got %+v helm %+v", got, h)
				}
			},
		},
		{
			name:   "dash clears namespace and serviceAccount",
			base:   fleetv1.BundleDeploymentOptions{Namespace: "a", ServiceAccount: "sa"},
			custom: fleetv1.BundleDeploymentOptions{Namespace: "-", ServiceAccount: "-"},
			check: func(t *testing.T, got fleetv1.BundleDeploymentOptions) {
				if got.Namespace != "" || got.ServiceAccount != "" {
					t.Errorf("got namespace %q serviceAccount %q, want both empty", got.Namespace, got.ServiceAccount)
				}
			},
		},
		{
			name:   "helm values deep-merged",
			base:   fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Chart: "c", Values: values(`{"a":{"x":1,"y":2},"list":[1,2],"keep":true}`)}},
			custom: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Values: values(`{"a":{"y":3,"z":4},"list":[9]}`)}},
			check: func(t *testing.T, got fleetv1.BundleDeploymentOptions) {
				if want := `{"a":{"x":1,"y":3,"z":4},"keep":true,"list":[9]}`; string(got.Helm.Values.Raw) != want {
					t.Errorf("values = %s, want %s", got.Helm.Values.Raw, want)
				}
				if got.Helm.Chart != "c" {
					t.Errorf("chart = %q, want c", got.Helm.Chart)
				}
			},
		},
		{
			name:   "bools ORed",
			base:   fleetv1.BundleDeploymentOptions{KeepResources: true, Helm: &fleetv1.HelmOptions{Force: true}},
			custom: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Atomic: true}},
			check: func(t *testing.T, got fleetv1.BundleDeploymentOptions) {
				if !got.KeepResources || !got.Helm.Force || !got.Helm.Atomic || got.Helm.TakeOwnership {
					t.Errorf("got %+v / %+v", got, got.Helm)
				}
			},
		},
		{
			name:   "valuesFrom merged by key",
			base:   fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{ValuesFrom: []fleetv1.ValueFrom{cm("one"), cm("two")}}},
			custom: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{ValuesFrom: []fleetv1.ValueFrom{cm("two"), cm("three")}}},
			check: func(t *testing.T, got fleetv1.BundleDeploymentOptions) {
				var names []string
				for _, v := range got.Helm.ValuesFrom {
					names = append(names, v.ConfigMapKeyRef.Name)
				}
				if !reflect.DeepEqual(names, []string{"one", "two", "three"}) {
					t.Errorf("valuesFrom = %v", names)
				}
			},
		},
		{
			name: "comparePatches merged by key, custom wins",
			base: fleetv1.BundleDeploymentOptions{Diff: &fleetv1.DiffOptions{ComparePatches: []fleetv1.ComparePatch{
				{Kind: "Deployment", Name: "a", JSONPointers: []string{"/spec/replicas"}},
				{Kind: "Service", Name: "s"},
			}}},
			custom: fleetv1.BundleDeploymentOptions{Diff: &fleetv1.DiffOptions{ComparePatches: []fleetv1.ComparePatch{
				{Kind: "Deployment", Name: "a", JSONPointers: []string{"/metadata/labels"}},
			}}},
			check: func(t *testing.T, got fleetv1.BundleDeploymentOptions) {
				p := got.Diff.ComparePatches
				if len(p) != 2 || p[0].JSONPointers[0] != "/metadata/labels" || p[1].Kind != "Service" {
					t.Errorf("comparePatches = %+v", p)
				}
			},
		},
		{
			name:   "namespace labels merged by key",
			base:   fleetv1.BundleDeploymentOptions{NamespaceLabels: map[string]string{"a": "1", "b": "1"}},
			custom: fleetv1.BundleDeploymentOptions{NamespaceLabels: map[string]string{"b": "2"}},
			check: func(t *testing.T, got fleetv1.BundleDeploymentOptions) {
				if !reflect.DeepEqual(got.NamespaceLabels, map[string]string{"a": "1", "b": "2"}) {
					t.Errorf("labels = %v", got.NamespaceLabels)
				}
			},
		},
		{
			name:   "correctDrift replaced",
			base:   fleetv1.BundleDeploymentOptions{CorrectDrift: &fleetv1.CorrectDrift{Enabled: true}},
			custom: fleetv1.BundleDeploymentOptions{CorrectDrift: &fleetv1.CorrectDrift{Force: true}},
			check: func(t *testing.T, got fleetv1.BundleDeploymentOptions) {
				if got.CorrectDrift.Enabled || !got.CorrectDrift.Force {
					t.Errorf("correctDrift = %+v", got.CorrectDrift)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := *tt.base.DeepCopy()
			tt.check(t, Merge(tt.base, tt.custom))
			if !reflect.DeepEqual(before, tt.base) {
				t.Error("Merge modified its base argument")
			}
		})
	}
}

func TestDeploymentID(t *testing.T) {
	base := fleetv1.BundleDeploymentOptions{DefaultNamespace: "app", Helm: &fleetv1.HelmOptions{Values: values(`{"a":1,"b":2}`)}}
	id := DeploymentID("s-abc", base)
	if content.DeploymentID(id).ContentsID() != "s-abc" || len(id) != len("s-abc:")+64 {
		t.Fatalf("DeploymentID = %q", id)
	}
	tests := []struct {
		name     string
		mutate   func(o *fleetv1.BundleDeploymentOptions)
		contents string
		same     bool
	}{
		{"identical options", func(*fleetv1.BundleDeploymentOptions) {}, "s-abc", true},
		{"diff does not redeploy", func(o *fleetv1.BundleDeploymentOptions) {
			o.Diff = &fleetv1.DiffOptions{ComparePatches: []fleetv1.ComparePatch{{Kind: "X"}}}
		}, "s-abc", true},
		{"correctDrift does not redeploy", func(o *fleetv1.BundleDeploymentOptions) { o.CorrectDrift = &fleetv1.CorrectDrift{Enabled: true} }, "s-abc", true},
		{"values key order does not matter", func(o *fleetv1.BundleDeploymentOptions) { o.Helm.Values = values(`{"b":2,"a":1}`) }, "s-abc", true},
		{"values change redeploys", func(o *fleetv1.BundleDeploymentOptions) { o.Helm.Values = values(`{"a":2,"b":2}`) }, "s-abc", false},
		{"namespace change redeploys", func(o *fleetv1.BundleDeploymentOptions) { o.Namespace = "x" }, "s-abc", false},
		{"content change redeploys", func(*fleetv1.BundleDeploymentOptions) {}, "s-def", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := *base.DeepCopy()
			tt.mutate(&o)
			if got := DeploymentID(tt.contents, o); (got == id) != tt.same {
				t.Errorf("DeploymentID = %q, base %q, want same=%v", got, id, tt.same)
			}
		})
	}
}
