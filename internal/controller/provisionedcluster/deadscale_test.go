package provisionedcluster_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/internal/provisioning/render"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// testDeadScaleDown runs in TestRemediation's manager: three servers,
// scaled down to one while a leaving server is powered off (it applies no
// plan, its node still Ready). It waits for the leave plan until the
// health check finds it unhealthy; then the scale-down stops waiting (in
// the reconcile that finds it, before remediation would replace it): its
// etcd member is recorded as remediation's replace records it, the
// machine is released, and, no server joining, the running server that
// stays removes the member (its plan gains an instruction, its NodeConfig
// stays). With a second server dead, releasing one could
// break etcd's quorum: the scale-down waits and says why.
func testDeadScaleDown(t *testing.T, c client.Client, n nodes) {
	for _, tc := range []struct {
		cluster, role string
		dead          int // how many non-init servers die
	}{
		{"quorum", "q", 2},
		{"scale", "z", 1},
	} {
		// One namespace each: a dead machine is never Ready again.
		ns := "rem-deadscale-" + tc.cluster
		sim := newSim(t, c, ns)
		servers := pool(3, map[string]string{"role": tc.role})
		servers.HealthCheck = fastChecks("")
		names := []string{tc.role + "-s0", tc.role + "-s1", tc.role + "-s2"}
		formed(t, c, sim, n, ns, tc.cluster, provisioningv1.ProvisionedClusterSpec{ControlPlane: servers},
			map[string]string{names[0]: tc.role, names[1]: tc.role, names[2]: tc.role})
		var dead, alive []string
		for _, name := range names {
			if cm, _ := machineOf(t, c, ns, name); !cm.Spec.Init && len(dead) < tc.dead {
				dead = append(dead, name)
			} else {
				alive = append(alive, name)
			}
		}
		configs := map[string]string{}
		for _, name := range alive {
			configs[name] = string(planFile(t, c, ns, name, kubedistro.ConfigPath))
		}
		for _, name := range dead {
			sim.kill(name)
		}
		patchSpec(t, c, ns, tc.cluster, func(s *provisioningv1.ProvisionedClusterSpec) { s.ControlPlane.Replicas = 1 })
		// Healthy by the check: its leave is waited for.
		waitCondition(t, c, ns, tc.cluster, provisioningv1.ReadyCondition, metav1.ConditionFalse, provisioningv1.LeavingEtcdReason, 30*time.Second)
		stays(t, time.Second, func() error {
			for _, name := range dead {
				if _, err := machineOf(t, c, ns, name); err != nil {
					return fmt.Errorf("dead server %s released while its node is Ready: %v", name, err)
				}
			}
			return nil
		})
		for _, name := range dead {
			n.ready(name, corev1.ConditionUnknown, time.Now())
		}

		if tc.dead == 2 {
			// Both dead servers leave; releasing either without its leave
			// while the other is dead could break the quorum.
			ctrltest.Eventually(t, 30*time.Second, func() error {
				pc := get(t, c, ns, tc.cluster, &provisioningv1.ProvisionedCluster{})
				if msg := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.ReadyCondition).Message; !strings.Contains(msg, "not released without leaving etcd") || !strings.Contains(msg, "break quorum") {
					return fmt.Errorf("Ready message %q: want the quorum named as the reason to wait", msg)
				}
				return nil
			})
			stays(t, 2*time.Second, func() error {
				for _, name := range dead {
					if _, err := machineOf(t, c, ns, name); err != nil {
						return fmt.Errorf("dead server %s released while another server is dead: %v", name, err)
					}
				}
				if pc := get(t, c, ns, tc.cluster, &provisioningv1.ProvisionedCluster{}); len(pc.Status.EtcdMemberRemovals) != 0 {
					return fmt.Errorf("etcd member removals recorded while the quorum is at risk: %+v", pc.Status.EtcdMemberRemovals)
				}
				return nil
			})
			continue
		}

		gone := dead[0]
		peer := "https://" + get(t, c, ns, gone, &machinesv1.MachineInventory{}).Status.Network.PrimaryAddress + ":2380"
		ctrltest.Eventually(t, 30*time.Second, func() error {
			if _, err := machineOf(t, c, ns, gone); !apierrors.IsNotFound(err) {
				return fmt.Errorf("ClusterMachine %s still exists (%v)", gone, err)
			}
			if claims := claimsOf(t, c, ns); claims[gone] != "" {
				return fmt.Errorf("dead server %s still claimed: %v", gone, claims)
			}
			if pc := get(t, c, ns, tc.cluster, &provisioningv1.ProvisionedCluster{}); pc.Status.ControlPlane.Ready != 1 {
				return fmt.Errorf("control plane %+v, want 1 ready", pc.Status.ControlPlane)
			}
			return nil
		})
		// No server joins: the running server that stays removes the
		// member with an instruction after its `kubernetes up`; its
		// NodeConfig does not change (that would restart it).
		var survivor string
		for _, name := range alive {
			if cm, err := machineOf(t, c, ns, name); err == nil && cm.Name != "" {
				survivor = name
			}
		}
		ctrltest.Eventually(t, 30*time.Second, func() error {
			pc := get(t, c, ns, tc.cluster, &provisioningv1.ProvisionedCluster{})
			if r := pc.Status.EtcdMemberRemovals; len(r) != 1 || r[0].PeerURL != peer || r[0].Machine != gone || r[0].RemovedBy != survivor || !r[0].ByRunningServer || r[0].Removed == nil {
				return fmt.Errorf("status.etcdMemberRemovals %+v: want %s of %s removed by the running server %s", r, peer, gone, survivor)
			}
			return nil
		})
		if ran := sim.instructions(); !slices.Contains(ran, survivor+": "+render.InstructionRemoveEtcdMembers+" kubernetes remove-etcd-members "+peer) {
			t.Fatalf("instructions run %q: the survivor %s did not run remove-etcd-members %s", ran, survivor, peer)
		}
		waitEvent(t, c, ns, survivor, provisioningv1.EtcdMemberRemovedReason, "Server "+survivor+" removed the etcd member "+peer+" of server "+gone)
		// Done, the instruction goes (the address may later be a live
		// server's); the NodeConfig never changed.
		ctrltest.Eventually(t, 30*time.Second, func() error {
			if in := planOf(t, c, ns, survivor).Instructions; len(in) != 1 || in[0].Name != render.InstructionKubernetes {
				return fmt.Errorf("survivor %s's plan instructions %+v after the removal: want only %s", survivor, in, render.InstructionKubernetes)
			}
			return nil
		})
		if got := string(planFile(t, c, ns, survivor, kubedistro.ConfigPath)); got != configs[survivor] {
			t.Fatalf("survivor %s's NodeConfig changed to remove the member: it would restart while the dead member counts", survivor)
		}
		// Released by the scale-down, not replaced by remediation.
		if inv := get(t, c, ns, gone, &machinesv1.MachineInventory{}); inv.Annotations[provisioningv1.RemediatedAnnotation] != "" {
			t.Fatalf("%s was remediated (%v), want released by the scale-down", gone, inv.Annotations)
		}
		waitEvent(t, c, ns, gone, provisioningv1.LeavingEtcdReason, "released without leaving")
		waitEvent(t, c, ns, gone, provisioningv1.EtcdMemberStaleReason, "was scaled down while dead: its etcd member "+peer)
		// The live server that left ran its leave plan.
		left := ""
		for _, name := range alive {
			if cm, _ := machineOf(t, c, ns, name); cm == nil || cm.Name == "" {
				left = name
			}
		}
		if left == "" || !slices.Contains(sim.history(), left+"@(0 files)") {
			t.Fatalf("plan applications %v: the live server %q that was scaled down did not run its leave plan", sim.history(), left)
		}
	}
}
