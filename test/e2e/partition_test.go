package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/tunnel"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
	"github.com/edgefleet/edgefleet/test/netlab"
)

// Issue #20 scenario 3: agents partitioned.

// agentBinary is the edgefleet-agent next to the edgefleet binary under
// test (make build puts both in bin/), or one built from this checkout.
func agentBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(filepath.Dir(harness.EdgefleetBinary(t)), "edgefleet-agent")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return harness.BuildWithVersion(t, "edgefleet-agent", "v0.0.0-e2e")
}

// site is one downstream cluster whose edgefleet-agent process runs in its
// own network namespace: the manager is reached through the lab's gateway
// (over the node's link, which the test cuts), the cluster's own API on the
// node's loopback (not on the link: a site's agent keeps its cluster).
type site struct {
	id      string
	node    *netlab.Node
	cluster *harness.Cluster
	kill    func()
	// versions are the values of ConfigMap settings' data.version on the
	// downstream cluster, in the order the agent wrote them, with when.
	mu       sync.Mutex
	versions []string
	at       []time.Time
}

func (s *site) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.versions)
}

// watchApplies records every change of the deployed ConfigMap's version
// on the downstream cluster: what the agent applied, counted where it
// lands, not as the manager reports it.
func (s *site) watchApplies(ctx context.Context, t *testing.T) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().ConfigMaps("app").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=settings"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				continue
			}
			s.mu.Lock()
			if v := cm.Data["version"]; len(s.versions) == 0 || s.versions[len(s.versions)-1] != v {
				s.versions = append(s.versions, v)
				s.at = append(s.at, time.Now())
			}
			s.mu.Unlock()
		}
	}()
}

// appliedAt is when the site's cluster first had version v.
func (s *site) appliedAt(v string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.Index(s.versions, v); i >= 0 {
		return s.at[i]
	}
	return time.Time{}
}

