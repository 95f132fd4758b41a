package demo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
)

func (d *demo) formCluster(ctx context.Context) error {
	c := d.mgr.client
	pc := &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: ClusterName}, Spec: provisioningv1.ProvisionedClusterSpec{
		Distro: provisioningv1.DistroEdgefleet, Version: d.bins.version, Binaries: &provisioningv1.Binaries{Dir: binDir(d.bins.version)},
		ControlPlane: provisioningv1.MachinePool{Replicas: 1, MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "server"}}},
		// Images come from the loopback registry, forwarded into every
		// machine.
		Registries: []provisioningv1.RegistryMirror{
			{Host: "registry.k8s.io", Endpoints: []string{"http://" + d.reg.host}},
			{Host: ImageHost, Endpoints: []string{"http://" + d.reg.host}},
		},
		Fleet:           provisioningv1.FleetSpec{Labels: map[string]string{"site": "demo"}},
		RolloutStrategy: provisioningv1.RolloutStrategy{DrainTimeout: &metav1.Duration{Duration: time.Minute}},
	}}
	if workers := int32(len(d.machines) - 1); workers > 0 {
		pc.Spec.Workers = []provisioningv1.WorkerPool{{Name: "workers", MachinePool: provisioningv1.MachinePool{Replicas: workers,
			MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}}}}
	}
	if err := c.Create(ctx, pc); err != nil {
		return err
	}
	return poll(ctx, time.Second, "every machine's Node Ready", func() error {
		var cms provisioningv1.ClusterMachineList
		if err := c.List(ctx, &cms, client.InNamespace(Namespace)); err != nil {
			return err
		}
		ready := 0
		var waiting []string
		for _, cm := range cms.Items {
			if meta.IsStatusConditionTrue(cm.Status.Conditions, provisioningv1.NodeReadyCondition) {
				ready++
			} else {
				waiting = append(waiting, cm.Name+": "+conditionMessages(cm.Status.Conditions))
			}
		}
		if ready < len(d.machines) {
			sort.Strings(waiting)
			return fmt.Errorf("%d of %d Nodes Ready; %s", ready, len(d.machines), strings.Join(waiting, "; "))
		}
		return nil
	})
}

func (d *demo) waitJoined(ctx context.Context) error {
	c := d.mgr.client
	pc := &provisioningv1.ProvisionedCluster{}
	err := poll(ctx, time.Second, "the cluster Ready (fleet joined)", func() error {
		if err := c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: ClusterName}, pc); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ReadyCondition) || pc.Status.FleetClusterRef == nil {
			return fmt.Errorf("%s", conditionMessages(pc.Status.Conditions))
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.fleetCluster = pc.Status.FleetClusterRef.Name
	return d.writeClusterKubeconfig(ctx)
}

// writeClusterKubeconfig writes kubectl's way to the fleet cluster through
// the manager's tunnel, as `edgefleet kubeconfig` gives it; it names the
// external URL (the lab's gateway), so the host's copy names the loopback
// listener.
func (d *demo) writeClusterKubeconfig(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, d.bins.edgefleet, "kubeconfig", d.fleetCluster, "-n", Namespace, "--kubeconfig", d.mgr.kubeconfig).Output()
	if err != nil {
		return fmt.Errorf("edgefleet kubeconfig: %w", err)
	}
	kc, err := clientcmd.Load(out)
	if err != nil {
		return err
	}
	for _, cl := range kc.Clusters {
		cl.Server = strings.Replace(cl.Server, d.mgr.externalURL, d.mgr.url, 1)
	}
	d.clusterKubeconfig = filepath.Join(d.dataDir, ClusterName+".kubeconfig")
	return clientcmd.WriteToFile(*kc, d.clusterKubeconfig)
}

// connectedCluster is a fleet Cluster of the demo's namespace labelled
// key=value whose agent is connected.
func (d *demo) connectedCluster(ctx context.Context, key, value string) (string, error) {
	var cls fleetv1.ClusterList
	if err := d.mgr.client.List(ctx, &cls, client.InNamespace(Namespace), client.MatchingLabels{key: value}); err != nil {
		return "", err
	}
	for _, cl := range cls.Items {
		if meta.IsStatusConditionTrue(cl.Status.Conditions, fleetv1.ConnectedCondition) {
			return cl.Name, nil
		}
	}
	return "", fmt.Errorf("%d clusters labelled %s=%s, none connected", len(cls.Items), key, value)
}

// appFiles are the demo app: the hello image, two replicas, on the
// clusters labelled site=demo.
var appFiles = map[string]string{
	"README.md": "The edgefleet demo's app: edit, commit, and the manager deploys the change (it polls every 15s).\n",
	"hello/fleet.yaml": `defaultNamespace: ` + AppNamespace + `
`,
	"hello/deployment.yaml": `apiVersion: apps/v1
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
        image: ` + ImageHost + `/hello:v1
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
`,
}

