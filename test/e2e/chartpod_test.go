package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/imagebuild"
	"github.com/edgefleet/edgefleet/internal/node/kubedistro"
	"github.com/edgefleet/edgefleet/internal/pki"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	wire "github.com/edgefleet/edgefleet/internal/wire/kubedistro"
	"github.com/edgefleet/edgefleet/test/harness"
	"github.com/edgefleet/edgefleet/test/netlab"
)

// chartNodePort is where the test exposes the chart's Service on the node:
// the external URL agents and users reach the manager at.
const chartNodePort = 30443

// The Helm chart installs on a cluster with real pods: a one-node cluster
// of the edgefleet distribution (real kubelet, containerd, kube-proxy) in
// a network namespace, the manager and agent images built by
// internal/imagebuild from static binaries and served by a loopback
// registry under an air-gapped name, `helm install` of charts/edgefleet
// through the Helm SDK (in-cluster config, leader election, the chart's
// RBAC), the manager Pod Ready and answering through its Service; then the
// same cluster joins the fleet through the import manifest (the agent image
// the manager image pins by digest) and runs a bundle; finally `helm
// upgrade` to a new image and two replicas keeps the CA and the joined
// cluster, reachable through either replica's kube-api proxy.
func TestChartInstallsOnDistroCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes cluster of a real kubelet")
	}
	bins := requireRealKubelets(t, "containerd", "runc", "nsenter", "curl")
	ctx := context.Background()
	nodeBin := nodeBinary(t)
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}

	// The images. The registry is the site's own (air-gapped): containerd
	// knows it as edgefleet.test through a mirror; the manager image names
	// the agent image there by digest, as `make images` does for its repo.
	reg := startNodeImageRegistry(t)
	static := staticBinaries(t, repo)
	caBundle, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatal(err)
	}
	push := func(bin string, env []string, version string) string {
		t.Helper()
		idx, err := imagebuild.Build(imagebuild.Spec{Name: bin, Binaries: map[string]string{"amd64": static[bin]}, Env: env,
			Version: version, CABundle: caBundle, Created: time.Unix(0, 0)})
		if err != nil {
			t.Fatal(err)
		}
		pinned, err := imagebuild.Push(ctx, reg.Host+"/edgefleet/"+bin+":"+version, idx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s image: %s, %s compressed (amd64)", bin, pinned, mib(imageSize(t, pinned)))
		return "edgefleet.test/edgefleet/" + bin + "@" + pinned[strings.LastIndex(pinned, "@")+1:]
	}
	agentImage := push("edgefleet-agent", nil, "e2e")
	managerImage := push("edgefleet", []string{clusterregistration.EnvAgentImage + "=" + agentImage}, "e2e")

	// One node: the init server, schedulable, running everything.
	lab := netlab.New(t, "10.94.0")
	node0 := &distroNode{Node: lab.AddNode("server"), root: shortTempDir(t)}
	node0.cfg = oneNodeConfig(t, kubeletVersion(t, bins), node0.IP, reg.Host)
	node0.prepareRoot(t, bins, reg.Port)
	adminKC := kubedistro.NewPaths(node0.root).AdminKubeconfig()
	kubectl := func(args ...string) (string, error) {
		out, err := node0.Command(filepath.Join(bins, "kubectl"), append([]string{"--kubeconfig", adminKC}, args...)...).CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, args := range [][]string{
				{"get", "pods", "-A", "-o", "wide"},
				{"logs", "-n", "edgefleet-system", "-l", "app.kubernetes.io/name=edgefleet", "--tail", "60"},
				{"logs", "-n", "cattle-fleet-system", "--all-containers", "-l", "app=fleet-agent", "--tail", "40"},
				{"get", "events", "-A"},
			} {
				out, _ := kubectl(args...)
				t.Logf("kubectl %s:\n%s", strings.Join(args, " "), tailString(out, 6000))
			}
			for _, c := range []string{"supervisor", "kube-apiserver", "containerd", "kubelet"} {
				if b, err := os.ReadFile(filepath.Join(kubedistro.NewPaths(node0.root).Logs(), c+".log")); err == nil {
					t.Logf("%s log (tail):\n%s", c, tailString(string(b), 2000))
				}
			}
		}
		if out, err := node0.Command(nodeBin, "kubernetes", "down", "--root", node0.root).CombinedOutput(); err != nil {
			t.Errorf("kubernetes down: %v: %s", err, out)
		}
	})
	start := time.Now()
	up := node0.Command(nodeBin, "kubernetes", "up", "--config", wire.ConfigPath, "--wait", "3m")
	up.Env = append(os.Environ(), kubedistro.RootEnv+"="+node0.root)
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("kubernetes up: %v\n%s", err, out)
	}
	eventually(t, 3*time.Minute, func() error {
		out, err := kubectl("get", "node", "server", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || strings.TrimSpace(out) != "True" {
			return fmt.Errorf("node not Ready: %v %s", err, out)
		}
		return nil
	})
	t.Logf("one-node cluster Ready in %s", time.Since(start).Round(time.Millisecond))

	// The test's own clients reach the node's kube-apiserver on the lab
	// network by dialling from the node's namespace.
	restCfg, err := clientcmd.BuildConfigFromFlags("", adminKC)
	if err != nil {
		t.Fatal(err)
	}
	restCfg.Dial = node0.DialContext
	c, err := client.New(restCfg, client.Options{Scheme: server.Scheme()})
	if err != nil {
		t.Fatal(err)
	}

	externalURL := fmt.Sprintf("https://%s:%d", node0.IP, chartNodePort)
	const ns = "edgefleet-system"
	ch, err := loader.Load(filepath.Join(repo, "charts/edgefleet"))
	if err != nil {
		t.Fatal(err)
	}
	helmCfg := action.NewConfiguration()
	if err := helmCfg.Init(restGetter(t, adminKC, ns, node0.DialContext), ns, "secret"); err != nil {
		t.Fatal(err)
	}
	imageValues := func(ref string) map[string]any {
		repoName, digest, _ := strings.Cut(ref, "@")
		return map[string]any{"repository": repoName, "digest": digest}
	}
	vals := map[string]any{
		"image":       imageValues(managerImage),
		"externalURL": externalURL,
		"replicas":    1,
		"service":     map[string]any{"type": "NodePort", "port": 8443, "nodePort": chartNodePort},
		// Small requests: one shared test node.
		"resources": map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "128Mi"}, "limits": map[string]any{"memory": "1Gi"}},
	}
	managerPods := func(t *testing.T) []corev1.Pod {
		t.Helper()
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/name": "edgefleet"}); err != nil {
			t.Fatal(err)
		}
		return pods.Items
	}
	var caPEM []byte
	t.Run("helm install: the manager Pod runs on the cluster and answers through its Service", func(t *testing.T) {
		in := action.NewInstall(helmCfg)
		in.ReleaseName, in.Namespace, in.CreateNamespace = "edgefleet", ns, true
		// Like `helm install --wait`: the release succeeds once its
		// Deployment is available (the manager Pod Ready).
		in.WaitStrategy, in.Timeout = kube.StatusWatcherStrategy, 3*time.Minute
		installed := time.Now()
		if _, err := in.RunWithContext(ctx, ch, vals); err != nil {
			t.Fatalf("helm install: %v", err)
		}
		t.Logf("helm install (CRDs, RBAC, Deployment, Service) done and the manager Pod Ready in %s", time.Since(installed).Round(time.Millisecond))

		pods := managerPods(t)
		if len(pods) != 1 {
			t.Fatalf("%d manager pods, want 1", len(pods))
		}
		pod := pods[0]
		if img := pod.Spec.Containers[0].Image; img != managerImage {
			t.Errorf("manager pod runs %s, want %s", img, managerImage)
		}
		ready := false
		for _, cond := range pod.Status.Conditions {
			ready = ready || (cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue)
		}
		if !ready || pod.Spec.NodeName != "server" || pod.Status.PodIP == "" {
			t.Fatalf("manager pod %s: ready %v on %q at %q", pod.Name, ready, pod.Spec.NodeName, pod.Status.PodIP)
		}

		// Leader election in the Pod: it holds the controllers' Lease.
		eventually(t, time.Minute, func() error {
			var lease coordinationv1.Lease
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "edgefleet-manager"}, &lease); err != nil {
				return err
			}
			if lease.Spec.HolderIdentity == nil || !strings.Contains(*lease.Spec.HolderIdentity, pod.Name) {
				return fmt.Errorf("leader Lease held by %v, not pod %s", lease.Spec.HolderIdentity, pod.Name)
			}
			return nil
		})

		// The endpoint CA the first replica generated, which agents pin.
		var caSecret corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "edgefleet-ca"}, &caSecret); err != nil {
			t.Fatal(err)
		}
		caPEM = caSecret.Data["tls.crt"]
		caFile := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		var svc corev1.Service
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "edgefleet"}, &svc); err != nil {
			t.Fatal(err)
		}
		// /ping through the Service's cluster IP (kube-proxy), verified
		// against the CA for the external URL's name, and through the
		// NodePort that is the external URL.
		for what, connectTo := range map[string]string{
			"cluster IP": fmt.Sprintf("%s:%d:%s:8443", node0.IP, chartNodePort, svc.Spec.ClusterIP),
			"node port":  fmt.Sprintf("%s:%d:%s:%d", node0.IP, chartNodePort, node0.IP, chartNodePort),
		} {
			var out []byte
			eventually(t, 30*time.Second, func() error {
				var err error
				out, err = node0.Command("curl", "-sS", "-m", "5", "--cacert", caFile, "--connect-to", connectTo, externalURL+"/ping").CombinedOutput()
				if err != nil {
					return fmt.Errorf("%v %s", err, out)
				}
				return nil
			})
			if got := strings.TrimSpace(string(out)); got != "pong" {
				t.Errorf("/ping through the %s answered %q", what, got)
			}
		}
		if out, err := kubectl("logs", "-n", ns, pod.Name); err != nil || strings.Contains(out, "forbidden") {
			t.Errorf("manager log (%v) shows a refusal:\n%s", err, tailString(out, 4000))
		}
	})
	if t.Failed() {
		return
	}

	var cluster fleetv1.Cluster
	t.Run("the cluster joins its own manager through the import manifest and runs a bundle", func(t *testing.T) {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
			t.Fatal(err)
		}
		out, err := node0.Command(harness.EdgefleetBinary(t), "token", "create", "--kubeconfig", adminKC, "-n", fleetNS, "--ttl", "1h").CombinedOutput()
		if err != nil {
			t.Fatalf("edgefleet token create: %v\n%s", err, out)
		}
		g := tokenLine.FindStringSubmatch(string(out))
		if g == nil {
			t.Fatalf("no token in output:\n%s", out)
		}
		token := g[3]
		caFile := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		manifest := filepath.Join(t.TempDir(), "import.yaml")
		if out, err := node0.Command("curl", "-sSf", "-m", "10", "--cacert", caFile, "-o", manifest,
			externalURL+clusterjoin.ImportPathPrefix+token+".yaml").CombinedOutput(); err != nil {
			t.Fatalf("fetching the import manifest: %v %s", err, out)
		}
		m, err := os.ReadFile(manifest)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(m), "image: "+agentImage+"\n") {
			t.Fatalf("the import manifest does not run the agent image the manager image pins (%s):\n%s", agentImage, m)
		}
		if !strings.Contains(string(m), pki.Checksum(caPEM)) {
			t.Errorf("the import manifest does not pin the chart's endpoint CA")
		}
		applied := time.Now()
		if out, err := kubectl("apply", "-f", manifest); err != nil {
			t.Fatalf("kubectl apply of the import manifest: %v %s", err, out)
		}
		eventually(t, 3*time.Minute, func() error {
			var list fleetv1.ClusterList
			if err := c.List(ctx, &list, client.InNamespace(fleetNS)); err != nil {
				return err
			}
			if len(list.Items) != 1 || !meta.IsStatusConditionTrue(list.Items[0].Status.Conditions, fleetv1.ConnectedCondition) {
				return fmt.Errorf("%d clusters, none Connected", len(list.Items))
			}
			cluster = list.Items[0]
			return nil
		})
		t.Logf("cluster %s Connected %s after kubectl apply of the import manifest", cluster.Name, time.Since(applied).Round(time.Millisecond))
		if out, err := kubectl("get", "pods", "-A", "-o", `jsonpath={range .items[*]}{.spec.containers[0].image} {.status.phase}{"\n"}{end}`); err != nil || !strings.Contains(out, agentImage+" Running") {
			t.Errorf("no Running agent pod of %s: %v\n%s", agentImage, err, out)
		}

		dir := t.TempDir()
		writeTree(t, dir, map[string]string{
			"fleet.yaml": "defaultNamespace: hello\ntargets:\n- clusterName: " + cluster.Name + "\n",
			"hello.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 1
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
		applied = time.Now()
		if out, err := node0.Command(harness.EdgefleetBinary(t), "apply", "-n", fleetNS, "--kubeconfig", adminKC, "hello", dir).CombinedOutput(); err != nil {
			t.Fatalf("edgefleet apply: %v\n%s", err, out)
		}
		var pods []podInfo
		eventually(t, 3*time.Minute, func() error {
			out, err := kubectl("get", "pods", "-n", "hello", "-l", "app=hello", "-o", "json")
			if err != nil {
				return fmt.Errorf("%v %s", err, out)
			}
			if pods = readyPods(out); len(pods) != 1 {
				return fmt.Errorf("%d of 1 hello pods Ready", len(pods))
			}
			return nil
		})
		eventually(t, time.Minute, func() error {
			var b fleetv1.Bundle
			if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "hello"}, &b); err != nil {
				return err
			}
			if !meta.IsStatusConditionTrue(b.Status.Conditions, fleetv1.ReadyCondition) {
				return fmt.Errorf("bundle hello not Ready: %v", b.Status.Conditions)
			}
			return nil
		})
		t.Logf("bundle hello Ready, its pod answering, %s after edgefleet apply", time.Since(applied).Round(time.Millisecond))
		out, err = node0.Command("curl", "-sS", "-m", "5", "http://"+pods[0].ip+":8080/").CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != "hello from "+pods[0].name {
			t.Errorf("the bundle's pod answered %q (%v)", got, err)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("helm upgrade to a new manager image and two replicas: same CA, the joined cluster served by either replica", func(t *testing.T) {
		// A new build of the manager (another version label, so another
		// digest), as a release upgrade brings.
		upgraded := push("edgefleet", []string{clusterregistration.EnvAgentImage + "=" + agentImage}, "e2e-2")
		if upgraded == managerImage {
			t.Fatal("the upgrade image has the same digest")
		}
		up := action.NewUpgrade(helmCfg)
		up.Namespace, up.WaitStrategy, up.Timeout = ns, kube.StatusWatcherStrategy, 3*time.Minute
		vals["image"], vals["replicas"] = imageValues(upgraded), 2
		// The cluster's own client CA: its admin kubeconfig (a client
		// certificate) then works with the endpoint too.
		vals["tls"] = map[string]any{"userClientCA": node0.cfg.ClusterCA.Cert}
		started := time.Now()
		if _, err := up.RunWithContext(ctx, "edgefleet", ch, vals); err != nil {
			t.Fatalf("helm upgrade: %v", err)
		}
		var pods []corev1.Pod
		eventually(t, 2*time.Minute, func() error {
			pods = pods[:0]
			for _, p := range managerPods(t) {
				if p.DeletionTimestamp == nil && p.Spec.Containers[0].Image == upgraded && p.Status.PodIP != "" && podReady(p) {
					pods = append(pods, p)
				}
			}
			if n := len(managerPods(t)); len(pods) != 2 || n != 2 {
				return fmt.Errorf("%d of %d manager pods Ready on the new image, want 2 of 2", len(pods), n)
			}
			return nil
		})
		t.Logf("helm upgrade rolled to 2 Ready replicas of the new image in %s", time.Since(started).Round(time.Millisecond))
		var caSecret corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "edgefleet-ca"}, &caSecret); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(caSecret.Data["tls.crt"], caPEM) {
			t.Fatal("the endpoint CA changed across the upgrade: every joined agent would be cut off")
		}
		eventually(t, time.Minute, func() error {
			var lease coordinationv1.Lease
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "edgefleet-manager"}, &lease); err != nil {
				return err
			}
			for _, p := range pods {
				if lease.Spec.HolderIdentity != nil && strings.Contains(*lease.Spec.HolderIdentity, p.Name) {
					return nil
				}
			}
			return fmt.Errorf("leader Lease held by %v, not by a new replica", lease.Spec.HolderIdentity)
		})

		// The kube-api proxy through each replica in turn: the one without
		// the cluster's tunnel forwards to the one holding it at its
		// POD_IP (downward API), over the pod network. On an existing
		// cluster the endpoint accepts bearer tokens (TokenReview), not the
		// cluster's client certificates, whose CA the manager does not know.
		if out, err := kubectl("-n", ns, "create", "serviceaccount", "fleet-admin"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		if out, err := kubectl("create", "clusterrolebinding", "fleet-admin", "--clusterrole=cluster-admin", "--serviceaccount="+ns+":fleet-admin"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		// Downstream, the same cluster here, sees the user by impersonation
		// under the manager's prefix, and its own RBAC decides.
		if out, err := kubectl("create", "clusterrolebinding", "fleet-admin-downstream", "--clusterrole=cluster-admin", "--user=edgefleet:sa:"+ns+":fleet-admin"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		token, err := kubectl("-n", ns, "create", "token", "fleet-admin")
		if err != nil {
			t.Fatalf("%v %s", err, token)
		}
		proxyCfg := &rest.Config{
			Host:            externalURL + clusterjoin.ClusterProxyPrefix + fleetNS + "." + cluster.Name,
			BearerToken:     strings.TrimSpace(token),
			TLSClientConfig: rest.TLSClientConfig{CAData: caPEM},
		}
		for _, p := range pods {
			cfg := rest.CopyConfig(proxyCfg)
			podAddr := net.JoinHostPort(p.Status.PodIP, "8443")
			cfg.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return node0.DialContext(ctx, network, podAddr)
			}
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			// After the rollout the agent's tunnel moves to a new replica
			// once the old one's liveness lapses (docs/tunnel.md).
			eventually(t, 2*time.Minute, func() error {
				nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
				if err != nil {
					return fmt.Errorf("through replica %s: %w", p.Name, err)
				}
				if len(nodes.Items) != 1 || nodes.Items[0].Name != "server" {
					return fmt.Errorf("through replica %s: nodes %v", p.Name, nodes.Items)
				}
				return nil
			})
		}
		// The Cluster's status catches up: Connected again (its tunnel
		// dropped with the old replica during the rollout).
		eventually(t, 90*time.Second, func() error {
			var fc fleetv1.Cluster
			if err := c.Get(ctx, client.ObjectKeyFromObject(&cluster), &fc); err != nil {
				return err
			}
			if !meta.IsStatusConditionTrue(fc.Status.Conditions, fleetv1.ConnectedCondition) {
				return fmt.Errorf("cluster not Connected after the upgrade: %v", fc.Status.Conditions)
			}
			return nil
		})
		// The admin's client certificate (the cluster's CA, given as
		// tls.userClientCA) is accepted by the endpoint: the request reaches
		// the downstream apiserver as the impersonated admin.
		kc, err := node0.Command(harness.EdgefleetBinary(t), "kubeconfig", cluster.Name, "-n", fleetNS, "--kubeconfig", adminKC).Output()
		if err != nil {
			t.Fatalf("edgefleet kubeconfig: %v", err)
		}
		certCfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
		if err != nil {
			t.Fatal(err)
		}
		certCfg.Dial = node0.DialContext
		cs, err := kubernetes.NewForConfig(certCfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Namespaces().Get(ctx, fleetNS, metav1.GetOptions{}); err != nil {
			t.Errorf("the admin's client certificate through the proxy: %v", err)
		}
		t.Logf("upgrade done, both replicas proxy to the cluster and it is Connected, %s after helm upgrade", time.Since(started).Round(time.Millisecond))
		t.Logf("RSS of the manager replicas and the agent: %s", containerRSS(node0.root))
	})
}

