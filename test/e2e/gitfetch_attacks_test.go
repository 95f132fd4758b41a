package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	chartloader "helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	sigsyaml "sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/gitops/webhook"
	"github.com/edgefleet/edgefleet/test/gitserver"
	"github.com/edgefleet/edgefleet/test/harness"
)

// TestGitFetchAttacks: what a tenant (a GitRepo author), a git committer or
// anyone who can reach /webhooks/git can make the manager's git fetching do.
// One manager with default flags (no --allow-local-git-repos) serves every
// case.
func TestGitFetchAttacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	private := gitserver.NewRepo(t, root, "private.git")
	privateCommit := private.Commit(t, "main", "secret", gitserver.Files(gitApp(".", "gf-private", "tenant-a-secret")))
	git := gitserver.ServeHTTP(t, root, "alice", "s3cret")
	m := harness.StartManager(t, harness.ManagerOptions{})
	c := m.Client
	for _, ns := range []string{"gf-tenant-a", "gf-tenant-b"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	gitRepo := func(ns, name string, spec fleetv1.GitRepoSpec) {
		t.Helper()
		if spec.Branch == "" {
			spec.Branch = "main"
		}
		spec.PollingInterval = &metav1.Duration{Duration: time.Second}
		if err := c.Create(ctx, &fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}); err != nil {
			t.Fatal(err)
		}
	}

	// Tenant A's private repository, fetched with tenant A's credentials:
	// it is now in the manager's git cache.
	secretA := basicAuthSecret("git-auth", "alice", "s3cret")
	secretA.Namespace = "gf-tenant-a"
	if err := c.Create(ctx, secretA); err != nil {
		t.Fatal(err)
	}
	privateURL := git.URL + "/private.git"
	gitRepo("gf-tenant-a", "private", fleetv1.GitRepoSpec{Repo: privateURL, ClientSecretName: "git-auth"})
	waitFor(t, time.Minute, "tenant A's private repository fetched", func() bool {
		gr := gfGitRepo(ctx, c, "gf-tenant-a", "private")
		return gr != nil && gr.Status.Commit == privateCommit && len(gfBundles(ctx, t, c, "gf-tenant-a", "private")) == 1
	})

	t.Run("local repositories are refused without --allow-local-git-repos", func(t *testing.T) {
		// Any repository on the manager's host: another tenant's private
		// repository served by a git server next to the manager, the
		// manager's own git cache (its key was sha256(URL): predictable).
		oldKey := sha256.Sum256([]byte(privateURL))
		cacheDir := filepath.Join(m.DataDir, "git", "repos", hex.EncodeToString(oldKey[:8]))
		rel, err := filepath.Rel(mustWd(t), private.Bare)
		if err != nil {
			t.Fatal(err)
		}
		for name, u := range map[string]string{
			"file-url":      private.FileURL(),
			"plain-path":    private.Bare,
			"relative-path": rel,
			"cache-of-a":    "file://" + cacheDir,
		} {
			gitRepo("gf-tenant-b", name, fleetv1.GitRepoSpec{Repo: u})
		}
		for _, name := range []string{"file-url", "plain-path", "relative-path", "cache-of-a"} {
			msg := gfWaitReason(ctx, t, c, "gf-tenant-b", name, "LocalRepositoryNotAllowed")
			if !strings.Contains(msg, "--allow-local-git-repos") || !strings.Contains(msg, "https://") {
				t.Errorf("%s: the condition does not say why and how to fix it: %s", name, msg)
			}
			if n := len(gfBundles(ctx, t, c, "gf-tenant-b", name)); n != 0 {
				t.Errorf("%s: %d bundles written from a refused local repository", name, n)
			}
		}
	})

	t.Run("tenants do not share the git cache", func(t *testing.T) {
		// Same URL, no credentials: tenant B must not be served the
		// commit tenant A fetched, neither by branch nor by pinning it.
		gitRepo("gf-tenant-b", "same-url", fleetv1.GitRepoSpec{Repo: privateURL})
		gitRepo("gf-tenant-b", "same-url-pinned", fleetv1.GitRepoSpec{Repo: privateURL, Revision: privateCommit})
		for _, name := range []string{"same-url", "same-url-pinned"} {
			gfWaitReason(ctx, t, c, "gf-tenant-b", name, "AuthenticationFailed")
			if gr := gfGitRepo(ctx, c, "gf-tenant-b", name); gr.Status.Commit != "" || len(gfBundles(ctx, t, c, "gf-tenant-b", name)) != 0 {
				t.Errorf("%s: tenant B got tenant A's private repository (commit %q)", name, gr.Status.Commit)
			}
		}
		entries, err := os.ReadDir(filepath.Join(m.DataDir, "git", "repos"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), hex.EncodeToString(func() []byte { s := sha256.Sum256([]byte(privateURL)); return s[:8] }())) {
				t.Errorf("cache entry %s is named by the URL alone: anyone can compute it", e.Name())
			}
		}
	})

	t.Run("credentials in the repository URL stay out of status and logs", func(t *testing.T) {
		const token = "ghp_gfTOPSECRETtoken"
		const password = "gfTOPSECRETpassword"
		gitRepo("gf-tenant-b", "token-in-url", fleetv1.GitRepoSpec{Repo: strings.Replace(git.URL, "http://", "http://"+token+"@", 1) + "/private.git"})
		gitRepo("gf-tenant-b", "password-in-url", fleetv1.GitRepoSpec{Repo: strings.Replace(git.URL, "http://", "http://alice:"+password+"@", 1) + "/private.git"})
		gitRepo("gf-tenant-b", "unreachable", fleetv1.GitRepoSpec{Repo: "http://alice:" + password + "@127.0.0.1:1/private.git"})
		gfWaitReason(ctx, t, c, "gf-tenant-b", "token-in-url", "AuthenticationFailed")
		gfWaitReason(ctx, t, c, "gf-tenant-b", "password-in-url", "AuthenticationFailed")
		gfWaitReason(ctx, t, c, "gf-tenant-b", "unreachable", "RepositoryUnreachable")
		time.Sleep(2 * time.Second) // a few retries' worth of log lines
		for _, name := range []string{"token-in-url", "password-in-url", "unreachable"} {
			gr := gfGitRepo(ctx, c, "gf-tenant-b", name)
			status := fmt.Sprintf("%+v", gr.Status)
			if strings.Contains(status, token) || strings.Contains(status, password) {
				t.Errorf("%s: the status carries the URL's credentials: %s", name, status)
			}
		}
		if out := m.Output(); strings.Contains(out, token) || strings.Contains(out, password) {
			t.Errorf("the manager's log carries credentials from a repository URL")
		}
	})

	t.Run("helm credentials go only to the chart repository's origin over https", func(t *testing.T) {
		chart := gfPackageChart(t, "gfchart", "0.1.0")
		archive, err := os.ReadFile(chart)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		seen := map[string][]string{} // server → Authorization headers received
		record := func(server string, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			seen[server] = append(seen[server], r.URL.Path+" "+r.Header.Get("Authorization"))
		}
		auths := func(server string) []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), seen[server]...)
		}
		// The hostile side: a CDN on another port that the repository
		// redirects archive downloads to, and one named by index.yaml.
		other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			record("other", r)
			_, _ = w.Write(archive)
		}))
		t.Cleanup(other.Close)
		sum := sha256.Sum256(archive)
		index := func(archiveURL string) []byte {
			idx := repo.NewIndexFile()
			if err := idx.MustAdd(&chartv2.Metadata{APIVersion: "v2", Name: "gfchart", Version: "0.1.0"}, archiveURL, "", "sha256:"+hex.EncodeToString(sum[:])); err != nil {
				t.Fatal(err)
			}
			data, err := sigsyaml.Marshal(idx)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}
		charts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			record("charts", r)
			switch r.URL.Path {
			case "/redirect/index.yaml":
				_, _ = w.Write(index("gfchart-0.1.0.tgz"))
			case "/redirect/gfchart-0.1.0.tgz":
				http.Redirect(w, r, other.URL+"/cdn/gfchart-0.1.0.tgz", http.StatusFound)
			case "/elsewhere/index.yaml":
				_, _ = w.Write(index(other.URL + "/named/gfchart-0.1.0.tgz"))
			default:
				http.NotFound(w, r)
			}
		}))
		t.Cleanup(charts.Close)
		plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			record("plain", r)
			http.NotFound(w, r)
		}))
		t.Cleanup(plain.Close)
		caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: charts.Certificate().Raw})

		fleetRepo := gitserver.NewRepo(t, root, "helm.git")
		helmApp := func(repoURL string) string {
			return "defaultNamespace: gf-helm\nhelm:\n  repo: " + repoURL + "\n  chart: gfchart\n  version: 0.1.0\n"
		}
		commit := fleetRepo.Commit(t, "main", "charts", gitserver.Files(map[string]string{
			"redirect/fleet.yaml":  helmApp(charts.URL + "/redirect"),
			"elsewhere/fleet.yaml": helmApp(charts.URL + "/elsewhere"),
			"plain/fleet.yaml":     helmApp(plain.URL + "/plain"),
		}))
		helmSecret := basicAuthSecret("helm-auth", "helmuser", "helmpass")
		helmSecret.Namespace = "gf-tenant-a"
		if err := c.Create(ctx, helmSecret); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"redirect", "elsewhere", "plain"} {
			gitRepo("gf-tenant-a", "helm-"+p, fleetv1.GitRepoSpec{Repo: git.URL + "/helm.git", ClientSecretName: "git-auth",
				HelmSecretName: "helm-auth", CABundle: caPEM, Paths: []string{p}})
		}
		for _, p := range []string{"redirect", "elsewhere"} {
			waitFor(t, time.Minute, "bundle of helm-"+p+" written", func() bool {
				gr := gfGitRepo(ctx, c, "gf-tenant-a", "helm-"+p)
				return gr != nil && gr.Status.Commit == commit && len(gfBundles(ctx, t, c, "gf-tenant-a", "helm-"+p)) == 1
			})
		}
		msg := gfWaitReason(ctx, t, c, "gf-tenant-a", "helm-plain", "RenderError")
		if !strings.Contains(msg, "plain http") || !strings.Contains(msg, "insecurePlainHTTP") {
			t.Errorf("plain http chart repository: the condition does not say why: %s", msg)
		}
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte("helmuser:helmpass"))
		gotRepo := auths("charts")
		if len(gotRepo) == 0 || !strings.HasSuffix(gotRepo[0], want) {
			t.Errorf("the chart repository itself did not get the credentials: %q", gotRepo)
		}
		for _, server := range []string{"other", "plain"} {
			for _, h := range auths(server) {
				if strings.Contains(h, "Basic") {
					t.Errorf("%s received the helm credentials: %q", server, h)
				}
			}
		}
		if len(auths("other")) < 2 {
			t.Errorf("the redirect and index.yaml's other-origin URL were not followed: %q", auths("other"))
		}
	})

	t.Run("webhook bounds unauthenticated work and answers alike", func(t *testing.T) {
		gfWebhookAttacks(t, m, privateURL)
	})
}

