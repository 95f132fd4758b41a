package provisionedcluster_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
)

// testEtcdMemberRemoval runs in TestRemediation's manager: a dead server
// of three is replaced by a spare, whose plan removes the dead server's
// etcd member before it joins; the survivors' plans do not carry it.
func testEtcdMemberRemoval(t *testing.T, c client.Client, n nodes) {
	ns := "rem-etcd"
	sim := newSim(t, c, ns)
	servers := pool(3, map[string]string{"role": "etcd"})
	servers.HealthCheck = fastChecks("")
	formed(t, c, sim, n, ns, "etcd", provisioningv1.ProvisionedClusterSpec{ControlPlane: servers},
		map[string]string{"x-s0": "etcd", "x-s1": "etcd", "x-s2": "etcd", "x-s3": "etcd"})
	spare := ""
	for _, name := range []string{"x-s0", "x-s1", "x-s2", "x-s3"} {
		if _, err := machineOf(t, c, ns, name); err != nil {
			spare = name
		}
	}
	dead := "x-s1"
	if spare == dead {
		dead = "x-s2"
	}
	peer := "https://" + get(t, c, ns, dead, &machinesv1.MachineInventory{}).Status.Network.PrimaryAddress + ":2380"
	before := map[string]string{}
	for _, name := range []string{"x-s0", "x-s1", "x-s2", "x-s3"} {
		if name != spare && name != dead {
			before[name] = fmt.Sprint(nodeConfig(t, c, ns, name).Etcd)
		}
	}

	n.ready(dead, corev1.ConditionUnknown, time.Now())
	waitReplaced(t, c, n, ns, "etcd", dead, spare)
	if nc := nodeConfig(t, c, ns, spare); nc.Etcd == nil || !slices.Equal(nc.Etcd.RemoveMembers, []string{peer}) {
		t.Fatalf("the replacement %s's etcd join %+v: want it to remove %s first (removals %+v)", spare, nc.Etcd, peer, get(t, c, ns, "etcd", &provisioningv1.ProvisionedCluster{}).Status.EtcdMemberRemovals)
	}
	ctrltest.Eventually(t, 20*time.Second, func() error {
		pc := get(t, c, ns, "etcd", &provisioningv1.ProvisionedCluster{})
		if r := pc.Status.EtcdMemberRemovals; len(r) != 1 || r[0].PeerURL != peer || r[0].Machine != dead || r[0].RemovedBy != spare || r[0].Removed == nil {
			return fmt.Errorf("status.etcdMemberRemovals %+v: want %s of %s removed by %s", r, peer, dead, spare)
		}
		return nil
	})
	waitEvent(t, c, ns, dead, provisioningv1.EtcdMemberStaleReason, "its etcd member "+peer+" is removed by the next server that joins")
	waitEvent(t, c, ns, spare, provisioningv1.EtcdMemberRemovedReason, "removed the etcd member "+peer+" of replaced server "+dead)
	// The survivors' etcd settings do not change, not even their join
	// endpoints (the dead server's is among them): a changed NodeConfig
	// restarts a node's Kubernetes, and a second member down while the
	// dead one still counts loses etcd's quorum.
	for name, was := range before {
		if now := fmt.Sprint(nodeConfig(t, c, ns, name).Etcd); now != was {
			t.Errorf("survivor %s's etcd settings changed from %s to %s", name, was, now)
		}
	}
	// Settled: the replacement's plan stays as it is.
	stays(t, 2*time.Second, func() error {
		if nc := nodeConfig(t, c, ns, spare); nc.Etcd == nil || !slices.Equal(nc.Etcd.RemoveMembers, []string{peer}) {
			return fmt.Errorf("the replacement's plan changed after it joined: %+v", nc.Etcd)
		}
		return nil
	})
}
