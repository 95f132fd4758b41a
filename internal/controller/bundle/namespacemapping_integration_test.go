package bundle_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/controller/bundle"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
)

// testNamespaceMapping: a bundle targets only its own namespace's clusters
// until a BundleNamespaceMapping selects it and another namespace; then the
// clusters there (existing and new) get it, and removing the mapping or the
// namespace's label takes it away again. Bundles the mapping does not
// select never leave their namespace.
func testNamespaceMapping(t *testing.T, c client.Client) {
	ctx := context.Background()
	src := newEnv(t, c, "fleet-src")
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet-dst", Labels: map[string]string{"team": "a"}}}); err != nil {
		t.Fatal(err)
	}
	dst := &env{t: t, c: c, ns: "fleet-dst"}
	src.cluster("local1", nil)
	dst.cluster("edge1", nil)
	all := []fleetv1.BundleTarget{{Name: "all", ClusterSelector: &metav1.LabelSelector{}}}
	cm := []fleetv1.BundleResource{{Name: "cm.yaml", Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n"}}
	for _, name := range []string{"web", "db"} {
		src.create(&fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
			Spec: fleetv1.BundleSpec{Resources: cm, Targets: all}})
	}
	// The name a bundle of fleet-src has in fleet-dst's cluster namespaces.
	mappedName := bundle.DeploymentName("fleet-src", "web", "fleet-dst")
	bdIn := func(cluster, name string) (bool, error) {
		var bd fleetv1.BundleDeployment
		err := c.Get(ctx, types.NamespacedName{Namespace: clusterns.Name("fleet-dst", cluster), Name: name}, &bd)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && bd.DeletionTimestamp.IsZero(), err
	}
	expect := func(cluster string, want bool) {
		t.Helper()
		ctrltest.Eventually(t, wait, func() error {
			got, err := bdIn(cluster, mappedName)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("BundleDeployment of fleet-src/web on fleet-dst/%s: %v, want %v", cluster, got, want)
			}
			return nil
		})
	}

	src.mustBD("web", "local1")
	time.Sleep(time.Second) // the bundle controller has run; nothing may cross namespaces
	expect("edge1", false)

	mapping := &fleetv1.BundleNamespaceMapping{
		ObjectMeta:        metav1.ObjectMeta{Namespace: "fleet-src", Name: "web-to-team-a"},
		BundleSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}},
	}
	if err := c.Create(ctx, mapping); err != nil {
		t.Fatal(err)
	}
	expect("edge1", true)
	dst.cluster("edge2", nil) // a cluster joining the mapped namespace later
	expect("edge2", true)
	if got, err := bdIn("edge1", bundle.DeploymentName("fleet-src", "db", "fleet-dst")); err != nil || got {
		t.Errorf("bundle db, not selected by the mapping, reached fleet-dst (%v)", err)
	}

	// The namespace loses the label the mapping selects: the bundle leaves.
	var ns corev1.Namespace
	if err := c.Get(ctx, types.NamespacedName{Name: "fleet-dst"}, &ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels = nil
	if err := c.Update(ctx, &ns); err != nil {
		t.Fatal(err)
	}
	expect("edge1", false)
	expect("edge2", false)

	// Labelled again, then the mapping is deleted: gone again.
	ns.Labels = map[string]string{"team": "a"}
	if err := c.Update(ctx, &ns); err != nil {
		t.Fatal(err)
	}
	expect("edge2", true)
	if err := c.Delete(ctx, mapping); err != nil {
		t.Fatal(err)
	}
	expect("edge1", false)
	expect("edge2", false)
	src.mustBD("web", "local1")
}