// TestAgentsPartitioned: three sites, each a real cluster whose real
// edgefleet-agent runs in its own network namespace. One site's link is cut
// for over a minute, dozens of offline thresholds and long enough for the
// agent's reconnect backoff to reach its cap. The site goes Offline (condition
// and printer column); a bundle with maxUnavailable 1 moves through three
// versions on the two other sites meanwhile (the offline site holds no
// budget); when the link returns the agent applies only the latest version,
// once, without a human, and every status converges. Then another site is
// dark for longer than its credential's life and power-cut: it comes back
// by itself through its renewal key. The renewal key's refusals end it.
func TestAgentsPartitioned(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	if _, err := os.Stat(kubectlBin); err != nil {
		t.Skip("needs " + kubectlBin)
	}
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const offlineAfter = 4 * time.Second
	lab := netlab.New(t, "10.93.0")
	m, err := harness.LaunchManager(t, harness.ManagerOptions{ExternalHost: lab.Gateway(),
		Args: []string{"--cluster-offline-threshold", offlineAfter.String(), "--tunnel-probe-interval", "1s"}})
	if err != nil {
		t.Fatal(err)
	}
	clusters := harness.StartClusters(t, 3, harness.ClusterOptions{})
	if err := m.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(m.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	if err := lab.ForwardGateway(port); err != nil {
		t.Fatal(err)
	}
	c := m.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	_, token, _ := createToken(t, m, "1h")
	server := fmt.Sprintf("https://%s:%d", lab.Gateway(), port)
	bin := agentBinary(t)
	sites := make([]*site, len(clusters))
	for i, cl := range clusters {
		s := &site{id: fmt.Sprintf("site-%c", 'a'+i), cluster: cl}
		s.node = lab.AddNode(s.id)
		apiURL, err := url.Parse(cl.RESTConfig().Host)
		if err != nil {
			t.Fatal(err)
		}
		apiPort, _ := strconv.Atoi(apiURL.Port())
		if err := s.node.Forward(apiPort); err != nil {
			t.Fatal(err)
		}
		s.kill = startNetnsAgent(t, s, bin, "--server", server, "--token", token, "--ca-checksum", m.CAChecksum,
			"--kubeconfig", cl.KubeconfigPath(), "--client-id", s.id, "--heartbeat-interval", "1s", "--monitor-interval", "2s")
		s.watchApplies(ctx, t)
		sites[i] = s
	}
	clusterOf := func(s *site) *fleetv1.Cluster { return clusterByClientID(ctx, c, s.id) }
	for _, s := range sites {
		waitFor(t, 90*time.Second, s.id+" connected", func() bool {
			cl := clusterOf(s)
			return cl != nil && connectedReason(cl) == "True/"+fleetv1.AgentConnectedReason
		})
	}

	ids := map[int]string{}
	for v := 1; v <= 4; v++ {
		id, err := content.Store(ctx, c, &content.Manifest{Resources: []fleetv1.BundleResource{{Name: "settings.yaml",
			Content: fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  version: \"%d\"\n", v)}}})
		if err != nil {
			t.Fatal(err)
		}
		ids[v] = id
	}
	one := intstr.FromInt32(1)
	bundle := &fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: fleetNS},
		Spec: fleetv1.BundleSpec{
			BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{DefaultNamespace: "app"},
			ContentsID:              ids[1],
			RolloutStrategy:         &fleetv1.RolloutStrategy{MaxUnavailable: &one},
			Targets:                 []fleetv1.BundleTarget{{ClusterSelector: &metav1.LabelSelector{}}},
		}}
	if err := c.Create(ctx, bundle); err != nil {
		t.Fatal(err)
	}
	// deployment is the site's BundleDeployment of the bundle.
	deployment := func(s *site) *fleetv1.BundleDeployment {
		cl := clusterOf(s)
		if cl == nil {
			return nil
		}
		var bds fleetv1.BundleDeploymentList
		if c.List(ctx, &bds, client.MatchingLabels{fleetv1.BundleNameLabel: bundle.Name, fleetv1.ClusterNameLabel: cl.Name}) != nil || len(bds.Items) != 1 {
			return nil
		}
		return &bds.Items[0]
	}
	applied := func(s *site, v int) bool {
		bd := deployment(s)
		return bd != nil && strings.HasPrefix(bd.Status.AppliedDeploymentID, ids[v]+":") && bd.Status.Ready
	}
	for _, s := range sites {
		waitFor(t, 60*time.Second, s.id+" at version 1", func() bool { return applied(s, 1) })
	}

	dark, lit := sites[2], sites[:2]
	if err := dark.node.Disconnect(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	waitFor(t, 30*time.Second, dark.id+" Offline", func() bool {
		cl := clusterOf(dark)
		return cl != nil && connectedReason(cl) == "False/"+fleetv1.AgentOfflineReason && cl.Status.Display.State == fleetv1.ClusterStateOffline
	})
	timeToOffline := time.Since(cut)
	t.Logf("%s Offline %s after its link was cut (offline threshold %s)", dark.id, timeToOffline.Round(100*time.Millisecond), offlineAfter)
	if out := kubectl(t, m.Kubeconfig, nil, "get", "clusters.fleet.edgefleet.io", "-n", fleetNS, clusterOf(dark).Name); !strings.Contains(out, "Offline") {
		t.Errorf("kubectl get cluster does not show Offline:\n%s", out)
	}

	// Three versions while the site is dark: each completes on the lit
	// sites although the dark one can apply none, with maxUnavailable 1.
	for v := 2; v <= 4; v++ {
		var b fleetv1.Bundle
		if err := c.Get(ctx, client.ObjectKeyFromObject(bundle), &b); err != nil {
			t.Fatal(err)
		}
		b.Spec.ContentsID = ids[v]
		if err := c.Update(ctx, &b); err != nil {
			t.Fatal(err)
		}
		for _, s := range lit {
			waitFor(t, 60*time.Second, fmt.Sprintf("%s at version %d while %s is dark", s.id, v, dark.id), func() bool { return applied(s, v) })
		}
		// The dark site's deployment is promoted too, so it catches up in
		// one step; it does not count as unavailable.
		waitFor(t, 30*time.Second, fmt.Sprintf("%s's deployment promoted to version %d", dark.id, v), func() bool {
			bd := deployment(dark)
			return bd != nil && strings.HasPrefix(bd.Spec.DeploymentID, ids[v]+":")
		})
		waitFor(t, 30*time.Second, fmt.Sprintf("version %d: no partition counting the offline site as unavailable", v), func() bool {
			if err := c.Get(ctx, client.ObjectKeyFromObject(bundle), &b); err != nil || len(b.Status.Partitions) == 0 {
				return false
			}
			for _, p := range b.Status.Partitions {
				if p.Unavailable != 0 {
					return false
				}
			}
			return true
		})
	}
	if got := dark.seen(); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("the dark site's cluster changed during the partition: versions %v", got)
	}
	// Dark for over a minute: the tunnel's reconnect backoff reaches its cap.
	if hold := tunnel.MaxBackoff*2 - time.Since(cut); hold > 0 {
		time.Sleep(hold)
	}
	if err := dark.node.Reconnect(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	t.Logf("%s was dark for %s", dark.id, healed.Sub(cut).Round(time.Second))
	waitFor(t, 2*time.Minute, dark.id+" at version 4 after the link returned", func() bool { return applied(dark, 4) })
	caughtUp := dark.appliedAt("4").Sub(healed)
	waitFor(t, 2*time.Minute, dark.id+" connected with its tunnel", func() bool {
		cl := clusterOf(dark)
		return cl != nil && connectedReason(cl) == "True/"+fleetv1.AgentConnectedReason && cl.Status.Display.State != fleetv1.ClusterStateOffline
	})
	reconnected := time.Since(healed)
	waitFor(t, 60*time.Second, "the bundle Ready on every site", func() bool {
		var b fleetv1.Bundle
		return c.Get(ctx, client.ObjectKeyFromObject(bundle), &b) == nil && b.Status.ObservedGeneration == b.Generation &&
			b.Status.ReadyClusters == 3 && b.Status.DesiredReadyClusters == 3 && meta.IsStatusConditionTrue(b.Status.Conditions, fleetv1.ReadyCondition)
	})
	t.Logf("after the link returned: version 4 applied on %s in %s, tunnel connected in %s", dark.id, caughtUp.Round(100*time.Millisecond), reconnected.Round(100*time.Millisecond))
	for _, s := range lit {
		if got := s.seen(); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
			t.Errorf("%s applied versions %v, want 1 2 3 4", s.id, got)
		}
	}
	if got := dark.seen(); !slices.Equal(got, []string{"1", "4"}) {
		t.Errorf("%s applied versions %v, want 1 then only the latest, 4", dark.id, got)
	}

	// Dark for longer than the credential's life (24 h by default), with a
	// power cut: the agent restarts without a registration token (the import
	// manifest's was erased after joining) and only an expired credential.
	// Its renewal key gets it a new one: back without a human, as the same
	// Cluster.
	away := sites[1]
	before := clusterOf(away).Name
	away.kill()
	if err := away.node.Disconnect(); err != nil {
		t.Fatal(err)
	}
	oldToken := expire(ctx, t, away, m)
	waitFor(t, 30*time.Second, away.id+" Offline", func() bool {
		cl := clusterOf(away)
		return cl != nil && connectedReason(cl) == "False/"+fleetv1.AgentOfflineReason
	})
	if err := away.node.Reconnect(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	away.kill = startNetnsAgent(t, away, bin, "--server", server, "--ca-checksum", m.CAChecksum,
		"--kubeconfig", away.cluster.KubeconfigPath(), "--client-id", away.id, "--heartbeat-interval", "1s", "--monitor-interval", "2s")
	waitFor(t, 2*time.Minute, away.id+" connected again after its credential expired", func() bool {
		cl := clusterOf(away)
		return cl != nil && connectedReason(cl) == "True/"+fleetv1.AgentConnectedReason
	})
	t.Logf("%s back %s after restarting with an expired credential", away.id, time.Since(back).Round(100*time.Millisecond))
	if after := clusterOf(away).Name; after != before {
		t.Errorf("%s came back as Cluster %s, was %s", away.id, after, before)
	}
	var sec corev1.Secret
	if err := away.cluster.Client.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.CredentialSecret}, &sec); err != nil {
		t.Fatal(err)
	}
	var st storedCredential
	if err := json.Unmarshal(sec.Data["credential"], &st); err != nil {
		t.Fatal(err)
	}
	if st.Response.Token == "" || st.Response.Token == oldToken || !st.Response.Expires.After(time.Now()) || st.Response.RenewalKey == "" {
		t.Errorf("%s's stored credential not renewed: expires %s, renewal key kept %t", away.id, st.Response.Expires, st.Response.RenewalKey != "")
	}
	if !strings.Contains(m.Output(), "Renewing an expired credential with the registration's renewal key") {
		t.Errorf("the manager did not log the renewal with the renewal key")
	}
	var all fleetv1.ClusterList
	if err := c.List(ctx, &all, client.InNamespace(fleetNS)); err != nil || len(all.Items) != len(sites) {
		t.Errorf("%d Clusters after the return, want %d (%v)", len(all.Items), len(sites), err)
	}
	if got := away.seen(); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Errorf("%s applied versions %v after its return, want 1 2 3 4 and nothing again", away.id, got)
	}

	checkRenewalKeyRefusals(ctx, t, m, token, sites[0])
}

