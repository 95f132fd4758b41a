package upgradeplan

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
	"github.com/edgefleet/edgefleet/test/harness"
)

// fakeNodes is the number of kwok nodes of the test cluster.
const fakeNodes = 5

// TestPlansOnFakeNodes runs Plans on a dev cluster with kwok nodes (their
// Jobs' pods complete) and one node the test itself plays kubelet for (its
// pods fail on demand), with the controller as the agent runs it.
func TestPlansOnFakeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a dev cluster; skipped with -short")
	}
	dc := harness.StartClusters(t, 1, harness.ClusterOptions{Nodes: fakeNodes})[0]
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	scheme := Scheme()
	c, err := client.New(dc.RESTConfig(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	// A failing pod fails its Job at once (SUC's env override).
	t.Setenv("SYSTEM_UPGRADE_JOB_BACKOFF_LIMIT", "0")
	ctrl.SetLogger(testLogger(t))
	mgr, err := NewManager(ctx, dc.RESTConfig(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("plan controller: %v", err)
		}
	})
	waitFor(t, 2*time.Minute, "5 ready kwok nodes", func() error {
		var nodes corev1.NodeList
		if err := c.List(ctx, &nodes); err != nil {
			return err
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready < fakeNodes {
			return fmt.Errorf("%d ready", ready)
		}
		return nil
	})
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "system-upgrade"}})
	mustCreate(t, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "system-upgrade", Namespace: "system-upgrade"}})
	waitFor(t, time.Minute, "default ServiceAccount", func() error {
		return c.Get(ctx, client.ObjectKey{Namespace: "system-upgrade", Name: "default"}, &corev1.ServiceAccount{})
	})
	// kwok-node-0 is the control plane, as in k3s.
	label(t, c, "kwok-node-0", "node-role.kubernetes.io/control-plane", "true")

	// SUC's documented k3s example (examples/k3s-upgrade.yaml), with our
	// apiVersion: the server plan, then the agent plan waiting for it
	// through its prepare container.
	server := decodePlan(t, `
apiVersion: upgrade.edgefleet.io/v1alpha1
kind: Plan
metadata:
  name: k3s-server
  namespace: system-upgrade
spec:
  concurrency: 1
  cordon: true
  nodeSelector:
    matchExpressions:
    - {key: node-role.kubernetes.io/control-plane, operator: In, values: ["true"]}
  serviceAccountName: system-upgrade
  upgrade:
    image: rancher/k3s-upgrade
  version: v1.30.2+k3s1
`)
	agent := decodePlan(t, `
apiVersion: upgrade.edgefleet.io/v1alpha1
kind: Plan
metadata:
  name: k3s-agent
  namespace: system-upgrade
spec:
  concurrency: 2
  nodeSelector:
    matchExpressions:
    - {key: node-role.kubernetes.io/control-plane, operator: DoesNotExist}
    - {key: kwok.x-k8s.io/test, operator: DoesNotExist}
  prepare:
    args: [prepare, k3s-server]
    image: rancher/k3s-upgrade
  serviceAccountName: system-upgrade
  drain:
    force: true
    skipWaitForDeleteTimeout: 60
  upgrade:
    image: rancher/k3s-upgrade
  version: v1.30.2+k3s1
`)

	t.Run("k3s server plan: cordon, one Job, node labelled and uncordoned", func(t *testing.T) {
		cordoned := watchUnschedulable(t, dc.RESTConfig())
		mustCreate(t, c, server)
		p := waitReady(t, c, server, 2*time.Minute)
		if p.Status.LatestVersion != "v1.30.2+k3s1" || p.Status.Total != 1 || p.Status.Upgraded != 1 {
			t.Errorf("status %+v, want version v1.30.2+k3s1, 1 of 1 upgraded", p.Status)
		}
		n := node(t, c, "kwok-node-0")
		if n.Labels[NodeLabel("k3s-server")] != p.Status.LatestHash || n.Spec.Unschedulable {
			t.Errorf("node labels %v unschedulable %v: want plan.upgrade.cattle.io/k3s-server=%s and uncordoned", n.Labels, n.Spec.Unschedulable, p.Status.LatestHash)
		}
		if max := cordoned.max(); max != 1 {
			t.Errorf("at most %d nodes were cordoned at once; want the control plane node cordoned during its upgrade", max)
		}
		var job batchv1.Job
		if err := c.Get(ctx, client.ObjectKey{Namespace: "system-upgrade", Name: JobName("k3s-server", "kwok-node-0", p.Status.LatestHash)}, &job); err != nil {
			t.Fatalf("the node's Job: %v", err)
		}
		if img := job.Spec.Template.Spec.Containers[0].Image; img != "rancher/k3s-upgrade:v1.30.2-k3s1" {
			t.Errorf("upgrade image %s, want the version as tag", img)
		}
	})

	t.Run("k3s agent plan: drain with a PodDisruptionBudget, concurrency 2", func(t *testing.T) {
		// A workload on every worker, and a PDB that allows no disruption:
		// the drain must wait for it.
		mustCreate(t, c, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](fakeNodes),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
					Spec: corev1.PodSpec{
						Containers: []corev1.Container{{Name: "web", Image: "nginx"}},
						Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
							NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "type", Operator: corev1.NodeSelectorOpIn, Values: []string{"kwok"}}}}},
						}}},
						TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
					},
				},
			},
		})
		pdb := &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec:       policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		}
		mustCreate(t, c, pdb)
		waitFor(t, time.Minute, "a web pod running on every node", func() error {
			return runningPods(ctx, c, "app=web", fakeNodes)
		})
		cordoned := watchUnschedulable(t, dc.RESTConfig())
		mustCreate(t, c, agent)
		waitFor(t, time.Minute, "the drain blocked by the PodDisruptionBudget", func() error {
			p := getPlan(t, c, agent)
			for _, n := range p.Status.Nodes {
				if n.State == upgradev1.NodeDraining && strings.Contains(n.Message, "PodDisruptionBudget") {
					return nil
				}
			}
			return fmt.Errorf("nodes %+v", p.Status.Nodes)
		})
		var jobs batchv1.JobList
		if err := c.List(ctx, &jobs, client.MatchingLabels{LabelPlan: "k3s-agent"}); err != nil || len(jobs.Items) != 0 {
			t.Fatalf("%d Jobs (%v) while the drain is blocked; want none", len(jobs.Items), err)
		}
		// Lifting the budget lets the drain finish.
		if err := c.Delete(ctx, pdb); err != nil {
			t.Fatal(err)
		}
		p := waitReady(t, c, agent, 3*time.Minute)
		if p.Status.Total != fakeNodes-1 || p.Status.Upgraded != fakeNodes-1 {
			t.Errorf("%d of %d upgraded, want %d", p.Status.Upgraded, p.Status.Total, fakeNodes-1)
		}
		if max := cordoned.max(); max != 2 {
			t.Errorf("at most %d nodes were cordoned at once; want concurrency 2 used and respected", max)
		}
		for i := 1; i < fakeNodes; i++ {
			n := node(t, c, fmt.Sprintf("kwok-node-%d", i))
			if n.Labels[NodeLabel("k3s-agent")] != p.Status.LatestHash || n.Spec.Unschedulable {
				t.Errorf("node %s: labels %v unschedulable %v", n.Name, n.Labels, n.Spec.Unschedulable)
			}
		}
		if err := c.List(ctx, &jobs, client.MatchingLabels{LabelPlan: "k3s-agent"}); err != nil || len(jobs.Items) != fakeNodes-1 {
			t.Errorf("%d Jobs (%v), want one per node", len(jobs.Items), err)
		}
		for _, j := range jobs.Items {
			if len(j.Spec.Template.Spec.InitContainers) != 1 || j.Spec.Template.Spec.InitContainers[0].Name != "prepare" {
				t.Errorf("Job %s has no prepare init container", j.Name)
			}
		}
	})

	t.Run("a version change re-runs on every node", func(t *testing.T) {
		old := getPlan(t, c, server).Status.LatestHash
		updatePlan(t, c, server, func(p *upgradev1.Plan) { p.Spec.Version = "v1.31.0+k3s1" })
		waitFor(t, 2*time.Minute, "the new version applied", func() error {
			p := getPlan(t, c, server)
			if p.Status.LatestHash == old || !isTrue(p, "Ready") || p.Status.Upgraded != 1 {
				return fmt.Errorf("status %+v", p.Status)
			}
			if n := node(t, c, "kwok-node-0"); n.Labels[NodeLabel("k3s-server")] != p.Status.LatestHash {
				return fmt.Errorf("node label %s", n.Labels[NodeLabel("k3s-server")])
			}
			return nil
		})
		var jobs batchv1.JobList
		if err := c.List(ctx, &jobs, client.MatchingLabels{LabelPlan: "k3s-server"}); err != nil || len(jobs.Items) != 2 {
			t.Errorf("%d Jobs (%v), want one per version", len(jobs.Items), err)
		}
	})

	t.Run("a failing Job stops the plan; a new version resumes it", func(t *testing.T) {
		kubelet := startTestKubelet(t, c, "broken-node")
		kubelet.fail.Store(true)
		plan := decodePlan(t, `
apiVersion: upgrade.edgefleet.io/v1alpha1
kind: Plan
metadata:
  name: os
  namespace: system-upgrade
spec:
  concurrency: 1
  cordon: true
  nodeSelector:
    matchLabels: {os-upgrade: "yes"}
  upgrade:
    image: registry.example/os-upgrade
  version: v2
`)
		label(t, c, "broken-node", "os-upgrade", "yes")
		mustCreate(t, c, plan)
		waitFor(t, 2*time.Minute, "the plan stalled on broken-node", func() error {
			p := getPlan(t, c, plan)
			s := meta.FindStatusCondition(p.Status.Conditions, "Stalled")
			if s == nil || s.Status != metav1.ConditionTrue || s.Reason != ReasonJobFailed || !strings.Contains(s.Message, "broken-node") {
				return fmt.Errorf("conditions %+v", p.Status.Conditions)
			}
			return nil
		})
		// More nodes selected now: none may start while the failure stands.
		label(t, c, "kwok-node-1", "os-upgrade", "yes")
		label(t, c, "kwok-node-2", "os-upgrade", "yes")
		waitFor(t, time.Minute, "the new nodes counted", func() error {
			if p := getPlan(t, c, plan); p.Status.Total != 3 {
				return fmt.Errorf("total %d", p.Status.Total)
			}
			return nil
		})
		time.Sleep(3 * time.Second)
		p := getPlan(t, c, plan)
		var jobs batchv1.JobList
		if err := c.List(ctx, &jobs, client.MatchingLabels{LabelPlan: "os"}); err != nil || len(jobs.Items) != 1 {
			t.Fatalf("%d Jobs (%v) after the failure; want only broken-node's", len(jobs.Items), err)
		}
		if p.Status.Upgraded != 0 || len(p.Status.Nodes) != 1 || p.Status.Nodes[0].State != upgradev1.NodeFailed || p.Status.Nodes[0].Job == "" {
			t.Errorf("status %+v: want broken-node Failed with its Job, nothing upgraded", p.Status)
		}
		if !node(t, c, "broken-node").Spec.Unschedulable {
			t.Error("the failed node was uncordoned; it should stay cordoned for someone to look at")
		}
		// The fix: a new version. The failure belongs to the old hash.
		kubelet.fail.Store(false)
		updatePlan(t, c, plan, func(p *upgradev1.Plan) { p.Spec.Version = "v3" })
		p = waitReady(t, c, plan, 3*time.Minute)
		if p.Status.Upgraded != 3 {
			t.Errorf("%d of 3 upgraded after the new version", p.Status.Upgraded)
		}
	})

	t.Run("an unmanaged pod without drain.force fails the drain with a clear status", func(t *testing.T) {
		label(t, c, "kwok-node-3", "drain-test", "yes")
		mustCreate(t, c, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "lonely", Namespace: "default"},
			Spec:       corev1.PodSpec{NodeName: "kwok-node-3", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		})
		plan := decodePlan(t, `
apiVersion: upgrade.edgefleet.io/v1alpha1
kind: Plan
metadata:
  name: strict-drain
  namespace: system-upgrade
spec:
  nodeSelector:
    matchLabels: {drain-test: "yes"}
  drain: {}
  upgrade:
    image: registry.example/os-upgrade
  version: v1
`)
		mustCreate(t, c, plan)
		waitFor(t, time.Minute, "DrainFailed naming the pod and the fix", func() error {
			p := getPlan(t, c, plan)
			s := meta.FindStatusCondition(p.Status.Conditions, "Stalled")
			if s == nil || s.Reason != ReasonDrainFailed || !strings.Contains(s.Message, "default/lonely") || !strings.Contains(s.Message, "drain.force") {
				return fmt.Errorf("conditions %+v", p.Status.Conditions)
			}
			return nil
		})
		var jobs batchv1.JobList
		if err := c.List(ctx, &jobs, client.MatchingLabels{LabelPlan: "strict-drain"}); err != nil || len(jobs.Items) != 0 {
			t.Errorf("%d Jobs (%v) after a refused drain; want none", len(jobs.Items), err)
		}
		// Fixing the spec retries the node.
		updatePlan(t, c, plan, func(p *upgradev1.Plan) { p.Spec.Drain.Force = true })
		waitReady(t, c, plan, 2*time.Minute)
	})

	t.Run("a node leaving the selector mid-drain, and deleting a plan mid-drain, uncordon the node it cordoned", func(t *testing.T) {
		// A pod pinned to kwok-node-4 that its budget never lets go.
		labels := map[string]string{"app": "pinned"}
		mustCreate(t, c, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "pinned", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						NodeSelector: map[string]string{"kubernetes.io/hostname": "kwok-node-4"},
						Containers:   []corev1.Container{{Name: "c", Image: "busybox"}},
					},
				},
			},
		})
		mustCreate(t, c, &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "pinned", Namespace: "default"},
			Spec:       policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0)), Selector: &metav1.LabelSelector{MatchLabels: labels}},
		})
		waitFor(t, time.Minute, "the pinned pod running", func() error { return runningPods(ctx, c, "app=pinned", 1) })
		label(t, c, "kwok-node-4", "stuck", "yes")
		plan := decodePlan(t, `
apiVersion: upgrade.edgefleet.io/v1alpha1
kind: Plan
metadata:
  name: stuck
  namespace: system-upgrade
spec:
  nodeSelector:
    matchLabels: {stuck: "yes"}
  drain: {force: true}
  upgrade:
    image: registry.example/os-upgrade
  version: v1
`)
		mustCreate(t, c, plan)
		waitFor(t, time.Minute, "kwok-node-4 cordoned and draining", func() error {
			n := node(t, c, "kwok-node-4")
			if !n.Spec.Unschedulable || n.Annotations[AnnotationCordonedBy] != "system-upgrade/stuck" {
				return fmt.Errorf("unschedulable %v, annotations %v", n.Spec.Unschedulable, n.Annotations)
			}
			return nil
		})
		// Relabelled out of the plan's selector while draining: the plan
		// gives the node back at once (SUC would leave it cordoned until
		// the plan is deleted).
		label(t, c, "kwok-node-4", "stuck", "no")
		waitFor(t, time.Minute, "kwok-node-4 schedulable after leaving the selector", func() error {
			n := node(t, c, "kwok-node-4")
			if n.Spec.Unschedulable || n.Annotations[AnnotationCordonedBy] != "" {
				return fmt.Errorf("unschedulable %v, annotations %v", n.Spec.Unschedulable, n.Annotations)
			}
			return nil
		})
		label(t, c, "kwok-node-4", "stuck", "yes")
		waitFor(t, time.Minute, "kwok-node-4 cordoned and draining again", func() error {
			n := node(t, c, "kwok-node-4")
			if !n.Spec.Unschedulable || n.Annotations[AnnotationCordonedBy] != "system-upgrade/stuck" {
				return fmt.Errorf("unschedulable %v, annotations %v", n.Spec.Unschedulable, n.Annotations)
			}
			return nil
		})
		if err := c.Delete(ctx, plan); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "kwok-node-4 schedulable again", func() error {
			n := node(t, c, "kwok-node-4")
			if n.Spec.Unschedulable || n.Annotations[AnnotationCordonedBy] != "" {
				return fmt.Errorf("unschedulable %v, annotations %v", n.Spec.Unschedulable, n.Annotations)
			}
			return nil
		})
	})

	t.Run("an invalid plan is Stalled with the reason", func(t *testing.T) {
		plan := decodePlan(t, `
apiVersion: upgrade.edgefleet.io/v1alpha1
kind: Plan
metadata:
  name: no-version
  namespace: system-upgrade
spec:
  upgrade:
    image: registry.example/os-upgrade
`)
		mustCreate(t, c, plan)
		waitFor(t, time.Minute, "Validated False", func() error {
			p := getPlan(t, c, plan)
			s := meta.FindStatusCondition(p.Status.Conditions, CondValidated)
			if s == nil || s.Status != metav1.ConditionFalse || !strings.Contains(s.Message, "spec.version or spec.channel") || !isTrue(p, "Stalled") {
				return fmt.Errorf("conditions %+v", p.Status.Conditions)
			}
			return nil
		})
	})
}

