// Package bundle turns Bundles into BundleDeployments: one per (Bundle,
// Cluster) pair the bundle's targets select, in the cluster's namespace,
// and rolls the BundleDeployments' states up into the Bundle's status.
//
// Work is done per pair, never per bundle × cluster:
//   - a Bundle change recomputes that bundle's pairs over the clusters of
//     its namespace (the "bundle" controller);
//   - a Cluster or ClusterGroup change recomputes only the pairs of the
//     affected clusters, over the bundles of their namespace (the
//     "bundle-cluster" controller);
//   - a BundleDeployment status change only recomputes its Bundle's status
//     from the bundle's own BundleDeployments, found through a field index
//     and batched (the "bundle-status" controller).
package bundle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/controller/queue"
	"github.com/edgefleet/edgefleet/internal/targeting"
)

// Field indexes on BundleDeployments registered by SetupWithManager.
const (
	// BundleIndex maps a BundleDeployment to "<bundle namespace>/<bundle name>".
	BundleIndex = "spec.bundleKey"
)

// DefaultStatusBatch is how long BundleDeployment status changes are
// collected before their Bundle's status is recomputed once.
const DefaultStatusBatch = time.Second

// Reconciler creates, updates and deletes BundleDeployments for Bundles and
// keeps the Bundles' status.
type Reconciler struct {
	// Client reads from the manager's cache and writes to the API.
	Client client.Client
	// ContentClient stores inline bundle resources as Contents. It should
	// not be cached (Contents are large and only ever fetched by name);
	// SetupWithManager creates an uncached client when nil.
	ContentClient client.Client
	// APIReader reads around the cache; SetupWithManager uses the
	// manager's when nil.
	APIReader client.Reader
	// StatusBatch defaults to DefaultStatusBatch.
	StatusBatch time.Duration
	// Events records condition changes; SetupWithManager uses the
	// manager's recorder when nil.
	Events events.EventRecorder

	mu          sync.Mutex
	contents    map[types.NamespacedName]contentsEntry
	stored      map[string]bool
	bundleQueue workqueue.TypedRateLimitingInterface[reconcile.Request]
}

type contentsEntry struct {
	uid        types.UID
	generation int64
	id         string
}

// SetupWithManager registers the field index and the three controllers.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.ContentClient == nil {
		c, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
		if err != nil {
			return fmt.Errorf("creating content client: %w", err)
		}
		r.ContentClient = c
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.StatusBatch <= 0 {
		r.StatusBatch = DefaultStatusBatch
	}
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder("edgefleet-bundle")
	}
	r.contents = map[types.NamespacedName]contentsEntry{}
	r.stored = map[string]bool{}

	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &fleetv1.BundleDeployment{}, BundleIndex, func(o client.Object) []string {
		bd := o.(*fleetv1.BundleDeployment)
		if bd.Spec.BundleName == "" {
			return nil
		}
		return []string{bd.Spec.BundleNamespace + "/" + bd.Spec.BundleName}
	}); err != nil {
		return fmt.Errorf("indexing BundleDeployments by bundle: %w", err)
	}

	err := ctrl.NewControllerManagedBy(mgr).
		Named("bundle").
		// Annotations: the reader's fleet.yaml warnings change without a
		// spec change (FleetYAMLWarnings condition).
		For(&fleetv1.Bundle{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		WatchesRawSource(source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			r.mu.Lock()
			r.bundleQueue = q
			r.mu.Unlock()
			return nil
		})).
		Watches(&fleetv1.BundleNamespaceMapping{}, r.mappingHandler()).
		Watches(&corev1.Namespace{}, r.namespaceHandler()).
		WithOptions(queue.Options(workers)).
		Complete(r)
	if err != nil {
		return fmt.Errorf("creating bundle controller: %w", err)
	}
	if err := (&clusterReconciler{r}).setup(mgr); err != nil {
		return err
	}
	return (&statusReconciler{r}).setup(mgr)
}

// enqueueRollout asks the bundle controller for a full pass over a bundle,
// e.g. when a constrained rollout may have to promote more clusters.
func (r *Reconciler) enqueueRollout(key types.NamespacedName) {
	r.mu.Lock()
	q := r.bundleQueue
	r.mu.Unlock()
	if q != nil {
		q.Add(reconcile.Request{NamespacedName: key})
	}
}

