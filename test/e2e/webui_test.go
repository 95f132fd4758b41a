package e2e

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/join"
	"github.com/edgefleet/edgefleet/test/gitserver"
	"github.com/edgefleet/edgefleet/test/harness"
)

// uiTools finds node, the UI's npm packages and Debian's chromium, or says
// how to get them.
func uiTools(t *testing.T) (node, uiDir, chromium string) {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	uiDir = filepath.Join(root, "web", "ui")
	node, err = exec.LookPath("node")
	if err != nil {
		t.Skip("browser test skipped: node is missing (Debian package nodejs; `make deps` installs it)")
	}
	chromium = os.Getenv("EDGEFLEET_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("browser test skipped: %s is missing (Debian package chromium; `make deps` installs it, or set EDGEFLEET_CHROMIUM)", chromium)
	}
	if _, err := os.Stat(filepath.Join(uiDir, "node_modules", "playwright-core")); err != nil {
		t.Skip("browser test skipped: the UI's npm packages are missing: run `make ui-deps` (npm ci in web/ui)")
	}
	return node, uiDir, chromium
}

// TestWebUI drives the embedded UI in a real browser against a real manager:
// a dev cluster with a running agent, a GitRepo deploying to it, extra
// Clusters for the table, machines in the inventory; an admin and a
// read-only user signed in with ServiceAccount tokens.
// EDGEFLEET_UI_CLUSTERS sets how many Clusters the manager holds (default
// 50), EDGEFLEET_UI_SCREENSHOTS a folder for the screenshots (default: the
// test's temp dir; docs/ui for the committed ones).
func TestWebUI(t *testing.T) {
	node, uiDir, chromium := uiTools(t)
	ctx := context.Background()
	total := 50
	if v := os.Getenv("EDGEFLEET_UI_CLUSTERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("EDGEFLEET_UI_CLUSTERS=%q: want a positive number", v)
		}
		total = n
	}

	m, err := harness.LaunchManager(t, harness.ManagerOptions{Args: []string{"--allow-local-git-repos", "--kubernetes-releases", uiReleasesFile(t)}})
	if err != nil {
		t.Fatal(err)
	}
	downstream := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	if err := m.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	c := m.Client
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	createAll(ctx, t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}})

	// One real cluster: its agent joins with a registration token and
	// adopts the Cluster created for its clientID, keeps the reverse tunnel
	// up (the kubeconfig the UI downloads goes through it), deploys the
	// GitRepo's bundle and beats.
	edge := &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "edge-0", Namespace: fleetNS, Labels: map[string]string{"env": "dev", "region": "eu"}},
		Spec: fleetv1.ClusterSpec{ClientID: "ui-edge-0"}}
	createAll(ctx, t, c, edge)
	_, joinToken, _ := createToken(t, m, "1h")
	startJoinAgent(t, downstream, join.Options{Server: m.URL, Token: joinToken, CAChecksum: m.CAChecksum, ClientID: "ui-edge-0"})
	// The rest are registered Clusters whose agents never came (cheap rows).
	var g errgroup.Group
	g.SetLimit(8)
	for i := 1; i < total; i++ {
		g.Go(func() error {
			return c.Create(ctx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("store-%04d", i), Namespace: fleetNS,
				Labels: map[string]string{"env": "bulk", "shard": strconv.Itoa(i % 10), "canary": strconv.FormatBool(i <= 2)}}})
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	repo := gitserver.NewRepo(t, t.TempDir(), "demo.git")
	commit := repo.Commit(t, "main", "initial", gitserver.Files(gitApp("app", "ui-demo", "v1")))
	createAll(ctx, t, c, &fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "demo"}, Spec: fleetv1.GitRepoSpec{
		Repo: repo.FileURL(), Branch: "main", Targets: []fleetv1.GitTarget{{Name: "dev", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}}}}},
		// Targets two clusters whose agents never came: the drill-down names them.
		&fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "canary"}, Spec: fleetv1.GitRepoSpec{
			Repo: repo.FileURL(), Branch: "main", Targets: []fleetv1.GitTarget{{Name: "canary", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"canary": "true"}}}}}})

	// Machines as registration would record them (no machine boots here).
	for _, name := range []string{"machine-a", "machine-b"} {
		createAll(ctx, t, c, &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: fleetNS, Labels: map[string]string{
			"machines.edgefleet.io/manufacturer": "ACME", "machines.edgefleet.io/product-name": "Edge-3000", "machines.edgefleet.io/arch": "x86_64", "site": "lab"}},
			Spec: machinesv1.MachineInventorySpec{TPMHash: strings.Repeat("ab", 32)}})
	}

	// Both machines registered (so the manager gives them plan Secrets, as
	// registration does); machine-a as its node agent would have reported
	// it: the OS, its addresses, a failed plan instruction and a probe.
	now := metav1.Now()
	for _, name := range []string{"machine-a", "machine-b"} {
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var inv machinesv1.MachineInventory
			if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: name}, &inv); err != nil {
				return err
			}
			meta.SetStatusCondition(&inv.Status.Conditions, metav1.Condition{Type: machinesv1.RegisteredCondition, Status: metav1.ConditionTrue,
				Reason: machinesv1.RegistrationSucceededReason, Message: "registered by the UI test"})
			if name == "machine-a" {
				inv.Status.OS = machinesv1.OSStatus{Name: "edgefleet OS", Version: "v2.0.0", Image: uiOSImage, ActiveSlot: "b", BootedSlot: "b",
					LastUpgrade: &machinesv1.OSUpgradeStatus{Image: uiOSImage, Version: "v2.0.0", Slot: "b", Result: machinesv1.OSUpgradeSucceeded, Time: now}}
				inv.Status.Network = machinesv1.NetworkStatus{PrimaryAddress: "192.0.2.10", Addresses: []string{"192.0.2.10", "2001:db8::10"}}
				inv.Status.Plan = machinesv1.PlanStatus{FailedChecksum: strings.Repeat("c", 64), Attempts: 2, NextRetryTime: &now,
					Failure:      &machinesv1.PlanFailure{Instruction: "install-agent", ExitCode: 3, Message: "exit status 3", Output: "curl: (6) Could not resolve host", Time: &now},
					Instructions: []machinesv1.PlanInstructionStatus{{Name: "prepare", ExitCode: 0, DurationMilliseconds: 1200, FinishedTime: &now}, {Name: "install-agent", ExitCode: 3, Output: "curl: (6) Could not resolve host"}},
					Probes:       []machinesv1.PlanProbeStatus{{Name: "kubelet", Healthy: false, FailureCount: 3, LastError: "connection refused"}}}
			}
			return c.Status().Update(ctx, &inv)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	uiShopMachines(ctx, t, c)
	waitFor(t, 30*time.Second, "the machines' plan Secrets", func() bool {
		var l corev1.SecretList
		return c.List(ctx, &l, client.InNamespace(fleetNS)) == nil && slices.ContainsFunc(l.Items, func(s corev1.Secret) bool { return s.Name == "machine-b" })
	})
	// An OS version written by hand and a channel the manager refuses to
	// fetch (a loopback address): its sync error is what the page shows.
	createAll(ctx, t, c, &machinesv1.ManagedOSVersion{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "os-v2"},
		Spec: machinesv1.ManagedOSVersionSpec{Version: "v2.0.0", Metadata: machinesv1.ManagedOSVersionMetadata{UpgradeImage: uiOSImage, DisplayName: "edgefleet OS 2.0"}}},
		&machinesv1.ManagedOSVersionChannel{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "nightly"},
			Spec: machinesv1.ManagedOSVersionChannelSpec{Type: "json", Options: machinesv1.ChannelOptions{URI: "https://127.0.0.1:1/versions.json"}}})

	adminTok := uiUser(ctx, t, cs, "ui-admin", rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"})
	createAll(ctx, t, c, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "edgefleet-ui-test-view"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{fleetv1.GroupVersion.Group, machinesv1.GroupVersion.Group, provisioningv1.GroupVersion.Group}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}}}})
	viewTok := uiUser(ctx, t, cs, "ui-viewer", rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edgefleet-ui-test-view"})

	nobodyTok := uiUser(ctx, t, cs, "ui-nobody", rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:basic-user"})

	t.Run("proxy", func(t *testing.T) { checkUIProxy(t, m, adminTok, viewTok) })
	t.Run("seed image downloads ask the API as the caller", func(t *testing.T) {
		get := func(tok string) (int, string) {
			req, _ := http.NewRequest("GET", m.URL+"/ui/api/seedimages/"+fleetNS+"/not-built/image", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("X-Edgefleet-UI", "1")
			res, err := m.HTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(body)
		}
		if code, body := get(nobodyTok); code != http.StatusForbidden || !strings.Contains(body, "ui-nobody") || !strings.Contains(body, "seedimages") {
			t.Errorf("a user without get on seedimages: %d %s, want the API's 403 naming them", code, body)
		}
		if code, body := get(viewTok); code != http.StatusNotFound || !strings.Contains(body, "not-built") {
			t.Errorf("the viewer asking for a SeedImage that does not exist: %d %s, want the API's 404", code, body)
		}
	})

	waitFor(t, 5*time.Minute, "the GitRepo's bundle ready on edge-0", func() bool {
		return gitRepoReady(ctx, c, "demo", commit, 1)
	})

	// The admin kubeconfig's client certificate, for the browser's
	// certificate sign-in.
	certDir := t.TempDir()
	certFile, keyFile := filepath.Join(certDir, "admin.crt"), filepath.Join(certDir, "admin.key")
	if err := os.WriteFile(certFile, cfg.CertData, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, cfg.KeyData, 0o600); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(cfg.CertData)
	if block == nil {
		t.Fatal("admin kubeconfig has no client certificate")
	}
	adminCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}

	shots := os.Getenv("EDGEFLEET_UI_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	waitFor(t, 60*time.Second, "edge-0 connected through its tunnel", func() bool {
		var cl fleetv1.Cluster
		return c.Get(ctx, client.ObjectKeyFromObject(edge), &cl) == nil && connectedReason(&cl) == "True/"+fleetv1.AgentConnectedReason
	})
	downloads := t.TempDir()
	cmd := exec.Command(node, "test/ui.test.mjs")
	cmd.Dir = uiDir
	cmd.Env = append(os.Environ(), "EDGEFLEET_URL="+m.URL, "ADMIN_TOKEN="+adminTok, "VIEW_TOKEN="+viewTok, "CHROMIUM="+chromium,
		"SCREENSHOTS="+shots, "CLUSTERS="+strconv.Itoa(total), "COMMIT="+commit,
		"DOWNLOADS="+downloads, "ADMIN_CERT="+certFile, "ADMIN_KEY="+keyFile, "ADMIN_CERT_USER="+adminCert.Subject.CommonName)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	stopShop := registerUIShop(ctx, t, m)
	defer stopShop()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("browser test failed: %v", err)
	}
	t.Logf("browser test took %s", time.Since(start).Round(time.Millisecond))

	// What the form created is a real object, created as the admin user.
	var reg machinesv1.MachineRegistration
	if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "rack-1"}, &reg); err != nil {
		t.Fatalf("the registration created in the browser: %v", err)
	}
	if reg.Spec.MachineInventoryLabels["site"] != "lab" {
		t.Errorf("registration labels = %v, want site=lab from the form", reg.Spec.MachineInventoryLabels)
	}
	var fromYAML machinesv1.MachineRegistration
	if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "rack-2"}, &fromYAML); err != nil || fromYAML.Spec.MaxMachines != 7 {
		t.Errorf("the registration created as YAML: %v, maxMachines %d, want 7", err, fromYAML.Spec.MaxMachines)
	}
	var managers []string
	for _, f := range reg.ManagedFields {
		managers = append(managers, f.Manager)
	}
	if !strings.Contains(strings.Join(managers, ","), "edgefleet-ui") {
		t.Errorf("field managers %v: want edgefleet-ui", managers)
	}

	// The media built from the browser: a SeedImage of rack-1, built.
	var seeds machinesv1.SeedImageList
	if err := c.List(ctx, &seeds, client.InNamespace(fleetNS)); err != nil {
		t.Fatal(err)
	}
	if len(seeds.Items) != 1 || !strings.HasPrefix(seeds.Items[0].Name, "media-rack-1-") || seeds.Items[0].Spec.RegistrationRef.Name != "rack-1" ||
		seeds.Items[0].Status.State != machinesv1.SeedImageReady {
		t.Errorf("SeedImages after the browser test: %+v, want one built for rack-1", seeds.Items)
	}
	// The OS upgrade started from a version and paused in the browser.
	var up machinesv1.ManagedOSImage
	if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "lab-v2"}, &up); err != nil || up.Spec.ManagedOSVersionName != "os-v2" || !up.Spec.Paused ||
		up.Spec.Targets.Selector == nil || up.Spec.Targets.Selector.MatchLabels["site"] != "lab" {
		t.Errorf("the OS upgrade made in the browser: %v %+v, want os-v2 for site=lab, paused", err, up.Spec)
	}

	checkUICreatedCluster(ctx, t, c)

	// The kubeconfigs the browser saved carry the signed-in user: the admin
	// ServiceAccount reaches edge-0 through the tunnel as its downstream
	// identity; the viewer is refused by the manager, by name.
	whoami := func(file string) (string, error) {
		data, err := os.ReadFile(filepath.Join(downloads, file))
		if err != nil {
			t.Fatalf("the kubeconfig the browser saved: %v", err)
		}
		rc, err := clientcmd.RESTConfigFromKubeConfig(data)
		if err != nil {
			t.Fatalf("%s is not a kubeconfig: %v", file, err)
		}
		r, err := kubernetes.NewForConfigOrDie(rc).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			return "", err
		}
		return r.Status.UserInfo.Username, nil
	}
	if who, err := whoami("admin.kubeconfig"); err != nil || who != "edgefleet:sa:"+fleetNS+":ui-admin" {
		t.Errorf("the admin's kubeconfig reached edge-0 as %q (%v), want edgefleet:sa:%s:ui-admin", who, err, fleetNS)
	}
	if who, err := whoami("viewer.kubeconfig"); err == nil || !strings.Contains(err.Error(), "ui-viewer") {
		t.Errorf("the viewer's kubeconfig: %q, %v; want the manager's refusal naming ui-viewer", who, err)
	}
}

