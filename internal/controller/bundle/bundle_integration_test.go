package bundle_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/clusterns"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/bundle"
	clusterctrl "github.com/edgefleet/edgefleet/internal/controller/cluster"
	"github.com/edgefleet/edgefleet/internal/controller/clustergroup"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

const wait = 20 * time.Second

type env struct {
	t  *testing.T
	c  client.Client
	ns string
}

func startControllers(t *testing.T) client.Client {
	return ctrltest.Start(t,
		func(m ctrl.Manager) error {
			return (&clusterctrl.Reconciler{StatusBatch: 100 * time.Millisecond}).SetupWithManager(m)
		},
		func(m ctrl.Manager) error {
			return (&clustergroup.Reconciler{Batch: 100 * time.Millisecond}).SetupWithManager(m)
		},
		func(m ctrl.Manager) error {
			return (&bundle.Reconciler{StatusBatch: 100 * time.Millisecond}).SetupWithManager(m)
		},
	)
}

func newEnv(t *testing.T, c client.Client, ns string) *env {
	t.Helper()
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, c: c, ns: ns}
}

func (e *env) create(o client.Object) {
	e.t.Helper()
	o.SetNamespace(e.ns)
	if err := e.c.Create(context.Background(), o); err != nil {
		e.t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
	}
}

func (e *env) cluster(name string, labels map[string]string) {
	e.create(&fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
}

// checkIn renews the heartbeat Lease of cluster name once, as its agent
// would: the cluster controller computes liveness, and a cluster never
// heard of counts as offline, outside rollout budgets.
func (e *env) checkIn(name string) {
	e.t.Helper()
	ctrltest.Eventually(e.t, wait, func() error {
		var hb coordinationv1.Lease
		if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: clusterns.Name(e.ns, name), Name: clusterjoin.HeartbeatLease}, &hb); err != nil {
			return err
		}
		now := metav1.NowMicro()
		hb.Spec.RenewTime = &now
		return e.c.Update(context.Background(), &hb)
	})
}

func (e *env) setLabels(name string, labels map[string]string) {
	e.t.Helper()
	// Retried on conflict: status writes race the test's read.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var c fleetv1.Cluster
		if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: name}, &c); err != nil {
			return err
		}
		c.Labels = labels
		return e.c.Update(context.Background(), &c)
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// bd returns the BundleDeployment of bundle on cluster, or nil.
func (e *env) bd(bundleName, cluster string) (*fleetv1.BundleDeployment, error) {
	var bd fleetv1.BundleDeployment
	err := e.c.Get(context.Background(), types.NamespacedName{Namespace: clusterns.Name(e.ns, cluster), Name: bundleName}, &bd)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return &bd, err
}

func (e *env) mustBD(bundleName, cluster string) *fleetv1.BundleDeployment {
	e.t.Helper()
	var out *fleetv1.BundleDeployment
	ctrltest.Eventually(e.t, wait, func() error {
		bd, err := e.bd(bundleName, cluster)
		if err == nil && bd == nil {
			err = fmt.Errorf("no BundleDeployment %s for cluster %s", bundleName, cluster)
		}
		out = bd
		return err
	})
	return out
}

// agent reports the current deployment applied, ready and unmodified, as
// an agent would.
func (e *env) agent(bundleName, cluster string) {
	e.t.Helper()
	ctrltest.Eventually(e.t, wait, func() error {
		bd, err := e.bd(bundleName, cluster)
		if err != nil || bd == nil {
			return fmt.Errorf("no BundleDeployment %s for %s (%v)", bundleName, cluster, err)
		}
		bd.Status.AppliedDeploymentID = bd.Spec.DeploymentID
		bd.Status.Ready = true
		bd.Status.NonModified = true
		return e.c.Status().Update(context.Background(), bd)
	})
}

func (e *env) bundle(name string) *fleetv1.Bundle {
	e.t.Helper()
	var b fleetv1.Bundle
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: name}, &b); err != nil {
		e.t.Fatal(err)
	}
	return &b
}

func (e *env) updateBundle(name string, mutate func(*fleetv1.Bundle)) {
	e.t.Helper()
	ctrltest.Eventually(e.t, wait, func() error {
		b := e.bundle(name)
		mutate(b)
		return e.c.Update(context.Background(), b)
	})
}

func values(v map[string]any) *runtime.RawExtension {
	raw, _ := json.Marshal(v)
	return &runtime.RawExtension{Raw: raw}
}

