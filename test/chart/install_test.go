package chart_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/pki"
	"github.com/edgefleet/edgefleet/test/harness"
)

// The chart's manager, run with exactly the chart's flags and as the chart's
// ServiceAccount (a token for it, so the chart's RBAC is what the
// apiserver enforces), starts on a cluster and does its work. It runs out of
// cluster, on a bare apiserver; the chart installed for real, its manager in
// Pods on a cluster with a kubelet, is test/e2e's
// TestChartInstallsOnDistroCluster.
func TestChartManagerRunsWithChartRBAC(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver and the manager")
	}
	c := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	ctx := context.Background()
	installCRDs(ctx, t, c.Client)
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	// The site brings its own endpoint CA through the chart.
	_, ca, err := pki.NewCA("site-ca")
	if err != nil {
		t.Fatal(err)
	}
	vals := baseValues()
	vals["tls"] = map[string]any{"caCert": string(ca.CertPEM), "caKey": string(ca.KeyPEM)}
	var out []byte
	var dep *unstructured.Unstructured
	for _, o := range mustRender(t, vals) {
		if o.GetKind() == "Deployment" {
			dep = o
			continue
		}
		if err := c.Client.Create(ctx, o); err != nil {
			t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	var args []string
	for _, a := range containers[0].(map[string]any)["args"].([]any) {
		s := a.(string)
		// The harness picks a free loopback port and the URL that goes with it.
		if s == "server" || strings.HasPrefix(s, "--listen=") || strings.HasPrefix(s, "--external-url=") || strings.HasPrefix(s, "--data-dir=") {
			continue
		}
		args = append(args, s)
	}
	sa, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "spec", "serviceAccountName")
	kubeconfig := saKubeconfig(ctx, t, c.RESTConfig(), sa)

	m := harness.StartManager(t, harness.ManagerOptions{Kubeconfig: kubeconfig, Args: args})
	if m.CAChecksum != pki.Checksum(ca.CertPEM) {
		t.Errorf("manager serves CA %s, want the chart's tls.caCert %s", m.CAChecksum, pki.Checksum(ca.CertPEM))
	}
	if out := m.Output(); strings.Contains(out, "forbidden") {
		t.Errorf("the manager was refused something with the chart's RBAC:\n%s", out)
	}
	// It created its CA Secret and holds the leader Lease: it is the active replica.
	deadline := time.Now().Add(time.Minute)
	for {
		var ca corev1.Secret
		var lease coordinationv1.Lease
		errCA := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "edgefleet-ca"}, &ca)
		errLease := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "edgefleet-manager"}, &lease)
		if errCA == nil && errLease == nil && lease.Spec.HolderIdentity != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CA Secret (%v) or held leader Lease (%v) after a minute:\n%s", errCA, errLease, m.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A cluster joins: the manager issues the token Secret, registers the
	// agent (its namespace, ServiceAccount, Roles and credential) and sees
	// it Connected, all as the chart's ServiceAccount.
	down := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet-default"}}); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(harness.EdgefleetBinary(t), "token", "create", "--kubeconfig", c.KubeconfigPath(), "-n", "fleet-default", "--ttl", "1h").CombinedOutput()
	if err != nil {
		t.Fatalf("edgefleet token create: %v\n%s", err, out)
	}
	g := regexp.MustCompile(`(?m)^Token \S+ \(valid until [^)]*\):\n  (\S+)$`).FindStringSubmatch(string(out))
	if g == nil {
		t.Fatalf("no token in output:\n%s", out)
	}
	agent := exec.Command(harness.EdgefleetBinary(t), "agent", "--server", m.URL, "--token", g[1], "--ca-checksum", m.CAChecksum,
		"--kubeconfig", down.KubeconfigPath(), "--heartbeat-interval", "1s")
	var agentOut bytes.Buffer
	agent.Stdout, agent.Stderr = &agentOut, &agentOut
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		_ = agent.Wait()
		if t.Failed() {
			t.Logf("agent output:\n%s", agentOut.String())
		}
	})
	deadline = time.Now().Add(90 * time.Second)
	for {
		var list fleetv1.ClusterList
		if err := c.Client.List(ctx, &list, client.InNamespace("fleet-default")); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) == 1 && meta.IsStatusConditionTrue(list.Items[0].Status.Conditions, fleetv1.ConnectedCondition) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Connected cluster after 90s (%d clusters):\n%s", len(list.Items), m.Output())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if out := m.Output(); strings.Contains(out, "forbidden") {
		t.Errorf("the manager was refused something with the chart's RBAC:\n%s", out)
	}
}

// saKubeconfig writes a kubeconfig authenticating as the ServiceAccount.
func saKubeconfig(ctx context.Context, t *testing.T, cfg *rest.Config, sa string) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "sa", Namespace: namespace}
	kc.CurrentContext = "c"
	p := filepath.Join(t.TempDir(), "sa.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}
