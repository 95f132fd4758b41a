package bundle_test

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/internal/metrics"
)

func counter(t *testing.T, name, label, value string) float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

type costs struct{ byBundle, byCluster, writes float64 }

func readCosts(t *testing.T) costs {
	w := 0.0
	for _, op := range []string{"create", "update", "delete"} {
		w += counter(t, "edgefleet_bundledeployment_writes_total", "op", op)
	}
	return costs{
		byBundle:  counter(t, "edgefleet_bundle_pair_recomputes_total", "trigger", "bundle"),
		byCluster: counter(t, "edgefleet_bundle_pair_recomputes_total", "trigger", "cluster"),
		writes:    w,
	}
}

// settle waits until the counters stop moving.
func settle(t *testing.T) costs {
	t.Helper()
	last := readCosts(t)
	for range 100 {
		time.Sleep(700 * time.Millisecond)
		now := readCosts(t)
		if now == last {
			return now
		}
		last = now
	}
	t.Fatal("controllers never settled")
	return last
}

// testCost checks that events recompute only the affected pairs: a cluster
// label change costs O(bundles), a bundle change O(clusters), and writes
// happen only where something changed.
func testCost(t *testing.T, e *env) {
	const nClusters, nBundles = 10, 5
	for i := range nClusters {
		e.cluster(fmt.Sprintf("c%d", i), map[string]string{"env": "dev"})
	}
	for i := range nBundles {
		sel := &metav1.LabelSelector{}
		if i == 0 {
			sel = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}
		}
		e.create(&fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("b%d", i)}, Spec: fleetv1.BundleSpec{
			Targets: []fleetv1.BundleTarget{{ClusterSelector: sel}},
		}})
	}
	for i := range nClusters {
		for j := range nBundles {
			e.mustBD(fmt.Sprintf("b%d", j), fmt.Sprintf("c%d", i))
		}
	}
	before := settle(t)

	e.setLabels("c3", map[string]string{"env": "prod"})
	ctrltest.Eventually(t, wait, func() error {
		if bd, err := e.bd("b0", "c3"); err != nil || bd != nil {
			return fmt.Errorf("b0's deployment on c3 still exists (%v)", err)
		}
		return nil
	})
	after := settle(t)
	if d := after.byBundle - before.byBundle; d != 0 {
		t.Errorf("a cluster label change recomputed %v pairs through bundle passes; want 0", d)
	}
	if d := after.byCluster - before.byCluster; d < nBundles || d > 2*nBundles {
		t.Errorf("a cluster label change recomputed %v pairs; want %d (one per bundle of the namespace), not bundles x clusters", d, nBundles)
	}
	if d := after.writes - before.writes; d != 1 {
		t.Errorf("a cluster label change wrote %v BundleDeployments; want 1 (the one deleted)", d)
	}

	e.updateBundle("b1", func(b *fleetv1.Bundle) { b.Spec.DefaultNamespace = "changed" })
	ctrltest.Eventually(t, wait, func() error {
		if bd := e.mustBD("b1", "c9"); bd.Spec.Options.DefaultNamespace != "changed" {
			return fmt.Errorf("b1 not updated on c9")
		}
		return nil
	})
	final := settle(t)
	if d := final.byBundle - after.byBundle; d < nClusters || d > 2*nClusters {
		t.Errorf("a bundle change recomputed %v pairs; want %d (one per cluster)", d, nClusters)
	}
	if d := final.byCluster - after.byCluster; d != 0 {
		t.Errorf("a bundle change recomputed %v pairs through cluster passes; want 0", d)
	}
	if d := final.writes - after.writes; d != nClusters {
		t.Errorf("a bundle change wrote %v BundleDeployments; want %d", d, nClusters)
	}
}