func replicas(bd *fleetv1.BundleDeployment) any {
	if bd.Spec.Options.Helm == nil || bd.Spec.Options.Helm.Values == nil {
		return nil
	}
	var v map[string]any
	_ = json.Unmarshal(bd.Spec.Options.Helm.Values.Raw, &v)
	return v["replicas"]
}

func envIn(vals ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: vals}}}
}

func TestBundleController(t *testing.T) {
	c := startControllers(t)
	t.Run("cost is per pair", func(t *testing.T) { testCost(t, newEnv(t, c, "fleet-cost")) })
	t.Run("targets and customizations", func(t *testing.T) { testTargeting(t, newEnv(t, c, "fleet-a")) })
	t.Run("maxUnavailable limits promotion", func(t *testing.T) { testMaxUnavailable(t, newEnv(t, c, "fleet-b")) })
	t.Run("invalid selector", func(t *testing.T) { testInvalidSelector(t, newEnv(t, c, "fleet-c")) })
	t.Run("maxNew creates deployments over several reconciles", func(t *testing.T) { testMaxNew(t, newEnv(t, c, "fleet-d")) })
	t.Run("fleet.yaml warnings become a condition", func(t *testing.T) { testWarnings(t, newEnv(t, c, "fleet-e")) })
	t.Run("bundle namespace mappings", func(t *testing.T) { testNamespaceMapping(t, c) })
}