func gfWebhookAttacks(t *testing.T, m *harness.Manager, followedURL string) {
	post := func(body io.Reader, size int64, headers map[string]string) (int, string, time.Duration) {
		req, err := http.NewRequest(http.MethodPost, m.URL+webhook.Path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		start := time.Now()
		resp, err := m.HTTP.Do(req)
		if err != nil {
			return -1, err.Error(), time.Since(start)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out), time.Since(start)
	}
	badSig := map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + strings.Repeat("00", 32)}

	t.Run("oversized payload", func(t *testing.T) {
		// 20 MiB is below the old 25 MiB limit: the old handler read it all
		// before looking at the signature.
		const size = 20 << 20
		src := &gfCountingReader{left: size}
		code, msg, took := post(src, -1, badSig)
		if code != http.StatusRequestEntityTooLarge && code != -1 {
			t.Fatalf("20 MiB streamed with a bad signature: HTTP %d %s, want 413", code, msg)
		}
		if sent := src.read.Load(); sent > size/2 {
			t.Fatalf("the manager consumed %d MiB of a 20 MiB payload before answering (HTTP %d after %s)", sent>>20, code, took)
		}
		t.Logf("20 MiB payload refused after %d KiB were sent, in %s", src.read.Load()>>10, took.Round(time.Millisecond))
		code, msg, _ = post(bytes.NewReader(make([]byte, size)), size, badSig)
		if code != http.StatusRequestEntityTooLarge {
			t.Fatalf("announced 20 MiB: HTTP %d %s, want 413", code, msg)
		}
	})

	t.Run("same answer for an unknown repository and a bad signature", func(t *testing.T) {
		push := func(repoURL string) []byte {
			return []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":"0123","repository":{"clone_url":%q}}`, repoURL))
		}
		knownBody := push(followedURL)
		code1, msg1, _ := post(bytes.NewReader(knownBody), int64(len(knownBody)), badSig)
		unknownBody := push("https://git.example.com/nobody/follows-this.git")
		code2, msg2, _ := post(bytes.NewReader(unknownBody), int64(len(unknownBody)), badSig)
		if code1 != code2 || msg1 != msg2 || code1 != http.StatusForbidden {
			t.Fatalf("followed repository, bad signature: HTTP %d %q; unknown repository: HTTP %d %q; want the same 403", code1, msg1, code2, msg2)
		}
		for _, leak := range []string{"gf-tenant", "private", "edgefleet-system/"} {
			if strings.Contains(msg1, leak) {
				t.Errorf("the answer reveals %q: %s", leak, msg1)
			}
		}
	})

	t.Run("concurrency cap and read timeout", func(t *testing.T) {
		// Deliveries that trickle in hold a slot each; once all slots are
		// held the next one is turned away at once instead of queueing
		// without bound, and the slow ones are cut off by the read timeout.
		const slots = webhook.DefaultMaxInFlight
		type result struct {
			code int
			took time.Duration
			err  error
		}
		results := make(chan result, slots)
		for range slots {
			go func() {
				code, took, err := gfTrickle(m, badSig)
				results <- result{code, took, err}
			}()
		}
		time.Sleep(2 * time.Second)
		body := []byte(`{}`)
		code, msg, took := post(bytes.NewReader(body), int64(len(body)), badSig)
		if code != http.StatusServiceUnavailable || took > 2*time.Second {
			t.Fatalf("delivery %d while %d trickle in: HTTP %d %s after %s, want 503 at once", slots+1, slots, code, msg, took)
		}
		for range slots {
			r := <-results
			if r.err != nil || r.code != http.StatusRequestTimeout || r.took > webhook.DefaultReadTimeout+5*time.Second {
				t.Errorf("a delivery trickling in: HTTP %d after %s (%v), want 408 after the %s read timeout", r.code, r.took.Round(time.Millisecond), r.err, webhook.DefaultReadTimeout)
			}
		}
		if code, msg, _ := post(bytes.NewReader(body), int64(len(body)), badSig); code != http.StatusBadRequest {
			t.Fatalf("after the slow deliveries ended: HTTP %d %s, want 400 (slots released)", code, msg)
		}
	})
}