// renewWithKey posts a renewal with no credential, only a RenewRequest.
func renewWithKey(t *testing.T, m *harness.Manager, req clusterjoin.RenewRequest) (int, *clusterjoin.RegisterResponse) {
	t.Helper()
	body, _ := json.Marshal(req)
	resp, err := m.HTTP.Post(m.URL+clusterjoin.RenewPath, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out clusterjoin.RegisterResponse
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, &out
}

// checkRenewalKeyRefusals: a renewal key renews only its own cluster's
// credential, only for the cluster's current registration, and not after
// `edgefleet cluster revoke`. With a registration token it proves a
// checked-in cluster's identity (the way back past the maximum lifetime).
func checkRenewalKeyRefusals(ctx context.Context, t *testing.T, m *harness.Manager, token string, checkedIn *site) {
	t.Helper()
	var sec corev1.Secret
	if err := checkedIn.cluster.Client.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.CredentialSecret}, &sec); err != nil {
		t.Fatal(err)
	}
	var st storedCredential
	if err := json.Unmarshal(sec.Data["credential"], &st); err != nil {
		t.Fatal(err)
	}
	if code, _ := register(t, m, clusterjoin.RegisterRequest{Token: token, ClientID: checkedIn.id, RenewalKey: st.Response.RenewalKey + "x"}); code != http.StatusConflict {
		t.Errorf("registration as checked-in %s with a wrong renewal key: status %d, want 409", checkedIn.id, code)
	}
	if code, r := register(t, m, clusterjoin.RegisterRequest{Token: token, ClientID: checkedIn.id, RenewalKey: st.Response.RenewalKey}); code != http.StatusOK || r.ClusterName != st.Response.ClusterName {
		t.Errorf("registration as checked-in %s with its renewal key: status %d, want 200 for Cluster %s", checkedIn.id, code, st.Response.ClusterName)
	}

	_, a := register(t, m, clusterjoin.RegisterRequest{Token: token, ClientID: "key-a"})
	_, b := register(t, m, clusterjoin.RegisterRequest{Token: token, ClientID: "key-b"})
	if a == nil || b == nil || a.RenewalKey == "" || a.RenewalKey == b.RenewalKey {
		t.Fatalf("registrations without distinct renewal keys: %+v %+v", a, b)
	}
	keyOf := func(r *clusterjoin.RegisterResponse, key string) clusterjoin.RenewRequest {
		return clusterjoin.RenewRequest{ClusterNamespace: r.ClusterNamespace, ClusterName: r.ClusterName, RenewalKey: key}
	}
	if code, r := renewWithKey(t, m, keyOf(a, a.RenewalKey)); code != http.StatusOK || r.ClusterName != a.ClusterName || r.Token == "" || r.RenewalKey != "" {
		t.Fatalf("renewal with A's key: %d %+v, want A's new credential and no new key", code, r)
	}
	for what, req := range map[string]clusterjoin.RenewRequest{
		"a wrong key":          keyOf(a, a.RenewalKey+"x"),
		"A's key for B":        keyOf(b, a.RenewalKey),
		"an empty key":         keyOf(a, ""),
		"A's key, no cluster":  {RenewalKey: a.RenewalKey},
		"B's token as A's key": keyOf(a, b.Token),
	} {
		if code, _ := renewWithKey(t, m, req); code != http.StatusUnauthorized {
			t.Errorf("renewal with %s: status %d, want 401", what, code)
		}
	}
	// A registration replaces the key.
	_, again := register(t, m, clusterjoin.RegisterRequest{Token: token, ClientID: "key-a"})
	if again == nil || again.ClusterName != a.ClusterName {
		t.Fatalf("re-registration of A: %+v", again)
	}
	if code, _ := renewWithKey(t, m, keyOf(a, a.RenewalKey)); code != http.StatusUnauthorized {
		t.Errorf("renewal with the key of A's previous registration: status %d, want 401", code)
	}
	if code, _ := renewWithKey(t, m, keyOf(a, again.RenewalKey)); code != http.StatusOK {
		t.Errorf("renewal with the key of A's registration: status %d, want 200", code)
	}
	if out, err := exec.Command(harness.EdgefleetBinary(t), "cluster", "revoke", a.ClusterName, "-n", fleetNS, "--kubeconfig", m.Kubeconfig).CombinedOutput(); err != nil {
		t.Fatalf("edgefleet cluster revoke: %v\n%s", err, out)
	}
	if code, _ := renewWithKey(t, m, keyOf(a, again.RenewalKey)); code != http.StatusUnauthorized {
		t.Errorf("renewal with a revoked cluster's key: status %d, want 401", code)
	}
}