// Reconcile recomputes every pair of one Bundle: O(clusters in its
// namespace and the namespaces mapped to it).
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var bundle fleetv1.Bundle
	if err := r.Client.Get(ctx, req.NamespacedName, &bundle); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, r.deleteDeployments(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if !bundle.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.deleteDeployments(ctx, req.NamespacedName)
	}

	matcher, err := targeting.NewBundleMatcher(&bundle)
	if err != nil {
		log.Info("Bundle has invalid targets", "error", err.Error())
		updated := bundle.DeepCopy()
		setInvalid(&updated.Status, &bundle, fmt.Errorf("invalid targets: %w; fix the selector and re-apply the bundle", err))
		return ctrl.Result{}, conditions.PatchStatus(ctx, r.Client, &bundle, updated, nil, nil, conditions.RecordTo(r.Events))
	}
	contentsID, err := r.contentsID(ctx, &bundle)
	if err != nil {
		return ctrl.Result{}, err
	}

	// Its own namespace's clusters, and those of namespaces a
	// BundleNamespaceMapping gives it; each cluster's groups are those of
	// its namespace.
	namespaces, err := r.clusterNamespaces(ctx, &bundle)
	if err != nil {
		return ctrl.Result{}, err
	}
	var clusters []*fleetv1.Cluster
	groupsOf := map[string][]*fleetv1.ClusterGroup{}
	for _, ns := range namespaces {
		var list fleetv1.ClusterList
		if err := r.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return ctrl.Result{}, fmt.Errorf("listing clusters: %w", err)
		}
		for i := range list.Items {
			clusters = append(clusters, &list.Items[i])
		}
		if groupsOf[ns], err = listGroups(ctx, r.Client, ns); err != nil {
			return ctrl.Result{}, err
		}
	}
	existing, err := r.deploymentsOf(ctx, req.NamespacedName)
	if err != nil {
		return ctrl.Result{}, err
	}
	byNamespace := map[string]*fleetv1.BundleDeployment{}
	for _, bd := range existing {
		byNamespace[bd.Namespace] = bd
	}

	var targets []*targeting.RolloutTarget
	var originals []*fleetv1.BundleDeployment
	var pending []pendingTarget
	var valueErrs []error
	for _, cluster := range clusters {
		if !cluster.DeletionTimestamp.IsZero() {
			continue
		}
		groups := groupsOf[cluster.Namespace]
		pairRecomputes.WithLabelValues("bundle").Inc()
		opts, _, ok := matcher.Target(cluster, groups)
		if !ok {
			continue
		}
		clusterNS, ready := clusterns.Of(cluster)
		if !ready {
			pending = append(pending, pendingTarget{cluster.Namespace + "/" + cluster.Name, waitingForNamespace})
			continue
		}
		current := byNamespace[clusterNS]
		delete(byNamespace, clusterNS)
		if opts, err = forCluster(opts, cluster); err != nil {
			// The cluster keeps its current deployment (not stale).
			valueErrs = append(valueErrs, err)
			continue
		}
		originals = append(originals, current)
		targets = append(targets, &targeting.RolloutTarget{
			Cluster:      cluster,
			Groups:       groups,
			DeploymentID: targeting.DeploymentID(contentsID, opts),
			Options:      opts,
			Paused:       bundle.Spec.Paused || cluster.Spec.Paused,
			Offline:      offline(cluster),
			Deployment:   desiredDeployment(&bundle, cluster, current),
		})
	}
	rollout, err := targeting.Rollout(bundle.Spec.RolloutStrategy, targets)
	if err != nil {
		updated := bundle.DeepCopy()
		setInvalid(&updated.Status, &bundle, fmt.Errorf("invalid rollout strategy: %w", err))
		return ctrl.Result{}, conditions.PatchStatus(ctx, r.Client, &bundle, updated, nil, nil, conditions.RecordTo(r.Events))
	}

	// Writes go out concurrently: one bundle over thousands of clusters is
	// bound by round trips, not by the apiserver's throughput.
	written := make([]*fleetv1.BundleDeployment, len(targets))
	writeErrs := make([]error, len(targets))
	deferred := deferNew(bundle.Spec.RolloutStrategy, originals)
	inParallel(len(targets), writeConcurrency, func(i int) {
		if deferred[i] {
			return
		}
		t := targets[i]
		finalizeDeployment(t.Deployment, &bundle, t.Cluster, t.Paused)
		written[i], writeErrs[i] = r.write(ctx, originals[i], t.Deployment)
	})
	var errs []error
	var deployments []*fleetv1.BundleDeployment
	requeue := ctrl.Result{}
	for i, t := range targets {
		if deferred[i] {
			// rolloutStrategy.maxNew: created by a following reconcile.
			pending = append(pending, pendingTarget{t.Cluster.Namespace + "/" + t.Cluster.Name, waitingForMaxNew(bundle.Spec.RolloutStrategy)})
			requeue = ctrl.Result{RequeueAfter: maxNewRequeue}
			continue
		}
		if writeErrs[i] != nil {
			errs = append(errs, writeErrs[i])
			pending = append(pending, pendingTarget{t.Cluster.Namespace + "/" + t.Cluster.Name, waitingForWrite})
			continue
		}
		deployments = append(deployments, written[i])
	}
	stale := make([]*fleetv1.BundleDeployment, 0, len(byNamespace))
	for _, bd := range byNamespace {
		stale = append(stale, bd)
	}
	deleteErrs := make([]error, len(stale))
	inParallel(len(stale), writeConcurrency, func(i int) { deleteErrs[i] = r.delete(ctx, stale[i]) })
	for _, err := range deleteErrs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	// observedGeneration only once every write went through: a failed
	// write means the spec is not fully acted on yet.
	updated := bundle.DeepCopy()
	setWarningsCondition(&updated.Status, &bundle)
	computeStatus(&updated.Status, &bundle, deployments, pending)
	setValueErrors(&updated.Status, &bundle, valueErrs)
	updated.Status.Partitions = rollout.Partitions
	if err := conditions.PatchStatus(ctx, r.Client, &bundle, updated, &updated.Status.ObservedGeneration, errors.Join(errs...), conditions.RecordTo(r.Events)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return ctrl.Result{}, fmt.Errorf("reconciling bundle %s: %w", req.NamespacedName, errors.Join(errs...))
	}
	return requeue, nil
}

