// Package clustergroup keeps ClusterGroup status: how many clusters the
// group selects, which of them are not ready, and their bundles' summary.
package clustergroup

import (
	"context"
	"fmt"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlestate"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/controller/queue"
)

// DefaultBatch is how long Cluster changes are collected before a group's
// status is recomputed once.
const DefaultBatch = time.Second

// Reconciler keeps ClusterGroup status.
type Reconciler struct {
	Client client.Client
	// Batch defaults to DefaultBatch.
	Batch time.Duration
	// Events records condition changes; SetupWithManager uses the
	// manager's recorder when nil.
	Events events.EventRecorder
}

// SetupWithManager registers the controller. A Cluster change re-evaluates
// only the groups of the cluster's namespace.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.Batch <= 0 {
		r.Batch = DefaultBatch
	}
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder("edgefleet-clustergroup")
	}
	enqueueGroups := func(ctx context.Context, o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		var groups fleetv1.ClusterGroupList
		if err := r.Client.List(ctx, &groups, client.InNamespace(o.GetNamespace())); err != nil {
			logf.FromContext(ctx).Error(err, "Listing cluster groups for a changed Cluster")
			return
		}
		for _, g := range groups.Items {
			q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: g.Namespace, Name: g.Name}}, r.Batch)
		}
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("clustergroup").
		For(&fleetv1.ClusterGroup{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&fleetv1.Cluster{}, handler.TypedFuncs[client.Object, reconcile.Request]{
			CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				enqueueGroups(ctx, e.Object, q)
			},
			UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				o, n := e.ObjectOld.(*fleetv1.Cluster), e.ObjectNew.(*fleetv1.Cluster)
				if o != nil && n != nil && equality.Semantic.DeepEqual(o.Labels, n.Labels) &&
					equality.Semantic.DeepEqual(o.Status.Summary, n.Status.Summary) &&
					equality.Semantic.DeepEqual(o.Status.Display, n.Status.Display) &&
					meta.IsStatusConditionTrue(o.Status.Conditions, fleetv1.ReadyCondition) == meta.IsStatusConditionTrue(n.Status.Conditions, fleetv1.ReadyCondition) {
					return // heartbeats and the like
				}
				enqueueGroups(ctx, e.ObjectNew, q)
			},
			DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				enqueueGroups(ctx, e.Object, q)
			},
		}).
		WithOptions(queue.Options(2)).
		Complete(r)
	if err != nil {
		return fmt.Errorf("creating clustergroup controller: %w", err)
	}
	return nil
}

// Reconcile recomputes one group's status from the clusters of its
// namespace.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var group fleetv1.ClusterGroup
	if err := r.Client.Get(ctx, req.NamespacedName, &group); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	updated := group.DeepCopy()
	status := &updated.Status
	gen := group.Generation
	var selector labels.Selector
	if group.Spec.Selector != nil {
		s, err := metav1.LabelSelectorAsSelector(group.Spec.Selector)
		if err != nil {
			msg := fmt.Sprintf("ClusterGroup %s: invalid spec.selector: %v; fix the selector", req.NamespacedName, err)
			conditions.MarkStalled(&status.Conditions, fleetv1.InvalidSpecReason, msg, gen)
			return ctrl.Result{}, conditions.PatchStatus(ctx, r.Client, &group, updated, nil, nil, conditions.RecordTo(r.Events))
		}
		selector = s
	}
	meta.RemoveStatusCondition(&status.Conditions, fleetv1.StalledCondition)

	var clusters fleetv1.ClusterList
	if selector != nil {
		if err := r.Client.List(ctx, &clusters, client.InNamespace(group.Namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
			return ctrl.Result{}, fmt.Errorf("listing clusters: %w", err)
		}
	}
	computeStatus(status, clusters.Items, gen)
	status.ObservedGeneration = gen
	return ctrl.Result{}, conditions.PatchStatus(ctx, r.Client, &group, updated, nil, nil, conditions.RecordTo(r.Events))
}

// Ready reports whether a cluster counts as ready for its groups: its
// Ready condition is True, or, before the cluster controller has run, all
// its bundles are ready.
func Ready(c *fleetv1.Cluster) bool {
	if cond := meta.FindStatusCondition(c.Status.Conditions, fleetv1.ReadyCondition); cond != nil {
		return cond.Status == metav1.ConditionTrue
	}
	return c.Status.ReadyBundles == c.Status.DesiredReadyBundles
}

func computeStatus(st *fleetv1.ClusterGroupStatus, clusters []fleetv1.Cluster, gen int64) {
	sort.Slice(clusters, func(i, j int) bool { return clusters[i].Name < clusters[j].Name })
	var summary fleetv1.BundleSummary
	var nonReady []string
	worst := fleetv1.BundleState("")
	for i := range clusters {
		c := &clusters[i]
		bundlestate.AddSummary(&summary, c.Status.Summary)
		worst = bundlestate.Worse(worst, bundlestate.WorstState(c.Status.Summary))
		if !Ready(c) {
			nonReady = append(nonReady, c.Name)
		}
	}
	bundlestate.SortNonReady(&summary)
	st.ClusterCount = int32(len(clusters))
	st.NonReadyClusterCount = int32(len(nonReady))
	st.NonReadyClusters = nonReady[:min(len(nonReady), bundlestate.MaxNonReady)]
	st.Summary = summary
	st.Display.ReadyClusters = fmt.Sprintf("%d/%d", len(clusters)-len(nonReady), len(clusters))
	st.Display.ReadyBundles = fmt.Sprintf("%d/%d", summary.Ready, summary.DesiredReady)
	st.Display.State = string(worst)
	switch {
	case len(clusters) == 0:
		conditions.Set(&st.Conditions, fleetv1.ReadyCondition, metav1.ConditionTrue, fleetv1.NoClustersReason, "The selector matches no clusters", gen)
	case len(nonReady) == 0:
		conditions.Set(&st.Conditions, fleetv1.ReadyCondition, metav1.ConditionTrue, fleetv1.SucceededReason, fmt.Sprintf("%d/%d clusters ready", len(clusters), len(clusters)), gen)
	default:
		msg := fmt.Sprintf("%d/%d clusters not ready: %v", len(nonReady), len(clusters), st.NonReadyClusters)
		if len(nonReady) > len(st.NonReadyClusters) {
			msg += " and more"
		}
		conditions.Set(&st.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, fleetv1.ClustersNotReadyReason, msg, gen)
	}
}
