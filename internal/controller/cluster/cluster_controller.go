// Package cluster gives every Cluster its namespace on the manager (where
// its BundleDeployments live), removes the namespace when the Cluster is
// deleted, and rolls the cluster's BundleDeployment states up into its
// status.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bdfinalizer"
	"github.com/edgefleet/edgefleet/internal/bundlestate"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/controller/internal/finalizer"
	"github.com/edgefleet/edgefleet/internal/controller/queue"
	"github.com/edgefleet/edgefleet/internal/version"
)

// Finalizer keeps a Cluster until its namespace is deleted.
const Finalizer = "fleet.edgefleet.io/cluster-namespace"

// DefaultStatusBatch is how long BundleDeployment changes are collected
// before the cluster's status is recomputed once. A rollout changes each
// deployment twice (new spec, then the agent's report) a second or more
// apart under load; 3 s folds both into one Cluster write, which at 5,000
// clusters × 1 bundle is a sixth of all writes. Bundle status, which
// rollouts are judged by, keeps its 1 s batch.
const DefaultStatusBatch = 3 * time.Second

// Reconciler manages cluster namespaces and cluster status.
type Reconciler struct {
	Client client.Client
	// StatusBatch defaults to DefaultStatusBatch.
	StatusBatch time.Duration
	// ProbeInterval (how often tunnels are probed) and OfflineThreshold (a
	// cluster with neither a heartbeat nor a tunnel probe for this long is
	// offline) tune liveness; clusterns.DefaultProbeInterval and
	// clusterns.DefaultOfflineThreshold when 0.
	ProbeInterval, OfflineThreshold time.Duration
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
	// Events records condition changes; SetupWithManager uses the
	// manager's recorder when nil.
	Events events.EventRecorder
	// ManagerVersion is what agents' versions are compared with
	// (AgentSupported); version.Version when empty.
	ManagerVersion string
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.StatusBatch <= 0 {
		r.StatusBatch = DefaultStatusBatch
	}
	if r.ProbeInterval <= 0 {
		r.ProbeInterval = clusterns.DefaultProbeInterval
	}
	if r.OfflineThreshold <= 0 {
		r.OfflineThreshold = clusterns.DefaultOfflineThreshold
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.ManagerVersion == "" {
		r.ManagerVersion = version.Version
	}
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder("edgefleet-cluster")
	}
	byLabels := func(o client.Object) (reconcile.Request, bool) {
		l := o.GetLabels()
		if l[fleetv1.ClusterNameLabel] == "" || l[fleetv1.ClusterNamespaceLabel] == "" {
			return reconcile.Request{}, false
		}
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: l[fleetv1.ClusterNamespaceLabel], Name: l[fleetv1.ClusterNameLabel]}}, true
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("cluster").
		For(&fleetv1.Cluster{}).
		Watches(&fleetv1.BundleDeployment{}, queue.Batched(r.StatusBatch, byLabels)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if o.GetLabels()[fleetv1.ManagedLabel] != "true" {
				return nil
			}
			if req, ok := byLabels(o); ok {
				return []reconcile.Request{req}
			}
			return nil
		})).
		// Each reconcile is a round trip or two; thousands of clusters
		// registering at once need several in flight.
		WithOptions(queue.Options(8)).
		Complete(r)
	if err != nil {
		return fmt.Errorf("creating cluster controller: %w", err)
	}
	return nil
}

// Reconcile ensures the cluster's namespace and status. Once the namespace
// exists it comes back every livenessEvery to recompute Connected from the
// agent's heartbeat and tunnel Leases.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var cluster fleetv1.Cluster
	if err := r.Client.Get(ctx, req.NamespacedName, &cluster); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !cluster.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, &cluster)
	}
	if err := finalizer.Ensure(ctx, r.Client, &cluster, Finalizer); err != nil {
		return ctrl.Result{}, fmt.Errorf("cluster %s: %w", req.NamespacedName, err)
	}

	nsName := clusterns.Name(cluster.Namespace, cluster.Name)
	status := cluster.Status.DeepCopy()
	result, nsErr := r.ensureNamespace(ctx, &cluster, nsName, status)
	if nsErr == nil && result.IsZero() {
		nsErr = r.ensureHeartbeatLease(ctx, nsName)
		if nsErr == nil {
			status.Namespace = nsName
		}
	}

	var bds fleetv1.BundleDeploymentList
	if status.Namespace == nsName {
		if err := r.Client.List(ctx, &bds, client.InNamespace(nsName)); err != nil {
			return ctrl.Result{}, fmt.Errorf("listing bundle deployments of cluster %s: %w", req.NamespacedName, err)
		}
	}
	if status.Namespace == nsName {
		r.updateLiveness(ctx, &cluster, nsName, status, r.Now())
		setAgentSupported(status, r.ManagerVersion, cluster.Generation)
		if result.IsZero() {
			result.RequeueAfter = r.livenessEvery()
		}
	}
	computeStatus(status, &cluster, bds.Items)
	updated := cluster.DeepCopy()
	updated.Status = *status
	if err := conditions.PatchStatus(ctx, r.Client, &cluster, updated, &updated.Status.ObservedGeneration, nsErr, conditions.RecordTo(r.Events), readyUnrecorded); err != nil {
		return ctrl.Result{}, err
	}
	return result, nsErr
}

// readyUnrecorded: Ready follows the cluster's bundles, so a rollout
// changes it on every targeted cluster at once; an Event per cluster per
// transition was thousands of Events (etcd writes) per rollout. The Bundle
// records the rollout once; each Cluster keeps it in its Ready condition.
var readyUnrecorded = conditions.Unrecorded(fleetv1.ReadyCondition)

