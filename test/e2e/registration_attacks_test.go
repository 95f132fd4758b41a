package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

var tokenLine = regexp.MustCompile(`(?m)^Token (\S+)/(\S+) \(valid until [^)]*\):\n  (\S+)$`)

// createToken runs `edgefleet token create` and returns the token's name
// and value.
func createToken(t *testing.T, m *harness.Manager, ttl string) (name, value, output string) {
	t.Helper()
	out, err := exec.Command(harness.EdgefleetBinary(t), "token", "create", "--kubeconfig", m.Kubeconfig, "-n", fleetNS, "--ttl", ttl).CombinedOutput()
	if err != nil {
		t.Fatalf("edgefleet token create: %v\n%s", err, out)
	}
	g := tokenLine.FindStringSubmatch(string(out))
	if g == nil {
		t.Fatalf("no token in output:\n%s", out)
	}
	return g[2], g[3], string(out)
}

// register posts a registration request and returns the status and answer.
func register(t *testing.T, m *harness.Manager, req clusterjoin.RegisterRequest) (int, *clusterjoin.RegisterResponse) {
	t.Helper()
	body, _ := json.Marshal(req)
	resp, err := m.HTTP.Post(m.URL+clusterjoin.RegisterPath, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	var out clusterjoin.RegisterResponse
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("register answer %s: %v", data, err)
	}
	return resp.StatusCode, &out
}

