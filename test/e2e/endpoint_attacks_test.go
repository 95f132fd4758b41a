package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/join"
	"github.com/edgefleet/edgefleet/internal/clusterproxy"
	"github.com/edgefleet/edgefleet/internal/tunnel"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

// TestEndpointAttacks runs the endpoint's trust-boundary attacks against one
// manager with one joined cluster: the kube-api proxy without the
// manager-side right, identities replayed downstream, slow and idle
// connections, a revoked cluster credential, a second tunnel for a live
// cluster, /metrics without credentials, a credential past its lifetime and
// a registration flood.
func TestEndpointAttacks(t *testing.T) {
	if testing.Short() {
		t.Skip("needs control planes")
	}
	t.Parallel()
	ctx := context.Background()
	m := harness.StartManager(t, harness.ManagerOptions{Args: []string{
		"--tunnel-probe-interval", "1s",
		"--read-header-timeout", "2s", "--idle-timeout", "3s", "--read-timeout", "3s", "--write-timeout", "3s",
		"--join-rate-limit", "2", "--join-rate-burst", "20",
		"--cluster-credential-max-lifetime", "10m",
	}})
	cl := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	_, token, _ := createToken(t, m, "1h")
	var ks corev1.Namespace
	if err := cl.Client.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ks); err != nil {
		t.Fatal(err)
	}
	startJoinAgent(t, cl, join.Options{Server: m.URL, Token: token, CAChecksum: m.CAChecksum})
	var name string
	waitFor(t, 60*time.Second, "the joined cluster Connected through its tunnel", func() bool {
		c := clusterByClientID(ctx, m.Client, string(ks.UID))
		if c == nil || connectedReason(c) != "True/"+fleetv1.AgentConnectedReason {
			return false
		}
		name = c.Name
		return true
	})
	_, caPEM := get(t, m, "/cacerts")
	proxyPath := clusterproxy.ClusterPath(fleetNS, name)
	mcs := kubernetes.NewForConfigOrDie(restConfig(t, m.Kubeconfig))
	saToken := func(name string) string {
		t.Helper()
		if _, err := mcs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := mcs.CoreV1().ServiceAccounts("default").CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	intruder := saToken("intruder")

	t.Run("proxy needs the manager-side right", func(t *testing.T) {
		// Another cluster's credential (an agent's manager ServiceAccount)
		// and a manager ServiceAccount without rights: /version is open to
		// any authenticated user downstream, so before the fix both
		// reached the cluster.
		_, other := register(t, m, clusterjoin.RegisterRequest{Token: token, ClientID: "another-cluster"})
		if other == nil {
			t.Fatal("registering a second cluster failed")
		}
		for who, tok := range map[string]string{"another cluster's agent credential": other.Token, "a manager ServiceAccount without rights": intruder} {
			code, body := rawGet(t, m, proxyPath+"/version", tok, nil)
			if code != http.StatusForbidden || !strings.Contains(body, "may not use the kube-api proxy") || !strings.Contains(body, clusterproxy.ProxyClusterRole) {
				t.Fatalf("%s through the proxy: %d %s, want 403 naming the missing right", who, code, body)
			}
		}
	})

	t.Run("permitted callers arrive downstream without system identities", func(t *testing.T) {
		opToken := saToken("operator")
		grantProxy(ctx, t, m.Client, "default", "operator", fleetNS)
		op := newProxyCaller(t, m, []byte(caPEM), fleetNS, name, nil, nil, opToken)
		var u authnv1.UserInfo
		waitFor(t, 15*time.Second, "the operator allowed through the proxy after its RoleBinding", func() bool {
			r, err := kubernetes.NewForConfigOrDie(op.cfg).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
			if err != nil {
				return false
			}
			u = r.Status.UserInfo
			return true
		})
		if u.Username != "edgefleet:sa:default:operator" {
			t.Fatalf("downstream sees the operator as %q, want edgefleet:sa:default:operator", u.Username)
		}
		for _, g := range u.Groups {
			if strings.HasPrefix(g, "system:") && g != "system:authenticated" {
				t.Fatalf("downstream sees the operator in group %q (all groups %v): manager system: groups must not be replayed", g, u.Groups)
			}
		}

		// The admin (client certificate, system:masters) may use the proxy,
		// arrives as edgefleet:manager-admins and is admin through the
		// agent's binding, not through system:masters.
		admCfg := restConfig(t, m.Kubeconfig)
		admin := newProxyCaller(t, m, []byte(caPEM), fleetNS, name, admCfg.CertData, admCfg.KeyData, "")
		au := admin.whoami(ctx, t)
		if containsString(au.Groups, "system:masters") || !containsString(au.Groups, clusterjoin.ManagerAdminsGroup) {
			t.Fatalf("downstream sees the admin in groups %v, want %s and never system:masters", au.Groups, clusterjoin.ManagerAdminsGroup)
		}
		if _, err := kubernetes.NewForConfigOrDie(admin.cfg).CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); err != nil {
			t.Fatalf("admin through the proxy cannot list kube-system Secrets: %v", err)
		}

		// Long-lived requests outlive the 3 s read and write timeouts: a
		// watch through the proxy still delivers an event after 5 s.
		w, err := kubernetes.NewForConfigOrDie(admin.cfg).CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		drain := time.After(5 * time.Second)
	idle:
		for {
			select {
			case <-w.ResultChan():
			case <-drain:
				break idle
			}
		}
		if err := cl.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "late"}}); err != nil {
			t.Fatal(err)
		}
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					t.Fatal("the watch through the proxy was closed by the endpoint's timeouts")
				}
				if cm, isCM := ev.Object.(*corev1.ConfigMap); isCM && cm.Name == "late" {
					return
				}
			case <-timeout:
				t.Fatal("no event for ConfigMap late on a 5 s old watch through the proxy")
			}
		}
	})

	t.Run("slow and idle connections are closed", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(caPEM))
		addr := strings.TrimPrefix(m.URL, "https://")
		dial := func() *tls.Conn {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return c
		}
		// closedWithin reads until the server closes the connection.
		closedWithin := func(c net.Conn, limit time.Duration, what string) {
			t.Helper()
			start := time.Now()
			_ = c.SetReadDeadline(start.Add(limit + 10*time.Second))
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("%s: the server kept the connection open for %s", what, limit+10*time.Second)
			}
			if d := time.Since(start); d > limit {
				t.Fatalf("%s: closed after %s, want within %s", what, d, limit)
			}
		}

		// A body that never arrives, on an ordinary route (before the fix:
		// held open for good).
		c := dial()
		if _, err := io.WriteString(c, "POST "+clusterjoin.RegisterPath+" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"); err != nil {
			t.Fatal(err)
		}
		closedWithin(c, 8*time.Second, "incomplete body")

		// A keep-alive connection left idle after one request.
		c = dial()
		if _, err := io.WriteString(c, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /ping on a raw connection: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		closedWithin(c, 6*time.Second, "idle keep-alive connection")

		// Slowloris: a header that is never completed (before the fix
		// closed after a fixed 10 s).
		c = dial()
		if _, err := io.WriteString(c, "GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		closedWithin(c, 5*time.Second, "incomplete header")
	})

	t.Run("metrics need credentials and the manager-side right", func(t *testing.T) {
		if code, _ := get(t, m, "/metrics"); code != http.StatusUnauthorized {
			t.Fatalf("/metrics without credentials: %d, want 401", code)
		}
		if code, _ := rawGet(t, m, "/metrics", intruder, nil); code != http.StatusForbidden {
			t.Fatalf("/metrics with a token lacking get /metrics: %d, want 403", code)
		}
		if code, body := adminGet(t, m, "/metrics"); code != http.StatusOK || !strings.Contains(body, "edgefleet_build_info") {
			t.Fatalf("/metrics as the admin: %d", code)
		}
	})

	t.Run("a second tunnel for a live cluster is refused", func(t *testing.T) {
		_, r := register(t, m, clusterjoin.RegisterRequest{Token: token, ClientID: "takeover-victim"})
		if r == nil {
			t.Fatal("register failed")
		}
		actx, stopA := context.WithCancel(ctx)
		defer stopA()
		up := startTestTunnel(actx, t, m, r.Token, caPEM)
		waitChan(t, up.connected, 20*time.Second, "the first tunnel connected")

		// A second session with the cluster's credential (a stolen copy).
		code, body := dialTunnel(t, m, r.Token, caPEM)
		if code != http.StatusConflict || !strings.Contains(body, "already has a live tunnel") {
			t.Fatalf("second tunnel while the first answers: %d %q, want 409", code, body)
		}
		waitFor(t, 10*time.Second, "a TunnelTakeoverRefused Event on the Cluster", func() bool {
			evs, err := mcs.EventsV1().Events(fleetNS).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false
			}
			for _, e := range evs.Items {
				if e.Reason == "TunnelTakeoverRefused" && e.Regarding.Name == r.ClusterName {
					return true
				}
			}
			return false
		})

		// When the first one is gone, a new one is accepted; a session
		// that does not answer probes (no yamux behind the websocket) is
		// then replaced by the next.
		stopA()
		waitFor(t, 15*time.Second, "a new tunnel accepted after the first closed", func() bool {
			code, _ := dialTunnel(t, m, r.Token, caPEM)
			return code == http.StatusSwitchingProtocols
		})
		bctx, stopB := context.WithCancel(ctx)
		defer stopB()
		b := startTestTunnel(bctx, t, m, r.Token, caPEM)
		waitChan(t, b.connected, 20*time.Second, "a tunnel replacing a session that does not answer its probes")
	})

	t.Run("a revoked cluster loses its credential and tunnel", func(t *testing.T) {
		_, r := register(t, m, clusterjoin.RegisterRequest{Token: token, ClientID: "to-be-revoked"})
		if r == nil {
			t.Fatal("register failed")
		}
		tctx, stop := context.WithCancel(ctx)
		defer stop()
		tun := startTestTunnel(tctx, t, m, r.Token, caPEM)
		waitChan(t, tun.connected, 20*time.Second, "the tunnel connected")
		cc := credentialClient(t, m, r)
		var own fleetv1.Cluster
		if err := cc.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: r.ClusterName}, &own); err != nil {
			t.Fatalf("credential before revocation: %v", err)
		}

		out, err := exec.Command(harness.EdgefleetBinary(t), "cluster", "revoke", r.ClusterName, "-n", fleetNS, "--kubeconfig", m.Kubeconfig).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Revoked") {
			t.Fatalf("edgefleet cluster revoke: %v\n%s", err, out)
		}
		waitChan(t, tun.unauthorized, 20*time.Second, "the tunnel closed and its credential refused on redial")
		if code, body := postBearer(t, m, clusterjoin.RenewPath, r.Token); code != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
			t.Fatalf("renewal with a revoked credential: %d %s, want 401 saying revoked", code, body)
		}
		waitFor(t, 20*time.Second, "the manager API refusing the revoked credential", func() bool {
			return apierrors.IsUnauthorized(cc.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: r.ClusterName}, &own))
		})
	})

	t.Run("renewal past the maximum lifetime is refused", func(t *testing.T) {
		_, r := register(t, m, clusterjoin.RegisterRequest{Token: token, ClientID: "short-lived"})
		if r == nil {
			t.Fatal("register failed")
		}
		if left := time.Until(r.Expires); left > 11*time.Minute {
			t.Fatalf("credential valid for %s, beyond the 10m maximum lifetime", left)
		}
		if code, body := postBearer(t, m, clusterjoin.RenewPath, r.Token); code != http.StatusUnauthorized || !strings.Contains(body, "maximum lifetime") {
			t.Fatalf("renewal within 10 minutes of the end of a 10m lifetime: %d %s, want 401 naming the lifetime", code, body)
		}
		// The renewal key does not extend the lifetime; the Cluster says
		// what to do.
		if code, _ := renewWithKey(t, m, clusterjoin.RenewRequest{ClusterNamespace: r.ClusterNamespace, ClusterName: r.ClusterName, RenewalKey: r.RenewalKey}); code != http.StatusUnauthorized {
			t.Fatalf("renewal key past the maximum lifetime: %d, want 401", code)
		}
		waitFor(t, 20*time.Second, "a RenewalRefused event on the Cluster", func() bool { return clusterEvent(context.Background(), m, r.ClusterName, "RenewalRefused") })
	})

	// Last: it spends this source's join budget.
	t.Run("a registration flood from one source gets 429", func(t *testing.T) {
		var mu sync.Mutex
		codes := map[int]int{}
		retryAfter := ""
		var wg sync.WaitGroup
		for i := range 60 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf(`{"token":"bogus-%d","clientID":"flood"}`, i)
				resp, err := m.HTTP.Post(m.URL+clusterjoin.RegisterPath, "application/json", strings.NewReader(body))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				if resp.StatusCode == http.StatusTooManyRequests {
					retryAfter = resp.Header.Get("Retry-After")
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		if codes[http.StatusTooManyRequests] < 30 || retryAfter == "" || codes[http.StatusTooManyRequests]+codes[http.StatusUnauthorized] != 60 {
			t.Fatalf("60 registrations at once from one source: %v (Retry-After %q), want at least 30 answered 429 with Retry-After, the rest 401", codes, retryAfter)
		}
		if code, _ := get(t, m, clusterjoin.ImportPathPrefix+"bogus.yaml"); code != http.StatusTooManyRequests {
			t.Fatalf("import manifest from the flooding source: %d, want 429", code)
		}
	})
}

