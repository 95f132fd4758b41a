package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/node/kubedistro"
)

// Cluster API's "scale the control plane 3 → 1" while one server is
// powered off (its network gone), with the built-in distribution's real
// etcd: formation does not wait for the dead server's leave (its health
// check finds it unhealthy), records its etcd member, and, no server
// joining, the server that stays removes it with a plan instruction that
// restarts nothing; the live server scaled down leaves etcd itself (etcd
// refuses that while the dead member counts: 1 of 2 reachable). The
// cluster ends with one etcd member and a working API.
func TestDeadServerScaledDownEdgefleetDistro(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager and three servers of real kubelets and etcd")
	}
	bins := requireRealKubelets(t, "containerd", "runc", "nsenter", "iptables")
	ctx := context.Background()
	version := kubeletVersion(t, bins)
	d := startDistroLab(t, "10.92.0", "etcd-lab")
	c, ns := d.m.Client, d.l.ns

	regURL := d.registration(t, "servers", "server", nil)
	machines := map[string]*formationMachine{}
	for _, serial := range []string{"1", "2", "3"} {
		machines["server-"+serial] = d.addMachine(t, "server-"+serial, serial, regURL, map[string]string{version: bins})
	}

	pc := &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lab"}, Spec: provisioningv1.ProvisionedClusterSpec{
		Distro: provisioningv1.DistroEdgefleet, Version: version, Binaries: &provisioningv1.Binaries{Dir: distroBinDir(version)},
		ControlPlane: provisioningv1.MachinePool{Replicas: 3, MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "server"}},
			HealthCheck: &provisioningv1.HealthCheck{UnhealthyNodeConditions: []provisioningv1.UnhealthyNodeCondition{
				{Type: "Ready", Status: "Unknown", Timeout: metav1.Duration{Duration: 10 * time.Second}},
				{Type: "Ready", Status: "False", Timeout: metav1.Duration{Duration: 10 * time.Second}},
			}}},
		Registries: []provisioningv1.RegistryMirror{
			{Host: "registry.k8s.io", Endpoints: []string{"http://" + d.reg.Host}},
			{Host: "edgefleet.test", Endpoints: []string{"http://" + d.reg.Host}},
		},
	}}
	created := time.Now()
	if err := c.Create(ctx, pc); err != nil {
		t.Fatal(err)
	}
	cms := func() map[string]provisioningv1.ClusterMachine {
		var list provisioningv1.ClusterMachineList
		out := map[string]provisioningv1.ClusterMachine{}
		if c.List(ctx, &list, client.InNamespace(ns)) == nil {
			for _, cm := range list.Items {
				out[cm.Spec.InventoryName] = cm
			}
		}
		return out
	}
	etcdMembers := func(name string) string {
		out, _ := machines[name].Command(d.node, "kubernetes", "status", "--root", machines[name].root).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "etcd members:") {
				return line
			}
		}
		return "etcd members: unknown:\n" + string(out)
	}
	describe := func() string {
		var b strings.Builder
		if c.Get(ctx, client.ObjectKeyFromObject(pc), pc) == nil {
			for _, cond := range pc.Status.Conditions {
				fmt.Fprintf(&b, "cluster %s=%s %s: %s\n", cond.Type, cond.Status, cond.Reason, cond.Message)
			}
			fmt.Fprintf(&b, "etcdMemberRemovals %+v\n", pc.Status.EtcdMemberRemovals)
		}
		for name, cm := range cms() {
			for _, cond := range cm.Status.Conditions {
				if cond.Status != metav1.ConditionTrue {
					fmt.Fprintf(&b, "%s %s=%s %s: %s\n", name, cond.Type, cond.Status, cond.Reason, cond.Message)
				}
			}
		}
		return b.String()
	}
	waitCluster := func(timeout time.Duration, what string, ok func() error) {
		t.Helper()
		waitDescribed(t, timeout, what, ok, describe)
	}
	waitCluster(5*time.Minute, "three servers formed, the cluster Ready", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pc), pc); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ReadyCondition) || pc.Status.ControlPlane.Ready != 3 {
			return fmt.Errorf("cluster not Ready with 3 servers (%+v)", pc.Status.ControlPlane)
		}
		return nil
	})
	t.Logf("3 servers formed, cluster Ready %s after it was created", time.Since(created).Round(time.Millisecond))

	var survivor, dead, live string
	for name, cm := range cms() {
		switch {
		case cm.Spec.Init:
			survivor = name
		case dead == "":
			dead = name
		default:
			live = name
		}
	}
	if line := etcdMembers(survivor); !strings.HasPrefix(line, "etcd members: 3 (") {
		t.Fatalf("before: %s on %s", line, survivor)
	}
	// The dead server's network goes (a powered-off machine): it can
	// neither leave etcd nor answer.
	if out, err := machines[dead].Command("ip", "link", "set", "eth0", "down").CombinedOutput(); err != nil {
		t.Fatalf("cutting %s: %v %s", dead, err, out)
	}
	deadPeer := "https://" + machines[dead].IP + ":2380"
	scaled := time.Now()
	if err := c.Get(ctx, client.ObjectKeyFromObject(pc), pc); err != nil {
		t.Fatal(err)
	}
	pc.Spec.ControlPlane.Replicas = 1
	if err := c.Update(ctx, pc); err != nil {
		t.Fatal(err)
	}
	// The live server's leave is refused on the node while the dead
	// member counts (its plan fails with why, and is retried).
	refusal := ""
	waitCluster(6*time.Minute, "scaled down to "+survivor+" alone, the dead member removed by it", func() error {
		var inv machinesv1.MachineInventory
		if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: live}, &inv) == nil {
			if f := inv.Status.Plan.Failure; f != nil && refusal == "" && strings.Contains(f.Output, "not leaving etcd now") {
				refusal = f.Output
			}
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(pc), pc); err != nil {
			return err
		}
		if left := cms(); len(left) != 1 {
			return fmt.Errorf("%d ClusterMachines left", len(left))
		}
		r := pc.Status.EtcdMemberRemovals
		if len(r) != 1 || r[0].PeerURL != deadPeer || r[0].Removed == nil || !r[0].ByRunningServer || r[0].RemovedBy != cms()[survivor].Name {
			return fmt.Errorf("etcdMemberRemovals %+v: want %s removed by the running %s", r, deadPeer, survivor)
		}
		if line := etcdMembers(survivor); !strings.HasPrefix(line, "etcd members: 1 ("+survivor+")") {
			return fmt.Errorf("%s on %s", line, survivor)
		}
		if !meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ReadyCondition) {
			return fmt.Errorf("cluster not Ready")
		}
		return nil
	})
	t.Logf("3 → 1 with %s dead: %s left etcd, %s removed the dead member; one member, cluster Ready %s after the scale-down",
		dead, live, survivor, time.Since(scaled).Round(time.Second))
	if refusal == "" {
		t.Errorf("%s never reported its leave refused while %s's member counted: it left etcd with 1 of 2 members reachable", live, dead)
	} else {
		t.Logf("%s's leave, refused meanwhile: %s", live, strings.TrimSpace(refusal))
	}
	out, err := machines[survivor].Command(filepath.Join(bins, "kubectl"), "--kubeconfig", kubedistro.NewPaths(machines[survivor].root).AdminKubeconfig(),
		"get", "nodes", "-o", "name").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "node/"+survivor {
		t.Errorf("nodes after the scale-down: %v %s, want %s alone", err, out, survivor)
	}
}
