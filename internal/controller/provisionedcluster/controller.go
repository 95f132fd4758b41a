// Package provisionedcluster forms Kubernetes clusters from registered
// machines (ProvisionedCluster, issue #15): each pool adopts
// MachineInventories by label (internal/provisioning/adopt, exclusive and
// two-phase), every adopted machine gets a ClusterMachine and a bootstrap
// plan in its plan Secret (internal/provisioning/render), the init server
// starts the fleet agent from an import manifest so the cluster becomes a
// fleet Cluster, and a changed version rolls through the machines, control
// plane first. Scale-down releases machines (reset when their registration
// allows it). The controller writes both kinds' status.
package provisionedcluster

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	agentheartbeat "github.com/edgefleet/edgefleet/internal/controller/internal/heartbeat"
	"github.com/edgefleet/edgefleet/internal/controller/queue"
	"github.com/edgefleet/edgefleet/internal/provisioning/adopt"
	"github.com/edgefleet/edgefleet/internal/provisioning/nodeops"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

const (
	// Finalizer releases the cluster's machines when it is deleted.
	Finalizer = "provisioning.edgefleet.io/release-machines"
	// joinTokenSuffix names the cluster's ClusterRegistrationToken.
	joinTokenSuffix = "-join"
	// pkiSuffix names the cluster's PKI Secret.
	pkiSuffix = "-pki"
	// registrationTokenIndex indexes fleet Clusters by the name of the
	// registration token that created them.
	registrationTokenIndex = "provisioning.registrationTokenName"
	// claimIndex indexes MachineInventories by the cluster that claimed
	// them, unclaimed ones under unclaimed: a reconcile reads its own
	// machines and the free candidates, never the whole namespace.
	claimIndex = "provisioning.claimedBy"
	// unclaimed is claimIndex's value for free inventories (not a valid
	// object name, so no cluster can be called that).
	unclaimed = "(unclaimed)"
	// shortIndex indexes ProvisionedClusters that may want another machine
	// (value "true"): a free inventory's event wakes those, not all.
	shortIndex = "provisioning.short"
	// workers is how many clusters are reconciled at once.
	workers = 4
)

// Reconciler forms ProvisionedClusters.
type Reconciler struct {
	Client client.Client
	// Reader reads Secrets (plan, PKI, token) from the API server: Secrets'
	// data is not cached.
	Reader client.Reader
	Events events.EventRecorder
	// Versions lists per distro the versions the manager can install; a
	// distro without a list takes any version the API server accepts.
	Versions map[provisioningv1.Distro][]string
	// Releases are the edgefleet distro's binaries per version, used when
	// spec.binaries is unset.
	Releases map[string]kubedistro.Binaries
	// ExternalURL, CACertPEM and AgentImage make the import manifest (as
	// GET /v1/import/<token>.yaml serves it); without ExternalURL formed
	// clusters do not join the fleet.
	ExternalURL *url.URL
	CACertPEM   []byte
	AgentImage  string
	// Nodes reaches formed clusters' nodes through their tunnels (NodeReady
	// from the Node, cordon, drain, Node removal); nil: the kubelet probe
	// alone decides NodeReady and nothing is drained.
	Nodes NodeAccess
	// NodeReadInterval is how often one formed cluster's nodes are listed
	// at most, and how often a cluster with a health check looks at them
	// (default 10s).
	NodeReadInterval time.Duration
	// NodeAgentHeartbeat is how often idle node agents refresh their
	// inventory's lastSeen (default NodeAgentHeartbeat, the agents'
	// default): nodeAgentSilentTimeout must be at least three of them.
	NodeAgentHeartbeat time.Duration
	// Grace is how long a claim may wait for its ClusterMachine (default
	// adopt.DefaultGrace).
	Grace time.Duration
	// Now is the clock (tests).
	Now func() time.Time

	nodeCache sync.Map // types.NamespacedName → nodeSnapshot
	// heartbeats: when this manager saw each node's kubelet heartbeat
	// change, its own clock (kubelets' and manager's clocks may differ).
	heartbeats sync.Map // types.NamespacedName → map[string]heartbeat
}

// NodeAccess makes clients of formed clusters (nodeops.Tunnel).
type NodeAccess interface {
	Clientset(ctx context.Context, fleetCluster types.NamespacedName) (kubernetes.Interface, error)
}

