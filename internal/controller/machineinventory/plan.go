package machineinventory

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// planEvaluation is what the plan Secret and the machine's report say.
type planEvaluation struct {
	checksum string
	state    machinesv1.PlanState
	// applied is the PlanApplied condition (empty type: no plan Secret to
	// judge yet), ready the Ready condition once the objects are in place.
	applied, ready metav1.Condition
	// reconciling and stalled are set while True.
	reconciling, stalled *metav1.Condition
	err                  error
}

// evaluatePlan compares the plan in the machine's plan Secret with what the
// machine reported (appliedChecksum, failedChecksum). It validates the plan
// too, so an invalid plan is reported even while the machine is offline.
func (r *Reconciler) evaluatePlan(ctx context.Context, inv *machinesv1.MachineInventory) planEvaluation {
	var secret corev1.Secret
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: inv.Namespace, Name: machineregistration.PlanName(inv)}, &secret)
	if apierrors.IsNotFound(err) || (err == nil && !metav1.IsControlledBy(&secret, inv)) {
		// No plan yet, or not the machine's: the objects' check reports it.
		msg := "the machine has no plan Secret yet"
		return planEvaluation{ready: cond(machinesv1.ReadyCondition, metav1.ConditionFalse, machinesv1.WaitingForPlanReason, msg)}
	}
	if err != nil {
		msg := fmt.Sprintf("reading the plan Secret: %v", err)
		return planEvaluation{ready: cond(machinesv1.ReadyCondition, metav1.ConditionFalse, machinesv1.FailedReason, msg), err: err}
	}
	raw := secret.Data[nodeplan.SecretKey]
	e := planEvaluation{checksum: nodeplan.Checksum(raw)}
	short := e.checksum[:12]
	reported := inv.Status.Plan
	_, invalid := nodeplan.Parse(raw)
	switch {
	case invalid != nil:
		e.state = machinesv1.PlanFailed
		msg := fmt.Sprintf("plan %s in Secret %s is not a valid plan, nothing of it is applied; fix the Secret (`edgefleet machine plan apply` validates before writing): %v", short, secret.Name, invalid)
		e.set(metav1.ConditionFalse, machinesv1.InvalidPlanReason, msg)
		e.stalled = &metav1.Condition{Reason: machinesv1.InvalidPlanReason, Message: e.applied.Message}
	case reported.AppliedChecksum == e.checksum:
		e.state = machinesv1.PlanApplied
		e.set(metav1.ConditionTrue, machinesv1.PlanAppliedReason, fmt.Sprintf("the machine applied plan %s", short))
	case reported.FailedChecksum == e.checksum:
		e.state = machinesv1.PlanFailed
		msg := fmt.Sprintf("plan %s failed on the machine", short)
		if f := reported.Failure; f != nil {
			if f.Instruction != "" {
				msg = fmt.Sprintf("plan %s failed on the machine at instruction %q (exit code %d): %s", short, f.Instruction, f.ExitCode, f.Message)
			} else {
				msg = fmt.Sprintf("plan %s failed on the machine: %s", short, f.Message)
			}
		}
		if reported.NextRetryTime != nil {
			msg += fmt.Sprintf("; attempt %d, the machine retries at %s", reported.Attempts, reported.NextRetryTime.UTC().Format("15:04:05Z"))
		}
		e.set(metav1.ConditionFalse, machinesv1.PlanFailedReason, msg)
		e.reconciling = &metav1.Condition{Reason: machinesv1.PlanFailedReason, Message: e.applied.Message}
	default:
		e.state = machinesv1.PlanPending
		msg := fmt.Sprintf("waiting for the machine to apply plan %s", short)
		if reported.AppliedChecksum != "" {
			msg += fmt.Sprintf(" (it last applied %s)", reported.AppliedChecksum[:min(12, len(reported.AppliedChecksum))])
		}
		e.set(metav1.ConditionFalse, machinesv1.WaitingForPlanReason, msg)
		e.reconciling = &metav1.Condition{Reason: machinesv1.WaitingForPlanReason, Message: msg}
	}
	return e
}

func (e *planEvaluation) set(status metav1.ConditionStatus, reason, msg string) {
	e.applied = cond(machinesv1.PlanAppliedCondition, status, reason, msg)
	if status == metav1.ConditionTrue {
		msg = "its plan Secret and credential exist and belong to it, and " + msg
	}
	e.ready = cond(machinesv1.ReadyCondition, status, reason, msg)
}

// maxMessage keeps condition messages well below metav1.Condition's 32 KiB
// limit: an invalid plan's error list, or a machine's failure message, can
// be long, and a status the API refuses would never be written.
const maxMessage = 4 << 10

func cond(typ string, status metav1.ConditionStatus, reason, msg string) metav1.Condition {
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage], "") + " …(truncated)"
	}
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg}
}