// uiOSImage is the OS image of the UI test's OS version (never pulled).
const uiOSImage = "registry.example.com/edgefleet/os:v2.0.0"

// uiUser makes a ServiceAccount bound to role and returns a token for it.
func uiUser(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string, role rbacv1.RoleRef) string {
	t.Helper()
	if _, err := cs.CoreV1().ServiceAccounts(fleetNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "test-" + name}, RoleRef: role,
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: fleetNS}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(fleetNS).CreateToken(ctx, name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// checkUIProxy checks the UI's API proxy from outside a browser: who the
// request acts as, and what it refuses.
func checkUIProxy(t *testing.T, m *harness.Manager, adminTok, viewTok string) {
	do := func(method, path, tok string, uiHeader bool, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, m.URL+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if uiHeader {
			req.Header.Set("X-Edgefleet-UI", "1")
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := m.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		data, _ := io.ReadAll(res.Body)
		var v map[string]any
		_ = json.Unmarshal(data, &v)
		return res.StatusCode, v
	}
	ssr := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
	code, v := do("POST", "/ui/api/k8s/apis/authentication.k8s.io/v1/selfsubjectreviews", viewTok, true, ssr)
	if code != 201 {
		t.Fatalf("SelfSubjectReview as the viewer: %d %v", code, v)
	}
	if got := v["status"].(map[string]any)["userInfo"].(map[string]any)["username"]; got != "system:serviceaccount:"+fleetNS+":ui-viewer" {
		t.Errorf("the API saw %v, want the viewer's ServiceAccount: requests must act as the signed-in user", got)
	}
	// A client certificate of the manager's CA signs in without a token.
	req, _ := http.NewRequest("POST", m.URL+"/ui/api/k8s/apis/authentication.k8s.io/v1/selfsubjectreviews", strings.NewReader(ssr))
	req.Header.Set("X-Edgefleet-UI", "1")
	req.Header.Set("Content-Type", "application/json")
	res, err := m.AdminHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string   `json:"username"`
				Groups   []string `json:"groups"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	_ = json.NewDecoder(res.Body).Decode(&review)
	res.Body.Close()
	if res.StatusCode != 201 || review.Status.UserInfo.Username == "" || !slices.Contains(review.Status.UserInfo.Groups, "system:masters") {
		t.Errorf("SelfSubjectReview with the admin client certificate: %d %+v, want the certificate's user and groups", res.StatusCode, review)
	}
	reg := `{"apiVersion":"machines.edgefleet.io/v1alpha1","kind":"MachineRegistration","metadata":{"name":"denied"}}`
	if code, v := do("POST", "/ui/api/k8s/apis/machines.edgefleet.io/v1alpha1/namespaces/"+fleetNS+"/machineregistrations", viewTok, true, reg); code != 403 ||
		!strings.Contains(fmt.Sprint(v["message"]), "ui-viewer") {
		t.Errorf("viewer creating a registration: %d %v, want 403 naming the viewer", code, v)
	}
	if code, _ := do("GET", "/ui/api/k8s/apis/fleet.edgefleet.io/v1alpha1/clusters?limit=1", viewTok, true, ""); code != 200 {
		t.Errorf("viewer listing clusters: %d, want 200", code)
	}
	if code, v := do("GET", "/ui/api/k8s/api/v1/namespaces/"+fleetNS+"/secrets", viewTok, true, ""); code != 403 {
		t.Errorf("viewer listing Secrets: %d %v, want 403: the proxy must not lend the manager's rights", code, v)
	}
	if code, _ := do("GET", "/ui/api/k8s/api/v1/namespaces", "", true, ""); code != 401 {
		t.Errorf("no credential: %d, want 401", code)
	}
	if code, _ := do("GET", "/ui/api/k8s/api/v1/namespaces", "forged-token", true, ""); code != 401 {
		t.Errorf("bad token: %d, want 401", code)
	}
	if code, _ := do("GET", "/ui/api/k8s/api/v1/namespaces", adminTok, false, ""); code != 403 {
		t.Errorf("no %s header: %d, want 403 (cross-site protection)", "X-Edgefleet-UI", code)
	}
	// A forged impersonation header is dropped: the viewer stays the viewer.
	req, _ = http.NewRequest("GET", m.URL+"/ui/api/k8s/api/v1/namespaces/"+fleetNS+"/secrets", nil)
	req.Header.Set("Authorization", "Bearer "+viewTok)
	req.Header.Set("X-Edgefleet-UI", "1")
	req.Header.Set("Impersonate-User", "system:admin")
	req.Header.Set("Impersonate-Group", "system:masters")
	res, err = m.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 403 {
		t.Errorf("viewer with forged Impersonate-* headers: %d, want 403", res.StatusCode)
	}
	// The page itself: CSP and no inline script.
	res, err = m.HTTP.Get(m.URL + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || res.StatusCode != 200 {
		t.Errorf("GET /ui/: %d, CSP %q", res.StatusCode, csp)
	}
	if strings.Contains(string(page), "<script>") || strings.Contains(string(page), "http://") || strings.Contains(string(page), "https://") {
		t.Errorf("index.html has inline script or external URLs:\n%s", page)
	}
}
