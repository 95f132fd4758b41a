package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/node/kubedistro"
	"github.com/edgefleet/edgefleet/test/harness"
	"github.com/edgefleet/edgefleet/test/netlab"
	"github.com/edgefleet/edgefleet/test/tmpguard"
)

// formationMachine is one machine of the formation lab: a real
// `edgefleet-node agent` in its own network namespace with its own root.
type formationMachine struct {
	*netlab.Node
	root              string
	cfgPath, stateDir string
	agent             *nodeAgent
}

// Cluster formation for real with the built-in edgefleet distribution:
// machines are `edgefleet-node agent` processes, each in its own network
// namespace, registered (emulated TPM) with a real manager that announces
// itself on the lab's gateway address. A ProvisionedCluster picks one
// server and two workers by label; the plans run `edgefleet-node
// kubernetes up` through the node agents' planner; real kubelets make the
// Nodes Ready; the init server applies the import manifest, whose fleet
// agent (an image built from bin/edgefleet-agent, pulled from a loopback
// registry) joins the fleet; a bundle then runs a locally built image on
// the formed cluster. Then scale up, upgrade and scale down.
func TestFormationEdgefleetDistro(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager and a Kubernetes cluster of real kubelets")
	}
	bins := requireRealKubelets(t, "containerd", "runc", "nsenter", "iptables")
	ctx := context.Background()
	version := kubeletVersion(t, bins)

	d := startDistroLab(t, "10.96.0", "formation-lab")
	node := d.node
	reg, m, l, agentImage := d.reg, d.m, d.l, d.agentImage
	c, ns := m.Client, l.ns
	regURL := map[string]string{}
	// "worker-reset": workers whose registration allows a reset, so a
	// scale-down releases them by deleting their inventory.
	for _, role := range []string{"server", "worker", "worker-reset"} {
		kind := strings.TrimSuffix(role, "-reset")
		regURL[role] = d.registration(t, role+"s", kind, func(mr *machinesv1.MachineRegistration) {
			if kind != role {
				mr.Spec.Config.Reset = &machinesv1.ResetConfig{Enabled: true}
			}
		})
	}

	// Both Kubernetes versions' binaries on every machine, where
	// spec.binaries.dir names them.
	newBins := upgradeBinDir(t, bins, kubeNodeBinDir(t, upgradeVersion))
	binDir := distroBinDir
	machines := map[string]*formationMachine{}
	startAgent := func(fm *formationMachine) { t.Helper(); d.startAgent(t, fm) }
	addMachine := func(role, serial string) *formationMachine {
		t.Helper()
		name := strings.TrimSuffix(role, "-reset") + "-" + serial
		machines[name] = d.addMachine(t, name, serial, regURL[role], map[string]string{version: bins, upgradeVersion: newBins})
		return machines[name]
	}
	start := time.Now()
	for _, m := range [][2]string{{"server", "1"}, {"worker", "1"}, {"worker", "2"}, {"worker-reset", "3"}} {
		addMachine(m[0], m[1])
	}
	waitFor(t, 90*time.Second, "4 machines registered and Ready", func() bool {
		var invs machinesv1.MachineInventoryList
		if c.List(ctx, &invs, client.InNamespace(ns)) != nil {
			return false
		}
		n := 0
		for _, inv := range invs.Items {
			if meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.ReadyCondition) && inv.Status.Network.PrimaryAddress != "" {
				n++
			}
		}
		return n == 4
	})
	t.Logf("4 machines registered and Ready in %s", time.Since(start).Round(time.Millisecond))
	// The fourth worker waits for scale-up: it is kept out of the selector
	// until then.
	setLabel := func(name, key, value string) {
		t.Helper()
		waitFor(t, 10*time.Second, "labelling "+name, func() bool {
			var inv machinesv1.MachineInventory
			if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &inv) != nil {
				return false
			}
			if inv.Labels == nil {
				inv.Labels = map[string]string{}
			}
			inv.Labels[key] = value
			return c.Update(ctx, &inv) == nil
		})
	}
	setLabel("worker-3", "role", "spare")

	pc := &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lab"}, Spec: provisioningv1.ProvisionedClusterSpec{
		Distro: provisioningv1.DistroEdgefleet, Version: version, Binaries: &provisioningv1.Binaries{Dir: binDir(version)},
		ControlPlane: provisioningv1.MachinePool{Replicas: 1, MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "server"}}},
		Workers: []provisioningv1.WorkerPool{{Name: "workers", MachinePool: provisioningv1.MachinePool{Replicas: 2,
			MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}}}},
		Registries: []provisioningv1.RegistryMirror{
			{Host: "registry.k8s.io", Endpoints: []string{"http://" + reg.Host}},
			{Host: "edgefleet.test", Endpoints: []string{"http://" + reg.Host}},
		},
		Fleet:           provisioningv1.FleetSpec{Labels: map[string]string{"site": "lab"}},
		RolloutStrategy: provisioningv1.RolloutStrategy{DrainTimeout: &metav1.Duration{Duration: time.Minute}},
	}}
	server := machines["server-1"]
	kubectlOn := func(args ...string) (string, error) {
		full := append([]string{"--kubeconfig", kubedistro.NewPaths(server.root).AdminKubeconfig()}, args...)
		out, err := server.Command(filepath.Join(bins, "kubectl"), full...).CombinedOutput()
		return string(out), err
	}
	describe := func() string {
		var b strings.Builder
		if c.Get(ctx, client.ObjectKeyFromObject(pc), pc) == nil {
			for _, cond := range pc.Status.Conditions {
				fmt.Fprintf(&b, "cluster %s=%s %s: %s\n", cond.Type, cond.Status, cond.Reason, cond.Message)
			}
		}
		var cms provisioningv1.ClusterMachineList
		if c.List(ctx, &cms, client.InNamespace(ns)) == nil {
			for _, cm := range cms.Items {
				for _, cond := range cm.Status.Conditions {
					if cond.Status != metav1.ConditionTrue {
						fmt.Fprintf(&b, "%s %s=%s %s: %s\n", cm.Name, cond.Type, cond.Status, cond.Reason, cond.Message)
					}
				}
			}
		}
		return b.String()
	}
	waitCluster := func(t *testing.T, timeout time.Duration, what string, ok func() error) {
		t.Helper()
		waitDescribed(t, timeout, what, ok, describe)
	}
	nodesReady := func(want ...string) func() error {
		return func() error {
			for _, n := range want {
				out, err := kubectlOn("get", "node", n, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.nodeInfo.kubeletVersion}`)
				if err != nil || !strings.HasPrefix(out, "True ") {
					return fmt.Errorf("node %s: %v %s", n, err, out)
				}
			}
			return nil
		}
	}
	clusterReady := func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pc), pc); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ReadyCondition) {
			return fmt.Errorf("cluster not Ready")
		}
		return nil
	}

	t.Run("1 server + 2 workers formed from labels: real kubelets, Nodes Ready", func(t *testing.T) {
		created := time.Now()
		if err := c.Create(ctx, pc); err != nil {
			t.Fatal(err)
		}
		waitCluster(t, 4*time.Minute, "the server's Node Ready", nodesReady("server-1"))
		t.Logf("server Node Ready %s after the cluster was created", time.Since(created).Round(time.Millisecond))
		waitCluster(t, 3*time.Minute, "all Nodes Ready", nodesReady("server-1", "worker-1", "worker-2"))
		t.Logf("3 Nodes Ready %s after the cluster was created", time.Since(created).Round(time.Millisecond))
		waitCluster(t, 2*time.Minute, "ClusterMachines Bootstrapped and NodeReady", func() error {
			for _, name := range []string{"server-1", "worker-1", "worker-2"} {
				var cm provisioningv1.ClusterMachine
				if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &cm); err != nil {
					return err
				}
				for _, ct := range []string{provisioningv1.BootstrappedCondition, provisioningv1.NodeReadyCondition} {
					if !meta.IsStatusConditionTrue(cm.Status.Conditions, ct) {
						return fmt.Errorf("%s not %s", name, ct)
					}
				}
			}
			return nil
		})
		var spare provisioningv1.ClusterMachine
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "worker-3"}, &spare); err == nil {
			t.Error("worker-3 (not matching) was adopted")
		}
	})
	if t.Failed() {
		return
	}

	t.Run("the cluster joins the fleet: agent image from the loopback registry, Cluster linked both ways", func(t *testing.T) {
		start := time.Now()
		waitCluster(t, 3*time.Minute, "the cluster Ready (fleet joined)", clusterReady)
		t.Logf("cluster Ready (fleet joined) %s after the Nodes", time.Since(start).Round(time.Millisecond))
		if pc.Status.FleetClusterRef == nil {
			t.Fatal("no status.fleetClusterRef")
		}
		var fc fleetv1.Cluster
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: pc.Status.FleetClusterRef.Name}, &fc); err != nil {
			t.Fatal(err)
		}
		if fc.Labels[provisioningv1.ClusterLabel] != pc.Name || fc.Labels["site"] != "lab" {
			t.Errorf("fleet Cluster labels %v", fc.Labels)
		}
		out, err := kubectlOn("get", "pods", "-A", "-o", `jsonpath={range .items[*]}{.spec.containers[0].image} {.status.phase}{"\n"}{end}`)
		if err != nil || !strings.Contains(out, agentImage+" Running") {
			t.Errorf("the fleet agent pod: %v\n%s", err, out)
		}
	})
	if t.Failed() {
		return
	}

	// The manager's tunnel proxy, with the kubeconfig `edgefleet
	// kubeconfig` gives; it names the external URL, so kubectl runs on the
	// lab network (in the server's namespace).
	proxyKC := filepath.Join(t.TempDir(), "proxy.kubeconfig")
	proxyKubectl := func(args ...string) ([]byte, error) {
		return server.Command(filepath.Join(bins, "kubectl"), append([]string{"--kubeconfig", proxyKC}, args...)...).CombinedOutput()
	}
	t.Run("a bundle runs the locally built hello image on the formed cluster", func(t *testing.T) {
		dir := t.TempDir()
		writeTree(t, dir, map[string]string{
			"fleet.yaml": "defaultNamespace: hello\ntargets:\n- clusterSelector: {matchLabels: {site: lab}}\n",
			"hello.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 2
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      automountServiceAccountToken: false
      containers:
      - name: hello
        image: edgefleet.test/hello:v1
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
`,
		})
		applied := time.Now()
		out, err := exec.Command(harness.EdgefleetBinary(t), "apply", "-n", ns, "--kubeconfig", m.Kubeconfig, "hello", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("edgefleet apply: %v\n%s", err, out)
		}
		kc, err := exec.Command(harness.EdgefleetBinary(t), "kubeconfig", pc.Status.FleetClusterRef.Name, "-n", ns, "--kubeconfig", m.Kubeconfig).Output()
		if err != nil {
			t.Fatalf("edgefleet kubeconfig: %v", err)
		}
		if err := os.WriteFile(proxyKC, kc, 0o600); err != nil {
			t.Fatal(err)
		}
		var pods []podInfo
		waitCluster(t, 3*time.Minute, "2 hello pods Ready, read through the manager's tunnel proxy", func() error {
			out, err := proxyKubectl("get", "pods", "-n", "hello", "-l", "app=hello", "-o", "json")
			if err != nil {
				return fmt.Errorf("%v %s", err, out)
			}
			if pods = readyPods(string(out)); len(pods) != 2 {
				return fmt.Errorf("%d of 2 pods Ready", len(pods))
			}
			return nil
		})
		t.Logf("2 hello pods Ready %s after edgefleet apply", time.Since(applied).Round(time.Millisecond))
		for _, p := range pods {
			out, err := server.Command("curl", "-sS", "-m", "3", "http://"+p.ip+":8080/").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "hello from "+p.name {
				t.Errorf("pod %s on %s answered %q (%v)", p.name, p.node, out, err)
			}
		}
	})

	t.Run("scale workers 2 → 3: a fourth machine adopted, its Node Ready", func(t *testing.T) {
		start := time.Now()
		setLabel("worker-3", "role", "worker")
		waitFor(t, 10*time.Second, "replicas 3", func() bool {
			if c.Get(ctx, client.ObjectKeyFromObject(pc), pc) != nil {
				return false
			}
			pc.Spec.Workers[0].Replicas = 3
			return c.Update(ctx, pc) == nil
		})
		waitCluster(t, 3*time.Minute, "worker-3's Node Ready", nodesReady("worker-3"))
		t.Logf("scale-up: worker-3 Node Ready %s after replicas 3", time.Since(start).Round(time.Millisecond))
		waitCluster(t, time.Minute, "the cluster Ready with 3 workers", func() error {
			if err := clusterReady(); err != nil {
				return err
			}
			if pc.Status.WorkersReady != 3 {
				return fmt.Errorf("%d workers ready", pc.Status.WorkersReady)
			}
			return nil
		})
	})

	t.Run("upgrade "+version+" → "+upgradeVersion+": the API server and every kubelet report it", func(t *testing.T) {
		if t.Failed() {
			return
		}
		start := time.Now()
		waitFor(t, 10*time.Second, "version "+upgradeVersion, func() bool {
			if c.Get(ctx, client.ObjectKeyFromObject(pc), pc) != nil {
				return false
			}
			pc.Spec.Version, pc.Spec.Binaries.Dir = upgradeVersion, binDir(upgradeVersion)
			return c.Update(ctx, pc) == nil
		})
		waitCluster(t, 6*time.Minute, "all kubelets at "+upgradeVersion, func() error {
			out, err := kubectlOn("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.nodeInfo.kubeletVersion},{.spec.unschedulable}{"\n"}{end}`)
			if err != nil {
				return fmt.Errorf("%v %s", err, out)
			}
			for _, line := range strings.Fields(out) {
				if !strings.Contains(line, "="+upgradeVersion+",") || strings.HasSuffix(line, "true") {
					return fmt.Errorf("nodes: %s", out)
				}
			}
			if err := nodesReady("server-1", "worker-1", "worker-2", "worker-3")(); err != nil {
				return err
			}
			// The server's control plane moved too (servers first), on the
			// same etcd data.
			out, err = kubectlOn("get", "--raw", "/version")
			if err != nil || !strings.Contains(strings.ReplaceAll(out, " ", ""), `"gitVersion":"`+upgradeVersion+`"`) {
				return fmt.Errorf("the API server's /version: %v %s", err, out)
			}
			return nil
		})
		t.Logf("upgrade: the API server and 4 nodes at %s in %s", upgradeVersion, time.Since(start).Round(time.Millisecond))
		// The running control-plane processes are the new binaries (the
		// controller manager and scheduler have no version endpoint a
		// test can read without their credentials).
		var st kubedistro.State
		data, err := os.ReadFile(kubedistro.NewPaths(server.root).State())
		if err != nil || yaml.Unmarshal(data, &st) != nil {
			t.Fatalf("server state: %v", err)
		}
		checked := 0
		for _, comp := range st.Components {
			if comp.Name != "kube-controller-manager" && comp.Name != "kube-scheduler" {
				continue
			}
			checked++
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", comp.PID))
			if want, _ := filepath.EvalSymlinks(filepath.Join(newBins, comp.Name)); err != nil || exe != want {
				t.Errorf("%s runs %s (%v), want %s", comp.Name, exe, err, want)
			}
		}
		if checked != 2 {
			t.Errorf("the server's state lists %d of kube-controller-manager and kube-scheduler: %+v", checked, st.Components)
		}
		waitCluster(t, 2*time.Minute, "the cluster Ready after the upgrade", clusterReady)
	})

	t.Run("scale workers 3 → 2: drained, Node removed, machine reset, back as a new inventory", func(t *testing.T) {
		start := time.Now()
		var old machinesv1.MachineInventory
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "worker-3"}, &old); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "replicas 2", func() bool {
			if c.Get(ctx, client.ObjectKeyFromObject(pc), pc) != nil {
				return false
			}
			pc.Spec.Workers[0].Replicas = 2
			return c.Update(ctx, pc) == nil
		})
		// worker-3's registration allows a reset: its inventory is deleted
		// (the machine resets at its next contact) and its Node removed.
		waitCluster(t, 3*time.Minute, "worker-3's Node deleted and its inventory deleted", func() error {
			out, err := kubectlOn("get", "node", "worker-3", "-o", "name")
			if err == nil || !strings.Contains(out, "NotFound") {
				return fmt.Errorf("node worker-3 still there: %v %s", err, out)
			}
			var inv machinesv1.MachineInventory
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "worker-3"}, &inv); err == nil && inv.UID == old.UID {
				return fmt.Errorf("worker-3's inventory still there (claimed by %q)", inv.Labels[provisioningv1.ClusterLabel])
			}
			return nil
		})
		t.Logf("scale-down: worker-3 drained, deleted and released by reset in %s", time.Since(start).Round(time.Millisecond))
		out, err := proxyKubectl("get", "pods", "-n", "hello", "-l", "app=hello", "-o", "json")
		if err != nil {
			t.Fatal(err, string(out))
		}
		for _, p := range readyPods(string(out)) {
			if p.node == "worker-3" {
				t.Errorf("pod %s still on the released node", p.name)
			}
		}

		// The node agent learns its inventory is gone (its credential is
		// refused, registering again says re-provision) and exits with code 3.
		w3 := machines["worker-3"]
		select {
		case <-w3.agent.done:
		case <-time.After(time.Minute):
			t.Fatalf("worker-3's agent still runs a minute after its inventory was deleted:\n%s", tailString(w3.agent.out.String(), 2000))
		}
		if code := w3.agent.cmd.ProcessState.ExitCode(); code != 3 {
			t.Fatalf("worker-3's agent exited with %d, want 3 (re-provision):\n%s", code, tailString(w3.agent.out.String(), 2000))
		}
		// A FAKE of the OS reset, which needs an installed OS (A/B slots,
		// recovery, GRUB: the VM rig's) that these process machines lack:
		// what the reboot and the wipe do — its Kubernetes stops, its
		// data and the node's state (credential, TPM seed) are gone — then
		// the agent starts again from the same seed config.
		if out, err := w3.Command(node, "kubernetes", "down", "--root", w3.root).CombinedOutput(); err != nil {
			t.Fatalf("worker-3: kubernetes down: %v: %s", err, out)
		}
		for _, dir := range []string{w3.stateDir, filepath.Join(w3.root, "var"), filepath.Join(w3.root, "etc")} {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}
		startAgent(w3)
		var back machinesv1.MachineInventory
		waitCluster(t, time.Minute, "worker-3 registered again as a new, unclaimed inventory", func() error {
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "worker-3"}, &back); err != nil {
				return err
			}
			if back.UID == old.UID || !meta.IsStatusConditionTrue(back.Status.Conditions, machinesv1.ReadyCondition) {
				return fmt.Errorf("worker-3's inventory: uid %s (old %s), Ready %v", back.UID, old.UID, meta.IsStatusConditionTrue(back.Status.Conditions, machinesv1.ReadyCondition))
			}
			return nil
		})
		// It matches the workers' selector but the pool is full: free for
		// the next scale-up.
		time.Sleep(2 * time.Second)
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "worker-3"}, &back); err != nil || back.Labels[provisioningv1.ClusterLabel] != "" {
			t.Errorf("the new worker-3 inventory is claimed (%v): %v", err, back.Labels)
		}
		t.Logf("worker-3 back as a new inventory %s after the release", time.Since(start).Round(time.Millisecond))
	})

	t.Run("memory of the node processes", func(t *testing.T) {
		for name, fm := range machines {
			now, peak := fm.agent.rssKiB(t)
			line := fmt.Sprintf("%s: edgefleet-node agent %s KiB (peak %s)", name, now, peak)
			var st kubedistro.State
			if data, err := os.ReadFile(kubedistro.NewPaths(fm.root).State()); err == nil && yaml.Unmarshal(data, &st) == nil {
				for _, comp := range st.Components {
					line += fmt.Sprintf(", %s %d MiB", comp.Name, rssMiB(comp.PID))
				}
			}
			t.Log(line)
		}
	})
}