// testKubelet plays kubelet for one node kwok does not manage: it keeps the
// node's Lease fresh and ends every pod bound to it, failed or succeeded.
type testKubelet struct{ fail atomic.Bool }

func startTestKubelet(t *testing.T, c client.Client, name string) *testKubelet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name, "kwok.x-k8s.io/test": "true"}}}
	mustCreate(t, c, n)
	n.Status = corev1.NodeStatus{
		Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "TestKubelet", LastHeartbeatTime: metav1.Now()}},
		Allocatable: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("10"), corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi")},
		Capacity:    corev1.ResourceList{corev1.ResourcePods: resource.MustParse("10"), corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi")},
	}
	status := n.Status
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(n), n); err != nil {
			return err
		}
		n.Status = status
		return c.Status().Update(ctx, n)
	})
	if err != nil {
		t.Fatal(err)
	}
	k := &testKubelet{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			k.renewLease(ctx, c, name)
			var pods corev1.PodList
			if err := c.List(ctx, &pods); err == nil {
				for i := range pods.Items {
					p := &pods.Items[i]
					if p.Spec.NodeName != name || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
						continue
					}
					k.end(ctx, c, p)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return k
}

func (k *testKubelet) renewLease(ctx context.Context, c client.Client, name string) {
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-node-lease"}}
	now := metav1.NewMicroTime(time.Now())
	if err := c.Get(ctx, client.ObjectKeyFromObject(l), l); err != nil {
		l.Spec = coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now}
		_ = c.Create(ctx, l)
		return
	}
	l.Spec.RenewTime = &now
	_ = c.Update(ctx, l)
}

