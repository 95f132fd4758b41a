package clustergroup_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/clustergroup"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
)

func TestClusterGroupController(t *testing.T) {
	c := ctrltest.Start(t, func(m ctrl.Manager) error {
		return (&clustergroup.Reconciler{Batch: 100 * time.Millisecond}).SetupWithManager(m)
	})
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}}); err != nil {
		t.Fatal(err)
	}
	mk := func(name, env string, ready bool) {
		cl := &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: name, Labels: map[string]string{"env": env}}}
		if err := c.Create(ctx, cl); err != nil {
			t.Fatal(err)
		}
		status := metav1.ConditionTrue
		if !ready {
			status = metav1.ConditionFalse
		}
		meta.SetStatusCondition(&cl.Status.Conditions, metav1.Condition{Type: fleetv1.ReadyCondition, Status: status, Reason: "Test"})
		if err := c.Status().Update(ctx, cl); err != nil {
			t.Fatal(err)
		}
	}
	mk("p1", "prod", true)
	mk("p2", "prod", false)
	mk("d1", "dev", true)
	if err := c.Create(ctx, &fleetv1.ClusterGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "prod"},
		Spec: fleetv1.ClusterGroupSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}}); err != nil {
		t.Fatal(err)
	}
	expect := func(count int32, display string, nonReady []string) {
		t.Helper()
		ctrltest.Eventually(t, 20*time.Second, func() error {
			var g fleetv1.ClusterGroup
			if err := c.Get(ctx, types.NamespacedName{Namespace: "fleet", Name: "prod"}, &g); err != nil {
				return err
			}
			if g.Status.ClusterCount != count || g.Status.Display.ReadyClusters != display || fmt.Sprint(g.Status.NonReadyClusters) != fmt.Sprint(nonReady) {
				return fmt.Errorf("status %+v", g.Status)
			}
			if meta.IsStatusConditionTrue(g.Status.Conditions, fleetv1.ReadyCondition) != (len(nonReady) == 0) {
				return fmt.Errorf("Ready condition %+v", g.Status.Conditions)
			}
			return nil
		})
	}
	expect(2, "1/2", []string{"p2"})

	// A label change moves a cluster into the group.
	var d1 fleetv1.Cluster
	if err := c.Get(ctx, types.NamespacedName{Namespace: "fleet", Name: "d1"}, &d1); err != nil {
		t.Fatal(err)
	}
	d1.Labels["env"] = "prod"
	if err := c.Update(ctx, &d1); err != nil {
		t.Fatal(err)
	}
	expect(3, "2/3", []string{"p2"})

	// p2 becomes ready: the group is Ready.
	var p2 fleetv1.Cluster
	if err := c.Get(ctx, types.NamespacedName{Namespace: "fleet", Name: "p2"}, &p2); err != nil {
		t.Fatal(err)
	}
	meta.SetStatusCondition(&p2.Status.Conditions, metav1.Condition{Type: fleetv1.ReadyCondition, Status: metav1.ConditionTrue, Reason: "Test"})
	if err := c.Status().Update(ctx, &p2); err != nil {
		t.Fatal(err)
	}
	expect(3, "3/3", nil)

	// Events tell the story once per condition change, with the
	// condition's reason: ClustersNotReady (a Warning) once, although its
	// message changed from 1/2 to 2/3 in between, then Succeeded.
	ctrltest.Eventually(t, 20*time.Second, func() error {
		var list eventsv1.EventList
		if err := c.List(ctx, &list, client.InNamespace("fleet")); err != nil {
			return err
		}
		var got []string
		for _, e := range list.Items {
			if e.Regarding.Kind == "ClusterGroup" && e.Regarding.Name == "prod" {
				got = append(got, e.Type+"/"+e.Reason)
			}
		}
		sort.Strings(got)
		if want := []string{"Normal/" + fleetv1.SucceededReason, "Warning/" + fleetv1.ClustersNotReadyReason}; fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("events %v, want %v", got, want)
		}
		return nil
	})
}
