package conditions_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
)

func TestMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		cut  bool
	}{
		{"short", "fine", false},
		{"at the limit", strings.Repeat("a", conditions.MaxMessage), false},
		{"over the limit", strings.Repeat("a", conditions.MaxMessage+1), true},
		{"multi-byte runes across the cut", strings.Repeat("é", conditions.MaxMessage), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := conditions.Message(tc.in)
			if len(got) > conditions.MaxMessage || !utf8.ValidString(got) {
				t.Fatalf("len %d, valid UTF-8 %v", len(got), utf8.ValidString(got))
			}
			if cut := got != tc.in; cut != tc.cut || (cut && !strings.HasSuffix(got, "…")) {
				t.Fatalf("cut %v (marked %v), want %v", cut, strings.HasSuffix(got, "…"), tc.cut)
			}
		})
	}
}

func TestMark(t *testing.T) {
	type want map[string]metav1.ConditionStatus // absent: not in the map
	for _, tc := range []struct {
		name string
		mark func(*[]metav1.Condition)
		want want
	}{
		{"ready clears reconciling and stalled", func(c *[]metav1.Condition) { conditions.MarkReady(c, "Succeeded", "ok", 2) },
			want{conditions.Ready: metav1.ConditionTrue}},
		{"reconciling clears stalled, keeps ready", func(c *[]metav1.Condition) { conditions.MarkReconciling(c, "Progressing", "working", 2) },
			want{conditions.Ready: metav1.ConditionTrue, conditions.Reconciling: metav1.ConditionTrue}},
		{"stalled makes ready false and clears reconciling", func(c *[]metav1.Condition) { conditions.MarkStalled(c, "InvalidSpec", "bad", 2) },
			want{conditions.Ready: metav1.ConditionFalse, conditions.Stalled: metav1.ConditionTrue}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conds := []metav1.Condition{
				{Type: conditions.Ready, Status: metav1.ConditionTrue, Reason: "Succeeded"},
				{Type: conditions.Reconciling, Status: metav1.ConditionTrue, Reason: "Progressing"},
				{Type: conditions.Stalled, Status: metav1.ConditionTrue, Reason: "Failed"},
			}
			tc.mark(&conds)
			if len(conds) != len(tc.want) {
				t.Fatalf("conditions %+v, want %v", conds, tc.want)
			}
			for typ, st := range tc.want {
				c := meta.FindStatusCondition(conds, typ)
				if c == nil || c.Status != st || c.Reason == "" {
					t.Fatalf("%s = %+v, want %s", typ, c, st)
				}
			}
		})
	}
}

// TestPatchStatus runs against a real kube-apiserver: what is checked is
// what the apiserver stores.
func TestPatchStatus(t *testing.T) {
	c := ctrltest.Start(t)
	ctx := context.Background()
	g := &fleetv1.ClusterGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "g"}}
	if err := c.Create(ctx, g); err != nil {
		t.Fatal(err)
	}
	read := func() *fleetv1.ClusterGroup {
		var got fleetv1.ClusterGroup
		if err := c.Get(ctx, client.ObjectKeyFromObject(g), &got); err != nil {
			t.Fatal(err)
		}
		return &got
	}
	for _, tc := range []struct {
		name         string
		reconcileErr error
		change       bool
		wantObserved int64
		wantWrite    bool
	}{
		{"failed reconcile: status written, observedGeneration not", errors.New("a write failed"), true, 0, true},
		{"unchanged: no write", errors.New("still failing"), false, 0, false},
		{"succeeded: observedGeneration set", nil, false, 1, true},
		{"succeeded again: no write", nil, false, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := read()
			after := before.DeepCopy()
			if tc.change {
				conditions.MarkReconciling(&after.Status.Conditions, "Progressing", "working", after.Generation)
			}
			if err := conditions.PatchStatus(ctx, c, before, after, &after.Status.ObservedGeneration, tc.reconcileErr); err != nil {
				t.Fatal(err)
			}
			now := read()
			if wrote := now.ResourceVersion != before.ResourceVersion; wrote != tc.wantWrite {
				t.Fatalf("wrote %v, want %v", wrote, tc.wantWrite)
			}
			if now.Status.ObservedGeneration != tc.wantObserved {
				t.Fatalf("observedGeneration %d, want %d", now.Status.ObservedGeneration, tc.wantObserved)
			}
		})
	}
	t.Run("a stale copy conflicts instead of overwriting", func(t *testing.T) {
		stale := read()
		fresh := stale.DeepCopy()
		conditions.MarkReady(&fresh.Status.Conditions, "Succeeded", "fresh", 1)
		if err := conditions.PatchStatus(ctx, c, stale, fresh, nil, nil); err != nil {
			t.Fatal(err)
		}
		after := stale.DeepCopy()
		conditions.MarkStalled(&after.Status.Conditions, "Failed", "stale", 1)
		if err := conditions.PatchStatus(ctx, c, stale, after, nil, nil); !apierrors.IsConflict(errors.Unwrap(err)) {
			t.Fatalf("stale patch: %v, want a conflict", err)
		}
	})
}

