package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/apply"
	"github.com/edgefleet/edgefleet/internal/agent/helmdeploy"
	"github.com/edgefleet/edgefleet/internal/bdfinalizer"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/render"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// Finalizer keeps a BundleDeployment until the agent removed what it
// deployed downstream (its lifecycle: internal/bdfinalizer).
const Finalizer = bdfinalizer.Name

// dependencyRequeue is how soon a deployment waiting for its dependencies
// looks again; notReadyRequeue is how soon not-ready resources are checked
// again.
const (
	dependencyRequeue = 5 * time.Second
	notReadyRequeue   = 5 * time.Second
)

type reconciler struct {
	manager    client.Client // cached, BundleDeployments of one namespace
	reader     client.Reader // uncached: Contents and the Cluster
	downstream client.Client
	applier    *apply.Applier
	helm       *helmdeploy.Deployer
	opts       Options
	desired    *desiredCache
	// memory is told about every burst of heavy work (nil: not tracked).
	memory *memoryReleaser
	// kubeVersion is the downstream cluster's version, what charts see as
	// .Capabilities.KubeVersion.
	kubeVersion string

	// as gives the writers of a deployment: the agent's identity, or the
	// bundle's serviceAccount.
	as *identities
}

func (r *reconciler) setup(mgr ctrl.Manager, o controller.Options) error {
	err := ctrl.NewControllerManagedBy(mgr).
		Named("bundledeployment-agent").
		For(&fleetv1.BundleDeployment{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		WithOptions(o).
		Complete(r)
	if err != nil {
		return fmt.Errorf("setting up the BundleDeployment controller: %w", err)
	}
	return nil
}

// Reconcile deploys one BundleDeployment and reports its status.
func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	bd := &fleetv1.BundleDeployment{}
	if err := r.manager.Get(ctx, req.NamespacedName, bd); err != nil {
		if apierrors.IsNotFound(err) {
			r.desired.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !bd.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, bd)
	}
	if err := bdfinalizer.Ensure(ctx, r.manager, bd); err != nil {
		return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
	}
	if bd.Spec.Paused {
		return ctrl.Result{}, nil
	}
	before := bd.DeepCopy()
	res, reconcileErr := r.reconcile(ctx, bd)
	bd.Status.Display.State = string(State(bd))
	if equality.Semantic.DeepEqual(before.Status, bd.Status) {
		return res, reconcileErr
	}
	if err := r.manager.Status().Patch(ctx, bd, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, errors.Join(reconcileErr, fmt.Errorf("writing status: %w", err))
	}
	return res, reconcileErr
}

func (r *reconciler) reconcile(ctx context.Context, bd *fleetv1.BundleDeployment) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	if msg, err := r.dependenciesPending(ctx, bd); err != nil {
		return ctrl.Result{}, err
	} else if msg != "" {
		setCondition(bd, fleetv1.DeployedCondition, false, fleetv1.DependencyNotReadyReason, msg)
		setReady(bd)
		return ctrl.Result{RequeueAfter: dependencyRequeue}, nil
	}

	inv, err := apply.ReadInventory(ctx, r.downstream, bd.Namespace, bd.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	need, err := r.needsDeploy(ctx, bd, inv)
	if err != nil {
		return ctrl.Result{}, err
	}
	if need {
		log.Info("Deploying", "deploymentID", bd.Spec.DeploymentID)
		if err := r.deploy(ctx, bd, inv); err != nil {
			setCondition(bd, fleetv1.DeployedCondition, false, fleetv1.FailedReason, err.Error())
			r.monitor(ctx, bd)
			setReady(bd)
			return ctrl.Result{}, fmt.Errorf("deploying %s: %w", bd.Spec.DeploymentID, err)
		}
		bd.Status.AppliedDeploymentID = bd.Spec.DeploymentID
		bd.Status.SyncGeneration = nil
	}
	setCondition(bd, fleetv1.DeployedCondition, true, fleetv1.SucceededReason, "deployed "+bd.Status.AppliedDeploymentID)
	r.monitor(ctx, bd)
	if !bd.Status.NonModified && correctDrift(bd).Enabled && meta.IsStatusConditionTrue(bd.Status.Conditions, fleetv1.MonitoredCondition) {
		log.Info("Correcting drift", "modified", len(bd.Status.ModifiedStatus))
		if err := r.correct(ctx, bd); err != nil {
			setCondition(bd, fleetv1.DeployedCondition, false, fleetv1.FailedReason, "correcting drift: "+err.Error())
			setReady(bd)
			return ctrl.Result{}, err
		}
		r.monitor(ctx, bd)
	}
	bd.Status.ObservedGeneration = bd.Generation
	setReady(bd)
	if !bd.Status.Ready {
		return ctrl.Result{RequeueAfter: min(notReadyRequeue, r.opts.MonitorInterval)}, nil
	}
	return ctrl.Result{RequeueAfter: r.opts.MonitorInterval}, nil
}

// needsDeploy is true when deploymentID changed or what was deployed is gone.
func (r *reconciler) needsDeploy(ctx context.Context, bd *fleetv1.BundleDeployment, inv *apply.Inventory) (bool, error) {
	if bd.Spec.DeploymentID != bd.Status.AppliedDeploymentID || inv == nil || inv.DeploymentID != bd.Spec.DeploymentID {
		return true, nil
	}
	if inv.Kind == string(render.KindHelm) {
		rel, err := r.helm.Get(ctx, inv.Namespace, inv.ReleaseName)
		if err != nil {
			return false, err
		}
		return rel == nil, nil
	}
	return false, nil
}

func (r *reconciler) render(ctx context.Context, bd *fleetv1.BundleDeployment) (*render.Result, error) {
	id := content.DeploymentID(bd.Spec.DeploymentID).ContentsID()
	if id == "" {
		return nil, errors.New("spec.deploymentID is empty: the manager has not rendered this deployment yet")
	}
	m, err := content.Load(ctx, r.reader, id)
	if err != nil {
		return nil, fmt.Errorf("loading bundle content: %w", err)
	}
	opts, err := resolveValuesFrom(ctx, r.downstream, bd.Spec.Options)
	if err != nil {
		return nil, err
	}
	res, err := render.Render(ctx, m, opts, r.templateContext(ctx, bd))
	if err != nil {
		return nil, fmt.Errorf("rendering bundle: %w", err)
	}
	return res, nil
}

func (r *reconciler) templateContext(ctx context.Context, bd *fleetv1.BundleDeployment) render.TemplateContext {
	tc := render.TemplateContext{
		ClusterName:      r.opts.ClusterName,
		ClusterNamespace: r.opts.ClusterNamespace,
		BundleName:       bundleName(bd),
		KubeVersion:      r.kubeVersion,
		IsClusterScoped: func(gvk schema.GroupVersionKind) bool {
			m, err := r.downstream.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
			return err == nil && m.Scope.Name() == meta.RESTScopeNameRoot
		},
	}
	if r.opts.ClusterName == "" {
		return tc
	}
	if h := bd.Spec.Options.Helm; h != nil && h.ValuesResolved {
		// The manager resolved the values for this cluster: what was
		// deployed follows the deployment ID, not the Cluster as read now.
		return tc
	}
	// Charts without a helm section still get global.fleet.clusterLabels,
	// and deployments from a manager that did not resolve values yet.
	c := &fleetv1.Cluster{}
	if err := r.reader.Get(ctx, client.ObjectKey{Namespace: r.opts.ClusterNamespace, Name: r.opts.ClusterName}, c); err == nil {
		if ctc, err := render.ClusterTemplateContext(c); err == nil {
			tc.ClusterLabels, tc.ClusterAnnotations, tc.ClusterValues = ctc.ClusterLabels, ctc.ClusterAnnotations, ctc.ClusterValues
		}
	}
	return tc
}

// bundleName names the release of a Helm bundle: the Bundle's name.
func bundleName(bd *fleetv1.BundleDeployment) string {
	if bd.Spec.BundleName != "" {
		return bd.Spec.BundleName
	}
	if n := bd.Labels[fleetv1.BundleNameLabel]; n != "" {
		return n
	}
	return bd.Name
}

func (r *reconciler) target(bd *fleetv1.BundleDeployment, res *render.Result) apply.Target {
	return apply.Target{Namespace: bd.Namespace, Name: bd.Name, DeploymentID: bd.Spec.DeploymentID, Options: bd.Spec.Options, DefaultNamespace: res.Namespace}
}

func (r *reconciler) deploy(ctx context.Context, bd *fleetv1.BundleDeployment, inv *apply.Inventory) error {
	defer r.memory.touch()
	as, err := r.as.forOptions(ctx, bd.Spec.Options)
	if err != nil {
		return err
	}
	res, err := r.render(ctx, bd)
	if err != nil {
		return err
	}
	if res.Kind == render.KindHelm {
		// Helm creates the namespace bare: namespaceLabels and
		// namespaceAnnotations first (raw bundles get them in Apply).
		if err := as.applier.EnsureNamespaceMeta(ctx, r.target(bd, res)); err != nil {
			return err
		}
	}
	key := client.ObjectKeyFromObject(bd)
	if res.Kind == render.KindHelm {
		if inv != nil && inv.Kind != string(render.KindHelm) {
			// The bundle was raw YAML or Kustomize before; its objects go.
			if err := as.applier.Delete(ctx, bd.Namespace, bd.Name, inv, false, bd.Spec.Options.DeleteCRDResources); err != nil {
				return err
			}
		}
		rel, err := as.helm.Deploy(ctx, res, bd.Spec.Options, map[string]string{fleetv1.BundleDeploymentLabel: apply.LabelValue(bd.Namespace, bd.Name)})
		if err != nil {
			return err
		}
		bd.Status.Release = rel.String()
		r.desired.forget(key)
		return apply.WriteInventory(ctx, r.downstream, bd.Namespace, bd.Name, &apply.Inventory{
			Kind: string(render.KindHelm), Namespace: res.Namespace, ReleaseName: res.ReleaseName, DeploymentID: bd.Spec.DeploymentID,
		})
	}
	if inv != nil && inv.Kind == string(render.KindHelm) {
		if err := as.helm.Uninstall(ctx, inv.Namespace, inv.ReleaseName, false, bd.Spec.Options.DeleteCRDResources); err != nil {
			return err
		}
		inv = nil
	}
	objs, err := apply.Prepare(res.Objects, r.target(bd, res), r.downstream.RESTMapper())
	if err != nil {
		return err
	}
	r.desired.set(key, bd.Spec.DeploymentID, objs)
	bd.Status.Release = ""
	return as.applier.Apply(ctx, r.target(bd, res), string(res.Kind), objs)
}

// desiredObjects returns what bd should look like downstream now: the
// objects of the applied deployment (re-rendered after a restart), or the
// Helm release's manifest.
func (r *reconciler) desiredObjects(ctx context.Context, bd *fleetv1.BundleDeployment, inv *apply.Inventory) ([]*unstructured.Unstructured, error) {
	if inv != nil && inv.Kind == string(render.KindHelm) {
		rel, err := r.helm.Get(ctx, inv.Namespace, inv.ReleaseName)
		if err != nil {
			return nil, err
		}
		if rel == nil {
			return nil, fmt.Errorf("helm release %s/%s is missing", inv.Namespace, inv.ReleaseName)
		}
		bd.Status.Release = rel.String()
		objs, err := rel.Objects()
		if err != nil {
			return nil, err
		}
		return apply.WithNamespaces(objs, rel.Namespace, r.downstream.RESTMapper())
	}
	key := client.ObjectKeyFromObject(bd)
	if objs, ok := r.desired.get(key, bd.Spec.DeploymentID); ok {
		return objs, nil
	}
	defer r.memory.touch()
	res, err := r.render(ctx, bd)
	if err != nil {
		return nil, err
	}
	objs, err := apply.Prepare(res.Objects, r.target(bd, res), r.downstream.RESTMapper())
	if err != nil {
		return nil, err
	}
	r.desired.set(key, bd.Spec.DeploymentID, objs)
	return objs, nil
}

// monitor records readiness and drift in bd's status and the Monitored
// condition.
func (r *reconciler) monitor(ctx context.Context, bd *fleetv1.BundleDeployment) {
	report, err := r.check(ctx, bd)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Monitoring failed")
		setCondition(bd, fleetv1.MonitoredCondition, false, fleetv1.FailedReason, err.Error())
		return
	}
	setMonitored(bd, report)
}

