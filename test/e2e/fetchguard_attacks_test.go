package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"golang.org/x/crypto/ssh"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	helmregistry "helm.sh/helm/v4/pkg/registry"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/netguard"
	"github.com/edgefleet/edgefleet/test/gitserver"
	"github.com/edgefleet/edgefleet/test/harness"
)

// TestFetchGuardAttacks: a tenant (GitRepo or HelmOp author) or a git
// committer (fleet.yaml's helm.repo/helm.chart) names URLs on the manager's
// own networks. The manager runs as in production except that
// --fetch-allowed-networks allows 127.0.0.1/32, where the legitimate git
// server, chart repository and registry listen; the targets are on
// 127.0.0.2 (loopback, still refused), 169.254.169.254 (cloud metadata)
// and the manager's own kube-apiserver and endpoint (refused whatever is
// allowed). Every refusal names the policy and the flag, happens before a
// single connection, and reads the same whether something listens there.
func TestFetchGuardAttacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "fg-tenant"

	// Something listening on loopback that the tenant must not reach: it
	// counts connections, so "refused before anything was sent" is checked.
	victim, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skip("no 127.0.0.2 on this host:", err)
	}
	defer victim.Close()
	var victimConns atomic.Int32
	go func() {
		for {
			c, err := victim.Accept()
			if err != nil {
				return
			}
			victimConns.Add(1)
			c.Close()
		}
	}()
	victimAddr := victim.Addr().String()
	closed, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	// The legitimate sources on 127.0.0.1.
	root := t.TempDir()
	fleetRepo := gitserver.NewRepo(t, root, "fleet.git")
	git := gitserver.ServeHTTP(t, root, "", "")
	chartsDir := t.TempDir()
	chartPath := gfPackageChart(t, "fgchart", "0.1.0")
	data, err := os.ReadFile(chartPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(chartsDir, "fgchart-0.1.0.tgz"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	index := repo.NewIndexFile()
	if err := index.MustAdd(&chartv2.Metadata{APIVersion: "v2", Name: "fgchart", Version: "0.1.0"}, "fgchart-0.1.0.tgz", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := index.WriteFile(filepath.Join(chartsDir, "index.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(chartsDir))
	charts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect.tgz" {
			// An allowed host sending the manager to loopback.
			http.Redirect(w, r, "http://"+victimAddr+"/fgchart-0.1.0.tgz", http.StatusFound)
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer charts.Close()
	allowedReg := httptest.NewServer(registry.New())
	defer allowedReg.Close()
	regListener, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedReg := httptest.NewUnstartedServer(registry.New())
	refusedReg.Listener = regListener
	refusedReg.Start()
	defer refusedReg.Close()
	rc, err := helmregistry.NewClient(helmregistry.ClientOptPlainHTTP(), helmregistry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "creds.json")))
	if err != nil {
		t.Fatal(err)
	}
	allowedHost, refusedHost := strings.TrimPrefix(allowedReg.URL, "http://"), strings.TrimPrefix(refusedReg.URL, "http://")
	for _, h := range []string{allowedHost, refusedHost} {
		if _, err := rc.Push(helmOpChart(t, "api", "0.3.0"), h+"/charts/api:0.3.0"); err != nil {
			t.Fatal(err)
		}
	}

	m := harness.StartManager(t, harness.ManagerOptions{StrictFetch: true, Args: []string{"--fetch-allowed-networks", "127.0.0.1/32"}})
	c := m.Client
	restCfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	apiserver := strings.TrimPrefix(restCfg.Host, "https://")
	endpoint := strings.TrimPrefix(m.URL, "https://")

	sshKey := fgSSHKey(t)
	createAll(ctx, t, c,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ssh-auth"}, Type: corev1.SecretTypeSSHAuth,
			Data: map[string][]byte{corev1.SSHAuthPrivateKey: sshKey, "known_hosts": []byte("127.0.0.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain-registry"}, StringData: map[string]string{"insecurePlainHTTP": "true"}},
	)
	gitRepo := func(name string, spec fleetv1.GitRepoSpec) {
		t.Helper()
		spec.Branch = "main"
		spec.PollingInterval = &metav1.Duration{Duration: time.Second}
		spec.Targets = noCluster
		createAll(ctx, t, c, &fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})
	}
	refusal := func(msg, addr, class string) bool {
		return strings.Contains(msg, netguard.RefusedMessage) && strings.Contains(msg, addr) && strings.Contains(msg, class)
	}

	t.Run("git repositories on the manager's networks are refused", func(t *testing.T) {
		cases := []struct{ name, url, secret, addr, class string }{
			{"apiserver", "https://" + apiserver + "/fleet.git", "", apiserver, "manager's own"},
			{"endpoint", "https://" + endpoint + "/fleet.git", "", endpoint, "manager's own"},
			{"loopback", "https://" + victimAddr + "/fleet.git", "", "127.0.0.2", "loopback address"},
			{"loopback-closed", "https://" + closedAddr + "/fleet.git", "", "127.0.0.2", "loopback address"},
			{"loopback-ssh", "ssh://git@" + victimAddr + "/fleet.git", "ssh-auth", "127.0.0.2", "loopback address"},
			{"metadata", "http://169.254.169.254/latest/meta-data.git", "", "169.254.169.254", "link-local"},
		}
		for _, tc := range cases {
			gitRepo("git-"+tc.name, fleetv1.GitRepoSpec{Repo: tc.url, ClientSecretName: tc.secret})
		}
		msgs := map[string]string{}
		for _, tc := range cases {
			msg := gfWaitReason(ctx, t, c, ns, "git-"+tc.name, fleetv1.NetworkNotAllowedReason)
			msgs[tc.name] = msg
			t.Logf("%s: %s", tc.name, msg)
			if !refusal(msg, tc.addr, tc.class) {
				t.Errorf("%s: %q, want a refusal by the network policy naming %s as %s", tc.name, msg, tc.addr, tc.class)
			}
			if tc.class != "manager's own" && !strings.Contains(msg, netguard.FetchAllowedNetworksFlag) {
				t.Errorf("%s: %q does not name %s", tc.name, msg, netguard.FetchAllowedNetworksFlag)
			}
			gr := gfGitRepo(ctx, c, ns, "git-"+tc.name)
			if gr == nil || gr.Status.Commit != "" {
				t.Fatalf("%s: a commit was recorded", tc.name)
			}
			if st := meta.FindStatusCondition(gr.Status.Conditions, "Stalled"); st == nil || st.Status != metav1.ConditionTrue {
				t.Errorf("%s: a policy refusal is not Stalled (no retry can help): %+v", tc.name, st)
			}
		}
		// No oracle: a listening and a closed port read alike.
		_, vport, _ := net.SplitHostPort(victimAddr)
		_, cport, _ := net.SplitHostPort(closedAddr)
		if a, b := strings.ReplaceAll(msgs["loopback"], vport, "PORT"), strings.ReplaceAll(msgs["loopback-closed"], cport, "PORT"); a != b {
			t.Errorf("listening and closed ports differ:\n%s\n%s", a, b)
		}
	})

	t.Run("fleet.yaml chart sources on the manager's networks are refused", func(t *testing.T) {
		helmApp := func(field, u string) string {
			return "defaultNamespace: fg-helm\nhelm:\n  " + field + ": " + u + "\n" + map[bool]string{true: "  chart: fgchart\n  version: 0.1.0\n", false: ""}[field == "repo"]
		}
		commit := fleetRepo.Commit(t, "main", "charts", gitserver.Files(map[string]string{
			"metadata/fleet.yaml": helmApp("repo", "http://169.254.169.254/"),
			"loopback/fleet.yaml": helmApp("repo", "http://"+victimAddr+"/"),
			"redirect/fleet.yaml": helmApp("chart", charts.URL+"/redirect.tgz"),
			"allowed/fleet.yaml":  helmApp("repo", charts.URL+"/"),
		}))
		for _, p := range []string{"metadata", "loopback", "redirect", "allowed"} {
			gitRepo("helm-"+p, fleetv1.GitRepoSpec{Repo: git.URL + "/fleet.git", Paths: []string{p}})
		}
		for p, want := range map[string][2]string{
			"metadata": {"169.254.169.254", "link-local"},
			"loopback": {"127.0.0.2", "loopback address"},
			"redirect": {"127.0.0.2", "loopback address"},
		} {
			msg := gfWaitReason(ctx, t, c, ns, "helm-"+p, fleetv1.RenderErrorReason)
			t.Logf("%s: %s", p, msg)
			if !refusal(msg, want[0], want[1]) || !strings.Contains(msg, netguard.FetchAllowedNetworksFlag) {
				t.Errorf("%s: %q, want a refusal naming %s and %s", p, msg, want[0], netguard.FetchAllowedNetworksFlag)
			}
			if strings.Contains(msg, "HTTP ") {
				t.Errorf("%s: %q shows an HTTP status", p, msg)
			}
		}
		// Allowed by the flag: the chart repository on 127.0.0.1 is used.
		waitFor(t, time.Minute, "the allowed chart repository's bundle", func() bool {
			gr := gfGitRepo(ctx, c, ns, "helm-allowed")
			return gr != nil && gr.Status.Commit == commit && len(gfBundles(ctx, t, c, ns, "helm-allowed")) == 1
		})
	})

	t.Run("HelmOp charts on the manager's networks are refused", func(t *testing.T) {
		op := func(name string, h fleetv1.HelmOptions, secret string) *fleetv1.HelmOp {
			h.ReleaseName = name
			return &fleetv1.HelmOp{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: fleetv1.HelmOpSpec{
				BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{DefaultNamespace: "fg-op", Helm: &h},
				Targets:                 []fleetv1.BundleTarget{{Name: "none", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"edgefleet-test": "no-such-cluster"}}}},
				HelmSecretName:          secret,
			}}
		}
		createAll(ctx, t, c,
			op("oci-loopback", fleetv1.HelmOptions{Chart: "oci://" + refusedHost + "/charts/api", Version: "0.3.0"}, "plain-registry"),
			op("repo-metadata", fleetv1.HelmOptions{Repo: "http://169.254.169.254/", Chart: "api", Version: "0.3.0"}, ""),
			op("oci-allowed", fleetv1.HelmOptions{Chart: "oci://" + allowedHost + "/charts/api", Version: "0.3.0"}, "plain-registry"),
		)
		condition := func(name string) (*fleetv1.HelmOp, *metav1.Condition) {
			var o fleetv1.HelmOp
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &o); err != nil {
				return nil, nil
			}
			return &o, meta.FindStatusCondition(o.Status.Conditions, fleetv1.ReadyCondition)
		}
		for name, want := range map[string][2]string{
			"oci-loopback":  {"127.0.0.2", "loopback address"},
			"repo-metadata": {"169.254.169.254", "link-local"},
		} {
			var msg string
			waitFor(t, time.Minute, name+" refused", func() bool {
				_, cond := condition(name)
				if cond == nil || cond.Reason != fleetv1.ChartFetchFailedReason {
					return false
				}
				msg = cond.Message
				return true
			})
			t.Logf("%s: %s", name, msg)
			if !refusal(msg, want[0], want[1]) || !strings.Contains(msg, netguard.FetchAllowedNetworksFlag) {
				t.Errorf("%s: %q, want a refusal naming %s and %s", name, msg, want[0], netguard.FetchAllowedNetworksFlag)
			}
			o, _ := condition(name)
			if st := meta.FindStatusCondition(o.Status.Conditions, "Stalled"); st == nil || st.Status != metav1.ConditionTrue {
				t.Errorf("%s: a policy refusal is not Stalled: %+v", name, st)
			}
		}
		waitFor(t, time.Minute, "the allowed registry's chart", func() bool {
			o, _ := condition("oci-allowed")
			return o != nil && o.Status.Version == "0.3.0"
		})
	})

	if n := victimConns.Load(); n != 0 {
		t.Errorf("the loopback service was connected to %d times", n)
	}
}

// fgSSHKey is a fresh unencrypted ssh private key (PEM).
func fgSSHKey(t *testing.T) []byte {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}