func testTargeting(t *testing.T, e *env) {
	ctx := context.Background()
	e.cluster("dev1", map[string]string{"env": "dev"})
	e.cluster("prod1", map[string]string{"env": "prod"})
	e.cluster("other", map[string]string{"env": "test"})
	e.create(&fleetv1.ClusterGroup{ObjectMeta: metav1.ObjectMeta{Name: "prod-group", Labels: map[string]string{"tier": "critical"}},
		Spec: fleetv1.ClusterGroupSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}})
	// As `edgefleet apply` writes it: fleet.yaml's targetCustomizations
	// first, then the GitRepo's targets, copied into targetRestrictions.
	e.create(&fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: fleetv1.BundleSpec{
		BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{DefaultNamespace: "app", Helm: &fleetv1.HelmOptions{Values: values(map[string]any{"replicas": 1, "image": "nginx"})}},
		Resources:               []fleetv1.BundleResource{{Name: "cm.yaml", Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n"}},
		Targets: []fleetv1.BundleTarget{
			{Name: "dev", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}, BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Values: values(map[string]any{"replicas": 2})}}},
			{Name: "critical", ClusterGroupSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "critical"}}, BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Values: values(map[string]any{"replicas": 5})}}},
			{Name: "devprod", ClusterSelector: envIn("dev", "prod")},
		},
		TargetRestrictions: []fleetv1.BundleTargetRestriction{{Name: "devprod", ClusterSelector: envIn("dev", "prod")}},
	}})

	dev := e.mustBD("app", "dev1")
	prod := e.mustBD("app", "prod1")
	if got := replicas(dev); got != float64(2) {
		t.Errorf("dev1 replicas = %v, want 2 (dev customization)", got)
	}
	if got := replicas(prod); got != float64(5) {
		t.Errorf("prod1 replicas = %v, want 5 (customization through the group's labels)", got)
	}
	if dev.Spec.Options.DefaultNamespace != "app" {
		t.Errorf("dev1 defaultNamespace = %q, want the bundle's \"app\"", dev.Spec.Options.DefaultNamespace)
	}
	if dev.Spec.DeploymentID == "" || dev.Spec.DeploymentID != dev.Spec.StagedDeploymentID || dev.Spec.DeploymentID == prod.Spec.DeploymentID {
		t.Errorf("deployment IDs: dev %q (staged %q), prod %q", dev.Spec.DeploymentID, dev.Spec.StagedDeploymentID, prod.Spec.DeploymentID)
	}
	contentsID := strings.SplitN(dev.Spec.DeploymentID, ":", 2)[0]
	var content fleetv1.Content
	if err := e.c.Get(ctx, types.NamespacedName{Name: contentsID}, &content); err != nil {
		t.Errorf("inline resources were not stored as Content %s: %v", contentsID, err)
	}
	if b := e.bundle("app"); b.Spec.ContentsID != "" {
		t.Errorf("the controller wrote contentsID %q back into the Bundle", b.Spec.ContentsID)
	}
	wantLabels := map[string]string{fleetv1.BundleNameLabel: "app", fleetv1.BundleNamespaceLabel: e.ns, fleetv1.ClusterNameLabel: "dev1", fleetv1.ClusterNamespaceLabel: e.ns}
	for k, v := range wantLabels {
		if dev.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, dev.Labels[k], v)
		}
	}
	if bd, _ := e.bd("app", "other"); bd != nil {
		t.Error("cluster \"other\" (env=test) got a BundleDeployment")
	}

	// Before agents report, the bundle waits for them.
	ctrltest.Eventually(t, wait, func() error {
		b := e.bundle("app")
		if b.Status.Summary.WaitApplied != 2 || b.Status.Display.ReadyClusters != "0/2" || b.Status.Display.State != string(fleetv1.WaitApplied) {
			return fmt.Errorf("status %+v", b.Status.Summary)
		}
		return nil
	})

	// Label changes move only that cluster's deployment.
	prodRV := prod.ResourceVersion
	e.setLabels("other", map[string]string{"env": "dev"})
	if got := replicas(e.mustBD("app", "other")); got != float64(2) {
		t.Errorf("other (now env=dev) replicas = %v, want 2", got)
	}
	e.setLabels("dev1", map[string]string{"env": "test"})
	ctrltest.Eventually(t, wait, func() error {
		if bd, err := e.bd("app", "dev1"); err != nil || bd != nil {
			return fmt.Errorf("dev1's BundleDeployment still exists after its label changed (%v)", err)
		}
		return nil
	})
	if got := e.mustBD("app", "prod1").ResourceVersion; got != prodRV {
		t.Errorf("prod1's BundleDeployment was rewritten (resourceVersion %s -> %s) by other clusters' label changes", prodRV, got)
	}

	// Agents report: status rolls up to the bundle, clusters and group.
	e.agent("app", "prod1")
	e.agent("app", "other")
	ctrltest.Eventually(t, wait, func() error {
		b := e.bundle("app")
		if b.Status.Display.ReadyClusters != "2/2" || !meta.IsStatusConditionTrue(b.Status.Conditions, fleetv1.ReadyCondition) || b.Status.Display.State != string(fleetv1.Ready) {
			return fmt.Errorf("bundle status %+v", b.Status)
		}
		var cl fleetv1.Cluster
		if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: "prod1"}, &cl); err != nil {
			return err
		}
		if cl.Status.Display.ReadyBundles != "1/1" || !meta.IsStatusConditionTrue(cl.Status.Conditions, fleetv1.ReadyCondition) || cl.Status.Display.State != fleetv1.ClusterStateWaitCheckIn {
			return fmt.Errorf("cluster status %+v", cl.Status)
		}
		var g fleetv1.ClusterGroup
		if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: "prod-group"}, &g); err != nil {
			return err
		}
		if g.Status.ClusterCount != 1 || g.Status.Display.ReadyClusters != "1/1" || g.Status.Summary.Ready != 1 {
			return fmt.Errorf("group status %+v", g.Status)
		}
		return nil
	})

	// Paused: changes are staged, not deployed.
	before := e.mustBD("app", "prod1").Spec.DeploymentID
	e.updateBundle("app", func(b *fleetv1.Bundle) {
		b.Spec.Paused = true
		b.Spec.Helm.Values = values(map[string]any{"replicas": 1, "image": "nginx:2"})
	})
	ctrltest.Eventually(t, wait, func() error {
		bd := e.mustBD("app", "prod1")
		if bd.Spec.DeploymentID != before || bd.Spec.StagedDeploymentID == before || !bd.Spec.Paused {
			return fmt.Errorf("paused bundle: deploymentID %s staged %s paused %v", bd.Spec.DeploymentID, bd.Spec.StagedDeploymentID, bd.Spec.Paused)
		}
		b := e.bundle("app")
		if b.Status.Summary.OutOfSync != 2 || b.Status.Display.State != string(fleetv1.OutOfSync) {
			return fmt.Errorf("paused bundle summary %+v", b.Status.Summary)
		}
		return nil
	})
	e.updateBundle("app", func(b *fleetv1.Bundle) { b.Spec.Paused = false })
	ctrltest.Eventually(t, wait, func() error {
		bd := e.mustBD("app", "prod1")
		if bd.Spec.DeploymentID != bd.Spec.StagedDeploymentID || bd.Spec.DeploymentID == before || bd.Spec.Paused {
			return fmt.Errorf("unpaused bundle not promoted: %s vs staged %s", bd.Spec.DeploymentID, bd.Spec.StagedDeploymentID)
		}
		return nil
	})

	// Deleting the bundle removes its deployments.
	if err := e.c.Delete(ctx, e.bundle("app")); err != nil {
		t.Fatal(err)
	}
	ctrltest.Eventually(t, wait, func() error {
		var list fleetv1.BundleDeploymentList
		if err := e.c.List(ctx, &list, client.MatchingLabels{fleetv1.BundleNamespaceLabel: e.ns}); err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d BundleDeployments left after deleting the bundle", len(list.Items))
		}
		return nil
	})
}