// nodeCacheTTL (NodeReadInterval's default) bounds how often one cluster's
// nodes are listed through its tunnel: one LIST per cluster per TTL,
// whatever the number of machines.
const nodeCacheTTL = 10 * time.Second

type nodeSnapshot struct {
	at    time.Time
	nodes map[string]nodeops.NodeState
}

// SetupWithManager registers the controller: ProvisionedClusters, their
// ClusterMachines, the namespace's MachineInventories (a claimed one
// wakes its cluster; a free one the clusters still short of machines) and
// fleet Clusters created by a cluster's join token.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder("edgefleet-provisionedcluster")
	}
	if r.Grace == 0 {
		r.Grace = adopt.DefaultGrace
	}
	if r.NodeReadInterval <= 0 {
		r.NodeReadInterval = nodeCacheTTL
	}
	if r.NodeAgentHeartbeat <= 0 {
		r.NodeAgentHeartbeat = NodeAgentHeartbeat
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &fleetv1.Cluster{}, registrationTokenIndex, func(o client.Object) []string {
		if t := o.GetAnnotations()[fleetv1.RegistrationTokenAnnotation]; t != "" {
			return []string{t}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing clusters by registration token: %w", err)
	}
	if err := indexClaims(mgr.GetFieldIndexer()); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).Named("provisionedcluster").
		For(&provisioningv1.ProvisionedCluster{}).
		Owns(&provisioningv1.ClusterMachine{}).
		Watches(&machinesv1.MachineInventory{}, handler.EnqueueRequestsFromMapFunc(r.clustersForInventory), builder.WithPredicates(agentheartbeat.Ignore)).
		Watches(&fleetv1.Cluster{}, handler.EnqueueRequestsFromMapFunc(clusterForFleetCluster), builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return strings.HasSuffix(o.GetAnnotations()[fleetv1.RegistrationTokenAnnotation], joinTokenSuffix) || o.GetLabels()[provisioningv1.ClusterLabel] != ""
		}))).
		// A reconcile is a few round trips; hundreds of clusters forming at
		// once need several in flight. One cluster is never reconciled twice
		// at once, and claims between clusters are optimistic (adopt.Claim).
		WithOptions(queue.Options(workers)).
		Complete(r)
}

// indexClaims registers claimIndex and shortIndex.
func indexClaims(indexer client.FieldIndexer) error {
	if err := indexer.IndexField(context.Background(), &machinesv1.MachineInventory{}, claimIndex, func(o client.Object) []string {
		if c := o.GetLabels()[provisioningv1.ClusterLabel]; c != "" {
			return []string{c}
		}
		return []string{unclaimed}
	}); err != nil {
		return fmt.Errorf("indexing machine inventories by claim: %w", err)
	}
	if err := indexer.IndexField(context.Background(), &provisioningv1.ProvisionedCluster{}, shortIndex, func(o client.Object) []string {
		if pc, ok := o.(*provisioningv1.ProvisionedCluster); ok && short(pc) {
			return []string{"true"}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing provisioned clusters short of machines: %w", err)
	}
	return nil
}

// clustersForInventory: a claimed inventory wakes its cluster (also one
// that no longer exists: Reconcile releases its stale claims); a free one
// wakes the namespace's clusters that are short of machines and whose
// pools' selectors match it (not every cluster: an inventory's status
// changes often, and thousands of clusters would each list the
// namespace's inventories).
func (r *Reconciler) clustersForInventory(ctx context.Context, o client.Object) []reconcile.Request {
	if c := o.GetLabels()[provisioningv1.ClusterLabel]; c != "" {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: c}}}
	}
	var list provisioningv1.ProvisionedClusterList
	// Read only: the cache's objects, not copies.
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{shortIndex: "true"}, client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "Listing clusters short of machines failed", "MachineInventory", klog.KObj(o))
		return nil
	}
	set := labels.Set(o.GetLabels())
	var out []reconcile.Request
	for i := range list.Items {
		pc := &list.Items[i]
		if wants(pc, set) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(pc)})
		}
	}
	return out
}

// wants: a pool of pc selects an inventory with these labels. A cluster
// whose selectors do not parse is stalled and adopts nothing.
func wants(pc *provisioningv1.ProvisionedCluster, set labels.Set) bool {
	pools, err := adopt.Pools(pc)
	if err != nil {
		return false
	}
	for _, p := range pools {
		if p.Selector.Matches(set) {
			return true
		}
	}
	return false
}

