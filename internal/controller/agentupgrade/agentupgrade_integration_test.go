package agentupgrade_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/controller/agentupgrade"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// The controller against a real kube-apiserver, with agents played by
// writing the Clusters' status (no cluster controller runs): take-over,
// operator pause in the ConfigMap, a wave, a check-in, and a rollback of
// the whole fleet when the next wave's agent never checks in.
func TestAgentUpgradeController(t *testing.T) {
	const v1, v2 = "registry.local/agent:v1", "registry.local/agent:v2"
	c := ctrltest.Start(t, func(m ctrl.Manager) error {
		return (&agentupgrade.Reconciler{Settings: agentupgrade.Settings{Enabled: true, Image: v2, WaveSize: 1, Timeout: 6 * time.Second}}).SetupWithManager(m)
	})
	ctx := context.Background()
	for _, ns := range []string{"fleet", clusterjoin.SystemNamespace} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: clusterjoin.SystemNamespace, Name: agentupgrade.StateConfigMap},
		Data: map[string]string{"paused": "true"}}); err != nil {
		t.Fatal(err)
	}
	setAgent := func(name, image string) {
		t.Helper()
		var cl fleetv1.Cluster
		if err := c.Get(ctx, client.ObjectKey{Namespace: "fleet", Name: name}, &cl); err != nil {
			t.Fatal(err)
		}
		cl.Status.Namespace = "cluster-fleet-" + name
		cl.Status.Agent = fleetv1.AgentStatus{Image: image, Version: "v0.1.0", LastSeen: metav1.Now()}
		cl.Status.Conditions = []metav1.Condition{{Type: fleetv1.ConnectedCondition, Status: metav1.ConditionTrue, Reason: fleetv1.AgentConnectedReason, LastTransitionTime: metav1.Now()}}
		if err := c.Status().Update(ctx, &cl); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"a", "b"} {
		if err := c.Create(ctx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: n}}); err != nil {
			t.Fatal(err)
		}
		setAgent(n, v1)
	}
	bundle := func(name string) (*fleetv1.Bundle, error) {
		var b fleetv1.Bundle
		err := c.Get(ctx, client.ObjectKey{Namespace: "fleet", Name: agentupgrade.BundleName(name)}, &b)
		return &b, err
	}
	images := func() (string, error) {
		var out []string
		for _, n := range []string{"a", "b"} {
			b, err := bundle(n)
			if err != nil {
				return "", err
			}
			out = append(out, b.Annotations[agentupgrade.ImageAnnotation])
		}
		return strings.Join(out, " "), nil
	}
	state := func() map[string]string {
		var cm corev1.ConfigMap
		_ = c.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: agentupgrade.StateConfigMap}, &cm)
		return cm.Data
	}
	expect := func(what, wantImages, wantState string) {
		t.Helper()
		ctrltest.Eventually(t, 20*time.Second, func() error {
			got, err := images()
			if err != nil {
				return err
			}
			if got != wantImages || state()["state"] != wantState {
				return fmt.Errorf("%s: bundles on %q, state %v; want %q, %s", what, got, state(), wantImages, wantState)
			}
			return nil
		})
	}

	// Taken over at the agents' image; paused, so no wave.
	expect("take-over while paused", v1+" "+v1, agentupgrade.StatePaused)
	b, _ := bundle("a")
	m, err := content.Load(ctx, c, b.Spec.ContentsID)
	if err != nil || len(m.Resources) != 1 || !strings.Contains(m.Resources[0].Content, "image: "+v1+"\n") || !b.Spec.KeepResources {
		t.Fatalf("agent bundle content %v %+v, keepResources %v: want the agent Deployment on %s", err, m, b.Spec.KeepResources, v1)
	}

	// Unpaused: one wave of one.
	patch := []byte(`{"data":{"paused":"false"}}`)
	if err := c.Patch(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: clusterjoin.SystemNamespace, Name: agentupgrade.StateConfigMap}}, client.RawPatch("application/merge-patch+json", patch)); err != nil {
		t.Fatal(err)
	}
	setAgent("b", v1) // a Cluster event, so the change is read now rather than within 15 s
	expect("first wave", v2+" "+v1, agentupgrade.StateProgressing)
	if b, _ := bundle("a"); b.Annotations[agentupgrade.PreviousImageAnnotation] != v1 {
		t.Fatalf("wave did not record the previous image: %v", b.Annotations)
	}

	// a checks in: b's wave starts; b never checks in: both roll back.
	setAgent("a", v2)
	expect("second wave", v2+" "+v2, agentupgrade.StateProgressing)
	expect("rollback", v1+" "+v1, agentupgrade.StateRolledBack)
	st := state()
	if st["failedImage"] != v2 || !strings.Contains(st["message"], "fleet/b") || st["paused"] != "false" {
		t.Fatalf("state after rollback: %v", st)
	}
}