// gfTrickle sends a push event's headers and the first bytes of its body,
// then nothing, and returns the manager's answer and when it came.
func gfTrickle(m *harness.Manager, headers map[string]string) (int, time.Duration, error) {
	u, err := url.Parse(m.URL)
	if err != nil {
		return 0, 0, err
	}
	cfg := m.HTTP.Transport.(*http.Transport).TLSClientConfig.Clone()
	conn, err := tls.Dial("tcp", u.Host, cfg)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	req := "POST " + webhook.Path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
	for k, v := range headers {
		req += k + ": " + v + "\r\n"
	}
	req += "\r\n6\r\n{\"ref\"\r\n"
	start := time.Now()
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, 0, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, time.Since(start), err
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), nil
}

// gfCountingReader yields left bytes of JSON-ish filler slowly enough that
// how much the server consumed before answering is measurable.
type gfCountingReader struct {
	left int64
	read atomic.Int64
}

func (r *gfCountingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.left, 64<<10)
	for i := range n {
		p[i] = ' '
	}
	r.left -= n
	r.read.Add(n)
	time.Sleep(time.Millisecond)
	return int(n), nil
}

func gfGitRepo(ctx context.Context, c client.Client, ns, name string) *fleetv1.GitRepo {
	var gr fleetv1.GitRepo
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &gr); err != nil {
		return nil
	}
	return &gr
}

func gfBundles(ctx context.Context, t *testing.T, c client.Client, ns, repoName string) []fleetv1.Bundle {
	t.Helper()
	var list fleetv1.BundleList
	if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{fleetv1.RepoNameLabel: repoName}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// gfWaitReason waits for Ready=False with reason and returns its message.
func gfWaitReason(ctx context.Context, t *testing.T, c client.Client, ns, name, reason string) string {
	t.Helper()
	var msg string
	waitFor(t, time.Minute, ns+"/"+name+" Ready=False "+reason, func() bool {
		gr := gfGitRepo(ctx, c, ns, name)
		if gr == nil {
			return false
		}
		cond := meta.FindStatusCondition(gr.Status.Conditions, fleetv1.ReadyCondition)
		if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != reason {
			if cond != nil {
				msg = cond.Reason + ": " + cond.Message
			}
			return false
		}
		msg = cond.Message
		return true
	})
	return msg
}

func gfPackageChart(t *testing.T, name, version string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	files := map[string]string{
		"Chart.yaml":        "apiVersion: v2\nname: " + name + "\nversion: " + version + "\n",
		"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n",
	}
	for n, data := range files {
		p := filepath.Join(src, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := chartloader.LoadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	out, err := chartutil.Save(ch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustWd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