// short: the cluster may want another machine.
func short(pc *provisioningv1.ProvisionedCluster) bool {
	if pc.Status.ObservedGeneration != pc.Generation || pc.Status.ControlPlane.Current < pc.Spec.ControlPlane.Replicas {
		return true
	}
	current := map[string]int32{}
	for _, w := range pc.Status.Workers {
		current[w.Name] = w.Current
	}
	for _, w := range pc.Spec.Workers {
		if current[w.Name] < w.Replicas {
			return true
		}
	}
	return false
}

func clusterForFleetCluster(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[provisioningv1.ClusterLabel]
	if name == "" {
		name, _ = strings.CutSuffix(o.GetAnnotations()[fleetv1.RegistrationTokenAnnotation], joinTokenSuffix)
	}
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: name}}}
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var pc provisioningv1.ProvisionedCluster
	if err := r.Client.Get(ctx, req.NamespacedName, &pc); apierrors.IsNotFound(err) {
		return r.releaseStaleClaims(ctx, req.NamespacedName)
	} else if err != nil {
		return reconcile.Result{}, err
	}
	if !pc.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.finalize(ctx, &pc)
	}
	if controllerutil.AddFinalizer(&pc, Finalizer) {
		if err := r.Client.Update(ctx, &pc); err != nil {
			return reconcile.Result{}, err
		}
	}
	before := pc.DeepCopy()
	f := &formation{r: r, pc: &pc, before: before, now: r.Now()}
	err := f.run(ctx)
	if perr := conditions.PatchStatus(ctx, r.Client, before, &pc, &pc.Status.ObservedGeneration, err, conditions.RecordTo(r.Events)); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: f.requeue}, nil
}

// releaseStaleClaims releases the claims of a cluster that does not exist
// (deleted, or a claim written by hand or by a claimer that died) once
// they are older than the grace period: a cluster just created may claim
// before this manager's cache has it.
func (r *Reconciler) releaseStaleClaims(ctx context.Context, cluster types.NamespacedName) (reconcile.Result, error) {
	var invs machinesv1.MachineInventoryList
	if err := r.Client.List(ctx, &invs, client.InNamespace(cluster.Namespace), client.MatchingFields{claimIndex: cluster.Name}); err != nil {
		return reconcile.Result{}, err
	}
	var wait time.Duration
	for i := range invs.Items {
		inv := &invs.Items[i]
		if age := adopt.ClaimAge(inv, r.Now()); age < r.Grace {
			if wait == 0 || r.Grace-age < wait {
				wait = r.Grace - age
			}
			continue
		}
		log.FromContext(ctx).Info("Releasing the claim of a cluster that does not exist", "MachineInventory", klog.KObj(inv))
		if err := adopt.Release(ctx, r.Client, inv, cluster.Name); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{RequeueAfter: wait}, nil
}

// finalize releases every machine, deletes the fleet Cluster the formed
// cluster registered as (its machines are reset or cleared, so it will
// never connect again), then lets the object go.
func (r *Reconciler) finalize(ctx context.Context, pc *provisioningv1.ProvisionedCluster) error {
	if !controllerutil.ContainsFinalizer(pc, Finalizer) {
		return nil
	}
	f := &formation{r: r, pc: pc, now: r.Now()}
	if err := f.load(ctx); err != nil {
		return err
	}
	for _, m := range f.machines {
		if err := f.release(ctx, m); err != nil {
			return err
		}
	}
	// Claims without a ClusterMachine (between the two phases).
	for i := range f.inventories {
		if err := adopt.Release(ctx, r.Client, &f.inventories[i], pc.Name); err != nil {
			return err
		}
	}
	if ref := pc.Status.FleetClusterRef; ref != nil {
		r.nodeCache.Delete(client.ObjectKey{Namespace: pc.Namespace, Name: ref.Name})
		r.heartbeats.Delete(client.ObjectKey{Namespace: pc.Namespace, Name: ref.Name})
		fc := &fleetv1.Cluster{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: pc.Namespace, Name: ref.Name}, fc)
		if err == nil && fc.Labels[provisioningv1.ClusterLabel] == pc.Name {
			if err := r.Client.Delete(ctx, fc); client.IgnoreNotFound(err) != nil {
				return err
			}
		} else if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	controllerutil.RemoveFinalizer(pc, Finalizer)
	return r.Client.Update(ctx, pc)
}