func testMaxUnavailable(t *testing.T, e *env) {
	names := []string{"c1", "c2", "c3"}
	for _, n := range names {
		e.cluster(n, map[string]string{"env": "prod"})
		e.checkIn(n)
	}
	one := intstr.FromInt32(1)
	e.create(&fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: fleetv1.BundleSpec{
		BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Values: values(map[string]any{"v": 1})}},
		RolloutStrategy:         &fleetv1.RolloutStrategy{MaxUnavailable: &one},
		Targets:                 []fleetv1.BundleTarget{{ClusterSelector: &metav1.LabelSelector{}}},
	}})
	// New deployments are never held back.
	for _, n := range names {
		bd := e.mustBD("app", n)
		if bd.Spec.DeploymentID == "" {
			ctrltest.Eventually(t, wait, func() error {
				if bd := e.mustBD("app", n); bd.Spec.DeploymentID == "" {
					return fmt.Errorf("%s: new deployment not promoted", n)
				}
				return nil
			})
		}
		e.agent("app", n)
	}
	ctrltest.Eventually(t, wait, func() error {
		if b := e.bundle("app"); b.Status.Summary.Ready != 3 {
			return fmt.Errorf("summary %+v", b.Status.Summary)
		}
		return nil
	})

	e.updateBundle("app", func(b *fleetv1.Bundle) { b.Spec.Helm.Values = values(map[string]any{"v": 2}) })
	promoted := func() (up []string, held int, err error) {
		for _, n := range names {
			bd, err := e.bd("app", n)
			if err != nil || bd == nil {
				return nil, 0, fmt.Errorf("%s: %v", n, err)
			}
			switch {
			case bd.Spec.StagedDeploymentID == bd.Spec.DeploymentID && bd.Status.AppliedDeploymentID != bd.Spec.DeploymentID:
				up = append(up, n)
			case bd.Spec.StagedDeploymentID != bd.Spec.DeploymentID:
				held++
			}
		}
		return up, held, nil
	}
	var first []string
	ctrltest.Eventually(t, wait, func() error {
		up, held, err := promoted()
		if err != nil {
			return err
		}
		if len(up) != 1 || held != 2 {
			return fmt.Errorf("promoted %v, held back %d; want 1 promoted and 2 held back", up, held)
		}
		first = up
		return nil
	})
	time.Sleep(500 * time.Millisecond) // the budget must hold, not just lag
	if up, held, _ := promoted(); len(up) != 1 || held != 2 {
		t.Fatalf("budget exceeded: promoted %v, held back %d", up, held)
	}
	ctrltest.Eventually(t, wait, func() error {
		if b := e.bundle("app"); b.Status.Summary.OutOfSync != 2 {
			return fmt.Errorf("summary %+v, want 2 OutOfSync", b.Status.Summary)
		}
		return nil
	})
	// The first cluster finishes: the next one is promoted.
	e.agent("app", first[0])
	ctrltest.Eventually(t, wait, func() error {
		up, held, err := promoted()
		if err != nil {
			return err
		}
		if len(up) != 1 || held != 1 || up[0] == first[0] {
			return fmt.Errorf("after %s became ready: promoted %v, held back %d", first[0], up, held)
		}
		return nil
	})
}

func testInvalidSelector(t *testing.T, e *env) {
	e.cluster("c1", map[string]string{"env": "dev"})
	e.create(&fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Name: "broken"}, Spec: fleetv1.BundleSpec{
		Targets: []fleetv1.BundleTarget{{Name: "bad", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"not a key!": "x"}}}},
	}})
	e.create(&fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Name: "fine"}, Spec: fleetv1.BundleSpec{
		Targets: []fleetv1.BundleTarget{{ClusterSelector: &metav1.LabelSelector{}}},
	}})
	ctrltest.Eventually(t, wait, func() error {
		b := e.bundle("broken")
		stalled := meta.FindStatusCondition(b.Status.Conditions, fleetv1.StalledCondition)
		ready := meta.FindStatusCondition(b.Status.Conditions, fleetv1.ReadyCondition)
		if stalled == nil || stalled.Status != metav1.ConditionTrue || ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != fleetv1.InvalidSpecReason {
			return fmt.Errorf("conditions %+v", b.Status.Conditions)
		}
		if !strings.Contains(ready.Message, `spec.targets[0] ("bad")`) || !strings.Contains(ready.Message, "clusterSelector") {
			return fmt.Errorf("Ready message %q does not say which selector is wrong", ready.Message)
		}
		return nil
	})
	e.mustBD("fine", "c1")
}