// gitRepo commits the app to a new repository in the data dir (go-git)
// and points a GitRepo at it (file://, allowed by the demo's manager).
func (d *demo) gitRepo(ctx context.Context) error {
	d.gitDir = filepath.Join(d.dataDir, "git", "demo-app")
	r, err := git.PlainInit(d.gitDir, false)
	if err != nil {
		return err
	}
	wt, err := r.Worktree()
	if err != nil {
		return err
	}
	for name, content := range appFiles {
		p := filepath.Join(d.gitDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
		if _, err := wt.Add(name); err != nil {
			return err
		}
	}
	sig := &object.Signature{Name: "edgefleet demo", Email: "demo@edgefleet.invalid", When: time.Now()}
	if _, err := wt.Commit("the demo app: hello, 2 replicas", &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		return err
	}
	head, err := r.Head()
	if err != nil {
		return err
	}
	gr := &fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "demo-app"}, Spec: fleetv1.GitRepoSpec{
		Repo: "file://" + d.gitDir, Branch: head.Name().Short(), Paths: []string{"hello"},
		Targets: []fleetv1.GitTarget{{ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"site": "demo"}}}},
	}}
	return d.mgr.client.Create(ctx, gr)
}

func (d *demo) waitApp(ctx context.Context) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", d.clusterKubeconfig)
	if err != nil {
		return err
	}
	cfg.Timeout = 10 * time.Second
	dc, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	return poll(ctx, time.Second, "2 "+AppName+" pods Ready", func() error {
		var gr fleetv1.GitRepo
		if err := d.mgr.client.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: "demo-app"}, &gr); err == nil && meta.IsStatusConditionTrue(gr.Status.Conditions, "Stalled") {
			return fmt.Errorf("GitRepo demo-app: %s", conditionMessages(gr.Status.Conditions))
		}
		var pods corev1.PodList
		if err := dc.List(ctx, &pods, client.InNamespace(AppNamespace), client.MatchingLabels{"app": AppName}); err != nil {
			return err
		}
		ready := 0
		for _, p := range pods.Items {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
					ready++
				}
			}
		}
		if ready < 2 {
			return fmt.Errorf("%d of 2 pods Ready", ready)
		}
		return nil
	})
}

func (d *demo) osUpgrade(ctx context.Context) error {
	c := d.mgr.client
	v2 := &machinesv1.ManagedOSVersion{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "os-v2"},
		Spec: machinesv1.ManagedOSVersionSpec{Version: "v2", Metadata: machinesv1.ManagedOSVersionMetadata{UpgradeImage: OSImageV2}}}
	if err := c.Create(ctx, v2); err != nil {
		return err
	}
	mosi := &machinesv1.ManagedOSImage{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "os-v2"}, Spec: machinesv1.ManagedOSImageSpec{
		ManagedOSVersionName: "os-v2", Targets: machinesv1.ManagedOSImageTargets{Selector: &metav1.LabelSelector{}}, Concurrency: 1,
	}}
	if err := c.Create(ctx, mosi); err != nil {
		return err
	}
	d.p.note("simulated OS: %s is not pulled or written; each machine's `edgefleet-node upgrade` records it and reports it", OSImageV2)
	err := poll(ctx, time.Second, "every machine at "+OSImageV2, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(mosi), mosi); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(mosi.Status.Conditions, machinesv1.ReadyCondition) {
			return fmt.Errorf("%d/%d upgraded: %s", mosi.Status.Upgraded, mosi.Status.Total, conditionMessages(mosi.Status.Conditions))
		}
		return nil
	})
	if err != nil {
		return err
	}
	var invs machinesv1.MachineInventoryList
	if err := c.List(ctx, &invs, client.InNamespace(Namespace)); err != nil {
		return err
	}
	for _, inv := range invs.Items {
		if inv.Status.OS.Image != OSImageV2 {
			return fmt.Errorf("machine %s reports OS %q after the rollout", inv.Name, inv.Status.OS.Image)
		}
	}
	return nil
}

func (d *demo) summary(took time.Duration) {
	w := d.o.Out
	fmt.Fprintf(w, "\nedgefleet demo is done in %s.\n\n", took.Round(time.Second))
	fmt.Fprintf(w, "  web UI:              %s/ui/\n", d.mgr.url)
	fmt.Fprintf(w, "  admin kubeconfig:    %s\n", d.mgr.kubeconfig)
	if d.clusterKubeconfig != "" {
		what := "cluster " + ClusterName + " through the manager's tunnel"
		if !d.netns {
			what = "simulated cluster: dev-cluster with fake nodes, through the manager's tunnel"
		}
		fmt.Fprintf(w, "  cluster kubeconfig:  %s   (%s)\n", d.clusterKubeconfig, what)
		fmt.Fprintf(w, "  app repository:      %s   (commit to it: the GitRepo polls)\n", d.gitDir)
	}
	fmt.Fprintf(w, "  data dir:            %s\n", d.dataDir)
	fmt.Fprintf(w, "\nTry:\n")
	fmt.Fprintf(w, "  kubectl --kubeconfig %s get machineinventories,provisionedclusters,clusters.fleet.edgefleet.io,gitrepos,managedosimages -n %s\n", d.mgr.kubeconfig, Namespace)
	fmt.Fprintf(w, "  kubectl --kubeconfig %s -n %s create token %s   # a token to sign in to the web UI\n", d.mgr.kubeconfig, Namespace, UIUser)
	if d.clusterKubeconfig != "" {
		fmt.Fprintf(w, "  kubectl --kubeconfig %s get nodes -o wide\n", d.clusterKubeconfig)
		fmt.Fprintf(w, "  kubectl --kubeconfig %s -n %s get pods -o wide\n", d.clusterKubeconfig, AppNamespace)
	}
	fmt.Fprintln(w)
}
