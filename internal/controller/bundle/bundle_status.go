package bundle

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlestate"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/controller/queue"
	"github.com/edgefleet/edgefleet/internal/targeting"
)

// statusReconciler recomputes a Bundle's status from its own
// BundleDeployments when their status changes: O(its deployments), batched
// by StatusBatch so a burst of agent reports costs one pass.
type statusReconciler struct{ *Reconciler }

func (r *statusReconciler) setup(mgr ctrl.Manager) error {
	toBundle := func(o client.Object) (reconcile.Request, bool) {
		bd, ok := o.(*fleetv1.BundleDeployment)
		if !ok || bd.Spec.BundleName == "" {
			return reconcile.Request{}, false
		}
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: bd.Spec.BundleNamespace, Name: bd.Spec.BundleName}}, true
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("bundle-status").
		Watches(&fleetv1.BundleDeployment{}, queue.Batched(r.StatusBatch, toBundle)).
		WithOptions(queue.Options(workers)).
		Complete(r)
	if err != nil {
		return fmt.Errorf("creating bundle-status controller: %w", err)
	}
	return nil
}

func (r *statusReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var bundle fleetv1.Bundle
	if err := r.Client.Get(ctx, req.NamespacedName, &bundle); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !bundle.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	if _, err := targeting.NewBundleMatcher(&bundle); err != nil {
		return ctrl.Result{}, nil // the bundle controller reports it
	}
	if !targeting.Unconstrained(bundle.Spec.RolloutStrategy) {
		// A deployment becoming ready may free budget for the next
		// clusters, and partition counts need the clusters: full pass.
		r.enqueueRollout(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	bds, err := r.deploymentsOf(ctx, req.NamespacedName)
	if err != nil {
		return ctrl.Result{}, err
	}
	updated := bundle.DeepCopy()
	computeStatus(&updated.Status, &bundle, bds, nil)
	return ctrl.Result{}, conditions.PatchStatus(ctx, r.Client, &bundle, updated, nil, nil, conditions.RecordTo(r.Events))
}

// pendingTarget is a matched cluster without a BundleDeployment yet, and
// why (its Pending message).
type pendingTarget struct {
	cluster, why string
}

// Why a matched cluster has no BundleDeployment yet.
const (
	waitingForNamespace = "waiting for the cluster's namespace"
	waitingForWrite     = "its BundleDeployment could not be written yet; retrying"
)

// waitingForMaxNew: the cluster waits for a later pass because
// rolloutStrategy.maxNew caps the new BundleDeployments of one.
func waitingForMaxNew(rs *fleetv1.RolloutStrategy) string {
	n := int32(0)
	if rs != nil && rs.MaxNew != nil {
		n = *rs.MaxNew
	}
	return fmt.Sprintf("waiting for the rollout budget: rolloutStrategy.maxNew creates at most %d new BundleDeployments per pass", n)
}

// computeStatus fills summary, counts, display and conditions from the
// bundle's deployments and the matched clusters that have none yet.
func computeStatus(st *fleetv1.BundleStatus, bundle *fleetv1.Bundle, bds []*fleetv1.BundleDeployment, pending []pendingTarget) {
	entries := make([]bundlestate.Entry, 0, len(bds)+len(pending))
	for _, bd := range bds {
		entries = append(entries, bundlestate.Entry{Name: clusterRef(bd), State: bundlestate.State(bd), Message: bundlestate.Message(bd)})
	}
	for _, p := range pending {
		entries = append(entries, bundlestate.Entry{Name: p.cluster, State: fleetv1.Pending, Message: p.why})
	}
	s := bundlestate.Summarize(entries)
	st.Summary = s
	st.ReadyClusters = s.Ready
	st.DesiredReadyClusters = s.DesiredReady
	st.Display.ReadyClusters = fmt.Sprintf("%d/%d", s.Ready, s.DesiredReady)
	st.Display.State = string(bundlestate.WorstState(s))

	gen := bundle.Generation
	meta.RemoveStatusCondition(&st.Conditions, fleetv1.StalledCondition)
	switch {
	case s.DesiredReady == 0:
		conditions.Set(&st.Conditions, fleetv1.ReadyCondition, metav1.ConditionTrue, fleetv1.NoTargetsReason, "The bundle's targets match no cluster", gen)
	case s.Ready == s.DesiredReady:
		conditions.Set(&st.Conditions, fleetv1.ReadyCondition, metav1.ConditionTrue, fleetv1.SucceededReason, fmt.Sprintf("Ready on %d/%d clusters", s.Ready, s.DesiredReady), gen)
	case bundle.Spec.Paused && s.OutOfSync > 0:
		conditions.Set(&st.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, fleetv1.PausedReason, "Paused: "+bundlestate.ReadyMessage(s, "Cluster"), gen)
	default:
		conditions.Set(&st.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, fleetv1.TargetsNotReadyReason, bundlestate.ReadyMessage(s, "Cluster"), gen)
	}
	rolling := s.WaitApplied+s.Pending > 0 || (!bundle.Spec.Paused && s.OutOfSync > 0)
	if rolling {
		conditions.Set(&st.Conditions, fleetv1.ReconcilingCondition, metav1.ConditionTrue, fleetv1.RolloutInProgressReason,
			fmt.Sprintf("Rolling out: %d waiting for agents, %d held back, %d pending", s.WaitApplied, s.OutOfSync, s.Pending), gen)
	} else {
		meta.RemoveStatusCondition(&st.Conditions, fleetv1.ReconcilingCondition)
	}
}

// setInvalid marks a bundle whose spec cannot be acted on; its existing
// deployments are left alone.
func setInvalid(st *fleetv1.BundleStatus, bundle *fleetv1.Bundle, err error) {
	msg := fmt.Sprintf("Bundle %s/%s: %v", bundle.Namespace, bundle.Name, err)
	conditions.Set(&st.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, fleetv1.InvalidSpecReason, msg, bundle.Generation)
	conditions.Set(&st.Conditions, fleetv1.StalledCondition, metav1.ConditionTrue, fleetv1.InvalidSpecReason, msg, bundle.Generation)
	meta.RemoveStatusCondition(&st.Conditions, fleetv1.ReconcilingCondition)
}

// clusterRef names a deployment's cluster as "<namespace>/<name>".
func clusterRef(bd *fleetv1.BundleDeployment) string {
	ns, name := bd.Labels[fleetv1.ClusterNamespaceLabel], bd.Labels[fleetv1.ClusterNameLabel]
	if name == "" {
		return bd.Namespace
	}
	return ns + "/" + name
}
