package conditions

import (
	"reflect"
	"slices"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
)

// MaxNote is the longest Event note (message) the events API accepts.
const MaxNote = 1024

// EventAction is the action of every condition Event: the controller
// reconciled the object and the outcome changed.
const EventAction = "Reconcile"

// Option tunes PatchStatus.
type Option func(*options)

type options struct {
	events     events.EventRecorder
	transient  []string
	unrecorded []string
}

// Unrecorded names condition types whose changes record no Event: state
// that many objects change at once because of one cause recorded elsewhere
// (a fleet Cluster's Ready follows its bundles: one rollout would be an
// Event per cluster, while the Bundle records the rollout once). The
// condition itself is still written; other conditions still record.
func Unrecorded(types ...string) Option {
	return func(o *options) { o.unrecorded = append(o.unrecorded, types...) }
}

// Transient names condition reasons that mean work under way (waiting for
// a machine, a rollout's next step): a condition going False with one of
// them is a Normal Event, not a Warning, as Ready is while Reconciling.
func Transient(reasons ...string) Option {
	return func(o *options) { o.transient = append(o.transient, reasons...) }
}

// RecordTo makes PatchStatus record an Event for every condition reason its
// write changed (see ConditionEvents). A nil recorder records nothing.
func RecordTo(r events.EventRecorder) Option {
	return func(o *options) { o.events = r }
}

// ConditionEvent is one Event a status write deserves: its reason is the
// condition reason, so an Event reason means exactly what the condition
// reason of the same name means (docs/spec lists them together).
type ConditionEvent struct {
	Type   string // corev1.EventTypeNormal or corev1.EventTypeWarning
	Reason string
	Note   string
}

// ConditionEvents lists the Events that going from the conditions before
// to those after deserves: one per condition reason that a condition newly
// carries (a condition that appeared, or whose status or reason changed),
// in the order of after. A message change alone is no Event: reconciles
// that only refresh counts would flood the object's Events. Two conditions
// changing to the same reason (MarkStalled's Ready and Stalled) make one
// Event, a Warning if either is bad news.
func ConditionEvents(before, after []metav1.Condition) []ConditionEvent {
	return ConditionEventsWith(before, after)
}

// ConditionEventsWith is ConditionEvents where a False condition with one
// of the transient reasons is progress (Normal), not bad news.
func ConditionEventsWith(before, after []metav1.Condition, transient ...string) []ConditionEvent {
	var out []ConditionEvent
	index := map[string]int{}
	for _, c := range after {
		if prev := meta.FindStatusCondition(before, c.Type); prev != nil && prev.Status == c.Status && prev.Reason == c.Reason {
			continue
		}
		typ := corev1.EventTypeNormal
		if bad(c, after) && !(c.Status == metav1.ConditionFalse && slices.Contains(transient, c.Reason)) {
			typ = corev1.EventTypeWarning
		}
		if i, ok := index[c.Reason]; ok {
			if typ == corev1.EventTypeWarning {
				out[i].Type = typ
			}
			continue
		}
		note := c.Message
		if note == "" {
			note = c.Type + " is " + string(c.Status)
		}
		index[c.Reason] = len(out)
		out = append(out, ConditionEvent{Type: typ, Reason: c.Reason, Note: truncate(note, MaxNote)})
	}
	return out
}

// bad tells whether condition c is bad news worth a Warning: Stalled True,
// or any other condition False — except Ready while the object is still
// Reconciling, which is progress, not failure. Reconciling is never bad.
func bad(c metav1.Condition, all []metav1.Condition) bool {
	switch c.Type {
	case Reconciling:
		return false
	case Stalled:
		return c.Status == metav1.ConditionTrue
	case Ready:
		return c.Status == metav1.ConditionFalse && !meta.IsStatusConditionTrue(all, Reconciling)
	}
	return c.Status == metav1.ConditionFalse
}

// record emits the Events for the conditions obj's status write changed.
func record(r events.EventRecorder, before, after runtime.Object, o options) {
	if r == nil {
		return
	}
	unrecorded := func(c metav1.Condition) bool { return slices.Contains(o.unrecorded, c.Type) }
	was := slices.DeleteFunc(slices.Clone(conditionsOf(before)), unrecorded)
	is := slices.DeleteFunc(slices.Clone(conditionsOf(after)), unrecorded)
	for _, e := range ConditionEventsWith(was, is, o.transient...) {
		r.Eventf(after, nil, e.Type, e.Reason, EventAction, "%s", e.Note)
	}
}

// conditionsOf reads status.conditions of any edgefleet kind. Every kind
// keeps them in Status.Conditions (api/conventions_test.go checks that), so
// one reflective read serves every kind, including ones added later.
func conditionsOf(obj runtime.Object) []metav1.Condition {
	v := reflect.ValueOf(obj)
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	status := v.FieldByName("Status")
	if !status.IsValid() || status.Kind() != reflect.Struct {
		return nil
	}
	field := status.FieldByName("Conditions")
	if !field.IsValid() || !field.CanInterface() {
		return nil
	}
	conds, _ := field.Interface().([]metav1.Condition)
	return conds
}

// truncate cuts s to max bytes on a rune boundary, marking the cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len(truncated)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncated
}
