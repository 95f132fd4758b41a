// Package upgradeplan is the cluster agent's controller for cluster upgrade
// Plans (upgrade.edgefleet.io/v1alpha1, system-upgrade-controller's
// semantics): on the downstream cluster it upgrades the nodes a Plan
// selects, concurrency at a time, each by cordon, drain (the eviction API)
// and one Job running the plan's prepare and upgrade containers; a node done
// is labelled plan.upgrade.cattle.io/<plan>=<hash> and not redone; a failed
// node stops the plan. Plans reach the cluster as manifests in Bundles
// (ADR 0014).
package upgradeplan

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
	"github.com/edgefleet/edgefleet/config/crd"
)

// DefaultPoll is how often a plan under way is looked at besides events (a
// drain waiting for pods to go).
const DefaultPoll = 5 * time.Second

// CacheOptions limit the downstream cache to what the controller reads:
// Plans, its own Jobs, and of Nodes only their metadata and
// schedulability (a node's status, with its image list, is most of its
// size; the agent runs on small devices).
func CacheOptions() map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&batchv1.Job{}: {Label: labels.SelectorFromSet(labels.Set{LabelController: ControllerName})},
		&corev1.Node{}: {Transform: slimNode},
	}
}

// slimNode keeps what the controller reads of a Node.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Node{TypeMeta: n.TypeMeta, ObjectMeta: n.ObjectMeta}
	slim.ManagedFields = nil
	slim.Spec.Unschedulable = n.Spec.Unschedulable
	return slim, nil
}

// InstallCRD creates or updates the Plan CRD on the cluster (server-side
// apply) and waits until it is established, so bundles carrying Plans apply.
func InstallCRD(ctx context.Context, c client.Client) error {
	defs, err := crd.DownstreamCustomResourceDefinitions()
	if err != nil {
		return err
	}
	for _, def := range defs {
		def.APIVersion, def.Kind = apiextensionsv1.SchemeGroupVersion.String(), "CustomResourceDefinition"
		if err := c.Patch(ctx, def, client.Apply, client.FieldOwner("edgefleet-agent"), client.ForceOwnership); err != nil {
			return fmt.Errorf("installing CRD %s on the downstream cluster: %w", def.Name, err)
		}
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			got := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, types.NamespacedName{Name: def.Name}, got); err != nil {
				return false, nil
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for CRD %s to be established: %w", def.Name, err)
		}
	}
	return nil
}

// SetupWithManager registers the Plan controller on a manager connected to
// the downstream cluster.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	if r.HTTP == nil {
		r.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Poll <= 0 {
		r.Poll = DefaultPoll
	}
	if r.Jobs == (JobSettings{}) {
		r.Jobs = JobSettingsFromEnv(nil)
	}
	// A node's labels or schedulability change: every plan may select it.
	// A node cordoned by a plan deleted while the agent was away is
	// released on the node's next event.
	allPlans := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
		var plans upgradev1.PlanList
		if err := mgr.GetClient().List(ctx, &plans); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(plans.Items)+1)
		if ns, name, ok := strings.Cut(obj.GetAnnotations()[AnnotationCordonedBy], "/"); ok {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
		}
		for _, p := range plans.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("upgradeplan").
		For(&upgradev1.Plan{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&batchv1.Job{}).
		Watches(&corev1.Node{}, allPlans, builder.WithPredicates(predicate.Or(predicate.LabelChangedPredicate{}, nodeSchedulingChanged()))).
		Complete(r)
}

func nodeSchedulingChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Node)
		n, ok2 := e.ObjectNew.(*corev1.Node)
		return ok1 && ok2 && o.Spec.Unschedulable != n.Spec.Unschedulable
	}}
}

// Scheme has the types the Plan controller reads and writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(upgradev1.AddToScheme(s))
	return s
}

// NewManager installs the Plan CRD on the downstream cluster cfg reaches and
// returns a manager running the Plan controller there; the caller starts
// it.
func NewManager(ctx context.Context, cfg *rest.Config, log logr.Logger) (ctrl.Manager, error) {
	scheme := Scheme()
	if cfg.QPS == 0 {
		// client-go's default (5/s) makes a wave of nodes wait on the
		// limiter: each node costs a cordon, a Job, a label and a status
		// write.
		cfg = rest.CopyConfig(cfg)
		cfg.QPS, cfg.Burst = 50, 100
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	if err := InstallCRD(ctx, c); err != nil {
		return nil, err
	}
	r := &Reconciler{}
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: "kube-system"}, ns); err == nil {
		r.ClusterID = string(ns.UID)
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:                 scheme,
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{
			ByObject:         CacheOptions(),
			DefaultTransform: cache.TransformStripManagedFields(),
		},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, fmt.Errorf("connecting the Plan controller to the downstream cluster: %w", err)
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	return mgr, nil
}
