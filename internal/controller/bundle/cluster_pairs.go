package bundle

import (
	"context"
	"errors"
	"fmt"
	"maps"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/controller/queue"
	"github.com/edgefleet/edgefleet/internal/jsonvalue"
	"github.com/edgefleet/edgefleet/internal/targeting"
)

// clusterReconciler recomputes the pairs of one Cluster over the bundles of
// its namespace and those mapped to it (BundleNamespaceMapping):
// O(bundles), whatever the number of clusters. It runs when
// what targeting depends on changes: the cluster's labels, pause, namespace
// or connectivity, or a ClusterGroup it is (or was) a member of.
type clusterReconciler struct{ *Reconciler }

func (r *clusterReconciler) setup(mgr ctrl.Manager) error {
	err := ctrl.NewControllerManagedBy(mgr).
		Named("bundle-cluster").
		For(&fleetv1.Cluster{}, builder.WithPredicates(clusterTargetingChanged())).
		Watches(&fleetv1.ClusterGroup{}, r.groupHandler()).
		Watches(&fleetv1.BundleDeployment{}, r.deletedDeploymentHandler()).
		WithOptions(queue.Options(workers)).
		Complete(r)
	if err != nil {
		return fmt.Errorf("creating bundle-cluster controller: %w", err)
	}
	return nil
}

// clusterTargetingChanged passes cluster events that can change targeting.
func clusterTargetingChanged() predicate.Predicate {
	return predicate.Funcs{
		DeleteFunc: func(event.DeleteEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*fleetv1.Cluster)
			n, ok2 := e.ObjectNew.(*fleetv1.Cluster)
			if !ok1 || !ok2 {
				return true
			}
			// Annotations and spec.templateValues (generation) feed
			// Helm values templates too.
			return !maps.Equal(o.Labels, n.Labels) ||
				!maps.Equal(o.Annotations, n.Annotations) ||
				o.Generation != n.Generation ||
				o.Status.Namespace != n.Status.Namespace ||
				offline(o) != offline(n) ||
				o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero()
		},
	}
}

// groupHandler enqueues the clusters a changed group selects, before or
// after the change.
func (r *clusterReconciler) groupHandler() handler.EventHandler {
	enqueue := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], groups ...client.Object) {
		var selectors []labels.Selector
		ns := ""
		for _, o := range groups {
			g, ok := o.(*fleetv1.ClusterGroup)
			if !ok || g.Spec.Selector == nil {
				continue
			}
			ns = g.Namespace
			if s, err := metav1.LabelSelectorAsSelector(g.Spec.Selector); err == nil {
				selectors = append(selectors, s)
			}
		}
		if len(selectors) == 0 {
			return
		}
		var clusters fleetv1.ClusterList
		if err := r.Client.List(ctx, &clusters, client.InNamespace(ns)); err != nil {
			logf.FromContext(ctx).Error(err, "Listing clusters for a changed ClusterGroup")
			return
		}
		for i := range clusters.Items {
			c := &clusters.Items[i]
			for _, s := range selectors {
				if s.Matches(labels.Set(c.Labels)) {
					q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: c.Namespace, Name: c.Name}})
					break
				}
			}
		}
	}
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q, e.Object)
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			o, n := e.ObjectOld.(*fleetv1.ClusterGroup), e.ObjectNew.(*fleetv1.ClusterGroup)
			if o != nil && n != nil && maps.Equal(o.Labels, n.Labels) && jsonvalue.Equal(o.Spec, n.Spec) {
				return
			}
			enqueue(ctx, q, e.ObjectOld, e.ObjectNew)
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q, e.Object)
		},
	}
}

// deletedDeploymentHandler re-checks a cluster whose BundleDeployment was
// deleted while its bundle still exists (someone deleted it by hand), so
// it is recreated. Deletions by the bundle controller (bundle gone) are
// skipped, so deleting a bundle does not fan out to every cluster.
func (r *clusterReconciler) deletedDeploymentHandler() handler.EventHandler {
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			bd, ok := e.Object.(*fleetv1.BundleDeployment)
			if !ok || bd.Spec.BundleName == "" {
				return
			}
			var b fleetv1.Bundle
			if err := r.Client.Get(ctx, types.NamespacedName{Namespace: bd.Spec.BundleNamespace, Name: bd.Spec.BundleName}, &b); err != nil || !b.DeletionTimestamp.IsZero() {
				return
			}
			ns, name := bd.Labels[fleetv1.ClusterNamespaceLabel], bd.Labels[fleetv1.ClusterNameLabel]
			if name == "" {
				return
			}
			q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}, r.StatusBatch)
		},
	}
}