func TestConditionEvents(t *testing.T) {
	cond := func(typ string, st metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg}
	}
	var (
		readyOK      = cond(conditions.Ready, metav1.ConditionTrue, "Succeeded", "all good")
		readyFailed  = cond(conditions.Ready, metav1.ConditionFalse, "BuildFailed", "xorriso: exit 1")
		stalled      = cond(conditions.Stalled, metav1.ConditionTrue, "BuildFailed", "xorriso: exit 1")
		reconciling  = cond(conditions.Reconciling, metav1.ConditionTrue, "BuildOngoing", "building")
		readyPending = cond(conditions.Ready, metav1.ConditionFalse, "BuildOngoing", "building")
		offline      = cond("Connected", metav1.ConditionFalse, "AgentOffline", "")
	)
	for _, tc := range []struct {
		name          string
		before, after []metav1.Condition
		want          []conditions.ConditionEvent
	}{
		{"first Ready True is a Normal event", nil, []metav1.Condition{readyOK},
			[]conditions.ConditionEvent{{Type: corev1.EventTypeNormal, Reason: "Succeeded", Note: "all good"}}},
		{"nothing changed: no event", []metav1.Condition{readyOK}, []metav1.Condition{readyOK}, nil},
		{"only the message changed: no event", []metav1.Condition{readyOK}, []metav1.Condition{cond(conditions.Ready, metav1.ConditionTrue, "Succeeded", "3/3 ready")}, nil},
		{"in progress: Ready False while Reconciling is Normal, one event per reason",
			[]metav1.Condition{readyOK}, []metav1.Condition{readyPending, reconciling},
			[]conditions.ConditionEvent{{Type: corev1.EventTypeNormal, Reason: "BuildOngoing", Note: "building"}}},
		{"stalled: Ready False and Stalled with one reason make one Warning",
			[]metav1.Condition{readyPending, reconciling}, []metav1.Condition{readyFailed, stalled},
			[]conditions.ConditionEvent{{Type: corev1.EventTypeWarning, Reason: "BuildFailed", Note: "xorriso: exit 1"}}},
		{"a condition going False without a message names itself", []metav1.Condition{readyOK}, []metav1.Condition{readyOK, offline},
			[]conditions.ConditionEvent{{Type: corev1.EventTypeWarning, Reason: "AgentOffline", Note: "Connected is False"}}},
		{"recovery: each new reason in order", []metav1.Condition{readyFailed, stalled, offline},
			[]metav1.Condition{readyOK, cond("Connected", metav1.ConditionTrue, "AgentConnected", "heartbeat 2s ago")},
			[]conditions.ConditionEvent{{Type: corev1.EventTypeNormal, Reason: "Succeeded", Note: "all good"}, {Type: corev1.EventTypeNormal, Reason: "AgentConnected", Note: "heartbeat 2s ago"}}},
		{"a removed condition is no event", []metav1.Condition{readyOK, reconciling}, []metav1.Condition{readyOK}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := conditions.ConditionEvents(tc.before, tc.after)
			if len(got) != len(tc.want) {
				t.Fatalf("events %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("event %d %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
	t.Run("a False condition with a transient reason is progress: Normal", func(t *testing.T) {
		waiting := cond("Bootstrapped", metav1.ConditionFalse, "Bootstrapping", "applying its plan")
		failed := cond("Bootstrapped", metav1.ConditionFalse, "BootstrapFailed", "exit 1")
		if got := conditions.ConditionEventsWith(nil, []metav1.Condition{waiting}, "Bootstrapping"); len(got) != 1 || got[0].Type != corev1.EventTypeNormal {
			t.Errorf("transient: %+v", got)
		}
		if got := conditions.ConditionEvents(nil, []metav1.Condition{waiting}); len(got) != 1 || got[0].Type != corev1.EventTypeWarning {
			t.Errorf("without the option: %+v", got)
		}
		if got := conditions.ConditionEventsWith([]metav1.Condition{waiting}, []metav1.Condition{failed}, "Bootstrapping"); len(got) != 1 || got[0].Type != corev1.EventTypeWarning {
			t.Errorf("a failure stays a Warning: %+v", got)
		}
	})
	t.Run("notes fit the events API", func(t *testing.T) {
		long := cond(conditions.Ready, metav1.ConditionFalse, "RenderError", strings.Repeat("é", conditions.MaxNote))
		got := conditions.ConditionEvents(nil, []metav1.Condition{long})
		if len(got) != 1 || len(got[0].Note) > conditions.MaxNote || !utf8.ValidString(got[0].Note) {
			t.Fatalf("note of %d bytes (valid UTF-8 %v)", len(got[0].Note), utf8.ValidString(got[0].Note))
		}
	})
}

// TestUnrecorded: a condition type named by Unrecorded is written but
// records no Event; the other conditions of the same write still do.
func TestUnrecorded(t *testing.T) {
	c := ctrltest.Start(t)
	ctx := context.Background()
	for i, tc := range []struct {
		name string
		opts []conditions.Option
		want []string
	}{
		{"every changed condition recorded", nil, []string{"BundlesNotReady", "AgentOffline"}},
		{"Ready unrecorded", []conditions.Option{conditions.Unrecorded(fleetv1.ReadyCondition)}, []string{"AgentOffline"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &fleetv1.ClusterGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "unrecorded-" + string(rune('a'+i))}}
			if err := c.Create(ctx, g); err != nil {
				t.Fatal(err)
			}
			after := g.DeepCopy()
			conditions.Set(&after.Status.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, "BundlesNotReady", "1/2 bundles ready", 1)
			conditions.Set(&after.Status.Conditions, "Connected", metav1.ConditionFalse, "AgentOffline", "no heartbeat", 1)
			rec := events.NewFakeRecorder(10)
			if err := conditions.PatchStatus(ctx, c, g, after, nil, nil, append(tc.opts, conditions.RecordTo(rec))...); err != nil {
				t.Fatal(err)
			}
			var got []string
			for len(rec.Events) > 0 {
				got = append(got, strings.Fields(<-rec.Events)[1])
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Event reasons %v, want %v", got, tc.want)
			}
			var now fleetv1.ClusterGroup
			if err := c.Get(ctx, client.ObjectKeyFromObject(g), &now); err != nil {
				t.Fatal(err)
			}
			if !meta.IsStatusConditionFalse(now.Status.Conditions, fleetv1.ReadyCondition) {
				t.Fatalf("Ready not written: %+v", now.Status.Conditions)
			}
		})
	}
}
