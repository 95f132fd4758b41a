package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/agent/join"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/clusterproxy"
	"github.com/edgefleet/edgefleet/internal/pki"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

// proxyCaller is a caller of one replica's kube-api proxy URL for one
// cluster: a kubeconfig for kubectl, and a rest.Config.
type proxyCaller struct {
	kubeconfig string
	cfg        *rest.Config
}

func newProxyCaller(t *testing.T, m *harness.Manager, caPEM []byte, ns, name string, certPEM, keyPEM []byte, token string) proxyCaller {
	t.Helper()
	server := m.URL + clusterproxy.ClusterPath(ns, name)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["proxy"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	kc.AuthInfos["caller"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM, Token: token}
	kc.Contexts["proxy"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: "caller"}
	kc.CurrentContext = "proxy"
	path := filepath.Join(t.TempDir(), "proxy.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return proxyCaller{kubeconfig: path, cfg: restConfig(t, path)}
}

func (p proxyCaller) whoami(ctx context.Context, t *testing.T) authnv1.UserInfo {
	t.Helper()
	r, err := kubernetes.NewForConfigOrDie(p.cfg).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview through the proxy: %v", err)
	}
	return r.Status.UserInfo
}

// rawGet sends one request with extra headers through a replica's proxy.
func rawGet(t *testing.T, m *harness.Manager, path, token string, h http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, m.URL+path, nil)
	for k, vs := range h {
		req.Header[k] = vs
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := m.HTTP.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestProxyRequestsAreForwardedToTheReplicaHoldingTheTunnel runs two
// manager replicas on one cluster. A downstream agent's tunnel lands on
// replica A; kubectl through replica B's proxy URL reaches the downstream
// cluster (B forwards to A) as the original caller, and forged forwarding
// headers from an ordinary caller grant nothing.
func TestProxyRequestsAreForwardedToTheReplicaHoldingTheTunnel(t *testing.T) {
	if testing.Short() {
		t.Skip("needs control planes")
	}
	if _, err := os.Stat(kubectlBin); err != nil {
		t.Skip("needs " + kubectlBin)
	}
	t.Parallel()
	ctx := context.Background()
	cls := harness.StartClusters(t, 2, harness.ClusterOptions{})
	mgmt, down := cls[0], cls[1]
	// Users' client certificates come from a CA the replicas are told to
	// trust; the endpoint CA of Secret edgefleet-ca makes no user.
	userCA, _, err := pki.NewCA("fleet-users")
	if err != nil {
		t.Fatal(err)
	}
	userCAFile := filepath.Join(t.TempDir(), "users-ca.crt")
	if err := os.WriteFile(userCAFile, userCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	a := harness.StartManager(t, harness.ManagerOptions{Kubeconfig: mgmt.KubeconfigPath(), Args: []string{"--client-ca-file", userCAFile}})
	b := harness.StartManager(t, harness.ManagerOptions{Kubeconfig: mgmt.KubeconfigPath(), Args: []string{"--client-ca-file", userCAFile}})
	addrA := strings.TrimPrefix(a.URL, "https://")

	if err := mgmt.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	_, token, _ := createToken(t, a, "1h")
	var ks corev1.Namespace
	if err := down.Client.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ks); err != nil {
		t.Fatal(err)
	}
	startJoinAgent(t, down, join.Options{Server: a.URL, Token: token, CAChecksum: a.CAChecksum})

	// The agent's tunnel is on A: A renews the cluster's tunnel Lease.
	var name, holder string
	waitFor(t, 60*time.Second, "replica A holding the downstream cluster's tunnel Lease", func() bool {
		c := clusterByClientID(ctx, mgmt.Client, string(ks.UID))
		if c == nil || c.Status.Namespace == "" {
			return false
		}
		var lease coordinationv1.Lease
		if mgmt.Client.Get(ctx, client.ObjectKey{Namespace: c.Status.Namespace, Name: clusterns.TunnelLease}, &lease) != nil || lease.Spec.HolderIdentity == nil {
			return false
		}
		name, holder = c.Name, *lease.Spec.HolderIdentity
		return strings.HasSuffix(holder, "/"+addrA)
	})

	// Callers: an admin (client certificate of the users' CA, group
	// system:masters) and a manager ServiceAccount with no downstream rights.
	var caSecret corev1.Secret
	if err := mgmt.Client.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: server.CASecretName}, &caSecret); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(pki.KeyPair{CertPEM: caSecret.Data[corev1.TLSCertKey], KeyPEM: caSecret.Data[corev1.TLSPrivateKeyKey]})
	if err != nil {
		t.Fatal(err)
	}
	adminKP, err := userCA.Issue(pki.CertSpec{CommonName: "fleet-admin", Organization: []string{"system:masters"}, Usage: pki.ClientAuth})
	if err != nil {
		t.Fatal(err)
	}
	admin := newProxyCaller(t, b, ca.CertPEM, fleetNS, name, adminKP.CertPEM, adminKP.KeyPEM, "")
	mcs := kubernetes.NewForConfigOrDie(mgmt.RESTConfig())
	if _, err := mcs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "viewer"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := mcs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "viewer", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	viewerToken := tr.Status.Token
	grantProxy(ctx, t, mgmt.Client, "default", "viewer", fleetNS)
	viewer := newProxyCaller(t, b, ca.CertPEM, fleetNS, name, nil, nil, viewerToken)

	// kubectl through B: get, apply, and a watch that receives an event.
	if out := kubectl(t, admin.kubeconfig, nil, "get", "namespace", "kube-system", "-o", "name"); strings.TrimSpace(out) != "namespace/kube-system" {
		t.Fatalf("kubectl get through replica B: %q", out)
	}
	kubectl(t, admin.kubeconfig, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: replicas\n"), "apply", "-f", "-")
	kubectl(t, admin.kubeconfig, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\n  namespace: replicas\n"), "apply", "-f", "-")
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch := exec.CommandContext(watchCtx, kubectlBin, "--kubeconfig", admin.kubeconfig, "get", "configmaps", "-n", "replicas", "--watch", "-o", "name")
	var watchOut syncBuf
	watch.Stdout, watch.Stderr = &watchOut, &watchOut
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stopWatch(); _ = watch.Wait() }()
	waitFor(t, 20*time.Second, "the watch through replica B listing the existing ConfigMap", func() bool {
		return strings.Contains(watchOut.String(), "configmap/first")
	})
	kubectl(t, admin.kubeconfig, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: forwarded\n  namespace: replicas\ndata:\n  via: b\n"), "apply", "-f", "-")
	if cm, err := configMap(ctx, down.Client, "replicas", "forwarded"); err != nil || cm.Data["via"] != "b" {
		t.Fatalf("kubectl apply through replica B did not reach the downstream cluster: %v", err)
	}
	waitFor(t, 20*time.Second, "the watch through replica B receiving the new ConfigMap", func() bool {
		return strings.Contains(watchOut.String(), "configmap/forwarded")
	})

	// The downstream cluster sees the original callers, not a replica.
	// Manager groups are mapped: system:masters becomes
	// edgefleet:manager-admins (bound to cluster-admin by the agent).
	if u := admin.whoami(ctx, t); u.Username != "fleet-admin" || slices.Contains(u.Groups, "system:masters") || !slices.Contains(u.Groups, clusterjoin.ManagerAdminsGroup) {
		t.Fatalf("downstream sees the admin as %+v", u)
	}
	if u := viewer.whoami(ctx, t); u.Username != "edgefleet:sa:default:viewer" || slices.Contains(u.Groups, "system:masters") || slices.Contains(u.Groups, clusterproxy.PeerGroup) {
		t.Fatalf("downstream sees the viewer as %+v", u)
	}
	if _, err := kubernetes.NewForConfigOrDie(viewer.cfg).CoreV1().ConfigMaps("replicas").Get(ctx, "forwarded", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("viewer without downstream rights through replica B: %v, want Forbidden from the downstream cluster", err)
	}

	// Latency, for the record: the holder's proxy vs one forwarding hop.
	viaA := kubernetes.NewForConfigOrDie(newProxyCaller(t, a, ca.CertPEM, fleetNS, name, adminKP.CertPEM, adminKP.KeyPEM, "").cfg)
	viaB := kubernetes.NewForConfigOrDie(admin.cfg)
	measure := func(cs *kubernetes.Clientset) []time.Duration {
		var d []time.Duration
		for range 100 {
			start := time.Now()
			if _, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
				t.Fatal(err)
			}
			d = append(d, time.Since(start))
		}
		return d
	}
	da, db := measure(viaA), measure(viaB)
	t.Logf("GET namespace over 100 requests: via the holder A p50=%v p99=%v; via B, forwarded to A, p50=%v p99=%v",
		percentile(da, .5), percentile(da, .99), percentile(db, .5), percentile(db, .99))

	// An ordinary caller who sends the forwarding headers itself, to either
	// replica, is still just the viewer.
	forged := http.Header{
		clusterproxy.HeaderForwardedBy: {"evil/10.0.0.1:8443"},
		clusterproxy.HeaderRemoteUser:  {"fleet-admin"},
		clusterproxy.HeaderRemoteGroup: {"system:masters"},
	}
	cmPath := clusterproxy.ClusterPath(fleetNS, name) + "/api/v1/namespaces/replicas/configmaps/forwarded"
	for _, m := range []*harness.Manager{a, b} {
		code, body := rawGet(t, m, cmPath, viewerToken, forged)
		if code != http.StatusForbidden || !strings.Contains(body, "edgefleet:sa:default:viewer") {
			t.Fatalf("viewer with forged forwarding headers via %s: %d %s, want 403 for the viewer", m.URL, code, body)
		}
	}

	// A cluster whose agent never connected: no replica holds its tunnel.
	_, idle := register(t, b, clusterjoin.RegisterRequest{Token: token, ClientID: "never-connects"})
	if idle == nil {
		t.Fatal("registering a second cluster failed")
	}
	idleCaller := newProxyCaller(t, b, ca.CertPEM, idle.ClusterNamespace, idle.ClusterName, adminKP.CertPEM, adminKP.KeyPEM, "")
	_, err = kubernetes.NewForConfigOrDie(idleCaller.cfg).CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "not connected to any manager replica") {
		t.Fatalf("cluster without a tunnel: %v, want 503 saying no replica holds it", err)
	}

	// Replica A stops gracefully (a rolling upgrade): it releases the tunnel
	// Lease, so B at once says no replica holds the tunnel — and would accept
	// the agent's reconnect — instead of naming A for as long as the Lease
	// stays fresh (502; a crashed replica still looks like that).
	stopWatch()
	a.Stop()
	waitFor(t, 15*time.Second, "B seeing the stopped replica's tunnel Lease released", func() bool {
		_, err = kubernetes.NewForConfigOrDie(admin.cfg).CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return apierrors.IsServiceUnavailable(err) && strings.Contains(err.Error(), "not connected to any manager replica")
	})
	var lease coordinationv1.Lease
	if err := mgmt.Client.Get(ctx, client.ObjectKey{Namespace: clusterByClientID(ctx, mgmt.Client, string(ks.UID)).Status.Namespace, Name: clusterns.TunnelLease}, &lease); err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity != nil || lease.Spec.RenewTime == nil {
		t.Fatalf("tunnel Lease after a graceful stop: holder %v renewTime %v; want the holder cleared and the renew time kept (Connected must not flap)", lease.Spec.HolderIdentity, lease.Spec.RenewTime)
	}
}
