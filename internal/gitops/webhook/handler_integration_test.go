package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/gitops/webhook"
	"github.com/edgefleet/edgefleet/test/harness"
)

// TestHandlerTriggersOnlyVerifiedGitRepos posts real push events of each
// provider to the handler backed by a real kube-apiserver: a valid
// signature sets the GitRepo's webhookCommit (the controller's trigger), a
// bad or missing one is refused with 403/401 and changes nothing.
func TestHandlerTriggersOnlyVerifiedGitRepos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver; skipped with -short")
	}
	ctx := context.Background()
	c := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0].Client
	for _, ns := range []string{"fleet-default", "edgefleet-system"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate := func(o client.Object) {
		t.Helper()
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-default", Name: "hook"}, Data: map[string][]byte{webhook.SecretKey: []byte("repo-secret")}})
	mustCreate(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "edgefleet-system", Name: webhook.ManagerSecretName}, Data: map[string][]byte{webhook.SecretKey: []byte("manager-secret")}})
	// Same repository in its ssh form, own secret; and one using the
	// manager-wide secret; and one on another branch.
	mustCreate(&fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-default", Name: "own"},
		Spec: fleetv1.GitRepoSpec{Repo: "git@git.example.com:org/apps.git", Branch: "main", WebhookSecret: "hook"}})
	mustCreate(&fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-default", Name: "shared"},
		Spec: fleetv1.GitRepoSpec{Repo: "https://git.example.com/org/apps", Branch: "main"}})
	mustCreate(&fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-default", Name: "dev"},
		Spec: fleetv1.GitRepoSpec{Repo: "https://git.example.com/org/apps", Branch: "dev", WebhookSecret: "hook"}})

	srv := httptest.NewServer(&webhook.Handler{Reader: c, Writer: c, SystemNamespace: "edgefleet-system", Log: logr.Discard()})
	defer srv.Close()

	var postTo func(p webhook.Provider, repo, secret string, sign bool, after string) (int, string)
	commits := func() map[string]string {
		out := map[string]string{}
		for _, n := range []string{"own", "shared", "dev"} {
			var gr fleetv1.GitRepo
			if err := c.Get(ctx, client.ObjectKey{Namespace: "fleet-default", Name: n}, &gr); err != nil {
				t.Fatal(err)
			}
			out[n] = gr.Status.WebhookCommit
		}
		return out
	}
	post := func(p webhook.Provider, secret string, sign bool, after string) (int, string) {
		return postTo(p, "git.example.com/org/apps", secret, sign, after)
	}
	postTo = func(p webhook.Provider, repo, secret string, sign bool, after string) (int, string) {
		body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"clone_url":"https://%[2]s.git","ssh_url":"git@%[2]s.git"},"project":{"git_http_url":"https://%[2]s.git"}}`, after, repo))
		switch p {
		case webhook.Bitbucket:
			body = []byte(fmt.Sprintf(`{"push":{"changes":[{"new":{"type":"branch","name":"main","target":{"hash":%q}}}]},"repository":{"links":{"html":{"href":"https://%s"}}}}`, after, repo))
		case webhook.BitbucketServer:
			body = []byte(fmt.Sprintf(`{"changes":[{"refId":"refs/heads/main","toHash":%q}],"repository":{"links":{"clone":[{"href":"https://%s.git"}]}}}`, after, repo))
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		event := map[webhook.Provider][2]string{webhook.GitHub: {"X-GitHub-Event", "push"}, webhook.GitLab: {"X-Gitlab-Event", "Push Hook"}, webhook.Gitea: {"X-Gitea-Event", "push"}, webhook.Gogs: {"X-Gogs-Event", "push"},
			webhook.Bitbucket: {"X-Event-Key", "repo:push"}, webhook.BitbucketServer: {"X-Event-Key", "repo:refs_changed"}}[p]
		req.Header.Set(event[0], event[1])
		if p == webhook.Bitbucket {
			req.Header.Set("X-Hook-UUID", "{0b5c2f1e-hook}")
		}
		if sign {
			k, v := webhook.Sign(p, body, []byte(secret))
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(msg)
	}

	for i, p := range []webhook.Provider{webhook.GitHub, webhook.GitLab, webhook.Gitea, webhook.Gogs, webhook.Bitbucket, webhook.BitbucketServer} {
		t.Run(string(p), func(t *testing.T) {
			before := commits()
			for _, bad := range []struct {
				secret string
				sign   bool
				code   int
			}{{"wrong", true, http.StatusForbidden}, {"", false, http.StatusUnauthorized}} {
				code, msg := post(p, bad.secret, bad.sign, fmt.Sprintf("bad%d", i))
				if code != bad.code {
					t.Fatalf("bad signature: HTTP %d %s, want %d", code, msg, bad.code)
				}
			}
			if got := commits(); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Fatalf("a rejected event changed webhookCommit: %v → %v", before, got)
			}

			own := fmt.Sprintf("own%d", i)
			if code, msg := post(p, "repo-secret", true, own); code != http.StatusOK {
				t.Fatalf("valid event: HTTP %d %s", code, msg)
			}
			got := commits()
			if got["own"] != own || got["shared"] != before["shared"] || got["dev"] != before["dev"] {
				t.Fatalf("repo secret: webhookCommits %v, want only own=%s", got, own)
			}
			shared := fmt.Sprintf("shared%d", i)
			if code, msg := post(p, "manager-secret", true, shared); code != http.StatusOK {
				t.Fatalf("valid event: HTTP %d %s", code, msg)
			}
			if got := commits(); got["shared"] != shared || got["own"] != own || got["dev"] != before["dev"] {
				t.Fatalf("manager secret: webhookCommits %v, want shared=%s", got, shared)
			}
		})
	}

	// Fleet's gitjob-webhook layout: one key per provider, named as Fleet
	// names them; the provider's key wins over "token", which still serves
	// providers without their own key.
	fleetKeys := map[string][]byte{webhook.SecretKey: []byte("any-provider")}
	for _, p := range []webhook.Provider{webhook.GitHub, webhook.GitLab, webhook.Bitbucket, webhook.BitbucketServer, webhook.Gogs} {
		fleetKeys[webhook.ProviderSecretKey(p)] = []byte("key-" + string(p))
	}
	mustCreate(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-default", Name: "fleet-keys"}, Data: fleetKeys})
	mustCreate(&fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-default", Name: "fleet-keys"},
		Spec: fleetv1.GitRepoSpec{Repo: "https://git.example.com/org/fleetkeys", Branch: "main", WebhookSecret: "fleet-keys"}})
	for i, p := range []webhook.Provider{webhook.GitHub, webhook.GitLab, webhook.Gitea, webhook.Gogs, webhook.Bitbucket, webhook.BitbucketServer} {
		t.Run("fleet key "+string(p), func(t *testing.T) {
			if code, msg := postTo(p, "git.example.com/org/fleetkeys", "any-provider", true, "x"); code != http.StatusForbidden {
				t.Fatalf("signed with the token key while %q is set: HTTP %d %s, want 403", webhook.ProviderSecretKey(p), code, msg)
			}
			own := fmt.Sprintf("fleetkey%d", i)
			if code, msg := postTo(p, "git.example.com/org/fleetkeys", "key-"+webhook.ProviderSecretKey(p), true, own); code != http.StatusOK {
				t.Fatalf("signed with the %q key: HTTP %d %s", webhook.ProviderSecretKey(p), code, msg)
			}
			var gr fleetv1.GitRepo
			if err := c.Get(ctx, client.ObjectKey{Namespace: "fleet-default", Name: "fleet-keys"}, &gr); err != nil || gr.Status.WebhookCommit != own {
				t.Fatalf("webhookCommit %q (%v), want %q", gr.Status.WebhookCommit, err, own)
			}
		})
	}

	// No oracle: an unauthenticated caller gets the same answer for a
	// repository nobody follows, a followed one with a wrong signature, and
	// a followed one whose GitRepo's secret is missing.
	mustCreate(&fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-default", Name: "no-secret"},
		Spec: fleetv1.GitRepoSpec{Repo: "https://git.example.com/org/other", Branch: "main", WebhookSecret: "missing"}})
	unknownCode, unknownMsg := postTo(webhook.GitHub, "git.example.com/org/nobody-follows-this", "wrong", true, "x")
	for _, tc := range []struct{ repo, secret string }{{"git.example.com/org/apps", "wrong"}, {"git.example.com/org/other", "wrong"}, {"git.example.com/org/nobody-follows-this", "repo-secret"}} {
		code, msg := postTo(webhook.GitHub, tc.repo, tc.secret, true, "x")
		if code != unknownCode || msg != unknownMsg || code != http.StatusForbidden {
			t.Errorf("%s signed with %q: HTTP %d %q; unknown repository: HTTP %d %q; want the same 403", tc.repo, tc.secret, code, msg, unknownCode, unknownMsg)
		}
		for _, leak := range []string{"fleet-default", "own", "shared", "missing", "exist"} {
			if strings.Contains(msg, leak) {
				t.Errorf("the answer to an unauthenticated caller reveals %q: %s", leak, msg)
			}
		}
	}
}