// ensureNamespace creates the cluster's namespace. A namespace of that name
// that belongs to something else stalls the cluster; a terminating one
// (the cluster was deleted and recreated) is waited for.
func (r *Reconciler) ensureNamespace(ctx context.Context, cluster *fleetv1.Cluster, name string, status *fleetv1.ClusterStatus) (ctrl.Result, error) {
	_, err := clusterns.Ensure(ctx, r.Client, cluster)
	switch {
	case errors.Is(err, clusterns.ErrNotOwned):
		msg := fmt.Sprintf("Namespace %s already exists and does not belong to this cluster (labels %s and %s do not name it); delete or rename that namespace", name, fleetv1.ClusterNamespaceLabel, fleetv1.ClusterNameLabel)
		conditions.Set(&status.Conditions, fleetv1.StalledCondition, metav1.ConditionTrue, fleetv1.InvalidSpecReason, msg, cluster.Generation)
		return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("%s", msg))
	case errors.Is(err, clusterns.ErrTerminating):
		conditions.Set(&status.Conditions, fleetv1.ReconcilingCondition, metav1.ConditionTrue, fleetv1.ProgressingReason,
			fmt.Sprintf("Waiting for the previous namespace %s to finish terminating", name), cluster.Generation)
		return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
	case err != nil:
		return ctrl.Result{}, err
	}
	meta.RemoveStatusCondition(&status.Conditions, fleetv1.StalledCondition)
	meta.RemoveStatusCondition(&status.Conditions, fleetv1.ReconcilingCondition)
	return ctrl.Result{}, nil
}

// reconcileDelete deletes the cluster's BundleDeployments and namespace,
// then releases the Cluster. The BundleDeployments are deleted explicitly
// because a control plane without kube-controller-manager never empties a
// terminating namespace.
func (r *Reconciler) reconcileDelete(ctx context.Context, cluster *fleetv1.Cluster) error {
	if !controllerutil.ContainsFinalizer(cluster, Finalizer) {
		return nil
	}
	name := clusterns.Name(cluster.Namespace, cluster.Name)
	log := logf.FromContext(ctx)
	var ns corev1.Namespace
	err := r.Client.Get(ctx, types.NamespacedName{Name: name}, &ns)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading namespace %s: %w", name, err)
	}
	if err == nil && ns.Labels[fleetv1.ClusterNameLabel] == cluster.Name && ns.Labels[fleetv1.ClusterNamespaceLabel] == cluster.Namespace {
		log.Info("Deleting cluster namespace", "Namespace", klog.KRef("", name))
		// Deleting the Cluster revokes its agent's credentials, so the agent
		// can no longer clean up: release its finalizers first. Workloads
		// already deployed downstream stay, as when a cluster leaves Fleet.
		if err := r.releaseAgentFinalizers(ctx, name); err != nil {
			return err
		}
		if err := r.Client.DeleteAllOf(ctx, &fleetv1.BundleDeployment{}, client.InNamespace(name)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting bundle deployments in %s: %w", name, err)
		}
		if err := r.Client.Delete(ctx, &ns); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting namespace %s: %w", name, err)
		}
	}
	patch := client.MergeFrom(cluster.DeepCopy())
	controllerutil.RemoveFinalizer(cluster, Finalizer)
	if err := r.Client.Patch(ctx, cluster, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing finalizer from cluster %s/%s: %w", cluster.Namespace, cluster.Name, err)
	}
	return nil
}

// computeStatus rolls the cluster's BundleDeployments up into status.
func computeStatus(st *fleetv1.ClusterStatus, cluster *fleetv1.Cluster, bds []fleetv1.BundleDeployment) {
	entries := make([]bundlestate.Entry, 0, len(bds))
	for i := range bds {
		bd := &bds[i]
		name := bd.Spec.BundleNamespace + "/" + bd.Spec.BundleName
		if bd.Spec.BundleName == "" {
			name = bd.Namespace + "/" + bd.Name
		}
		entries = append(entries, bundlestate.Entry{Name: name, State: bundlestate.State(bd), Message: bundlestate.Message(bd)})
	}
	s := bundlestate.Summarize(entries)
	st.Summary = s
	st.ReadyBundles = s.Ready
	st.DesiredReadyBundles = s.DesiredReady
	st.Display.ReadyBundles = fmt.Sprintf("%d/%d", s.Ready, s.DesiredReady)
	switch connected := meta.FindStatusCondition(st.Conditions, fleetv1.ConnectedCondition); {
	case st.Agent.LastSeen.IsZero():
		st.Display.State = fleetv1.ClusterStateWaitCheckIn
	case connected != nil && connected.Status == metav1.ConditionFalse && connected.Reason == fleetv1.AgentOfflineReason:
		st.Display.State = fleetv1.ClusterStateOffline
	default:
		st.Display.State = string(bundlestate.WorstState(s))
	}
	gen := cluster.Generation
	switch {
	case s.DesiredReady == 0:
		conditions.Set(&st.Conditions, fleetv1.ReadyCondition, metav1.ConditionTrue, fleetv1.SucceededReason, "No bundles target this cluster", gen)
	case s.Ready == s.DesiredReady:
		conditions.Set(&st.Conditions, fleetv1.ReadyCondition, metav1.ConditionTrue, fleetv1.SucceededReason, fmt.Sprintf("%d/%d bundles ready", s.Ready, s.DesiredReady), gen)
	default:
		conditions.Set(&st.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, fleetv1.BundlesNotReadyReason, bundlestate.ReadyMessage(s, "Bundle"), gen)
	}
}

// releaseAgentFinalizers removes the agent's finalizer from every
// BundleDeployment in a cluster namespace.
func (r *Reconciler) releaseAgentFinalizers(ctx context.Context, namespace string) error {
	return bdfinalizer.ReleaseAll(ctx, r.Client, namespace)
}
