package machineinventory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	invctrl "github.com/edgefleet/edgefleet/internal/controller/machineinventory"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

const (
	ns   = "machines"
	wait = 20 * time.Second
)

func TestMachineInventoryController(t *testing.T) {
	c := ctrltest.Start(t, func(m ctrl.Manager) error { return (&invctrl.Reconciler{}).SetupWithManager(m) })
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	// A ServiceAccount someone else made, with the name a machine later
	// takes: it must be reported, never adopted or changed.
	squatter := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "squatted", Labels: map[string]string{"owner": "admin"}}}
	if err := c.Create(ctx, squatter); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name       string
		registered bool
		// ready is the Ready condition wanted: status, reason and a
		// fragment of the message.
		status  metav1.ConditionStatus
		reason  string
		message string
		// objects: whether the machine's plan Secret exists at the end.
		planSecret bool
	}{
		// Registered and its objects exist: Ready waits for the machine to
		// apply its (empty) plan.
		{"registered", true, metav1.ConditionFalse, machinesv1.WaitingForPlanReason, "waiting for the machine to apply plan 44136fa355b3", true},
		{"not-registered", false, metav1.ConditionFalse, machinesv1.WaitingForRegistrationReason, "has not registered", false},
		{"squatted", true, metav1.ConditionFalse, machinesv1.ObjectConflictReason, "machines/ServiceAccount squatted exists but does not belong to this MachineInventory", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := newInventory(t, c, tc.name, tc.registered)
			waitReady(t, c, inv, tc.status, tc.reason, tc.message)
			err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: tc.name}, &corev1.Secret{})
			if (err == nil) != tc.planSecret {
				t.Fatalf("plan Secret exists: %v, want %v", err == nil, tc.planSecret)
			}
		})
	}

	t.Run("deleted plan Secret is re-created", func(t *testing.T) {
		key := client.ObjectKey{Namespace: ns, Name: "registered"}
		var old corev1.Secret
		if err := c.Get(ctx, key, &old); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(ctx, &old); err != nil {
			t.Fatal(err)
		}
		var inv machinesv1.MachineInventory
		if err := c.Get(ctx, key, &inv); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, wait, func() error {
			var s corev1.Secret
			if err := c.Get(ctx, key, &s); err != nil {
				return err
			}
			if s.UID == old.UID {
				return fmt.Errorf("the old Secret is still there")
			}
			if !metav1.IsControlledBy(&s, &inv) || s.Labels[machineregistration.LabelInventory] != inv.Name || s.Type != machineregistration.PlanSecretType {
				return fmt.Errorf("re-created Secret is not the machine's: owners %v labels %v type %s", s.OwnerReferences, s.Labels, s.Type)
			}
			return nil
		})
		waitReady(t, c, &inv, metav1.ConditionFalse, machinesv1.WaitingForPlanReason, "waiting for the machine")
	})

	// The plan: the manager says which plan is current (checksum, state),
	// the machine reports on it with server-side apply (as edgefleet-node
	// agent does), and Ready follows.
	t.Run("plan", func(t *testing.T) {
		key := client.ObjectKey{Namespace: ns, Name: "registered"}
		inv := &machinesv1.MachineInventory{}
		if err := c.Get(ctx, key, inv); err != nil {
			t.Fatal(err)
		}
		empty := nodeplan.Checksum([]byte("{}"))
		waitPlan(t, c, key, empty, machinesv1.PlanPending, true, false)

		report(t, c, key, map[string]any{"appliedChecksum": empty})
		waitReady(t, c, inv, metav1.ConditionTrue, machinesv1.PlanAppliedReason, "the machine applied plan "+empty[:12])
		waitPlan(t, c, key, empty, machinesv1.PlanApplied, false, false)

		next := setPlan(t, c, key, `{"instructions":[{"name":"install","command":"/bin/true"}]}`)
		waitReady(t, c, inv, metav1.ConditionFalse, machinesv1.WaitingForPlanReason, "(it last applied "+empty[:12]+")")
		waitPlan(t, c, key, next, machinesv1.PlanPending, true, false)

		report(t, c, key, map[string]any{"appliedChecksum": empty, "failedChecksum": next, "attempts": 2, "nextRetryTime": "2026-12-06T12:00:00Z",
			"failure": map[string]any{"instruction": "install", "exitCode": 3, "message": "instruction install exited with code 3", "output": "disk full"}})
		waitReady(t, c, inv, metav1.ConditionFalse, machinesv1.PlanFailedReason, `at instruction "install" (exit code 3)`)
		waitPlan(t, c, key, next, machinesv1.PlanFailed, true, false)
		ctrltest.Eventually(t, wait, func() error {
			var evs eventsv1.EventList
			if err := c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
				return err
			}
			for _, ev := range evs.Items {
				if ev.Regarding.Name == key.Name && ev.Type == corev1.EventTypeWarning && ev.Reason == machinesv1.PlanFailedReason && strings.Contains(ev.Note, `"install"`) {
					return nil
				}
			}
			return fmt.Errorf("no PlanFailed event among %d", len(evs.Items))
		})

		report(t, c, key, map[string]any{"appliedChecksum": next})
		waitReady(t, c, inv, metav1.ConditionTrue, machinesv1.PlanAppliedReason, next[:12])
		waitPlan(t, c, key, next, machinesv1.PlanApplied, false, false)

		bad := setPlan(t, c, key, `{"files":[{"path":"../etc/shadow"}]}`)
		waitReady(t, c, inv, metav1.ConditionFalse, machinesv1.InvalidPlanReason, "is not absolute")
		waitPlan(t, c, key, bad, machinesv1.PlanFailed, false, true)

		// A plan whose error list is longer than a condition may hold is
		// still reported, truncated.
		var files []string
		for i := range 2000 {
			files = append(files, fmt.Sprintf(`{"path":"relative/path/number/%d"}`, i))
		}
		huge := setPlan(t, c, key, `{"files":[`+strings.Join(files, ",")+`]}`)
		waitReady(t, c, inv, metav1.ConditionFalse, machinesv1.InvalidPlanReason, "(truncated)")
		waitPlan(t, c, key, huge, machinesv1.PlanFailed, false, true)
	})

	t.Run("squatter untouched", func(t *testing.T) {
		var sa corev1.ServiceAccount
		if err := c.Get(ctx, client.ObjectKeyFromObject(squatter), &sa); err != nil {
			t.Fatal(err)
		}
		if sa.ResourceVersion != squatter.ResourceVersion || len(sa.OwnerReferences) != 0 || sa.Labels[machineregistration.LabelInventory] != "" {
			t.Fatalf("the squatting ServiceAccount was changed: %+v", sa.ObjectMeta)
		}
		// The machine gets no Role or RoleBinding while its ServiceAccount
		// name is taken.
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "squatted"}, &rbacv1.RoleBinding{}); err == nil {
			t.Fatal("a RoleBinding was created for a squatted ServiceAccount name")
		}
	})
}