// podReady reports the Pod's Ready condition.
func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// containerRSS lists the resident memory of the edgefleet processes the
// node under root runs in containers (found by the node's cgroup).
func containerRSS(root string) string {
	cg := kubedistro.CgroupRoot(kubedistro.NewPaths(root), "server")
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var parts []string
	for _, p := range procs {
		cgroups, err := os.ReadFile(filepath.Join(p, "cgroup"))
		if err != nil || !strings.Contains(string(cgroups), cg) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		exe := strings.SplitN(string(cmd), "\x00", 2)[0]
		if !strings.HasPrefix(exe, imagebuild.BinDir+"/edgefleet") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(p))
		parts = append(parts, fmt.Sprintf("%s %d MiB", filepath.Base(exe), rssMiB(pid)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// oneNodeConfig is a schedulable init server pulling through the
// loopback registry as registry.k8s.io and edgefleet.test.
func oneNodeConfig(t *testing.T, version, ip, registry string) wire.NodeConfig {
	t.Helper()
	s := newDistroSecrets(t)
	return wire.NodeConfig{
		Version: version, Server: "https://" + ip + ":6443", Token: s.token,
		Binaries: wire.Binaries{Dir: "/opt/kubernetes/bin"}, Registries: registryMirrors(registry),
		Role: wire.RoleServer, Init: true, NodeName: "server", NodeIP: ip,
		ClusterCA: *s.cluster, EtcdCA: s.etcd, FrontProxyCA: s.frontProxy, ServiceAccountKey: s.serviceAccounts.Key,
	}
}

// staticBinaries builds the manager and the agent as `make images` does
// (CGO off: the images have no libc); `make build`'s manager links libc.
func staticBinaries(t *testing.T, repo string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := map[string]string{}
	for bin, pkg := range map[string]string{"edgefleet": "./cmd/edgefleet", "edgefleet-agent": "./cmd/edgefleet-agent"} {
		out[bin] = filepath.Join(dir, bin)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out[bin], pkg)
		cmd.Dir, cmd.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building static %s: %v\n%s", bin, err, b)
		}
	}
	return out
}

// restGetter gives the Helm SDK the kubeconfig with connections dialled by
// dial.
func restGetter(t *testing.T, kubeconfig, namespace string, dial func(context.Context, string, string) (net.Conn, error)) genericclioptions.RESTClientGetter {
	f := genericclioptions.NewConfigFlags(false)
	cache := t.TempDir()
	f.KubeConfig, f.Namespace, f.CacheDir = &kubeconfig, &namespace, &cache
	f.WrapConfigFn = func(c *rest.Config) *rest.Config {
		c.Dial = dial
		return c
	}
	return f
}

// imageSize is the compressed size of ref's layers and config (amd64).
func imageSize(t *testing.T, ref string) int64 {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
