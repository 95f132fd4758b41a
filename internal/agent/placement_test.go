package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

// TestPlacement runs the agent's move-to-a-control-plane-node decision
// against a real kube-apiserver: Nodes, the agent's ReplicaSet and Pod as
// a cluster that came up in the wrong order would have them.
func TestPlacement(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a kube-apiserver")
	}
	c := harness.StartClusters(t, 1, harness.ClusterOptions{})[0].Client
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	ago := func(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

	type nodeSpec struct {
		controlPlane  bool
		ready         bool
		readySince    time.Duration
		taints        []corev1.Taint
		unschedulable bool
	}
	cpTaint := corev1.Taint{Key: clusterjoin.ControlPlaneNodeLabel, Effect: corev1.TaintEffectNoSchedule}
	readyCP := nodeSpec{controlPlane: true, ready: true, readySince: 5 * time.Minute, taints: []corev1.Taint{cpTaint}}
	for _, tc := range []struct {
		name string
		// The agent runs on nodes[0].
		nodes      []nodeSpec
		running    time.Duration
		movedAgo   time.Duration // 0: never
		noOwner    bool
		editPod    func(*corev1.Pod)
		wantMoveTo int // index in nodes, -1: stays
	}{
		{name: "on a worker, a control-plane node Ready for minutes: moves there", nodes: []nodeSpec{{ready: true}, readyCP}, running: 5 * time.Minute, wantMoveTo: 1},
		{name: "the second control-plane node can take it when the first is NotReady", nodes: []nodeSpec{{ready: true}, {controlPlane: true, readySince: time.Hour}, readyCP}, running: 5 * time.Minute, wantMoveTo: 2},
		{name: "already on a control-plane node: stays", nodes: []nodeSpec{readyCP, readyCP}, running: 5 * time.Minute, wantMoveTo: -1},
		{name: "no control-plane node (a managed cluster): stays", nodes: []nodeSpec{{ready: true}, {ready: true}}, running: 5 * time.Minute, wantMoveTo: -1},
		{name: "the control-plane node is NotReady: stays", nodes: []nodeSpec{{ready: true}, {controlPlane: true, readySince: time.Hour}}, running: 5 * time.Minute, wantMoveTo: -1},
		{name: "the control-plane node became Ready seconds ago: stays until it settles", nodes: []nodeSpec{{ready: true}, {controlPlane: true, ready: true, readySince: 10 * time.Second}}, running: 5 * time.Minute, wantMoveTo: -1},
		{name: "the control-plane node is cordoned: stays", nodes: []nodeSpec{{ready: true}, {controlPlane: true, ready: true, readySince: time.Hour, unschedulable: true}}, running: 5 * time.Minute, wantMoveTo: -1},
		{name: "the control-plane node has a taint the agent does not tolerate (RKE2's CriticalAddonsOnly): stays",
			nodes: []nodeSpec{{ready: true}, {controlPlane: true, ready: true, readySince: time.Hour, taints: []corev1.Taint{{Key: "CriticalAddonsOnly", Value: "true", Effect: corev1.TaintEffectNoExecute}}}}, running: 5 * time.Minute, wantMoveTo: -1},
		{name: "the agent started seconds ago: stays for now", nodes: []nodeSpec{{ready: true}, readyCP}, running: 10 * time.Second, wantMoveTo: -1},
		{name: "an agent of the same ReplicaSet moved 2 minutes ago: no second move in the cooldown", nodes: []nodeSpec{{ready: true}, readyCP}, running: 5 * time.Minute, movedAgo: 2 * time.Minute, wantMoveTo: -1},
		{name: "the last move is older than the cooldown: moves", nodes: []nodeSpec{{ready: true}, readyCP}, running: 5 * time.Minute, movedAgo: MoveCooldown + time.Minute, wantMoveTo: 1},
		{name: "the user removed the preference from the Deployment: stays", nodes: []nodeSpec{{ready: true}, readyCP}, running: 5 * time.Minute, wantMoveTo: -1,
			editPod: func(p *corev1.Pod) { p.Spec.Affinity = nil }},
		{name: "the user pinned the agent with a required node affinity: stays", nodes: []nodeSpec{{ready: true}, readyCP}, running: 5 * time.Minute, wantMoveTo: -1,
			editPod: func(p *corev1.Pod) {
				p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}}}
			}},
		{name: "the Pod's nodeSelector excludes the control-plane node: stays", nodes: []nodeSpec{{ready: true}, readyCP}, running: 5 * time.Minute, wantMoveTo: -1,
			editPod: func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"site": "north"} }},
		{name: "a Pod without a ReplicaSet (made by hand) is never deleted", nodes: []nodeSpec{{ready: true}, readyCP}, running: 5 * time.Minute, noOwner: true, wantMoveTo: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := fmt.Sprintf("p%d", time.Now().UnixNano())
			must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
			// No controller-manager makes it here.
			must(t, c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}))
			var names []string
			for i, n := range tc.nodes {
				node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-n%d", ns, i), Labels: map[string]string{}},
					Spec: corev1.NodeSpec{Taints: n.taints, Unschedulable: n.unschedulable}}
				if n.controlPlane {
					node.Labels[clusterjoin.ControlPlaneNodeLabel] = ""
				}
				must(t, c.Create(ctx, node))
				// Admission taints a new Node not-ready; the node
				// lifecycle controller (not running here) lifts it.
				node.Spec.Taints = n.taints
				must(t, c.Update(ctx, node))
				status := corev1.ConditionFalse
				if n.ready {
					status = corev1.ConditionTrue
				}
				node.Status = corev1.NodeStatus{
					Allocatable: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110")},
					Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, LastTransitionTime: ago(n.readySince), LastHeartbeatTime: ago(0)}},
				}
				must(t, c.Status().Update(ctx, node))
				names = append(names, node.Name)
				t.Cleanup(func() { _ = c.Delete(ctx, node) })
			}
			labels := map[string]string{"app": "edgefleet-agent"}
			tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
					Weight: 100, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: clusterjoin.ControlPlaneNodeLabel, Operator: corev1.NodeSelectorOpExists}}}}}}},
				Tolerations: []corev1.Toleration{{Key: clusterjoin.ControlPlaneNodeLabel, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
				Containers:  []corev1.Container{{Name: "agent", Image: "edgefleet.test/agent:v1"}},
			}}
			rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edgefleet-agent-1"},
				Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}
			if tc.movedAgo > 0 {
				rs.Annotations = map[string]string{clusterjoin.AnnotationAgentMovedAt: now.Add(-tc.movedAgo).UTC().Format(time.RFC3339)}
			}
			must(t, c.Create(ctx, rs))
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edgefleet-agent-1-x", Labels: labels}, Spec: *tmpl.Spec.DeepCopy()}
			pod.Spec.NodeName = names[0]
			if !tc.noOwner {
				pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}
			}
			if tc.editPod != nil {
				tc.editPod(pod)
			}
			must(t, c.Create(ctx, pod))
			start := ago(tc.running)
			pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &start}
			must(t, c.Status().Update(ctx, pod))

			p := &placement{client: c, namespace: ns, pod: pod.Name, every: time.Minute, settle: placementSettle, now: func() time.Time { return now }, log: testr.New(t)}
			target, err := p.check(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// A Pod bound to a node stays, terminating, until its kubelet
			// (none here) confirms.
			var after corev1.Pod
			err = c.Get(ctx, client.ObjectKeyFromObject(pod), &after)
			gone := apierrors.IsNotFound(err) || (err == nil && after.DeletionTimestamp != nil)
			if err != nil && !gone {
				t.Fatal(err)
			}
			must(t, c.Get(ctx, client.ObjectKeyFromObject(rs), rs))
			movedAt := rs.Annotations[clusterjoin.AnnotationAgentMovedAt]
			if tc.wantMoveTo < 0 {
				if target != "" || gone {
					t.Fatalf("the agent moved (to %q, Pod deleted: %v), want it to stay", target, gone)
				}
				return
			}
			if target != names[tc.wantMoveTo] || !gone {
				t.Fatalf("move to %q, Pod deleted: %v; want a move to %s", target, gone, names[tc.wantMoveTo])
			}
			if movedAt != now.UTC().Format(time.RFC3339) {
				t.Fatalf("ReplicaSet %s = %q, want the time of this move", clusterjoin.AnnotationAgentMovedAt, movedAt)
			}
		})
	}
}

// TestPlacementGivesUpWithoutRights: an agent whose rights were narrowed
// (it may not read its Pod, list nodes or delete Pods) says so once and
// stops checking, instead of failing every minute.
func TestPlacementGivesUpWithoutRights(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a kube-apiserver")
	}
	cfg := harness.StartClusters(t, 1, harness.ClusterOptions{})[0].RESTConfig()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:edgefleet-system:narrowed"}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := &placement{client: c, namespace: "edgefleet-system", pod: "edgefleet-agent-1-x", every: 10 * time.Millisecond, settle: time.Minute, now: time.Now, log: testr.New(t)}
	if _, err := p.check(context.Background()); !apierrors.IsForbidden(err) {
		t.Fatalf("check without rights = %v, want Forbidden", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.run(ctx); err != nil || ctx.Err() != nil {
		t.Fatalf("run without rights = %v (context: %v), want it to stop by itself", err, ctx.Err())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
