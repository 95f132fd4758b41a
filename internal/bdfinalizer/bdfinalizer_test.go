package bdfinalizer_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bdfinalizer"
	"github.com/edgefleet/edgefleet/test/harness"
)

// TestLifecycle walks the finalizer through its steps against a real
// kube-apiserver: set at creation, ensured, released (also when already
// gone), released for a whole namespace, and a deletion that then completes.
func TestLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver; skipped with -short")
	}
	c := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0].Client
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "cluster-a"}}); err != nil {
		t.Fatal(err)
	}
	create := func(name string, withFinalizer bool) *fleetv1.BundleDeployment {
		bd := &fleetv1.BundleDeployment{ObjectMeta: metav1.ObjectMeta{Namespace: "cluster-a", Name: name}}
		if withFinalizer {
			bdfinalizer.Set(bd)
		}
		if err := c.Create(ctx, bd); err != nil {
			t.Fatal(err)
		}
		return bd
	}
	has := func(bd *fleetv1.BundleDeployment) bool {
		t.Helper()
		var got fleetv1.BundleDeployment
		if err := c.Get(ctx, client.ObjectKeyFromObject(bd), &got); err != nil {
			t.Fatal(err)
		}
		return bdfinalizer.Has(&got)
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"set at creation", func(t *testing.T) {
			if bd := create("set", true); !has(bd) {
				t.Error("finalizer missing after Set and create")
			}
		}},
		{"ensured when missing, once", func(t *testing.T) {
			bd := create("ensure", false)
			for range 2 {
				if err := bdfinalizer.Ensure(ctx, c, bd); err != nil {
					t.Fatal(err)
				}
			}
			if !has(bd) || len(bd.Finalizers) != 1 {
				t.Errorf("finalizers %v after Ensure twice", bd.Finalizers)
			}
		}},
		{"released, and a deletion completes", func(t *testing.T) {
			bd := create("release", true)
			if err := c.Delete(ctx, bd); err != nil {
				t.Fatal(err)
			}
			if err := c.Get(ctx, client.ObjectKeyFromObject(bd), bd); err != nil {
				t.Fatal(err)
			}
			if err := bdfinalizer.Release(ctx, c, bd, false); err != nil {
				t.Fatal(err)
			}
			if err := c.Get(ctx, client.ObjectKeyFromObject(bd), &fleetv1.BundleDeployment{}); err == nil {
				t.Error("BundleDeployment still exists after its finalizer was released")
			}
			// Already gone: no error.
			bdfinalizer.Set(bd)
			if err := bdfinalizer.Release(ctx, c, bd, true); err != nil {
				t.Errorf("Release of a deleted BundleDeployment: %v", err)
			}
		}},
		{"released for a whole namespace", func(t *testing.T) {
			a, b := create("all-a", true), create("all-b", true)
			if err := bdfinalizer.ReleaseAll(ctx, c, "cluster-a"); err != nil {
				t.Fatal(err)
			}
			if has(a) || has(b) {
				t.Error("ReleaseAll left a finalizer")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}