func newInventory(t *testing.T, c client.Client, name string, registered bool) *machinesv1.MachineInventory {
	t.Helper()
	ctx := context.Background()
	inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := c.Create(ctx, inv); err != nil {
		t.Fatal(err)
	}
	if registered {
		// As the registration endpoint does, racing the controller's Ready.
		ctrltest.Eventually(t, wait, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(inv), inv); err != nil {
				return err
			}
			meta.SetStatusCondition(&inv.Status.Conditions, metav1.Condition{Type: machinesv1.RegisteredCondition, Status: metav1.ConditionTrue, Reason: machinesv1.RegistrationSucceededReason, Message: "test"})
			return c.Status().Update(ctx, inv)
		})
	}
	return inv
}

func waitReady(t *testing.T, c client.Client, inv *machinesv1.MachineInventory, status metav1.ConditionStatus, reason, message string) {
	t.Helper()
	ctrltest.Eventually(t, wait, func() error {
		var got machinesv1.MachineInventory
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(inv), &got); err != nil {
			return err
		}
		r := meta.FindStatusCondition(got.Status.Conditions, machinesv1.ReadyCondition)
		if r == nil || r.Status != status || r.Reason != reason || !strings.Contains(r.Message, message) {
			return fmt.Errorf("Ready = %+v, want %s/%s containing %q", r, status, reason, message)
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, machinesv1.RegisteredCondition) && meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.RegisteredCondition) {
			return fmt.Errorf("Registered was lost: %+v", got.Status.Conditions)
		}
		return nil
	})
}

// report writes the machine's part of status.plan as edgefleet-node agent
// does: server-side apply with its own field manager.
func report(t *testing.T, c client.Client, key client.ObjectKey, plan map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": machinesv1.GroupVersion.String(), "kind": "MachineInventory",
		"metadata": map[string]any{"name": key.Name, "namespace": key.Namespace},
		"status":   map[string]any{"plan": plan},
	}}
	// Through JSON, so numbers are int64 as unstructured wants.
	b, _ := json.Marshal(u.Object)
	if err := json.Unmarshal(b, &u.Object); err != nil {
		t.Fatal(err)
	}
	if err := c.Status().Patch(context.Background(), u, client.Apply, client.FieldOwner("edgefleet-node"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

func setPlan(t *testing.T, c client.Client, key client.ObjectKey, plan string) string {
	t.Helper()
	var s corev1.Secret
	if err := c.Get(context.Background(), key, &s); err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{nodeplan.SecretKey: []byte(plan)}
	if err := c.Update(context.Background(), &s); err != nil {
		t.Fatal(err)
	}
	return nodeplan.Checksum([]byte(plan))
}

func waitPlan(t *testing.T, c client.Client, key client.ObjectKey, checksum string, state machinesv1.PlanState, reconciling, stalled bool) {
	t.Helper()
	ctrltest.Eventually(t, wait, func() error {
		var got machinesv1.MachineInventory
		if err := c.Get(context.Background(), key, &got); err != nil {
			return err
		}
		p := got.Status.Plan
		r := meta.IsStatusConditionTrue(got.Status.Conditions, machinesv1.ReconcilingCondition)
		st := meta.IsStatusConditionTrue(got.Status.Conditions, machinesv1.StalledCondition)
		if p.Checksum != checksum || p.State != state || r != reconciling || st != stalled {
			return fmt.Errorf("plan %s/%s reconciling %v stalled %v, want %s/%s %v %v", p.Checksum, p.State, r, st, checksum, state, reconciling, stalled)
		}
		pa := meta.FindStatusCondition(got.Status.Conditions, machinesv1.PlanAppliedCondition)
		if pa == nil || (pa.Status == metav1.ConditionTrue) != (state == machinesv1.PlanApplied) {
			return fmt.Errorf("PlanApplied %+v with state %s", pa, state)
		}
		return nil
	})
}