func containsString(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

func waitChan(t *testing.T, c <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// testTunnel is an agent's tunnel whose "API server" answers /version.
type testTunnel struct {
	connected, unauthorized chan struct{}
}

func startTestTunnel(ctx context.Context, t *testing.T, m *harness.Manager, token, caPEM string) *testTunnel {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(caPEM))
	tt := &testTunnel{connected: make(chan struct{}), unauthorized: make(chan struct{})}
	var once1, once2 sync.Once
	c := &tunnel.Client{
		URL: "wss://" + strings.TrimPrefix(m.URL, "https://") + clusterjoin.TunnelPath, TLS: &tls.Config{RootCAs: pool}, Log: logr.Discard(),
		Header:         func() http.Header { return http.Header{"Authorization": {"Bearer " + token}} },
		Handler:        http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"major":"1"}`) }),
		OnConnect:      func() { once1.Do(func() { close(tt.connected) }) },
		OnUnauthorized: func(context.Context) { once2.Do(func() { close(tt.unauthorized) }) },
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { <-done })
	return tt
}

// dialTunnel opens the tunnel websocket; an accepted one stays open, with
// nothing answering behind it, until the test ends.
func dialTunnel(t *testing.T, m *harness.Manager, token, caPEM string) (int, string) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(caPEM))
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, HandshakeTimeout: 10 * time.Second}
	ws, resp, err := d.Dial("wss://"+strings.TrimPrefix(m.URL, "https://")+clusterjoin.TunnelPath, http.Header{"Authorization": {"Bearer " + token}})
	if err == nil {
		t.Cleanup(func() { _ = ws.Close() })
		return http.StatusSwitchingProtocols, ""
	}
	if resp == nil {
		t.Fatalf("dialing the tunnel: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func postBearer(t *testing.T, m *harness.Manager, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, m.URL+path, bytes.NewReader(nil))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := m.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
