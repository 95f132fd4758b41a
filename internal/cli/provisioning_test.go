package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
)

func inventory(name string, ready bool, labels map[string]string) machinesv1.MachineInventory {
	status := metav1.ConditionFalse
	if ready {
		status = metav1.ConditionTrue
	}
	return machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: machinesv1.MachineInventoryStatus{Conditions: []metav1.Condition{{Type: "Ready", Status: status}}}}
}

func TestClusterPreview(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte(`apiVersion: provisioning.edgefleet.io/v1alpha1
kind: ProvisionedCluster
metadata: {name: shop}
spec:
  distro: k3s
  version: v1.33.5+k3s1
  controlPlane: {replicas: 1, machineSelector: {matchLabels: {role: server}}}
  workers:
  - {name: gpu, replicas: 3, machineSelector: {matchLabels: {gpu: "true"}}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	pc, err := readProvisionedCluster(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	invs := []machinesv1.MachineInventory{
		inventory("s-0", true, map[string]string{"role": "server"}),
		inventory("s-1", true, map[string]string{"role": "server"}),
		inventory("g-0", true, map[string]string{"gpu": "true"}),
		inventory("g-1", false, map[string]string{"gpu": "true"}),
		inventory("g-2", true, map[string]string{"gpu": "true", provisioningv1.ClusterLabel: "other", provisioningv1.PoolLabel: "w"}),
		inventory("x-0", true, map[string]string{"role": "db"}),
	}
	var out bytes.Buffer
	if err := writePreview(&out, pc, invs); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"would adopt: s-0\n", "also available: s-1\n",
		"would adopt: g-0\n", "not Ready: g-1\n", "taken: g-2 (other/w)\n",
		"missing: pool gpu needs 3 more machine(s)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("preview lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "x-0") {
		t.Errorf("preview lists a machine no selector matches:\n%s", got)
	}
	if err := os.WriteFile(file, []byte("kind: ProvisionedCluster\nmetadata: {name: a}\nspec: {distro: k3s, surprise: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readProvisionedCluster(file, nil); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Fatalf("an unknown field: %v", err)
	}
}

func TestClusterDescribe(t *testing.T) {
	now := time.Now()
	cond := func(typ string, status metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(now.Add(-time.Minute))}
	}
	pc := &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Name: "shop"}, Status: provisioningv1.ProvisionedClusterStatus{
		Conditions: []metav1.Condition{
			cond("Ready", metav1.ConditionFalse, "WaitingForMachines", "pool default needs 1 more machine(s)"),
			cond("FleetJoined", metav1.ConditionTrue, "Succeeded", ""),
			cond("ControlPlaneReady", metav1.ConditionTrue, "Succeeded", ""),
			cond("WorkersReady", metav1.ConditionFalse, "Progressing", "workers not ready yet"),
			cond("RemediationAllowed", metav1.ConditionTrue, "Healthy", ""),
		},
		ControlPlane:    provisioningv1.PoolStatus{Name: "control-plane", Replicas: 1, Current: 1, Ready: 1, Updated: 1},
		Workers:         []provisioningv1.PoolStatus{{Name: "default", Replicas: 2, Current: 1, Ready: 1, Updated: 1, Message: "pool default needs 1 more machine(s)"}},
		FleetClusterRef: &provisioningv1.LocalObjectReference{Name: "cluster-abc"},
	}}
	cms := []provisioningv1.ClusterMachine{
		{ObjectMeta: metav1.ObjectMeta{Name: "w-0"}, Spec: provisioningv1.ClusterMachineSpec{Pool: "default", Role: "agent"},
			Status: provisioningv1.ClusterMachineStatus{Version: "v1.37.1", Conditions: []metav1.Condition{cond("Ready", metav1.ConditionTrue, "Succeeded", "")},
				Remediation: &provisioningv1.Remediation{Phase: provisioningv1.PhaseWaitingForHealthy}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "s-0"}, Spec: provisioningv1.ClusterMachineSpec{Pool: "control-plane", Role: "server", Init: true},
			Status: provisioningv1.ClusterMachineStatus{Version: "v1.37.1", Conditions: []metav1.Condition{cond("Ready", metav1.ConditionTrue, "Succeeded", "")}}},
	}
	var out bytes.Buffer
	if err := writeDescribe(&out, pc, cms, now); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	wantOrder := []string{"ProvisionedCluster/shop", "FleetJoined Cluster/cluster-abc", "RemediationAllowed", "Pool/control-plane 1/1 ready", "ClusterMachine/s-0 server v1.37.1 (init)", "Pool/default 1/2 ready", "ClusterMachine/w-0 agent v1.37.1 remediation:WaitingForHealthy", "needs 1 more"}
	if len(lines) != len(wantOrder)+1 {
		t.Fatalf("describe:\n%s", got)
	}
	for i, want := range wantOrder {
		if !strings.Contains(lines[i+1], want) {
			t.Errorf("line %d = %q, want it to hold %q\n%s", i+1, lines[i+1], want, got)
		}
	}
	if !strings.Contains(lines[1], "WaitingForMachines") || !strings.Contains(lines[1], "1m0s") {
		t.Errorf("cluster row = %q", lines[1])
	}
}
