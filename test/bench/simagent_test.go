package bench

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent"
)

// dryRunAgents simulates one agent per cluster namespace in this process.
// It is the dry-run applier the benchmark documents: it watches the
// BundleDeployments of each cluster namespace (one watch per namespace, as N
// real agents would open), adds the agent's finalizer, and reports what the
// real agent reports after a successful apply of a ConfigMap and a
// Deployment that are immediately ready — without rendering or talking to a
// downstream cluster. internal/agent's reconciler is unexported and needs a
// downstream cluster, so there is no clean seam to reuse it; the status
// fields and conditions below mirror internal/agent/reconciler.go and
// status.go, and display.state comes from agent.State.
//
// The agents connect (open their watches) before the bundles exist, as real
// agents would, but report nothing until start is closed: the clock of
// T_ready begins there, not while thousands of watches are being opened.
//
// It returns once every watch is open; done reports when the agents stop.
//
// Real agents each have their own connection. An HTTP/2 connection carries
// a bounded number of streams and every watch holds one, so the simulated
// agents are split into shards of agentsPerShard namespaces, each with its
// own connection (an uncacheable dialer keeps client-go from sharing one
// transport) and its share of the workers.
func dryRunAgents(ctx context.Context, cfg *rest.Config, namespaces []string, workers int, start <-chan struct{}) (done <-chan error, err error) {
	shards := (len(namespaces) + agentsPerShard - 1) / agentsPerShard
	errs := make(chan error, shards)
	// A shard opens its namespaces' watches one after another; shards
	// connect concurrently, as separate agents would.
	startErrs := make([]error, shards)
	var wg sync.WaitGroup
	for i := range shards {
		part := namespaces[i*agentsPerShard : min(len(namespaces), (i+1)*agentsPerShard)]
		wg.Go(func() { startErrs[i] = startAgentShard(ctx, cfg, part, max(2, workers/shards), start, errs) })
	}
	wg.Wait()
	for _, err := range startErrs {
		if err != nil {
			return nil, err
		}
	}
	return errs, nil
}

// agentsPerShard keeps each shard's watches well under the apiserver's
// streams per connection.
const agentsPerShard = 100

func startAgentShard(ctx context.Context, cfg *rest.Config, namespaces []string, workers int, start <-chan struct{}, errs chan<- error) error {
	cfg = rest.CopyConfig(cfg)
	cfg.Dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	// N real agents each have their own client-side rate limit (20 QPS).
	cfg.QPS = float32(20 * len(namespaces))
	cfg.Burst = 30 * len(namespaces)
	defaults := map[string]cache.Config{}
	for _, ns := range namespaces {
		defaults[ns] = cache.Config{}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 agent.Scheme(),
		Cache:                  cache.Options{DefaultNamespaces: defaults},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return fmt.Errorf("creating the simulated agents' manager: %w", err)
	}
	r := &dryRunReconciler{client: mgr.GetClient(), start: start}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("bench-dryrun-agent").
		For(&fleetv1.BundleDeployment{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers, SkipNameValidation: ptrTo(true), CacheSyncTimeout: 20 * time.Minute}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("setting up the simulated agents: %w", err)
	}
	stopped := make(chan error, 1)
	go func() {
		err := mgr.Start(ctx)
		stopped <- err
		errs <- err
	}()
	synced := make(chan bool, 1)
	go func() {
		// The controller opens its watches lazily: open them now.
		_, err := mgr.GetCache().GetInformer(ctx, &fleetv1.BundleDeployment{})
		synced <- err == nil && mgr.GetCache().WaitForCacheSync(ctx)
	}()
	select {
	case err := <-stopped:
		return fmt.Errorf("the simulated agents stopped: %w", err)
	case ok := <-synced:
		if !ok {
			return fmt.Errorf("the simulated agents' watches did not sync")
		}
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }

type dryRunReconciler struct {
	client client.Client
	start  <-chan struct{}
}

func (r *dryRunReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	select {
	case <-r.start:
	case <-ctx.Done():
		return ctrl.Result{}, ctx.Err()
	}
	bd := &fleetv1.BundleDeployment{}
	if err := r.client.Get(ctx, req.NamespacedName, bd); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !bd.DeletionTimestamp.IsZero() {
		before := bd.DeepCopy()
		controllerutil.RemoveFinalizer(bd, agent.Finalizer)
		return ctrl.Result{}, client.IgnoreNotFound(r.client.Patch(ctx, bd, client.MergeFrom(before)))
	}
	if !controllerutil.ContainsFinalizer(bd, agent.Finalizer) {
		before := bd.DeepCopy()
		controllerutil.AddFinalizer(bd, agent.Finalizer)
		if err := r.client.Patch(ctx, bd, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}
	if bd.Spec.Paused || bd.Spec.DeploymentID == "" {
		return ctrl.Result{}, nil
	}
	before := bd.DeepCopy()
	reportApplied(bd)
	if equality.Semantic.DeepEqual(before.Status, bd.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.client.Status().Patch(ctx, bd, client.MergeFrom(before)); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("writing status: %w", err)
	}
	return ctrl.Result{}, nil
}

// reportApplied sets the status a real agent writes after applying the
// benchmark bundle's ConfigMap and Deployment and finding both ready.
func reportApplied(bd *fleetv1.BundleDeployment) {
	ns := bd.Spec.Options.DefaultNamespace
	if ns == "" {
		ns = "default"
	}
	bd.Status.AppliedDeploymentID = bd.Spec.DeploymentID
	bd.Status.SyncGeneration = nil
	bd.Status.Ready = true
	bd.Status.NonModified = true
	bd.Status.NonReadyStatus = nil
	bd.Status.ModifiedStatus = nil
	bd.Status.Resources = []fleetv1.BundleDeploymentResource{
		{APIVersion: "v1", Kind: "ConfigMap", Namespace: ns, Name: "settings"},
		{APIVersion: "apps/v1", Kind: "Deployment", Namespace: ns, Name: "web"},
	}
	bd.Status.ObservedGeneration = bd.Generation
	setCondition(bd, fleetv1.DeployedCondition, "deployed "+bd.Status.AppliedDeploymentID)
	setCondition(bd, fleetv1.MonitoredCondition, "2 resources checked")
	setCondition(bd, fleetv1.ReadyCondition, "deployed and ready")
	bd.Status.Display.Deployed = string(metav1.ConditionTrue)
	bd.Status.Display.Monitored = string(metav1.ConditionTrue)
	bd.Status.Display.State = string(agent.State(bd))
}

func setCondition(bd *fleetv1.BundleDeployment, typ, msg string) {
	meta.SetStatusCondition(&bd.Status.Conditions, metav1.Condition{
		Type: typ, Status: metav1.ConditionTrue, Reason: fleetv1.SucceededReason, Message: msg, ObservedGeneration: bd.Generation,
	})
}