// credentialClient reaches the manager API through the endpoint with a
// cluster credential, as an agent does.
func credentialClient(t *testing.T, m *harness.Manager, r *clusterjoin.RegisterResponse) client.Client {
	t.Helper()
	c, err := client.New(&rest.Config{Host: m.URL + r.ManagerAPIPath, BearerToken: r.Token, TLSClientConfig: rest.TLSClientConfig{CAData: []byte(r.CACert)}},
		client.Options{Scheme: server.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func countClusters(ctx context.Context, t *testing.T, c client.Client) int {
	t.Helper()
	var l fleetv1.ClusterList
	if err := c.List(ctx, &l, client.InNamespace(fleetNS)); err != nil {
		t.Fatal(err)
	}
	return len(l.Items)
}

// TestRegistrationRefusesAttacks: wrong and expired tokens create nothing;
// one cluster's credential cannot touch another's objects; reserved labels
// are dropped; rotating tokens leaves joined clusters alone.
func TestRegistrationRefusesAttacks(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	t.Parallel()
	ctx := context.Background()
	m := harness.StartManager(t, harness.ManagerOptions{})
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	tok1Name, tok1, out := createToken(t, m, "1h")
	if !bytes.Contains([]byte(out), []byte("kubectl apply -f "+m.URL+clusterjoin.ImportPathPrefix+tok1+".yaml")) ||
		!bytes.Contains([]byte(out), []byte("--ca-checksum "+m.CAChecksum)) {
		t.Fatalf("token create does not print the join commands:\n%s", out)
	}

	// Wrong token: 401 on every route that takes one, and nothing created.
	if code, _ := register(t, m, clusterjoin.RegisterRequest{Token: tok1 + "x", ClientID: "evil"}); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: status %d, want 401", code)
	}
	if code, _ := register(t, m, clusterjoin.RegisterRequest{Token: "", ClientID: "evil"}); code != http.StatusUnauthorized {
		t.Fatalf("empty token: status %d, want 401", code)
	}
	if code, _ := get(t, m, clusterjoin.ImportPathPrefix+"nottoken.yaml"); code != http.StatusUnauthorized {
		t.Fatalf("import manifest with wrong token: status %d, want 401", code)
	}
	if n := countClusters(ctx, t, m.Client); n != 0 {
		t.Fatalf("%d clusters exist after refused registrations", n)
	}

	// Expired token: 401, nothing created, and the token is cleaned up.
	expName, expired, _ := createToken(t, m, "2s")
	time.Sleep(2500 * time.Millisecond)
	if code, _ := register(t, m, clusterjoin.RegisterRequest{Token: expired, ClientID: "late"}); code != http.StatusUnauthorized {
		t.Fatalf("expired token: status %d, want 401", code)
	}
	if n := countClusters(ctx, t, m.Client); n != 0 {
		t.Fatalf("%d clusters exist after an expired-token registration", n)
	}
	waitFor(t, 20*time.Second, "expired token deleted", func() bool {
		err := m.Client.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: expName}, &fleetv1.ClusterRegistrationToken{})
		return apierrors.IsNotFound(err)
	})

	// Two clusters join; reserved labels are dropped.
	code, a := register(t, m, clusterjoin.RegisterRequest{Token: tok1, ClientID: "uid-a", Labels: map[string]string{
		"env": "prod", "fleet.edgefleet.io/cluster": "other", fleetv1.GroupLabelPrefix + "admins": "true", "edgefleet.io/admin": "true", "x.edgefleet.io/y": "z", "bad key!": "v",
	}})
	if code != http.StatusOK {
		t.Fatalf("register A: %d", code)
	}
	_, b := register(t, m, clusterjoin.RegisterRequest{Token: tok1, ClientID: "uid-b"})
	var ca fleetv1.Cluster
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: a.ClusterNamespace, Name: a.ClusterName}, &ca); err != nil {
		t.Fatal(err)
	}
	// The agent's reserved labels are dropped; the token's group label is
	// the manager's (spec.clusterGroup, "default" when unset).
	if len(ca.Labels) != 2 || ca.Labels["env"] != "prod" || ca.Labels[fleetv1.GroupLabelPrefix+fleetv1.DefaultClusterGroup] != "true" {
		t.Fatalf("cluster A labels %v, want only env=prod and the default group's label", ca.Labels)
	}
	// The same clientID finds the same cluster.
	if _, again := register(t, m, clusterjoin.RegisterRequest{Token: tok1, ClientID: "uid-a"}); again.ClusterName != a.ClusterName || again.Namespace != a.Namespace {
		t.Fatalf("re-registration made %s/%s, want %s/%s", again.ClusterNamespace, again.ClusterName, a.ClusterNamespace, a.ClusterName)
	}

	// A bundle deployment and content for each.
	for _, r := range []*clusterjoin.RegisterResponse{a, b} {
		bd := &fleetv1.BundleDeployment{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: "app"}}
		if err := m.Client.Create(ctx, bd); err != nil {
			t.Fatal(err)
		}
	}
	asA := credentialClient(t, m, a)
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Fatalf("%s with cluster A's credential: %v, want 403 Forbidden", what, err)
		}
	}
	// Its own objects work.
	var own fleetv1.BundleDeploymentList
	if err := asA.List(ctx, &own, client.InNamespace(a.Namespace)); err != nil || len(own.Items) != 1 {
		t.Fatalf("cluster A lists its own BundleDeployments: %v (%d)", err, len(own.Items))
	}
	statusPatch := client.RawPatch(types.MergePatchType, []byte(`{"status":{"agent":{"version":"x"}}}`))
	// Not even its own Cluster's status (the manager derives it; see
	// TestClusterAgentCannotSteerTheManager).
	forbidden("patching its own Cluster status", asA.Status().Patch(ctx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: a.ClusterNamespace, Name: a.ClusterName}}, statusPatch))
	// Cluster B's are refused.
	forbidden("listing B's BundleDeployments", asA.List(ctx, &fleetv1.BundleDeploymentList{}, client.InNamespace(b.Namespace)))
	forbidden("getting B's BundleDeployment", asA.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: "app"}, &fleetv1.BundleDeployment{}))
	forbidden("listing B's namespace secrets", asA.List(ctx, &corev1.SecretList{}, client.InNamespace(b.Namespace)))
	forbidden("getting B's Cluster", asA.Get(ctx, client.ObjectKey{Namespace: b.ClusterNamespace, Name: b.ClusterName}, &fleetv1.Cluster{}))
	forbidden("patching B's Cluster status", asA.Status().Patch(ctx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: b.ClusterNamespace, Name: b.ClusterName}}, statusPatch))
	forbidden("patching its own Cluster spec", asA.Patch(ctx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: a.ClusterNamespace, Name: a.ClusterName}}, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"paused":true}}`))))
	forbidden("listing Contents", asA.List(ctx, &fleetv1.ContentList{}))
	forbidden("listing Clusters", asA.List(ctx, &fleetv1.ClusterList{}, client.InNamespace(fleetNS)))
	forbidden("creating a BundleDeployment in B's namespace", asA.Create(ctx, &fleetv1.BundleDeployment{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: "evil"}}))
	// The registration token alone can only register: it is no API credential.
	asToken := credentialClient(t, m, &clusterjoin.RegisterResponse{Token: tok1, ManagerAPIPath: a.ManagerAPIPath, CACert: a.CACert})
	if err := asToken.List(ctx, &fleetv1.BundleDeploymentList{}, client.InNamespace(a.Namespace)); !apierrors.IsUnauthorized(err) {
		t.Fatalf("registration token as API credential: %v, want 401", err)
	}

	// Rotation: a new token works, the old one is deleted, joined clusters
	// keep working and can still renew.
	_, tok2, _ := createToken(t, m, "1h")
	if err := m.Client.Delete(ctx, &fleetv1.ClusterRegistrationToken{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: tok1Name}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "old token refused", func() bool {
		code, _ := register(t, m, clusterjoin.RegisterRequest{Token: tok1, ClientID: "uid-c"})
		return code == http.StatusUnauthorized
	})
	if err := asA.List(ctx, &own, client.InNamespace(a.Namespace)); err != nil {
		t.Fatalf("joined cluster after token rotation: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPost, m.URL+clusterjoin.RenewPath, nil)
	req.Header.Set("Authorization", "Bearer "+a.Token)
	resp, err := m.HTTP.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("renewing after rotation: %v %v", err, resp)
	}
	resp.Body.Close()
	if code, c := register(t, m, clusterjoin.RegisterRequest{Token: tok2, ClientID: "uid-c"}); code != http.StatusOK || c.ClusterName == a.ClusterName {
		t.Fatalf("new token: %d", code)
	}
	// Renew refuses anything but a cluster credential.
	req, _ = http.NewRequest(http.MethodPost, m.URL+clusterjoin.RenewPath, nil)
	req.Header.Set("Authorization", "Bearer "+tok2)
	if resp, err := m.HTTP.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("renew with a registration token: %v %v, want 401", err, resp)
	}
	_ = tls.VersionTLS12
	_ = fmt.Sprint
}