// shortTempDir is a temporary folder with a short path: a machine's root
// holds the kubelet's unix sockets, whose paths must stay under 108 bytes
// (t.TempDir's names carry the test's long name).
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "fm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Registered first, so it runs after the machine's `kubernetes
		// down`, which must have unmounted everything below its root.
		if left, _ := tmpguard.MountsBelow(d); len(left) > 0 {
			t.Errorf("still mounted below a machine's root after `kubernetes down`: %s", strings.Join(left, ", "))
		}
		if msgs := tmpguard.Remove(d); len(msgs) > 0 {
			t.Errorf("removing a machine's root %s: %s", d, strings.Join(msgs, "; "))
		}
	})
	return d
}

// upgradeBinDir is the binaries folder of the upgrade version: what
// hack/build-kube-node.sh builds at that version (kubelet, kubectl,
// kube-proxy, kube-apiserver, kube-controller-manager, kube-scheduler) and
// the pinned etcd (etcd has its own versions; a Kubernetes patch upgrade
// keeps it).
func upgradeBinDir(t *testing.T, pinned, node string) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range []string{"kubelet", "kubectl", "kube-proxy", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if err := os.Symlink(filepath.Join(node, b), filepath.Join(dir, b)); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{"etcd"} {
		if err := os.Symlink(filepath.Join(pinned, b), filepath.Join(dir, b)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