// maxNewRequeue is how soon a bundle held back by rolloutStrategy.maxNew
// creates its next BundleDeployments.
const maxNewRequeue = 200 * time.Millisecond

// deferNew marks the new BundleDeployments (no original) beyond
// rolloutStrategy.maxNew, which wait for a later reconcile. Unlike Fleet
// (default 50), there is no cap unless maxNew is set: writes go out
// concurrently and a bundle event costs O(clusters) anyway.
func deferNew(rs *fleetv1.RolloutStrategy, originals []*fleetv1.BundleDeployment) []bool {
	out := make([]bool, len(originals))
	if rs == nil || rs.MaxNew == nil {
		return out
	}
	created := 0
	for i, o := range originals {
		if o != nil {
			continue
		}
		created++
		out[i] = created > int(*rs.MaxNew)
	}
	return out
}

// offline clusters cannot apply anything, so they do not hold a rollout's
// budget. A cluster whose agent heartbeats but whose tunnel is down still
// applies bundles and so still counts.
func offline(c *fleetv1.Cluster) bool {
	cond := meta.FindStatusCondition(c.Status.Conditions, fleetv1.ConnectedCondition)
	return cond != nil && cond.Status == metav1.ConditionFalse &&
		(cond.Reason == fleetv1.AgentOfflineReason || cond.Reason == fleetv1.WaitingForCheckInReason)
}

func listGroups(ctx context.Context, c client.Reader, namespace string) ([]*fleetv1.ClusterGroup, error) {
	var list fleetv1.ClusterGroupList
	if err := c.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing cluster groups: %w", err)
	}
	out := make([]*fleetv1.ClusterGroup, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// deploymentsOf lists a bundle's BundleDeployments through the index.
func (r *Reconciler) deploymentsOf(ctx context.Context, key types.NamespacedName) ([]*fleetv1.BundleDeployment, error) {
	var list fleetv1.BundleDeploymentList
	if err := r.Client.List(ctx, &list, client.MatchingFields{BundleIndex: key.Namespace + "/" + key.Name}); err != nil {
		return nil, fmt.Errorf("listing bundle deployments of %s: %w", key, err)
	}
	out := make([]*fleetv1.BundleDeployment, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

func (r *Reconciler) deleteDeployments(ctx context.Context, key types.NamespacedName) error {
	bds, err := r.deploymentsOf(ctx, key)
	if err != nil {
		return err
	}
	for _, bd := range bds {
		if err := r.delete(ctx, bd); err != nil {
			return err
		}
	}
	return nil
}