func (k *testKubelet) end(ctx context.Context, c client.Client, p *corev1.Pod) {
	phase, code, reason := corev1.PodSucceeded, int32(0), "Completed"
	if k.fail.Load() {
		phase, code, reason = corev1.PodFailed, 1, "Error"
	}
	now := metav1.Now()
	p.Status.Phase = phase
	p.Status.ContainerStatuses = nil
	for _, ctr := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, StartedAt: now, FinishedAt: now}},
		})
	}
	_ = c.Status().Update(ctx, p)
}

// unschedulableWatch records the most nodes unschedulable at once.
type unschedulableWatch struct {
	mu  sync.Mutex
	top int
}

func (w *unschedulableWatch) max() int { w.mu.Lock(); defer w.mu.Unlock(); return w.top }

func watchUnschedulable(t *testing.T, cfg interface{}) *unschedulableWatch {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(restConfig(cfg))
	ctx, cancel := context.WithCancel(context.Background())
	w := &unschedulableWatch{}
	wi, err := cs.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	state := map[string]bool{}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for ev := range wi.ResultChan() {
			n, ok := ev.Object.(*corev1.Node)
			if !ok {
				continue
			}
			state[n.Name] = n.Spec.Unschedulable
			count := 0
			for _, u := range state {
				if u {
					count++
				}
			}
			w.mu.Lock()
			w.top = max(w.top, count)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); wi.Stop(); <-stopped })
	return w
}

