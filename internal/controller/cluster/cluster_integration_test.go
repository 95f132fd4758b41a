package cluster_test

import (
	"context"
	"fmt"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	clusterctrl "github.com/edgefleet/edgefleet/internal/controller/cluster"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
)

func TestClusterController(t *testing.T) {
	c := ctrltest.Start(t, func(m ctrl.Manager) error {
		return (&clusterctrl.Reconciler{StatusBatch: 100 * time.Millisecond}).SetupWithManager(m)
	})
	ctx := context.Background()
	const wait = 20 * time.Second
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "edge1"}}); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "fleet", Name: "edge1"}
	nsName := clusterns.Name("fleet", "edge1")

	// The namespace is created, labelled and recorded in status.
	ctrltest.Eventually(t, wait, func() error {
		var cl fleetv1.Cluster
		if err := c.Get(ctx, key, &cl); err != nil {
			return err
		}
		if cl.Status.Namespace != nsName {
			return fmt.Errorf("status.namespace = %q, want %q", cl.Status.Namespace, nsName)
		}
		var ns corev1.Namespace
		if err := c.Get(ctx, types.NamespacedName{Name: nsName}, &ns); err != nil {
			return err
		}
		for k, v := range map[string]string{fleetv1.ManagedLabel: "true", fleetv1.ClusterNameLabel: "edge1", fleetv1.ClusterNamespaceLabel: "fleet"} {
			if ns.Labels[k] != v {
				return fmt.Errorf("namespace label %s = %q, want %q", k, ns.Labels[k], v)
			}
		}
		if cl.Status.Display.State != fleetv1.ClusterStateWaitCheckIn || !meta.IsStatusConditionTrue(cl.Status.Conditions, fleetv1.ReadyCondition) {
			return fmt.Errorf("status before check-in: %+v", cl.Status)
		}
		return nil
	})

	// BundleDeployments in the namespace roll up into the cluster's status.
	labels := map[string]string{fleetv1.ClusterNameLabel: "edge1", fleetv1.ClusterNamespaceLabel: "fleet"}
	for _, name := range []string{"ready", "waiting"} {
		bd := &fleetv1.BundleDeployment{
			// As the manager creates them: with the agent's finalizer, which
			// no agent will ever remove here.
			ObjectMeta: metav1.ObjectMeta{Namespace: nsName, Name: name, Labels: labels, Finalizers: []string{fleetv1.AgentCleanupFinalizer}},
			Spec:       fleetv1.BundleDeploymentSpec{DeploymentID: "s-1:a", StagedDeploymentID: "s-1:a", BundleName: name, BundleNamespace: "fleet"},
		}
		if err := c.Create(ctx, bd); err != nil {
			t.Fatal(err)
		}
		if name == "ready" {
			bd.Status = fleetv1.BundleDeploymentStatus{AppliedDeploymentID: "s-1:a", Ready: true, NonModified: true}
			if err := c.Status().Update(ctx, bd); err != nil {
				t.Fatal(err)
			}
		}
	}
	var cl fleetv1.Cluster
	if err := c.Get(ctx, key, &cl); err != nil {
		t.Fatal(err)
	}
	cl.Status.Agent.LastSeen = metav1.Now()
	if err := c.Status().Update(ctx, &cl); err != nil {
		t.Fatal(err)
	}
	ctrltest.Eventually(t, wait, func() error {
		if err := c.Get(ctx, key, &cl); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(cl.Status.Conditions, fleetv1.ReadyCondition)
		if cl.Status.Display.ReadyBundles != "1/2" || cl.Status.ReadyBundles != 1 || cl.Status.DesiredReadyBundles != 2 ||
			cl.Status.Summary.WaitApplied != 1 || cl.Status.Display.State != string(fleetv1.WaitApplied) {
			return fmt.Errorf("rollup %+v", cl.Status)
		}
		if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != fleetv1.BundlesNotReadyReason ||
			!strings.Contains(ready.Message, "WaitApplied(1) [Bundle fleet/waiting") {
			return fmt.Errorf("Ready condition %+v", ready)
		}
		return nil
	})

	// A rollout is recorded on its Bundle, not as an Event per Cluster:
	// Ready (True, then False BundlesNotReady) recorded none, while the
	// agent's check-in (Connected) still did, in the same status write.
	ctrltest.Eventually(t, wait, func() error {
		var evs corev1.EventList
		if err := c.List(ctx, &evs, client.InNamespace("fleet")); err != nil {
			return err
		}
		reasons := map[string]bool{}
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == "Cluster" && e.InvolvedObject.Name == "edge1" {
				reasons[e.Reason] = true
			}
		}
		if reasons[fleetv1.SucceededReason] || reasons[fleetv1.BundlesNotReadyReason] {
			t.Fatalf("the Cluster's Ready changes were recorded as Events: %v", reasons)
		}
		if !reasons[fleetv1.AgentConnectedReason] {
			return fmt.Errorf("no %s Event on the Cluster yet: %v", fleetv1.AgentConnectedReason, reasons)
		}
		return nil
	})

	// Deleting the Cluster deletes its BundleDeployments (releasing the
	// finalizers of an agent that can no longer act) and namespace.
	if err := c.Delete(ctx, &cl); err != nil {
		t.Fatal(err)
	}
	ctrltest.Eventually(t, wait, func() error {
		if err := c.Get(ctx, key, &cl); !apierrors.IsNotFound(err) {
			return fmt.Errorf("cluster still exists (%v)", err)
		}
		var bds fleetv1.BundleDeploymentList
		if err := c.List(ctx, &bds); err != nil {
			return err
		}
		if len(bds.Items) > 0 {
			return fmt.Errorf("%d BundleDeployments left", len(bds.Items))
		}
		var ns corev1.Namespace
		err := c.Get(ctx, types.NamespacedName{Name: nsName}, &ns)
		// Without kube-controller-manager a deleted namespace stays
		// Terminating; deleted is what matters.
		if err == nil && ns.DeletionTimestamp.IsZero() {
			return fmt.Errorf("namespace %s not deleted", nsName)
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	})
}
