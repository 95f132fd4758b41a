// Package machineinventory keeps each registered machine's objects — its
// plan Secret, ServiceAccount, Role and RoleBinding — in place, and reports
// them and the machine's plan in the MachineInventory's conditions: Ready is
// True when the objects are in place AND the machine applied the current
// plan (PlanApplied). The registration endpoint
// (internal/machineregistration) creates them when the machine registers;
// this controller re-creates any that go missing, built by the same
// functions. An object of one of those names that the inventory does not
// control is a conflict: reported, never adopted or changed, since the
// machine would get whatever it holds.
package machineinventory

import (
	"context"
	"fmt"
	"strings"

	"errors"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/controller/internal/heartbeat"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
)

// Reconciler owns the Ready, PlanApplied, Reconciling and Stalled
// conditions of MachineInventories and status.plan's checksum and state;
// the machine's node agent reports the rest of status.plan.
type Reconciler struct {
	Client client.Client
	// Events records condition changes (one Event per new reason: a plan
	// turning applied, failed or invalid); SetupWithManager uses the
	// manager's recorder when nil.
	Events events.EventRecorder
	// Reader reads plan Secrets from the API server: the Secret watch is
	// metadata only, so Secrets' data is not cached.
	Reader client.Reader
}

// SetupWithManager registers the controller. The owned objects are watched
// by metadata only: ownership is all it checks, and Secrets' data need not
// be cached twice.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder("edgefleet-machineinventory")
	}
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("machineinventory").
		For(&machinesv1.MachineInventory{}, builder.WithPredicates(heartbeat.Ignore)).
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		Owns(&corev1.ServiceAccount{}, builder.OnlyMetadata).
		Owns(&rbacv1.Role{}, builder.OnlyMetadata).
		Owns(&rbacv1.RoleBinding{}, builder.OnlyMetadata).
		Complete(r)
	if err != nil {
		return fmt.Errorf("creating machineinventory controller: %w", err)
	}
	return nil
}

// Reconcile re-creates the machine's missing objects, reads its plan and
// sets the conditions.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var inv machinesv1.MachineInventory
	if err := r.Client.Get(ctx, req.NamespacedName, &inv); err != nil {
		if apierrors.IsNotFound(err) {
			planStateOf.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !inv.DeletionTimestamp.IsZero() {
		planStateOf.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	ready := r.ensureObjects(ctx, &inv)
	plan := r.evaluatePlan(ctx, &inv)
	planStateOf.set(req.NamespacedName, plan.state)
	return ctrl.Result{}, r.patchStatus(ctx, &inv, ready, plan)
}

// readiness is the outcome of ensureObjects: the Ready condition to set, and
// the error to retry on (nil for a conflict, which only a person resolves).
type readiness struct {
	cond metav1.Condition
	err  error
}

// ensureObjects checks the machine's objects in order, creating missing
// ones, and stops at the first it cannot fix.
func (r *Reconciler) ensureObjects(ctx context.Context, inv *machinesv1.MachineInventory) readiness {
	if !meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.RegisteredCondition) {
		// The endpoint creates the objects when the machine registers;
		// creating them earlier would hand a name to a machine that has not
		// proved who it is.
		return notReady(machinesv1.WaitingForRegistrationReason, "the machine has not registered yet: its plan Secret and credential are created when it does", nil)
	}
	var names []string
	for _, want := range machineregistration.MachineObjects(inv) {
		gvk, err := apiutil.GVKForObject(want, r.Client.Scheme())
		if err != nil {
			return notReady(machinesv1.FailedReason, err.Error(), err)
		}
		name := gvk.Kind + " " + want.GetName()
		names = append(names, name)
		got := &metav1.PartialObjectMetadata{}
		got.SetGroupVersionKind(gvk)
		err = r.Client.Get(ctx, client.ObjectKeyFromObject(want), got)
		switch {
		case err == nil && metav1.IsControlledBy(got, inv):
			continue
		case err == nil:
			msg := fmt.Sprintf("%s/%s exists but does not belong to this MachineInventory; the manager never takes over objects it did not create for a machine: delete or rename it, and the manager re-creates the machine's own", inv.Namespace, name)
			return notReady(machinesv1.ObjectConflictReason, msg, nil)
		case !apierrors.IsNotFound(err):
			return notReady(machinesv1.FailedReason, fmt.Sprintf("reading %s: %v", name, err), err)
		}
		if err := r.create(ctx, inv, want, gvk.Kind, name); err != nil {
			return notReady(machinesv1.FailedReason, fmt.Sprintf("re-creating %s: %v", name, err), err)
		}
	}
	return readiness{cond: metav1.Condition{Type: machinesv1.ReadyCondition, Status: metav1.ConditionTrue, Reason: machinesv1.MachineObjectsReadyReason,
		Message: strings.Join(names, ", ") + " exist and belong to this MachineInventory"}}
}

// create re-creates a missing object. AlreadyExists means the cache was
// behind (the registration endpoint created it meanwhile, or a squatter
// did): the watch brings the object and the next reconcile judges it.
func (r *Reconciler) create(ctx context.Context, inv *machinesv1.MachineInventory, want client.Object, kind, name string) error {
	if err := machineregistration.OwnFor(inv, want, r.Client.Scheme()); err != nil {
		return err
	}
	logf.FromContext(ctx).Info("Re-creating a missing machine object", kind, klog.KObj(want))
	if err := r.Client.Create(ctx, want); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s appeared meanwhile; checking it again", name)
		}
		return err
	}
	return nil
}

func notReady(reason, msg string, err error) readiness {
	return readiness{cond: metav1.Condition{Type: machinesv1.ReadyCondition, Status: metav1.ConditionFalse, Reason: reason, Message: msg}, err: err}
}

// patchStatus writes the conditions and the plan's checksum and state
// when they changed, and returns the error to retry on. The optimistic lock
// keeps a stale copy from undoing what the registration endpoint or the
// machine wrote (Registered, lastSeen, the plan report) meanwhile.
func (r *Reconciler) patchStatus(ctx context.Context, inv *machinesv1.MachineInventory, ready readiness, plan planEvaluation) error {
	before := inv.DeepCopy()
	gen := inv.Generation
	conds := &inv.Status.Conditions
	if ready.cond.Status == metav1.ConditionTrue {
		// The objects are in place: Ready is now about the plan.
		ready.cond = plan.ready
	}
	conditions.Set(conds, ready.cond.Type, ready.cond.Status, ready.cond.Reason, ready.cond.Message, gen)
	if plan.applied.Type != "" {
		conditions.Set(conds, plan.applied.Type, plan.applied.Status, plan.applied.Reason, plan.applied.Message, gen)
		inv.Status.Plan.Checksum, inv.Status.Plan.State = plan.checksum, plan.state
	}
	setOrRemove(conds, plan.reconciling, machinesv1.ReconcilingCondition, gen)
	setOrRemove(conds, plan.stalled, machinesv1.StalledCondition, gen)
	err := errors.Join(ready.err, plan.err)
	if perr := conditions.PatchStatus(ctx, r.Client, before, inv, nil, err, conditions.RecordTo(r.Events)); perr != nil {
		return perr
	}
	return err
}

// setOrRemove sets c (kstatus: Reconciling and Stalled exist only while
// True) or removes the condition when c is nil.
func setOrRemove(conds *[]metav1.Condition, c *metav1.Condition, typ string, gen int64) {
	if c == nil {
		meta.RemoveStatusCondition(conds, typ)
		return
	}
	conditions.Set(conds, typ, metav1.ConditionTrue, c.Reason, c.Message, gen)
}
