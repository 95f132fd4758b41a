package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/join"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

// registerWith posts a registration request carrying bearer (a cluster
// credential, or "") and returns the status, the error message and the
// answer.
func registerWith(t *testing.T, m *harness.Manager, bearer string, req clusterjoin.RegisterRequest) (int, string, *clusterjoin.RegisterResponse) {
	t.Helper()
	body, _ := json.Marshal(req)
	r, _ := http.NewRequest(http.MethodPost, m.URL+clusterjoin.RegisterPath, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := m.HTTP.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e clusterjoin.Error
		_ = json.Unmarshal(data, &e)
		return resp.StatusCode, e.Message, nil
	}
	var out clusterjoin.RegisterResponse
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("register answer %s: %v", data, err)
	}
	return resp.StatusCode, "", &out
}

// timedCredentialClient is credentialClient whose requests fail after 30 s
// instead of hanging the test.
func timedCredentialClient(t *testing.T, m *harness.Manager, r *clusterjoin.RegisterResponse) client.Client {
	t.Helper()
	c, err := client.New(&rest.Config{Host: m.URL + r.ManagerAPIPath, BearerToken: r.Token, Timeout: 30 * time.Second, QPS: 1000, Burst: 1000,
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte(r.CACert)}}, client.Options{Scheme: server.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func getCluster(ctx context.Context, t *testing.T, m *harness.Manager, r *clusterjoin.RegisterResponse) *fleetv1.Cluster {
	t.Helper()
	var c fleetv1.Cluster
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: r.ClusterNamespace, Name: r.ClusterName}, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// checkIn renews the cluster's heartbeat Lease with its own credential, as
// its agent does.
func checkIn(ctx context.Context, t *testing.T, as client.Client, r *clusterjoin.RegisterResponse, version string) {
	t.Helper()
	patch := `{"metadata":{"annotations":{"` + clusterjoin.AnnotationAgentVersion + `":"` + version + `"}},"spec":{"renewTime":"` +
		time.Now().UTC().Format("2006-01-02T15:04:05.000000Z") + `"}}`
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: clusterjoin.HeartbeatLease}}
	if err := as.Patch(ctx, lease, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatalf("heartbeat with the cluster's credential: %v", err)
	}
}