func (r *clusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var cluster fleetv1.Cluster
	if err := r.Client.Get(ctx, req.NamespacedName, &cluster); err != nil {
		// A deleted cluster's deployments go with its namespace (cluster
		// controller).
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	clusterNS, ready := clusterns.Of(&cluster)
	if !cluster.DeletionTimestamp.IsZero() || !ready {
		return ctrl.Result{}, nil
	}
	var bundles fleetv1.BundleList
	if err := r.Client.List(ctx, &bundles, client.InNamespace(cluster.Namespace)); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing bundles: %w", err)
	}
	mapped, err := r.mappedBundles(ctx, cluster.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	bundles.Items = append(bundles.Items, mapped...)
	groups, err := listGroups(ctx, r.Client, cluster.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	var list fleetv1.BundleDeploymentList
	if err := r.Client.List(ctx, &list, client.InNamespace(clusterNS)); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing bundle deployments of cluster %s: %w", req.NamespacedName, err)
	}
	byBundle := map[types.NamespacedName]*fleetv1.BundleDeployment{}
	for i := range list.Items {
		bd := &list.Items[i]
		byBundle[types.NamespacedName{Namespace: bd.Spec.BundleNamespace, Name: bd.Spec.BundleName}] = bd
	}

	var errs []error
	// Writes and deletes are collected and sent concurrently (see inParallel).
	type pairWrite struct{ current, desired *fleetv1.BundleDeployment }
	var writes []pairWrite
	for i := range bundles.Items {
		bundle := &bundles.Items[i]
		key := types.NamespacedName{Namespace: bundle.Namespace, Name: bundle.Name}
		current := byBundle[key]
		delete(byBundle, key)
		if !bundle.DeletionTimestamp.IsZero() {
			continue
		}
		matcher, err := targeting.NewBundleMatcher(bundle)
		if err != nil {
			continue // invalid bundles keep their deployments; the bundle controller reports why
		}
		pairRecomputes.WithLabelValues("cluster").Inc()
		opts, _, ok := matcher.Target(&cluster, groups)
		if !ok {
			if current != nil {
				log.V(1).Info("Cluster no longer targeted", "Bundle", klog.KRef(key.Namespace, key.Name))
				writes = append(writes, pairWrite{current: current})
			}
			continue
		}
		if opts, err = forCluster(opts, &cluster); err != nil {
			// The bundle controller reports it; the deployment stays.
			r.enqueueRollout(key)
			continue
		}
		contentsID, err := r.contentsID(ctx, bundle)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		paused := bundle.Spec.Paused || cluster.Spec.Paused
		t := &targeting.RolloutTarget{
			Cluster:      &cluster,
			DeploymentID: targeting.DeploymentID(contentsID, opts),
			Options:      opts,
			Paused:       paused,
			Deployment:   desiredDeployment(bundle, &cluster, current),
		}
		targeting.Stage(t)
		if targeting.Unconstrained(bundle.Spec.RolloutStrategy) {
			targeting.Promote(t.Deployment, paused)
		} else if !paused && t.Deployment.Spec.DeploymentID != t.Deployment.Spec.StagedDeploymentID {
			// The budget spans all of the bundle's clusters: let the
			// bundle controller decide.
			r.enqueueRollout(key)
		}
		finalizeDeployment(t.Deployment, bundle, &cluster, paused)
		writes = append(writes, pairWrite{current: current, desired: t.Deployment})
	}
	// Deployments of other namespaces' bundles no mapping lets in any
	// more (a deleted mapping, or relabelled namespace). Those of this
	// namespace's deleted bundles are the bundle controller's.
	for key, bd := range byBundle {
		if key.Namespace != cluster.Namespace && key.Name != "" {
			log.V(1).Info("Bundle no longer mapped to the cluster's namespace", "Bundle", klog.KRef(key.Namespace, key.Name))
			writes = append(writes, pairWrite{current: bd})
		}
	}
	writeErrs := make([]error, len(writes))
	inParallel(len(writes), writeConcurrency, func(i int) {
		w := writes[i]
		if w.desired == nil {
			writeErrs[i] = r.delete(ctx, w.current)
			return
		}
		_, writeErrs[i] = r.write(ctx, w.current, w.desired)
	})
	for _, err := range writeErrs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return ctrl.Result{}, fmt.Errorf("reconciling deployments of cluster %s: %w", req.NamespacedName, errors.Join(errs...))
	}
	return ctrl.Result{}, nil
}