func (r *reconciler) check(ctx context.Context, bd *fleetv1.BundleDeployment) (*apply.Report, error) {
	inv, err := apply.ReadInventory(ctx, r.downstream, bd.Namespace, bd.Name)
	if err != nil {
		return nil, err
	}
	objs, err := r.desiredObjects(ctx, bd, inv)
	if err != nil {
		return nil, err
	}
	return r.applier.Check(ctx, objs, apply.Leftovers(inv, objs), bd.Spec.Options)
}

// correct reverts drift: raw objects are applied again (forcing ownership),
// Helm releases are rolled back to their current revision.
func (r *reconciler) correct(ctx context.Context, bd *fleetv1.BundleDeployment) error {
	defer r.memory.touch()
	as, err := r.as.forOptions(ctx, bd.Spec.Options)
	if err != nil {
		return err
	}
	inv, err := apply.ReadInventory(ctx, r.downstream, bd.Namespace, bd.Name)
	if err != nil {
		return err
	}
	if inv != nil && inv.Kind == string(render.KindHelm) {
		return as.helm.Rollback(ctx, inv.Namespace, inv.ReleaseName, bd.Spec.Options, correctDrift(bd).Force)
	}
	objs, err := r.desiredObjects(ctx, bd, inv)
	if err != nil {
		return err
	}
	t := apply.Target{Namespace: bd.Namespace, Name: bd.Name, DeploymentID: bd.Spec.DeploymentID, Options: bd.Spec.Options}
	if inv != nil {
		t.DefaultNamespace = inv.Namespace
	}
	kind := string(render.KindRawYAML)
	if inv != nil {
		kind = inv.Kind
	}
	return as.applier.Apply(ctx, t, kind, objs)
}

