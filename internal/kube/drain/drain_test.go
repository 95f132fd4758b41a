package drain

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
)

func pod(name string, change func(*corev1.Pod)) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{"app": name},
		OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "rs", Controller: ptr.To(true)}}}}
	if change != nil {
		change(&p)
	}
	return p
}

func TestClassify(t *testing.T) {
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	daemon := func(p *corev1.Pod) { p.OwnerReferences[0].Kind = "DaemonSet" }
	bare := func(p *corev1.Pod) { p.OwnerReferences = nil }
	scratch := func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	}
	deletedAgo := func(d time.Duration) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: now.Add(-d)} }
	}
	formation := Options{IgnoreDaemonSets: true, DeleteEmptyDirData: true, Force: true}
	for _, tc := range []struct {
		name        string
		pod         corev1.Pod
		o           Options
		evict, wait bool
		refused     string
	}{
		{"a Deployment's pod moves", pod("web", nil), Options{}, true, false, ""},
		{"a bare pod moves with force", pod("bare", bare), formation, true, false, ""},
		{"a bare pod refuses the drain without force", pod("bare", bare), Options{}, false, false, "ns/bare has no controller and would be lost (set drain.force)"},
		{"a DaemonSet's pod stays with ignoreDaemonSets", pod("ds", daemon), formation, false, false, ""},
		{"a DaemonSet's pod refuses the drain without ignoreDaemonSets", pod("ds", daemon), Options{}, false, false, "(set drain.ignoreDaemonSets)"},
		{"emptyDir data refuses the drain without deleteEmptydirData", pod("cache", scratch), Options{}, false, false, "ns/cache has emptyDir data"},
		{"emptyDir data moves with deleteEmptydirData", pod("cache", scratch), formation, true, false, ""},
		{"a mirror pod stays", pod("static", func(p *corev1.Pod) { p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"} }), Options{}, false, false, ""},
		{"a finished pod does not matter", pod("job", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), Options{}, false, false, ""},
		{"a terminating pod is waited for", pod("old", deletedAgo(time.Minute)), Options{}, false, true, ""},
		{"a pod deleted longer ago than skipWaitForDeleteTimeout is not", pod("old", deletedAgo(time.Minute)), Options{SkipWaitForDeleteTimeout: 30 * time.Second}, false, false, ""},
		{"a pod the selector does not match stays", pod("web", nil), Options{PodSelector: labels.SelectorFromSet(labels.Set{"app": "db"})}, false, false, ""},
		{"a pod the caller skips stays", pod("mine", bare), Options{Skip: func(p *corev1.Pod) bool { return p.Name == "mine" }}, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evict, pending, refused := Classify([]corev1.Pod{tc.pod}, tc.o, now)
			if (len(evict) == 1) != tc.evict || (len(pending) == 1) != tc.wait {
				t.Errorf("evict %d, pending %v; want evict %v, waiting %v", len(evict), pending, tc.evict, tc.wait)
			}
			switch {
			case tc.refused == "" && len(refused) > 0:
				t.Errorf("refused: %v", refused)
			case tc.refused != "" && (len(refused) != 1 || !strings.Contains(refused[0], tc.refused)):
				t.Errorf("refused %v, want a reason saying %q", refused, tc.refused)
			}
		})
	}
}

func TestFromSpec(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  *upgradev1.DrainSpec
		check func(Options) bool
		err   string
	}{
		{"defaults ignore DaemonSets and delete emptyDir data", &upgradev1.DrainSpec{}, func(o Options) bool { return o.IgnoreDaemonSets && o.DeleteEmptyDirData && !o.Force }, ""},
		{"nil is the defaults", nil, func(o Options) bool { return o.IgnoreDaemonSets && o.DeleteEmptyDirData }, ""},
		{"deleteLocalData is the old name", &upgradev1.DrainSpec{DeleteLocalData: ptr.To(false)}, func(o Options) bool { return !o.DeleteEmptyDirData }, ""},
		{"both names refused", &upgradev1.DrainSpec{DeleteLocalData: ptr.To(false), DeleteEmptydirData: ptr.To(true)}, nil, "not both"},
		{"force, grace period and skip wait", &upgradev1.DrainSpec{Force: true, GracePeriod: ptr.To[int32](5), SkipWaitForDeleteTimeout: 60}, func(o Options) bool {
			return o.Force && *o.GracePeriodSeconds == 5 && o.SkipWaitForDeleteTimeout == time.Minute
		}, ""},
		{"a bad pod selector", &upgradev1.DrainSpec{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Sometimes"}}}}, nil, "drain.podSelector"},
		{"a negative timeout", &upgradev1.DrainSpec{Timeout: &metav1.Duration{Duration: -time.Second}}, nil, "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := FromSpec(tc.spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || !tc.check(o) {
				t.Fatalf("options %+v, error %v", o, err)
			}
		})
	}
}

func TestResultSaysWhatItWaitsFor(t *testing.T) {
	r := Result{Pending: []Pending{{"a/1", BlockedByPDB}, {"a/2", Evicted}, {"a/3", Terminating}, {"a/4", Evicted}, {"a/5", Evicted}}}
	if got, want := r.String(), "pod a/1 blocked by a PodDisruptionBudget; pod a/2 evicted; pod a/3 terminating and 2 more"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if !r.Blocked() || (Result{Pending: r.Pending[1:]}).Blocked() {
		t.Error("Blocked() does not follow the PodDisruptionBudget")
	}
	if got := strings.Join(r.Pods(), ","); got != "a/1,a/2,a/3,a/4,a/5" {
		t.Errorf("Pods() = %s", got)
	}
}

func TestBudgetSaysWhyAnEvictionWasRefused(t *testing.T) {
	err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{Type: policyv1.DisruptionBudgetCause, Message: "The disruption budget web needs 2 healthy pods and has 2 currently"})
	if got := budgetSays(err); got != " (The disruption budget web needs 2 healthy pods and has 2 currently)" {
		t.Errorf("budgetSays = %q", got)
	}
	if got := budgetSays(apierrors.NewTooManyRequests("slow down", 1)); got != "" {
		t.Errorf("budgetSays of a plain 429 = %q, want nothing", got)
	}
}
