// Package conditions is the one status toolkit of the controllers: setting
// conditions (one truncation rule for messages), patching status (one
// change test, one rule for observedGeneration) and recording an Event for
// each condition reason a status write changes (one Event reason per
// condition reason).
package conditions

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// The condition types every edgefleet kind reports (the API groups define
// the same strings).
const (
	Ready       = "Ready"
	Reconciling = "Reconciling"
	Stalled     = "Stalled"
)

// MaxMessage is the longest condition message the API accepts.
const MaxMessage = 32768

// truncated marks a message cut at MaxMessage.
const truncated = "…"

// Message is msg cut to MaxMessage bytes, on a rune boundary, with a mark
// that it was cut.
func Message(msg string) string { return truncate(msg, MaxMessage) }

// Set sets condition typ in conds, the message truncated; it reports
// whether anything changed.
func Set(conds *[]metav1.Condition, typ string, status metav1.ConditionStatus, reason, msg string, gen int64) bool {
	return meta.SetStatusCondition(conds, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: Message(msg), ObservedGeneration: gen})
}

// MarkReady sets Ready True and clears Reconciling and Stalled: the object
// reached its desired state.
func MarkReady(conds *[]metav1.Condition, reason, msg string, gen int64) {
	Set(conds, Ready, metav1.ConditionTrue, reason, msg, gen)
	meta.RemoveStatusCondition(conds, Reconciling)
	meta.RemoveStatusCondition(conds, Stalled)
}

// MarkReconciling sets Reconciling True and clears Stalled: work towards the
// desired state is under way.
func MarkReconciling(conds *[]metav1.Condition, reason, msg string, gen int64) {
	Set(conds, Reconciling, metav1.ConditionTrue, reason, msg, gen)
	meta.RemoveStatusCondition(conds, Stalled)
}

// MarkStalled sets Stalled True and Ready False and clears Reconciling: the
// controller cannot progress until someone changes something. Use it for
// terminal failures only, not for ones being retried.
func MarkStalled(conds *[]metav1.Condition, reason, msg string, gen int64) {
	Set(conds, Stalled, metav1.ConditionTrue, reason, msg, gen)
	Set(conds, Ready, metav1.ConditionFalse, reason, msg, gen)
	meta.RemoveStatusCondition(conds, Reconciling)
}

// PatchStatus writes the status of after over that of before (the object
// as read) when they differ semantically, with optimistic locking, so a
// stale copy never undoes another writer's change (the conflict is
// returned and the reconcile retried). observed points at after's
// status.observedGeneration: it is set to after's generation only when
// reconcileErr is nil, as observedGeneration claims the whole spec was
// acted on. An object deleted meanwhile is not an error. With RecordTo,
// a successful write records the Events of the conditions it changed.
func PatchStatus(ctx context.Context, c client.Client, before, after client.Object, observed *int64, reconcileErr error, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if observed != nil && reconcileErr == nil {
		*observed = after.GetGeneration()
	}
	if equality.Semantic.DeepEqual(before, after) {
		return nil
	}
	if err := c.Status().Patch(ctx, after, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		kind := "object"
		if gvk, gerr := apiutil.GVKForObject(after, c.Scheme()); gerr == nil {
			kind = gvk.Kind
		}
		return fmt.Errorf("patching status of %s %s/%s: %w", kind, after.GetNamespace(), after.GetName(), err)
	}
	record(o.events, before, after, o)
	return nil
}