func correctDrift(bd *fleetv1.BundleDeployment) fleetv1.CorrectDrift {
	if bd.Spec.CorrectDrift != nil {
		return *bd.Spec.CorrectDrift
	}
	if bd.Spec.Options.CorrectDrift != nil {
		return *bd.Spec.Options.CorrectDrift
	}
	return fleetv1.CorrectDrift{}
}

// protectedNamespaces are never deleted by deleteNamespace.
var protectedNamespaces = map[string]bool{"default": true, "kube-system": true, "kube-public": true, "kube-node-lease": true, clusterjoin.SystemNamespace: true}

// finalize removes what bd deployed (unless keepResources), then the
// finalizer.
func (r *reconciler) finalize(ctx context.Context, bd *fleetv1.BundleDeployment) error {
	if !bdfinalizer.Has(bd) {
		return nil
	}
	defer r.memory.touch()
	log := ctrl.LoggerFrom(ctx)
	inv, err := apply.ReadInventory(ctx, r.downstream, bd.Namespace, bd.Name)
	if err != nil {
		return err
	}
	keep, deleteCRDs := bd.Spec.Options.KeepResources, bd.Spec.Options.DeleteCRDResources
	log.Info("Removing deployment", "keepResources", keep, "deleteCRDResources", deleteCRDs)
	// What the bundle deployed goes with the bundle's identity too; a
	// deployment that never deployed anything (e.g. its serviceAccount
	// never existed) needs none.
	as := &deployer{applier: r.applier, helm: r.helm}
	if inv != nil {
		if as, err = r.as.forOptions(ctx, bd.Spec.Options); err != nil {
			return err
		}
	}
	if inv != nil && inv.Kind == string(render.KindHelm) {
		if err := as.helm.Uninstall(ctx, inv.Namespace, inv.ReleaseName, keep, deleteCRDs); err != nil {
			return err
		}
	}
	if err := as.applier.Delete(ctx, bd.Namespace, bd.Name, inv, keep, deleteCRDs); err != nil {
		return err
	}
	if inv != nil && !keep && bd.Spec.Options.DeleteNamespace && inv.Namespace != "" && !protectedNamespaces[inv.Namespace] {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: inv.Namespace}}
		if err := r.downstream.Delete(ctx, ns); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting namespace %s (deleteNamespace is set): %w", inv.Namespace, err)
		}
	}
	r.desired.forget(client.ObjectKeyFromObject(bd))
	if err := bdfinalizer.Release(ctx, r.manager, bd, false); err != nil {
		return fmt.Errorf("removing finalizer: %w", err)
	}
	return nil
}

// desiredCache keeps the prepared objects of each raw/Kustomize deployment,
// so monitoring does not load and render the bundle every interval.
type desiredCache struct {
	mu sync.Mutex
	m  map[types.NamespacedName]desiredEntry
}

type desiredEntry struct {
	deploymentID string
	objs         []*unstructured.Unstructured
}

func newDesiredCache() *desiredCache {
	return &desiredCache{m: map[types.NamespacedName]desiredEntry{}}
}

func (c *desiredCache) get(key types.NamespacedName, deploymentID string) ([]*unstructured.Unstructured, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || e.deploymentID != deploymentID {
		return nil, false
	}
	return e.objs, true
}

func (c *desiredCache) set(key types.NamespacedName, deploymentID string, objs []*unstructured.Unstructured) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = desiredEntry{deploymentID: deploymentID, objs: objs}
}

func (c *desiredCache) forget(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}
