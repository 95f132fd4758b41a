package e2e

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent"
)

// simAgents stands in for the agents of many clusters in the test process
// (there is no downstream cluster to deploy to): it watches every
// BundleDeployment on the manager's API and decides to deploy exactly as
// internal/agent's needsDeploy does — when spec.deploymentID differs from
// status.appliedDeploymentID or from what its own "downstream" (an in-memory
// inventory per BundleDeployment) holds — then takes applyDelay to "deploy"
// and writes the status a real agent writes after applying ready resources.
//
// It counts every deploy, so a test can tell a needed apply from a replay:
// deploying an ID the inventory already holds is a re-apply, explained only
// when the status write that recorded it failed.
type simAgents struct {
	applyDelay time.Duration

	mu        sync.Mutex
	inventory map[string]string    // bd namespace/name → deploymentID deployed
	applies   map[string]int       // "bd@deploymentID" → deploys
	lostWrite map[string]bool      // "bd@deploymentID" whose status write failed
	firstSeen map[string]time.Time // deploymentID → first deploy of it
	log       []string             // deploys in order
}

func newSimAgents(applyDelay time.Duration) *simAgents {
	return &simAgents{applyDelay: applyDelay, inventory: map[string]string{}, applies: map[string]int{},
		lostWrite: map[string]bool{}, firstSeen: map[string]time.Time{}}
}

// start runs the agents until ctx ends; they survive the API going away
// (controller-runtime's informers re-list and re-watch).
func (s *simAgents) start(ctx context.Context, cfg *rest.Config, workers int) error {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 200, 400
	ctrllog.SetLogger(logr.Discard())
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 agent.Scheme(),
		Logger:                 logr.Discard(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return err
	}
	err = ctrl.NewControllerManagedBy(mgr).Named("sim-agents").For(&fleetv1.BundleDeployment{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers, SkipNameValidation: ptrTo(true)}).
		Complete(reconcile(func(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
			return s.reconcile(ctx, mgr.GetClient(), req)
		}))
	if err != nil {
		return err
	}
	go func() { _ = mgr.Start(ctx) }()
	return nil
}

func ptrTo[T any](v T) *T { return &v }

type reconcile func(context.Context, ctrl.Request) (ctrl.Result, error)

func (f reconcile) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return f(ctx, req)
}

func (s *simAgents) reconcile(ctx context.Context, c client.Client, req ctrl.Request) (ctrl.Result, error) {
	bd := &fleetv1.BundleDeployment{}
	if err := c.Get(ctx, req.NamespacedName, bd); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	key := req.String()
	if !bd.DeletionTimestamp.IsZero() {
		before := bd.DeepCopy()
		controllerutil.RemoveFinalizer(bd, agent.Finalizer)
		s.mu.Lock()
		delete(s.inventory, key)
		s.mu.Unlock()
		return ctrl.Result{}, client.IgnoreNotFound(c.Patch(ctx, bd, client.MergeFrom(before)))
	}
	if !controllerutil.ContainsFinalizer(bd, agent.Finalizer) {
		before := bd.DeepCopy()
		controllerutil.AddFinalizer(bd, agent.Finalizer)
		if err := c.Patch(ctx, bd, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, err
		}
	}
	id := bd.Spec.DeploymentID
	if bd.Spec.Paused || id == "" {
		return ctrl.Result{}, nil
	}
	s.mu.Lock()
	need := id != bd.Status.AppliedDeploymentID || s.inventory[key] != id
	s.mu.Unlock()
	if need {
		time.Sleep(s.applyDelay)
		s.mu.Lock()
		s.inventory[key] = id
		s.applies[key+"@"+id]++
		if _, ok := s.firstSeen[id]; !ok {
			s.firstSeen[id] = time.Now()
		}
		s.log = append(s.log, key+"@"+id)
		s.mu.Unlock()
	}
	before := bd.DeepCopy()
	simReportApplied(bd)
	if equality.Semantic.DeepEqual(before.Status, bd.Status) {
		return ctrl.Result{}, nil
	}
	if err := c.Status().Patch(ctx, bd, client.MergeFrom(before)); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		// The write may have been applied with its answer lost, or not:
		// either way a later deploy of this ID is explained.
		s.mu.Lock()
		s.lostWrite[key+"@"+id] = true
		s.mu.Unlock()
		return ctrl.Result{}, fmt.Errorf("writing status: %w", err)
	}
	return ctrl.Result{}, nil
}

// reapplies counts deploys of an ID the BundleDeployment had already
// deployed: explained ones followed a failed status write, the others are
// replays the manager or the agent caused needlessly.
func (s *simAgents) reapplies() (explained, needless int, examples []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, n := range s.applies {
		if n <= 1 {
			continue
		}
		if s.lostWrite[k] {
			explained += n - 1
			continue
		}
		needless += n - 1
		if len(examples) < 5 {
			examples = append(examples, fmt.Sprintf("%s deployed %d times", k, n))
		}
	}
	return explained, needless, examples
}

// deployed is how many BundleDeployments hold id in their inventory.
func (s *simAgents) deployed(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.inventory {
		if v == id {
			n++
		}
	}
	return n
}

func (s *simAgents) totalApplies() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.log)
}

// simReportApplied sets what internal/agent writes after deploying a bundle
// of one ConfigMap whose resources are ready.
func simReportApplied(bd *fleetv1.BundleDeployment) {
	bd.Status.AppliedDeploymentID = bd.Spec.DeploymentID
	bd.Status.SyncGeneration = nil
	bd.Status.Ready = true
	bd.Status.NonModified = true
	bd.Status.NonReadyStatus = nil
	bd.Status.ModifiedStatus = nil
	bd.Status.Resources = []fleetv1.BundleDeploymentResource{{APIVersion: "v1", Kind: "ConfigMap", Namespace: bd.Spec.Options.DefaultNamespace, Name: "settings"}}
	bd.Status.ObservedGeneration = bd.Generation
	for _, typ := range []string{fleetv1.DeployedCondition, fleetv1.MonitoredCondition, fleetv1.ReadyCondition} {
		meta.SetStatusCondition(&bd.Status.Conditions, metav1.Condition{Type: typ, Status: metav1.ConditionTrue,
			Reason: fleetv1.SucceededReason, Message: "simulated", ObservedGeneration: bd.Generation})
	}
	bd.Status.Display.Deployed = string(metav1.ConditionTrue)
	bd.Status.Display.Monitored = string(metav1.ConditionTrue)
	bd.Status.Display.State = string(agent.State(bd))
}