// startNetnsAgent runs edgefleet-agent in the site's network namespace
// until the test ends or kill (SIGKILL: a power cut) is called.
func startNetnsAgent(t *testing.T, s *site, bin string, args ...string) (kill func()) {
	t.Helper()
	cmd := s.node.Command(bin, append([]string{"run"}, args...)...)
	log, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(func() {
		kill()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("agent of %s:\n%s", s.id, b)
		}
	})
	return kill
}

// storedCredential is the agent's credential Secret's content
// (internal/agent/join's store).
type storedCredential struct {
	Server     string                       `json:"server"`
	CAChecksum string                       `json:"caChecksum"`
	Response   clusterjoin.RegisterResponse `json:"response"`
}

// expire rewrites a site's stored credential as it is once its life has
// passed: the same token re-signed with the manager's service-account key
// with an expiry in the past (the kube-apiserver's TokenRequest issues no
// token shorter than 10 minutes, so the test cannot wait one out), and the
// recorded expiry in the past. Everything else is left as the agent wrote it.
func expire(ctx context.Context, t *testing.T, s *site, m *harness.Manager) (old string) {
	t.Helper()
	var sec corev1.Secret
	if err := s.cluster.Client.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.CredentialSecret}, &sec); err != nil {
		t.Fatal(err)
	}
	var st map[string]json.RawMessage
	var resp clusterjoin.RegisterResponse
	if err := json.Unmarshal(sec.Data["credential"], &st); err != nil || json.Unmarshal(st["response"], &resp) != nil {
		t.Fatalf("credential Secret of %s: %v", s.id, err)
	}
	if resp.RenewalKey == "" {
		t.Fatalf("%s's stored credential has no renewal key", s.id)
	}
	old = resp.Token
	// The re-signing is faithful: the same token valid an hour more is
	// accepted, so the stored one differs by its expiry alone.
	review := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: resignExpired(t, m, resp.Token, time.Now().Add(time.Hour))}}
	if err := m.Client.Create(ctx, review); err != nil || !review.Status.Authenticated {
		t.Fatalf("the re-signed credential is not accepted when unexpired: %v %s", err, review.Status.Error)
	}
	past := time.Now().Add(-time.Hour)
	resp.Token = resignExpired(t, m, resp.Token, past)
	resp.Expires = past
	st["response"], _ = json.Marshal(resp)
	sec.Data["credential"], _ = json.Marshal(st)
	if err := s.cluster.Client.Update(ctx, &sec); err != nil {
		t.Fatal(err)
	}
	return old
}