// TestClusterAgentCannotSteerTheManager: a cluster's agent and a
// registration-token holder stay inside their own cluster. Issue #11 items 5
// and 6 and the Low items on Contents, cluster quotas and cluster names.
func TestClusterAgentCannotSteerTheManager(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	t.Parallel()
	ctx := context.Background()
	m := harness.StartManager(t, harness.ManagerOptions{Args: []string{"--cluster-offline-threshold", "6s", "--tunnel-probe-interval", "1s"}})
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	_, tok, _ := createToken(t, m, "1h")
	_, msg, a := registerWith(t, m, "", clusterjoin.RegisterRequest{Token: tok, ClientID: "uid-victim", Labels: map[string]string{"env": "agent", "zone": "z1"}})
	if a == nil {
		t.Fatalf("register victim: %s", msg)
	}
	_, msg, b := registerWith(t, m, "", clusterjoin.RegisterRequest{Token: tok, ClientID: "uid-other"})
	if b == nil {
		t.Fatalf("register other: %s", msg)
	}
	asA, asB := timedCredentialClient(t, m, a), timedCredentialClient(t, m, b)
	for _, r := range []*clusterjoin.RegisterResponse{a, b} {
		waitFor(t, 20*time.Second, "namespace of "+r.ClusterName, func() bool { return getCluster(ctx, t, m, r).Status.Namespace == r.Namespace })
	}

	t.Run("agent cannot write its Cluster's status, only its heartbeat Lease", func(t *testing.T) {
		for _, patch := range []string{`{"status":{"namespace":"` + b.Namespace + `"}}`, `{"status":{"agent":{"version":"x"}}}`} {
			err := asA.Status().Patch(ctx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: a.ClusterNamespace, Name: a.ClusterName}}, client.RawPatch(types.MergePatchType, []byte(patch)))
			if !apierrors.IsForbidden(err) {
				t.Fatalf("agent patches its Cluster status with %s: %v, want Forbidden", patch, err)
			}
		}
		if got := getCluster(ctx, t, m, a).Status.Namespace; got != a.Namespace {
			t.Fatalf("status.namespace of A is %q, want %q", got, a.Namespace)
		}
		// No Lease but its own heartbeat: not the tunnel Lease (whose holder
		// decides where proxied requests go), not another cluster's.
		tunnel := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: clusterns.TunnelLease},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("evil")}}
		if err := asA.Create(ctx, tunnel); !apierrors.IsForbidden(err) {
			t.Fatalf("agent creates the tunnel Lease: %v, want Forbidden", err)
		}
		other := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: clusterjoin.HeartbeatLease}}
		if err := asA.Patch(ctx, other, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"holderIdentity":"evil"}}`))); !apierrors.IsForbidden(err) {
			t.Fatalf("agent patches another cluster's heartbeat Lease: %v, want Forbidden", err)
		}
		// Its heartbeat becomes status.agent, with the facts bounded.
		checkIn(ctx, t, asA, a, "v9.9.9-"+strings.Repeat("x", 100))
		waitFor(t, 20*time.Second, "heartbeat copied into status.agent and Connected", func() bool {
			c := getCluster(ctx, t, m, a)
			return !c.Status.Agent.LastSeen.IsZero() && strings.HasPrefix(c.Status.Agent.Version, "v9.9.9-x") && len(c.Status.Agent.Version) == 64 &&
				connectedReason(c) == "True/"+fleetv1.AgentConnectedReason
		})
	})

	t.Run("a token holder cannot take over a registered cluster by its clientID", func(t *testing.T) {
		_, tok2, _ := createToken(t, m, "1h")
		status, msg, _ := registerWith(t, m, "", clusterjoin.RegisterRequest{Token: tok2, ClientID: "uid-victim", Labels: map[string]string{"zone": "evil", "env": "evil"}})
		if status != http.StatusConflict || !strings.Contains(msg, fleetv1.ApproveReregistrationAnnotation) {
			t.Fatalf("takeover with another token: %d %q, want 409 naming the approval annotation", status, msg)
		}
		// The presented credential must be the cluster's own.
		if status, _, _ := registerWith(t, m, b.Token, clusterjoin.RegisterRequest{Token: tok2, ClientID: "uid-victim"}); status != http.StatusConflict {
			t.Fatalf("takeover with another cluster's credential: %d, want 409", status)
		}
		if c := getCluster(ctx, t, m, a); c.Labels["zone"] != "z1" {
			t.Fatalf("refused registration changed labels: %v", c.Labels)
		}
		if err := asA.List(ctx, &fleetv1.BundleDeploymentList{}, client.InNamespace(a.Namespace)); err != nil {
			t.Fatalf("victim's credential after the refused takeover: %v", err)
		}
		waitFor(t, 20*time.Second, "a ReregistrationRefused event on the Cluster", func() bool {
			var evs eventsv1.EventList
			_ = m.Client.List(ctx, &evs, client.InNamespace(fleetNS))
			for _, e := range evs.Items {
				if e.Regarding.Name == a.ClusterName && e.Reason == "ReregistrationRefused" {
					return true
				}
			}
			return false
		})
		// The agent itself, presenting its credential, re-registers.
		if status, msg, again := registerWith(t, m, a.Token, clusterjoin.RegisterRequest{Token: tok2, ClientID: "uid-victim"}); status != http.StatusOK || again.ClusterName != a.ClusterName {
			t.Fatalf("re-registration with the cluster's credential: %d %s", status, msg)
		}
		// An admin's approval lets one registration through, once.
		c := getCluster(ctx, t, m, a)
		c.Annotations[fleetv1.ApproveReregistrationAnnotation] = "true"
		if err := m.Client.Update(ctx, c); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "approved re-registration", func() bool {
			status, _, again := registerWith(t, m, "", clusterjoin.RegisterRequest{Token: tok2, ClientID: "uid-victim"})
			return status == http.StatusOK && again.ClusterName == a.ClusterName
		})
		if _, ok := getCluster(ctx, t, m, a).Annotations[fleetv1.ApproveReregistrationAnnotation]; ok {
			t.Fatal("the approval annotation was not consumed")
		}
		if status, _, _ := registerWith(t, m, "", clusterjoin.RegisterRequest{Token: tok2, ClientID: "uid-victim"}); status != http.StatusConflict {
			t.Fatalf("second registration on one approval: %d, want 409", status)
		}
	})

	t.Run("agent labels never override admin labels", func(t *testing.T) {
		c := getCluster(ctx, t, m, a)
		c.Labels["env"] = "prod" // an admin changes the agent's label: now the admin's
		c.Labels["tier"] = "gold"
		if err := m.Client.Update(ctx, c); err != nil {
			t.Fatal(err)
		}
		status, msg, _ := registerWith(t, m, a.Token, clusterjoin.RegisterRequest{Token: tok, ClientID: "uid-victim",
			Labels: map[string]string{"env": "dev", "tier": "free", "zone": "z2", "new": "yes"}})
		if status != http.StatusOK {
			t.Fatalf("re-registration: %d %s", status, msg)
		}
		got := getCluster(ctx, t, m, a).Labels
		want := map[string]string{"env": "prod", "tier": "gold", "zone": "z2", "new": "yes"}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("labels %v, want %v (admin's env and tier kept, agent's zone and new set)", got, want)
			}
		}
	})

	t.Run("a cluster credential reads only its own bundles' Contents", func(t *testing.T) {
		small, err := content.Store(ctx, m.Client, &content.Manifest{Resources: []fleetv1.BundleResource{{Name: "cm.yaml", Content: "kind: ConfigMap # secret of B"}}})
		if err != nil {
			t.Fatal(err)
		}
		noise := make([]byte, 2<<20)
		_, _ = rand.Read(noise)
		big, err := content.Store(ctx, m.Client, &content.Manifest{Resources: []fleetv1.BundleResource{{Name: "big.yaml", Content: base64.StdEncoding.EncodeToString(noise)}}})
		if err != nil {
			t.Fatal(err)
		}
		var top fleetv1.Content
		if err := m.Client.Get(ctx, client.ObjectKey{Name: big}, &top); err != nil || len(top.Chunks) < 2 {
			t.Fatalf("big content not chunked: %v %d", err, len(top.Chunks))
		}
		for i, id := range []string{small, big} {
			bd := &fleetv1.BundleDeployment{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: "content-" + string(rune('a'+i))},
				Spec: fleetv1.BundleDeploymentSpec{DeploymentID: id + ":opts"}}
			if err := m.Client.Create(ctx, bd); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range []string{small, big, top.Chunks[0], top.Chunks[1]} {
			waitFor(t, 10*time.Second, "B reads its content "+name, func() bool {
				return asB.Get(ctx, client.ObjectKey{Name: name}, &fleetv1.Content{}) == nil
			})
			if err := asA.Get(ctx, client.ObjectKey{Name: name}, &fleetv1.Content{}); !apierrors.IsForbidden(err) {
				t.Fatalf("A reads B's content %s: %v, want Forbidden", name, err)
			}
		}
		if m, err := content.Load(ctx, asB, big); err != nil || len(m.Resources) != 1 {
			t.Fatalf("B loads its chunked content through the endpoint: %v", err)
		}
		measure := func(key client.ObjectKey, obj client.Object) []time.Duration {
			var d []time.Duration
			for range 50 {
				start := time.Now()
				if err := asB.Get(ctx, key, obj); err != nil {
					t.Fatal(err)
				}
				d = append(d, time.Since(start))
			}
			return d
		}
		checked := measure(client.ObjectKey{Name: small}, &fleetv1.Content{})
		forwarded := measure(client.ObjectKey{Namespace: b.Namespace, Name: "content-a"}, &fleetv1.BundleDeployment{})
		t.Logf("GET through the endpoint: a Content (checked, read by the endpoint) p50=%v p99=%v; a BundleDeployment (forwarded) p50=%v p99=%v",
			percentile(checked, .5), percentile(checked, .99), percentile(forwarded, .5), percentile(forwarded, .99))
	})

	t.Run("a token creates at most maxClusters clusters", func(t *testing.T) {
		name, tok3, _ := createToken(t, m, "1h")
		crt := &fleetv1.ClusterRegistrationToken{}
		if err := m.Client.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: name}, crt); err != nil {
			t.Fatal(err)
		}
		crt.Spec.MaxClusters = ptr.To[int32](2)
		if err := m.Client.Update(ctx, crt); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"quota-1", "quota-2"} {
			if status, msg, _ := registerWith(t, m, "", clusterjoin.RegisterRequest{Token: tok3, ClientID: id}); status != http.StatusOK {
				t.Fatalf("register %s within the quota: %d %s", id, status, msg)
			}
		}
		status, msg, _ := registerWith(t, m, "", clusterjoin.RegisterRequest{Token: tok3, ClientID: "quota-3"})
		if status != http.StatusForbidden || !strings.Contains(msg, "maxClusters") {
			t.Fatalf("third cluster on a token with maxClusters 2: %d %q, want 403 naming maxClusters", status, msg)
		}
		if clusterByClientID(ctx, m.Client, "quota-3") != nil {
			t.Fatal("a cluster over the quota was created")
		}
		// Re-registering an existing cluster does not count.
		if status, msg, _ := registerWith(t, m, "", clusterjoin.RegisterRequest{Token: tok3, ClientID: "quota-1"}); status != http.StatusOK {
			t.Fatalf("re-registering within the quota: %d %s", status, msg)
		}
	})

	t.Run("a cluster name taken by another clientID is refused, never adopted", func(t *testing.T) {
		if len(a.ClusterName) != len("cluster-")+24 {
			t.Fatalf("cluster name %s: want cluster-<24 hex>", a.ClusterName)
		}
		// An admin-made Cluster squats the name the next clientID derives.
		_, _, probe := registerWith(t, m, "", clusterjoin.RegisterRequest{Token: tok, ClientID: "probe"})
		var c fleetv1.Cluster
		if err := m.Client.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: probe.ClusterName}, &c); err != nil {
			t.Fatal(err)
		}
		c.Spec.ClientID = "someone-else"
		if err := m.Client.Update(ctx, &c); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "collision refused", func() bool {
			status, msg, _ := registerWith(t, m, "", clusterjoin.RegisterRequest{Token: tok, ClientID: "probe"})
			return status == http.StatusConflict && strings.Contains(msg, "another clientID")
		})
	})
}

// TestBootstrapTokenLeavesTheDownstreamCluster: after joining, the
// registration token is gone from the import manifest's Secret, and the
// agent restarts on its own credential without it.
func TestBootstrapTokenLeavesTheDownstreamCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	t.Parallel()
	ctx := context.Background()
	m, err := harness.LaunchManager(t, harness.ManagerOptions{Args: []string{"--cluster-offline-threshold", "6s"}})
	if err != nil {
		t.Fatal(err)
	}
	down := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	if err := m.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	_, tok, _ := createToken(t, m, "1h")
	code, manifest := get(t, m, clusterjoin.ImportPathPrefix+tok+".yaml")
	if code != http.StatusOK || !strings.Contains(manifest, "optional: true") || strings.Contains(manifest, "--token=") {
		t.Fatalf("import manifest (%d) must read the token from an optional Secret key, not an argument:\n%s", code, manifest)
	}
	// The manifest's Secret, as `kubectl apply` of the manifest creates it.
	if err := down.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterjoin.SystemNamespace}}); err != nil {
		t.Fatal(err)
	}
	boot := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.BootstrapSecret},
		StringData: map[string]string{clusterjoin.KeyServer: m.URL, clusterjoin.KeyToken: tok, clusterjoin.KeyCAChecksum: m.CAChecksum}}
	if err := down.Client.Create(ctx, boot); err != nil {
		t.Fatal(err)
	}
	a := startJoinAgent(t, down, join.Options{Server: m.URL, Token: tok, CAChecksum: m.CAChecksum})
	waitFor(t, 60*time.Second, "token erased from the bootstrap Secret", func() bool {
		var s corev1.Secret
		if err := down.Client.Get(ctx, client.ObjectKeyFromObject(boot), &s); err != nil {
			return false
		}
		return len(s.Data[clusterjoin.KeyToken]) == 0 && string(s.Data[clusterjoin.KeyServer]) == m.URL
	})
	a.stop()
	<-a.done
	// Restarted without a token, as the Deployment's Pod would be.
	restarted := time.Now()
	startJoinAgent(t, down, join.Options{Server: m.URL, CAChecksum: m.CAChecksum})
	var ks corev1.Namespace
	if err := down.Client.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ks); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "restarted agent heartbeats on its stored credential", func() bool {
		c := clusterByClientID(ctx, m.Client, string(ks.UID))
		if c == nil || c.Status.Namespace == "" {
			return false
		}
		var lease coordinationv1.Lease
		err := m.Client.Get(ctx, client.ObjectKey{Namespace: c.Status.Namespace, Name: clusterjoin.HeartbeatLease}, &lease)
		return err == nil && lease.Spec.RenewTime != nil && lease.Spec.RenewTime.After(restarted)
	})
}

// TestUpgradeRevokesLegacyClusterRights: rights older versions gave cluster
// credentials (patching the Cluster's status, getting every Content) are gone
// as soon as the manager starts, not at each agent's next renewal.
func TestUpgradeRevokesLegacyClusterRights(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	t.Parallel()
	ctx := context.Background()
	mgmt := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0]
	c := mgmt.Client
	for _, ns := range []string{fleetNS, "cluster-user"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	cluster := &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "old"}}
	if err := c.Create(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	clusterNS := clusterns.Name(fleetNS, "old")
	legacyNSRules := []rbacv1.PolicyRule{{APIGroups: []string{fleetv1.GroupVersion.Group}, Resources: []string{"bundledeployments"}, Verbs: []string{"get", "list", "watch", "patch", "update"}}}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterNS, Labels: map[string]string{
			fleetv1.ManagedLabel: "true", fleetv1.ClusterNameLabel: "old", fleetv1.ClusterNamespaceLabel: fleetNS}}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: clusterNS, Name: clusterjoin.ClusterServiceAccount}, Rules: legacyNSRules},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "cluster-user", Name: clusterjoin.ClusterServiceAccount}, Rules: legacyNSRules},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "edgefleet-agent-old", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: fleetv1.GroupVersion.String(), Kind: "Cluster", Name: "old", UID: cluster.UID}}}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{fleetv1.GroupVersion.Group}, Resources: []string{"clusters"}, ResourceNames: []string{"old"}, Verbs: []string{"get"}},
			{APIGroups: []string{fleetv1.GroupVersion.Group}, Resources: []string{"clusters/status"}, ResourceNames: []string{"old"}, Verbs: []string{"get", "patch", "update"}},
		}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "edgefleet-content-reader"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{fleetv1.GroupVersion.Group}, Resources: []string{"contents"}, Verbs: []string{"get"}}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "edgefleet-content-" + clusterNS},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: clusterNS, Name: clusterjoin.ClusterServiceAccount}},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edgefleet-content-reader"}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	harness.StartManager(t, harness.ManagerOptions{Kubeconfig: mgmt.KubeconfigPath()})
	waitFor(t, 60*time.Second, "legacy rights revoked", func() bool {
		var perCluster rbacv1.Role
		if c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "edgefleet-agent-old"}, &perCluster) != nil || len(perCluster.Rules) != 1 || perCluster.Rules[0].Resources[0] != "clusters" {
			return false
		}
		var nsRole rbacv1.Role
		if c.Get(ctx, client.ObjectKey{Namespace: clusterNS, Name: clusterjoin.ClusterServiceAccount}, &nsRole) != nil || len(nsRole.Rules) != 3 {
			return false
		}
		crb := c.Get(ctx, client.ObjectKey{Name: "edgefleet-content-" + clusterNS}, &rbacv1.ClusterRoleBinding{})
		cr := c.Get(ctx, client.ObjectKey{Name: "edgefleet-content-reader"}, &rbacv1.ClusterRole{})
		return apierrors.IsNotFound(crb) && apierrors.IsNotFound(cr)
	})
	var user rbacv1.Role
	if err := c.Get(ctx, client.ObjectKey{Namespace: "cluster-user", Name: clusterjoin.ClusterServiceAccount}, &user); err != nil || len(user.Rules) != 1 {
		t.Fatalf("a Role of that name outside a cluster namespace was changed: %v %v", err, user.Rules)
	}
}