func runningPods(ctx context.Context, c client.Client, selector string, want int) error {
	var pods corev1.PodList
	sel, err := metav1.ParseToLabelSelector(selector)
	if err != nil {
		return err
	}
	s, _ := metav1.LabelSelectorAsSelector(sel)
	if err := c.List(ctx, &pods, client.MatchingLabelsSelector{Selector: s}); err != nil {
		return err
	}
	running := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning {
			running++
		}
	}
	if running < want {
		return fmt.Errorf("%d of %d running", running, want)
	}
	return nil
}

func decodePlan(t *testing.T, doc string) *upgradev1.Plan {
	t.Helper()
	p := &upgradev1.Plan{}
	if err := yaml.UnmarshalStrict([]byte(doc), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func getPlan(t *testing.T, c client.Client, p *upgradev1.Plan) *upgradev1.Plan {
	t.Helper()
	got := &upgradev1.Plan{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(p), got); err != nil {
		t.Fatal(err)
	}
	return got
}

func waitReady(t *testing.T, c client.Client, p *upgradev1.Plan, timeout time.Duration) *upgradev1.Plan {
	t.Helper()
	var got *upgradev1.Plan
	waitFor(t, timeout, "plan "+p.Name+" Ready", func() error {
		got = getPlan(t, c, p)
		if !isTrue(got, "Ready") || got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("status %+v", got.Status)
		}
		return nil
	})
	return got
}

func isTrue(p *upgradev1.Plan, typ string) bool {
	return meta.IsStatusConditionTrue(p.Status.Conditions, typ)
}

func node(t *testing.T, c client.Client, name string) *corev1.Node {
	t.Helper()
	n := &corev1.Node{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, n); err != nil {
		t.Fatal(err)
	}
	return n
}

func label(t *testing.T, c client.Client, nodeName, k, v string) {
	t.Helper()
	n := node(t, c, nodeName)
	patch := client.MergeFrom(n.DeepCopy())
	n.Labels[k] = v
	if err := c.Patch(context.Background(), n, patch); err != nil {
		t.Fatal(err)
	}
}

func mustCreate(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("waiting for %s: %v", what, err)
}

func restConfig(cfg interface{}) *rest.Config { return cfg.(*rest.Config) }

func updatePlan(t *testing.T, c client.Client, p *upgradev1.Plan, mutate func(*upgradev1.Plan)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := getPlan(t, c, p)
		mutate(got)
		return c.Update(context.Background(), got)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testLogger(t *testing.T) logr.Logger {
	if os.Getenv("EDGEFLEET_TEST_LOG") == "" {
		return logr.Discard()
	}
	return testr.New(t)
}
