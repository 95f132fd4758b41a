package bundle

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/targeting"
)

func valuesCluster(name string, labels map[string]string, values string) *fleetv1.Cluster {
	c := &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "fleet-default", Labels: labels}}
	if values != "" {
		c.Spec.TemplateValues = &runtime.RawExtension{Raw: []byte(values)}
	}
	return c
}

// TestForClusterDeploymentIDs: a pair's deployment ID follows what the
// cluster's labels and templateValues put into its Helm values, and nothing
// else about the cluster.
func TestForClusterDeploymentIDs(t *testing.T) {
	templated := fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{
		Values: &runtime.RawExtension{Raw: []byte(`{"region":"${ .ClusterLabels.region }","size":"${ .ClusterValues.size }"}`)},
	}}
	raw := fleetv1.BundleDeploymentOptions{DefaultNamespace: "app"}
	base := valuesCluster("edge-1", map[string]string{"region": "eu"}, `{"size":"s"}`)
	id := func(t *testing.T, opts fleetv1.BundleDeploymentOptions, c *fleetv1.Cluster) string {
		t.Helper()
		o, err := forCluster(opts, c)
		if err != nil {
			t.Fatal(err)
		}
		return targeting.DeploymentID("s-1", o)
	}
	for _, tt := range []struct {
		name    string
		opts    fleetv1.BundleDeploymentOptions
		cluster *fleetv1.Cluster
		same    bool
	}{
		{"a label the values use changes the ID", templated, valuesCluster("edge-1", map[string]string{"region": "us"}, `{"size":"s"}`), false},
		{"templateValues change the ID", templated, valuesCluster("edge-1", map[string]string{"region": "eu"}, `{"size":"l"}`), false},
		{"another cluster with the same inputs gets the same ID", templated, valuesCluster("edge-2", map[string]string{"region": "eu"}, `{"size":"s"}`), true},
		{"a bundle without helm ignores labels and values", raw, valuesCluster("edge-1", map[string]string{"region": "us"}, `{"size":"l"}`), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := id(t, tt.opts, base) == id(t, tt.opts, tt.cluster); got != tt.same {
				t.Fatalf("same ID = %v, want %v", got, tt.same)
			}
		})
	}
	if _, err := forCluster(templated, valuesCluster("edge-3", nil, "")); err == nil || !strings.Contains(err.Error(), "fleet-default/edge-3") {
		t.Fatalf("error = %v, want one naming the cluster", err)
	}
}

// BenchmarkForCluster is the manager's added cost per (bundle, cluster)
// pair of a Helm bundle: 20 values, 5 of them templated from 10 labels.
func BenchmarkForCluster(b *testing.B) {
	labels := map[string]string{}
	for i := range 10 {
		labels[fmt.Sprintf("label-%d", i)] = fmt.Sprintf("value-%d", i)
	}
	var values []string
	for i := range 20 {
		v := fmt.Sprintf(`"plain-%d"`, i)
		if i%4 == 0 {
			v = fmt.Sprintf(`"${ index .ClusterLabels \"label-%d\" }"`, i%10)
		}
		values = append(values, fmt.Sprintf(`"k%d":%s`, i, v))
	}
	opts := fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Values: &runtime.RawExtension{Raw: []byte("{" + strings.Join(values, ",") + "}")}}}
	c := valuesCluster("edge-1", labels, `{"size":"s","limits":{"cpu":"2"}}`)
	if _, err := forCluster(opts, c); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := forCluster(opts, c); err != nil {
			b.Fatal(err)
		}
	}
}