// TestBundleObservedGenerationOnlyAfterWrites: a BundleDeployment write
// that fails (an admission policy refuses it) leaves observedGeneration
// behind, so nobody reads the spec as acted on; once writes go through it
// catches up.
func TestBundleObservedGenerationOnlyAfterWrites(t *testing.T) {
	c := startControllers(t)
	e := newEnv(t, c, "fleet-og")
	ctx := context.Background()
	e.cluster("c1", nil)
	clusterNS := clusterns.Name(e.ns, "c1")
	ctrltest.Eventually(t, wait, func() error { return c.Get(ctx, types.NamespacedName{Name: clusterNS}, &corev1.Namespace{}) })

	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-bundledeployments"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{fleetv1.GroupVersion.Group}, APIVersions: []string{"*"}, Resources: []string{"bundledeployments"}},
				}}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "false", Message: "refused by the test"}},
		}}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "deny-bundledeployments"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{corev1.LabelMetadataName: clusterNS}}},
		}}
	for _, o := range []client.Object{policy, binding} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// The policy takes effect asynchronously: wait until it refuses.
	ctrltest.Eventually(t, wait, func() error {
		probe := &fleetv1.BundleDeployment{ObjectMeta: metav1.ObjectMeta{Namespace: clusterNS, Name: "probe"}}
		if err := c.Create(ctx, probe); err == nil {
			_ = c.Delete(ctx, probe)
			return fmt.Errorf("the admission policy is not in effect yet")
		}
		return nil
	})

	e.create(&fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: fleetv1.BundleSpec{
		Targets: []fleetv1.BundleTarget{{ClusterSelector: &metav1.LabelSelector{}}},
	}})
	ctrltest.Eventually(t, wait, func() error {
		b := e.bundle("app")
		if meta.FindStatusCondition(b.Status.Conditions, fleetv1.ReadyCondition) == nil {
			return fmt.Errorf("no status yet: %+v", b.Status)
		}
		return nil
	})
	if b := e.bundle("app"); b.Status.ObservedGeneration == b.Generation {
		t.Fatalf("observedGeneration %d set although the BundleDeployment write was refused", b.Status.ObservedGeneration)
	}

	if err := c.Delete(ctx, binding); err != nil {
		t.Fatal(err)
	}
	ctrltest.Eventually(t, wait, func() error {
		if b := e.bundle("app"); b.Status.ObservedGeneration != b.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", b.Status.ObservedGeneration, b.Generation)
		}
		return nil
	})
}

// testMaxNew: with rolloutStrategy.maxNew 2, five matched clusters still all
// get their BundleDeployment (the rest in later reconciles), and none is
// lost.
func testMaxNew(t *testing.T, e *env) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	for _, n := range names {
		e.cluster(n, nil)
		e.checkIn(n)
	}
	two := int32(2)
	e.create(&fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: fleetv1.BundleSpec{
		RolloutStrategy: &fleetv1.RolloutStrategy{MaxNew: &two},
		Targets:         []fleetv1.BundleTarget{{ClusterSelector: &metav1.LabelSelector{}}},
	}})
	for _, n := range names {
		e.mustBD("app", n)
	}
}

// testWarnings: the reader's warnings annotation shows as condition
// FleetYAMLWarnings, and the condition goes when the annotation does (no
// spec change needed).
func testWarnings(t *testing.T, e *env) {
	e.create(&fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{fleetv1.FleetYAMLWarningsAnnotation: "fleet.yaml:2: unknown field \"helmm\" (did you mean \"helm\"?); ignored"}}})
	cond := func() *metav1.Condition {
		return meta.FindStatusCondition(e.bundle("app").Status.Conditions, fleetv1.FleetYAMLWarningsCondition)
	}
	ctrltest.Eventually(t, wait, func() error {
		if c := cond(); c == nil || c.Reason != fleetv1.IgnoredKeysReason || !strings.Contains(c.Message, `unknown field "helmm"`) {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})
	e.updateBundle("app", func(b *fleetv1.Bundle) { delete(b.Annotations, fleetv1.FleetYAMLWarningsAnnotation) })
	ctrltest.Eventually(t, wait, func() error {
		if c := cond(); c != nil {
			return fmt.Errorf("condition still there: %+v", c)
		}
		return nil
	})
}