// resignExpired returns tok with exp at expired (iat and nbf a day
// before), signed with the embedded control plane's service-account key
// (ECDSA P-256: ES256).
func resignExpired(t *testing.T, m *harness.Manager, tok string, expired time.Time) string {
	t.Helper()
	var keyPath string
	_ = filepath.WalkDir(m.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "service-account.key" {
			keyPath = p
		}
		return nil
	})
	data, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatalf("the manager's service-account key: %v", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s is not PEM", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	key, ok := k.(*ecdsa.PrivateKey)
	if err != nil || !ok {
		t.Fatalf("%s: not an ECDSA key: %v", keyPath, err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("the credential is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	claims["exp"] = expired.Unix()
	claims["iat"] = expired.Add(-24 * time.Hour).Unix()
	claims["nbf"] = expired.Add(-24 * time.Hour).Unix()
	payload, _ = json.Marshal(claims)
	signing := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signing))
	r, sg, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sg.FillBytes(sig[32:])
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// clusterEvent reports whether Cluster name in fleetNS has an Event with reason.
func clusterEvent(ctx context.Context, m *harness.Manager, name, reason string) bool {
	var evs eventsv1.EventList
	_ = m.Client.List(ctx, &evs, client.InNamespace(fleetNS))
	for _, e := range evs.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			return true
		}
	}
	return false
}
