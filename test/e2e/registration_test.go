package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent"
	"github.com/edgefleet/edgefleet/internal/agent/join"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

const kubectlBin = "/usr/bin/kubectl"

// freePort reserves a loopback port so a restarted manager keeps its URL.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// inProcessAgent runs a joining agent until stopped.
type inProcessAgent struct {
	stop func()
	done chan struct{}
}

func startJoinAgent(t *testing.T, cl *harness.Cluster, jo join.Options) *inProcessAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &inProcessAgent{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		err := agent.Run(ctx, agent.Options{DownstreamConfig: cl.RESTConfig(), Join: &jo, HeartbeatInterval: time.Second, MonitorInterval: 2 * time.Second})
		if err != nil && ctx.Err() == nil {
			t.Errorf("agent: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-a.done })
	return a
}

func clusterByClientID(ctx context.Context, c client.Client, id string) *fleetv1.Cluster {
	var l fleetv1.ClusterList
	if c.List(ctx, &l, client.InNamespace(fleetNS)) != nil {
		return nil
	}
	for i := range l.Items {
		if l.Items[i].Spec.ClientID == id {
			return &l.Items[i]
		}
	}
	return nil
}

func connectedReason(c *fleetv1.Cluster) string {
	cond := meta.FindStatusCondition(c.Status.Conditions, fleetv1.ConnectedCondition)
	if cond == nil {
		return ""
	}
	return string(cond.Status) + "/" + cond.Reason
}

func kubectl(t *testing.T, kubeconfig string, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command(kubectlBin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// TestClustersJoinAndAreReachedThroughTheTunnel is the registration issue
// end to end: three clusters join (import manifest settings, `edgefleet
// agent`, in-process), receive a bundle through their own credential,
// kubectl works through the proxy, agents reconnect after a manager
// restart, and a stopped agent goes Offline and comes back.
func TestClustersJoinAndAreReachedThroughTheTunnel(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	if _, err := os.Stat(kubectlBin); err != nil {
		t.Skip("needs " + kubectlBin)
	}
	t.Parallel()
	ctx := context.Background()
	port := freePort(t)
	args := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--cluster-offline-threshold", "8s", "--tunnel-probe-interval", "1s"}
	m, err := harness.LaunchManager(t, harness.ManagerOptions{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	clusters := harness.StartClusters(t, 3, harness.ClusterOptions{})
	if err := m.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	_, token, _ := createToken(t, m, "1h")
	ids := make([]string, 3)
	for i, cl := range clusters {
		var ks corev1.Namespace
		if err := cl.Client.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ks); err != nil {
			t.Fatal(err)
		}
		ids[i] = string(ks.UID)
	}

	// Cluster 0 joins with the import manifest: applied with kubectl, then
	// the agent runs with the settings of its Secret (no kubelet runs pods).
	code, manifest := get(t, m, clusterjoin.ImportPathPrefix+token+".yaml")
	if code != http.StatusOK {
		t.Fatalf("import manifest: %d %s", code, manifest)
	}
	kubectl(t, clusters[0].KubeconfigPath(), []byte(manifest), "apply", "-f", "-")
	var boot corev1.Secret
	if err := clusters[0].Client.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.BootstrapSecret}, &boot); err != nil {
		t.Fatal(err)
	}
	startJoinAgent(t, clusters[0], join.Options{Server: string(boot.Data[clusterjoin.KeyServer]), Token: string(boot.Data[clusterjoin.KeyToken]), CAChecksum: string(boot.Data[clusterjoin.KeyCAChecksum]), Labels: map[string]string{"env": "dev"}})

	// Cluster 1 joins with `edgefleet agent`, claiming a reserved label.
	agentCmd := exec.Command(harness.EdgefleetBinary(t), "agent", "--server", m.URL, "--token", token, "--ca-checksum", m.CAChecksum,
		"--kubeconfig", clusters[1].KubeconfigPath(), "--label", "env=prod", "--label", "fleet.edgefleet.io/cluster=spoofed", "--heartbeat-interval", "1s", "--monitor-interval", "2s")
	var agentOut bytes.Buffer
	agentCmd.Stdout, agentCmd.Stderr = &agentOut, &agentOut
	agentCmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agentCmd.Process.Signal(syscall.SIGTERM)
		_ = agentCmd.Wait()
		if t.Failed() {
			t.Logf("edgefleet agent output:\n%s", agentOut.String())
		}
	})

	// Cluster 2 joins in process; it is the one stopped later.
	a2 := startJoinAgent(t, clusters[2], join.Options{Server: m.URL, Token: token, CAChecksum: m.CAChecksum, Labels: map[string]string{"env": "prod"}})

	names := make([]string, 3)
	waitFor(t, 60*time.Second, "3 clusters Connected through their tunnels", func() bool {
		for i, id := range ids {
			c := clusterByClientID(ctx, m.Client, id)
			if c == nil || connectedReason(c) != "True/"+fleetv1.AgentConnectedReason || c.Status.Agent.LastSeen.IsZero() {
				return false
			}
			names[i] = c.Name
		}
		return true
	})
	if c := clusterByClientID(ctx, m.Client, ids[1]); c.Labels["env"] != "prod" || c.Labels[fleetv1.ClusterNameLabel] != "" {
		t.Fatalf("cluster 1 labels %v: want env=prod and no reserved label", c.Labels)
	}

	// A bundle reaches every cluster through its per-cluster credential.
	repo := t.TempDir()
	writeTree(t, repo, map[string]string{
		"hello/fleet.yaml": "defaultNamespace: joined\ntargets:\n- clusterSelector: {}\n",
		"hello/cm.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\ndata:\n  joined: \"yes\"\n",
	})
	if out, err := exec.Command(harness.EdgefleetBinary(t), "apply", "-n", fleetNS, "--kubeconfig", m.Kubeconfig, "joined", repo).CombinedOutput(); err != nil {
		t.Fatalf("edgefleet apply: %v\n%s", err, out)
	}
	waitFor(t, 60*time.Second, "bundle on all 3 clusters", func() bool {
		for _, cl := range clusters {
			if cm, err := configMap(ctx, cl.Client, "joined", "hello"); err != nil || cm.Data["joined"] != "yes" {
				return false
			}
		}
		return true
	})

	// kubectl through the proxy, as the manager's admin.
	dir := t.TempDir()
	proxyKC := filepath.Join(dir, "proxy.kubeconfig")
	out, err := exec.Command(harness.EdgefleetBinary(t), "kubeconfig", names[1], "-n", fleetNS, "--kubeconfig", m.Kubeconfig).Output()
	if err != nil {
		t.Fatalf("edgefleet kubeconfig: %v", err)
	}
	if err := os.WriteFile(proxyKC, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(kubectl(t, proxyKC, nil, "get", "configmap", "hello", "-n", "joined", "-o", "jsonpath={.data.joined}"), "yes") {
		t.Fatal("kubectl get through the proxy did not return the bundle's ConfigMap")
	}
	kubectl(t, proxyKC, nil, "create", "namespace", "proxied")
	// A watch held open for the rest of the test.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch := exec.CommandContext(watchCtx, kubectlBin, "--kubeconfig", proxyKC, "get", "configmaps", "-n", "proxied", "--watch", "-o", "name")
	var watchOut syncBuf
	watch.Stdout, watch.Stderr = &watchOut, &watchOut
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	watchStarted := time.Now()
	kubectl(t, proxyKC, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: proxied\ndata:\n  a: b\n"), "apply", "-f", "-")
	if cm, err := configMap(ctx, clusters[1].Client, "proxied", "applied"); err != nil || cm.Data["a"] != "b" {
		t.Fatalf("kubectl apply through the proxy: %v", err)
	}
	kubectl(t, proxyKC, nil, "delete", "configmap", "applied", "-n", "proxied")
	// A 10 MiB list.
	big := strings.Repeat("x", 900<<10)
	for i := range 12 {
		if err := clusters[1].Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "proxied", Name: fmt.Sprintf("big-%d", i)}, Data: map[string]string{"v": big}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(kubectl(t, proxyKC, nil, "get", "configmaps", "-n", "proxied", "-o", "json")); n < 10<<20 {
		t.Fatalf("list through the proxy returned %d bytes, want >= 10 MiB", n)
	}
	// Downstream RBAC decides: a manager user without downstream rights is
	// refused by the downstream cluster.
	mcs := kubernetes.NewForConfigOrDie(restConfig(t, m.Kubeconfig))
	if _, err := mcs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "viewer"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := mcs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "viewer", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	viewerCfg := restConfig(t, proxyKC)
	viewerCfg.CertData, viewerCfg.KeyData, viewerCfg.CertFile, viewerCfg.KeyFile, viewerCfg.BearerToken = nil, nil, "", "", tr.Status.Token
	viewer := kubernetes.NewForConfigOrDie(viewerCfg)
	// The manager-side right to use the proxy, then downstream RBAC for
	// the mapped name edgefleet:sa:default:viewer.
	grantProxy(ctx, t, m.Client, "default", "viewer", fleetNS)
	if _, err := viewer.CoreV1().ConfigMaps("joined").Get(ctx, "hello", metav1.GetOptions{}); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "edgefleet:sa:default:viewer") {
		t.Fatalf("manager user without downstream rights: %v, want 403 from the downstream cluster", err)
	}
	if err := clusters[1].Client.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "joined", Name: "viewer"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}}); err != nil {
		t.Fatal(err)
	}
	if err := clusters[1].Client.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "joined", Name: "viewer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "viewer"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "edgefleet:sa:default:viewer"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "manager user granted a downstream Role reads through the proxy", func() bool {
		_, err := viewer.CoreV1().ConfigMaps("joined").Get(ctx, "hello", metav1.GetOptions{})
		return err == nil
	})
	unauth := restConfig(t, proxyKC)
	unauth.CertData, unauth.KeyData, unauth.CertFile, unauth.KeyFile = nil, nil, "", ""
	if _, err := kubernetes.NewForConfigOrDie(unauth).CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Fatalf("anonymous caller through the proxy: %v, want 401", err)
	}

	// Latency: direct vs through the proxy.
	direct := kubernetes.NewForConfigOrDie(clusters[1].RESTConfig())
	proxied := kubernetes.NewForConfigOrDie(restConfig(t, proxyKC))
	measure := func(cs *kubernetes.Clientset) []time.Duration {
		var d []time.Duration
		for range 200 {
			start := time.Now()
			if _, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
				t.Fatal(err)
			}
			d = append(d, time.Since(start))
		}
		return d
	}
	dd, pd := measure(direct), measure(proxied)
	t.Logf("GET namespace latency over 200 requests: direct p50=%v p99=%v; through the tunnel p50=%v p99=%v",
		percentile(dd, .5), percentile(dd, .99), percentile(pd, .5), percentile(pd, .99))

	// Garbage on a websocket closes that session only.
	_, garbageCred := register(t, m, clusterjoin.RegisterRequest{Token: token, ClientID: "garbage-sender"})
	d := websocket.Dialer{TLSClientConfig: m.HTTP.Transport.(*http.Transport).TLSClientConfig}
	ws, _, err := d.Dial(strings.Replace(m.URL, "https", "wss", 1)+clusterjoin.TunnelPath, http.Header{"Authorization": {"Bearer " + garbageCred.Token}})
	if err != nil {
		t.Fatal(err)
	}
	_ = ws.WriteMessage(websocket.BinaryMessage, []byte("GET / HTTP/1.1\r\nthis is not yamux\r\n\r\n"))
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the manager kept a session that sent garbage")
			}
			break
		}
	}
	ws.Close()
	kubectl(t, proxyKC, nil, "get", "namespace", "proxied")

	// The watch, open for the whole time and at least two minutes (longer
	// than idle timeouts a proxy might have), still delivers an event made
	// now: a watch that had died would never print it.
	if rest := 2*time.Minute - time.Since(watchStarted); rest > 0 {
		time.Sleep(rest)
	}
	kubectl(t, proxyKC, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n  namespace: proxied\n"), "apply", "-f", "-")
	waitFor(t, 10*time.Second, "watch event for a ConfigMap created late", func() bool {
		return strings.Contains(watchOut.String(), "configmap/late") && strings.Contains(watchOut.String(), "configmap/applied")
	})
	t.Logf("kubectl watch through the proxy stayed open %v", time.Since(watchStarted).Round(time.Second))
	stopWatch()

	// Manager restart: every agent reconnects by itself.
	m.Stop()
	m2 := harness.StartManager(t, harness.ManagerOptions{DataDir: m.DataDir, Args: args})
	for i, name := range names {
		kc := filepath.Join(dir, fmt.Sprintf("c%d.kubeconfig", i))
		out, err := exec.Command(harness.EdgefleetBinary(t), "kubeconfig", name, "-n", fleetNS, "--kubeconfig", m2.Kubeconfig).Output()
		if err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(kc, out, 0o600)
		waitFor(t, 60*time.Second, "agent "+name+" reconnected after manager restart", func() bool {
			return exec.Command(kubectlBin, "--kubeconfig", kc, "get", "namespace", "kube-system").Run() == nil
		})
	}

	// An agent stopped goes Offline within the threshold, then comes back.
	a2.stop()
	<-a2.done
	stopped := time.Now()
	waitFor(t, 30*time.Second, "stopped agent Offline", func() bool {
		c := clusterByClientID(ctx, m2.Client, ids[2])
		return c != nil && connectedReason(c) == "False/"+fleetv1.AgentOfflineReason && c.Status.Display.State == fleetv1.ClusterStateOffline
	})
	t.Logf("agent stopped → Offline in %v (threshold 8s)", time.Since(stopped).Round(100*time.Millisecond))
	startJoinAgent(t, clusters[2], join.Options{Server: m.URL, Token: token, CAChecksum: m.CAChecksum})
	waitFor(t, 60*time.Second, "restarted agent Connected", func() bool {
		c := clusterByClientID(ctx, m2.Client, ids[2])
		return c != nil && connectedReason(c) == "True/"+fleetv1.AgentConnectedReason && c.Status.Display.State != fleetv1.ClusterStateOffline
	})
	if c := clusterByClientID(ctx, m2.Client, ids[2]); c.Name != names[2] {
		t.Fatalf("restarted agent registered as %s, want %s", c.Name, names[2])
	}
}

func restConfig(t *testing.T, kubeconfig string) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	return cfg
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
