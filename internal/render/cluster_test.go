package render

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/jsonvalue"
)

// TestResolveForClusterRendersLikeEdgefleetTest: values resolved in the
// manager and rendered by an agent that knows nothing of the cluster give
// what `edgefleet test` renders with the cluster's context, for templates,
// label references, disablePreProcess and the injected labels.
func TestResolveForClusterRendersLikeEdgefleetTest(t *testing.T) {
	cluster := &fleetv1.Cluster{}
	cluster.Name, cluster.Namespace = "edge-1", "fleet-default"
	cluster.Labels = map[string]string{"env": "prod", "region": "eu"}
	cluster.Annotations = map[string]string{"owner": "team-a"}
	cluster.Spec.TemplateValues = &runtime.RawExtension{Raw: []byte(`{"replicas":3,"tier":{"name":"gold"}}`)}
	tc, err := ClusterTemplateContext(cluster)
	if err != nil {
		t.Fatal(err)
	}
	tc.BundleName = "demo"
	for _, tt := range []struct {
		name   string
		values string
		noPre  bool
	}{
		{name: "templates over every input", values: "replicas: ${ .ClusterValues.replicas }\nenv: ${ .ClusterLabels.env }\nname: app-${ .ClusterName }\nns: ${ .ClusterNamespace }\nowner: ${ .ClusterAnnotations.owner }\ntier: ${ .ClusterValues.tier }\n"},
		{name: "label references", values: "env: global.fleet.clusterLabels.region\nname: fixed\n"},
		{name: "disablePreProcess keeps templates", values: "env: '${ .ClusterName }'\nname: fixed\n", noPre: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := fleetv1.BundleDeploymentOptions{DefaultNamespace: "demo", Helm: &fleetv1.HelmOptions{
				Chart: "./chart", Values: jsonValues(t, tt.values), DisablePreProcess: tt.noPre,
			}}
			want := mustRender(t, bundle(testChart), opts, tc)
			resolved, err := ResolveForCluster(opts, tc)
			if err != nil {
				t.Fatal(err)
			}
			if !resolved.Helm.ValuesResolved {
				t.Fatal("resolved options are not marked valuesResolved")
			}
			if opts.Helm.ValuesResolved || string(opts.Helm.Values.Raw) == string(resolved.Helm.Values.Raw) {
				t.Fatal("ResolveForCluster changed its input or resolved nothing")
			}
			// The agent: the bundle's name, but no cluster information.
			got := mustRender(t, bundle(testChart), resolved, TemplateContext{BundleName: "demo"})
			if !jsonvalue.Equal(got.Values, want.Values) {
				t.Fatalf("agent values %v, want edgefleet test's %v", got.Values, want.Values)
			}
			equal(t, "objects", ids(got.Objects), ids(want.Objects))
			for i := range got.Objects {
				if !jsonvalue.Equal(got.Objects[i].Object, want.Objects[i].Object) {
					t.Fatalf("object %s differs:\n got %v\nwant %v", ids(got.Objects)[i], got.Objects[i].Object, want.Objects[i].Object)
				}
			}
		})
	}
}

func TestResolveForCluster(t *testing.T) {
	tc := TemplateContext{ClusterName: "edge-1", ClusterLabels: map[string]string{"env": "prod"}}
	for _, tt := range []struct {
		name    string
		opts    fleetv1.BundleDeploymentOptions
		want    string // resolved values JSON; "" for unchanged options
		wantErr string
	}{
		{name: "no helm section is unchanged", opts: fleetv1.BundleDeploymentOptions{DefaultNamespace: "x"}},
		{name: "no values still injects the labels", opts: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{}},
			want: `{"global":{"fleet":{"clusterLabels":{"env":"prod"}}}}`},
		{name: "a Bundle cannot skip resolution by claiming it", opts: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{ValuesResolved: true, Values: &runtime.RawExtension{Raw: []byte(`{"e":"${ .ClusterLabels.env }"}`)}}},
			want: `{"e":"prod","global":{"fleet":{"clusterLabels":{"env":"prod"}}}}`},
		{name: "a missing key names the value", opts: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Values: &runtime.RawExtension{Raw: []byte(`{"size":"${ .ClusterValues.size }"}`)}}},
			wantErr: "helm.values.size"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveForCluster(tt.opts, tc)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if !jsonvalue.Equal(got, tt.opts) {
					t.Fatalf("options changed: %+v", got)
				}
				return
			}
			var g, w any
			_ = json.Unmarshal(got.Helm.Values.Raw, &g)
			_ = json.Unmarshal([]byte(tt.want), &w)
			if !jsonvalue.Equal(g, w) || !got.Helm.ValuesResolved {
				t.Fatalf("values %s (resolved %v), want %s", got.Helm.Values.Raw, got.Helm.ValuesResolved, tt.want)
			}
		})
	}
}

func TestClusterTemplateContextRejectsNonMapValues(t *testing.T) {
	c := &fleetv1.Cluster{}
	c.Name, c.Namespace = "edge-1", "fleet-default"
	c.Spec.TemplateValues = &runtime.RawExtension{Raw: []byte(`[1,2]`)}
	if _, err := ClusterTemplateContext(c); err == nil || !strings.Contains(err.Error(), "fleet-default/edge-1") {
		t.Fatalf("error = %v, want one naming the cluster", err)
	}
}
