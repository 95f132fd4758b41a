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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
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
	return ctrl.NewControllerManagedBy(mgr).Named("provisionedcluster").
		For(&provisioningv1.ProvisionedCluster{}).
		Owns(&provisioningv1.ClusterMachine{}).
		Watches(&machinesv1.MachineInventory{}, handler.EnqueueRequestsFromMapFunc(r.clustersForInventory)).
		Watches(&fleetv1.Cluster{}, handler.EnqueueRequestsFromMapFunc(clusterForFleetCluster), builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return strings.HasSuffix(o.GetAnnotations()[fleetv1.RegistrationTokenAnnotation], joinTokenSuffix) || o.GetLabels()[provisioningv1.ClusterLabel] != ""
		}))).
		Complete(r)
}

// clustersForInventory: a claimed inventory wakes its cluster; a free one
// wakes the namespace's clusters that are short of machines (not every
// cluster: an inventory's status changes often).
func (r *Reconciler) clustersForInventory(ctx context.Context, o client.Object) []reconcile.Request {
	if c := o.GetLabels()[provisioningv1.ClusterLabel]; c != "" {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: c}}}
	}
	var list provisioningv1.ProvisionedClusterList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if short(&list.Items[i]) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return out
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
	if err := r.Client.Get(ctx, req.NamespacedName, &pc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
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
	f := &formation{r: r, pc: &pc, now: r.Now()}
	err := f.run(ctx)
	if perr := conditions.PatchStatus(ctx, r.Client, before, &pc, &pc.Status.ObservedGeneration, err, conditions.RecordTo(r.Events)); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: f.requeue}, nil
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
		inv := &f.inventories[i]
		if c, _ := adopt.ClaimOf(inv); c == pc.Name {
			if err := adopt.Release(ctx, r.Client, inv, pc.Name); err != nil {
				return err
			}
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
