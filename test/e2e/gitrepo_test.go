package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/gitops/webhook"
	"github.com/edgefleet/edgefleet/test/gitserver"
)

// gitApp is a raw-YAML bundle directory: a fleet.yaml and a ConfigMap whose
// data.version tells which commit a cluster runs.
func gitApp(dir, ns, version string) map[string]string {
	return map[string]string{
		dir + "/fleet.yaml": "defaultNamespace: " + ns + "\n",
		dir + "/cm.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  version: " + version + "\n",
	}
}

func merged(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// versionsEverywhere tells whether ConfigMap ns/app has data.version=want
// on every cluster.
func (e *fleetEnv) versionsEverywhere(ctx context.Context, ns, want string) bool {
	for _, cl := range e.clusters {
		cm, err := configMap(ctx, cl.Client, ns, "app")
		if err != nil || cm.Data["version"] != want {
			return false
		}
	}
	return true
}

func getGitRepo(ctx context.Context, t *testing.T, c client.Client, name string) *fleetv1.GitRepo {
	t.Helper()
	var gr fleetv1.GitRepo
	if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: name}, &gr); err != nil {
		t.Fatal(err)
	}
	return &gr
}

// gitRepoReady: synced to commit and Ready on all clusters.
func gitRepoReady(ctx context.Context, c client.Client, name, commit string, clusters int32) bool {
	var gr fleetv1.GitRepo
	if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: name}, &gr); err != nil {
		return false
	}
	return gr.Status.Commit == commit && gr.Status.ReadyClusters == clusters && gr.Status.DesiredReadyClusters == clusters &&
		meta.IsStatusConditionTrue(gr.Status.Conditions, fleetv1.ReadyCondition)
}

// waitCondition waits for the GitRepo's Ready condition to be False with
// reason, Stalled with it too (a terminal failure), and returns its
// message.
func waitCondition(ctx context.Context, t *testing.T, c client.Client, name, reason string) string {
	t.Helper()
	return waitFailure(ctx, t, c, name, reason, true)
}

// waitRetrying waits for the GitRepo's Ready condition to be False with
// reason while it is Reconciling with that reason and not Stalled: a
// failure the controller retries. It returns Ready's message.
func waitRetrying(ctx context.Context, t *testing.T, c client.Client, name, reason string) string {
	t.Helper()
	return waitFailure(ctx, t, c, name, reason, false)
}

func waitFailure(ctx context.Context, t *testing.T, c client.Client, name, reason string, terminal bool) string {
	t.Helper()
	var msg string
	waitFor(t, 30*time.Second, name+" Ready=False "+reason, func() bool {
		var gr fleetv1.GitRepo
		if c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: name}, &gr) != nil {
			return false
		}
		cond := meta.FindStatusCondition(gr.Status.Conditions, fleetv1.ReadyCondition)
		if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != reason {
			return false
		}
		msg = cond.Message
		if gr.Status.Display.State != reason {
			return false
		}
		stalled := meta.FindStatusCondition(gr.Status.Conditions, fleetv1.StalledCondition)
		if terminal {
			return stalled != nil && stalled.Status == metav1.ConditionTrue && stalled.Reason == reason
		}
		rec := meta.FindStatusCondition(gr.Status.Conditions, fleetv1.ReconcilingCondition)
		return stalled == nil && rec != nil && rec.Status == metav1.ConditionTrue && rec.Reason == reason
	})
	return msg
}

func createAll(ctx context.Context, t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}

func basicAuthSecret(name, user, password string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: name},
		Type:       corev1.SecretTypeBasicAuth,
		Data:       map[string][]byte{corev1.BasicAuthUsernameKey: []byte(user), corev1.BasicAuthPasswordKey: []byte(password)},
	}
}

var everyCluster = []fleetv1.GitTarget{{Name: "all", ClusterSelector: &metav1.LabelSelector{}}}

// noCluster targets nothing: a GitRepo that must sync without deploying.
var noCluster = []fleetv1.GitTarget{{Name: "none", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"edgefleet-test": "no-such-cluster"}}}}

// TestGitRepoPollsAuthenticatedHTTPRepository follows a branch of a real
// git server (git http-backend behind basic auth on loopback) by polling:
// new commits reach every cluster, a removed directory's bundle is pruned,
// and each kind of bad input gives its condition while what was deployed
// stays.
func TestGitRepoPollsAuthenticatedHTTPRepository(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	repo := gitserver.NewRepo(t, root, "fleet.git")
	srv := gitserver.ServeHTTP(t, root, "fleet", "s3cret")
	env := startFleet(t)
	c := env.m.Client

	c1 := repo.Commit(t, "main", "initial", gitserver.Files(merged(
		gitApp("apps/web", "gr-web", "v1"), gitApp("apps/db", "gr-db", "v1"), gitApp("infra", "gr-infra", "v1"))))
	createAll(ctx, t, c, basicAuthSecret("git-auth", "fleet", "s3cret"), &fleetv1.GitRepo{
		ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "polled"},
		Spec: fleetv1.GitRepoSpec{
			Repo: srv.URL + "/fleet.git", Branch: "main", Paths: []string{"apps/*", "infra"},
			ClientSecretName: "git-auth", PollingInterval: &metav1.Duration{Duration: time.Second}, Targets: everyCluster,
		},
	})
	waitFor(t, 2*time.Minute, "first commit ready on 3 clusters", func() bool {
		return gitRepoReady(ctx, c, "polled", c1, 3) && env.versionsEverywhere(ctx, "gr-web", "v1") &&
			env.versionsEverywhere(ctx, "gr-db", "v1") && env.versionsEverywhere(ctx, "gr-infra", "v1")
	})
	var bundles fleetv1.BundleList
	if err := c.List(ctx, &bundles, client.InNamespace(fleetNS), client.MatchingLabels{fleetv1.RepoNameLabel: "polled", fleetv1.CommitLabel: c1}); err != nil || len(bundles.Items) != 3 {
		t.Fatalf("bundles of polled at %s: %d, %v", c1, len(bundles.Items), err)
	}
	gr := getGitRepo(ctx, t, c, "polled")
	if gr.Status.Display.ReadyBundleDeployments != "9/9" || gr.Status.Display.State != string(fleetv1.Ready) || gr.Status.Summary.Ready != 9 {
		t.Fatalf("status rollup: display %+v summary %+v", gr.Status.Display, gr.Status.Summary)
	}

	// A commit that changes values reaches every cluster by polling.
	c2 := repo.Commit(t, "main", "web v2", gitserver.Files(gitApp("apps/web", "gr-web", "v2")))
	pushed := time.Now()
	var deployed time.Duration
	waitFor(t, time.Minute, "v2 on every cluster by polling", func() bool {
		if deployed == 0 && env.versionsEverywhere(ctx, "gr-web", "v2") {
			deployed = time.Since(pushed)
		}
		return deployed > 0 && gitRepoReady(ctx, c, "polled", c2, 3)
	})
	t.Logf("latency, polling (interval 1s): commit → new ConfigMap on all clusters %s, → GitRepo Ready 3/3 at the commit %s",
		deployed.Round(10*time.Millisecond), time.Since(pushed).Round(10*time.Millisecond))

	// Removing a directory prunes its bundle and its resources.
	c3 := repo.Commit(t, "main", "drop db", gitserver.Delete("apps/db"))
	waitFor(t, time.Minute, "bundle polled-apps-db pruned and its ConfigMap gone", func() bool {
		var b fleetv1.Bundle
		if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "polled-apps-db"}, &b); !apierrors.IsNotFound(err) {
			return false
		}
		for _, cl := range env.clusters {
			if _, err := configMap(ctx, cl.Client, "gr-db", "app"); !apierrors.IsNotFound(err) {
				return false
			}
		}
		return gitRepoReady(ctx, c, "polled", c3, 3)
	})

	// A malformed fleet.yaml in one path: the condition names file and
	// line, the other paths still move on, the broken bundle stays as it was.
	repo.Commit(t, "main", "break web, infra v3", gitserver.Files(merged(
		map[string]string{"apps/web/fleet.yaml": "defaultNamespace: gr-web\nhelm:\n  releaseName: [not, a, string]\n"},
		gitApp("infra", "gr-infra", "v3"))))
	msg := waitCondition(ctx, t, c, "polled", "RenderError")
	if !strings.Contains(msg, "apps/web/fleet.yaml:3") {
		t.Fatalf("RenderError message does not name apps/web/fleet.yaml:3: %s", msg)
	}
	t.Logf("RenderError: %s", msg)
	waitFor(t, time.Minute, "infra v3 deployed despite the broken path", func() bool {
		return env.versionsEverywhere(ctx, "gr-infra", "v3")
	})
	var web fleetv1.Bundle
	if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "polled-apps-web"}, &web); err != nil || web.Labels[fleetv1.CommitLabel] != c3 {
		t.Fatalf("broken path's bundle should stay at %s: %v %v", c3, err, web.Labels)
	}
	if !env.versionsEverywhere(ctx, "gr-web", "v2") {
		t.Fatal("the broken path's last good deployment changed")
	}
	c5 := repo.Commit(t, "main", "fix web, v3", gitserver.Files(gitApp("apps/web", "gr-web", "v3")))
	waitFor(t, time.Minute, "fixed commit ready", func() bool {
		return gitRepoReady(ctx, c, "polled", c5, 3) && env.versionsEverywhere(ctx, "gr-web", "v3")
	})

	// A path that does not exist.
	gr = getGitRepo(ctx, t, c, "polled")
	gr.Spec.Paths = append(gr.Spec.Paths, "missing")
	if err := c.Update(ctx, gr); err != nil {
		t.Fatal(err)
	}
	if msg := waitCondition(ctx, t, c, "polled", "PathNotFound"); !strings.Contains(msg, `"missing"`) {
		t.Fatalf("PathNotFound message: %s", msg)
	} else {
		t.Logf("PathNotFound: %s", msg)
	}
	if !env.versionsEverywhere(ctx, "gr-web", "v3") || !env.versionsEverywhere(ctx, "gr-infra", "v3") {
		t.Fatal("a missing path changed what was deployed")
	}

	// Wrong credentials and a missing branch, on repositories of their own.
	createAll(ctx, t, c, basicAuthSecret("wrong-auth", "fleet", "nope"),
		&fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "wrong-auth"}, Spec: fleetv1.GitRepoSpec{
			Repo: srv.URL + "/fleet.git", Branch: "main", Paths: []string{"infra"}, ClientSecretName: "wrong-auth", Targets: noCluster}},
		&fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "no-branch"}, Spec: fleetv1.GitRepoSpec{
			Repo: srv.URL + "/fleet.git", Branch: "release", ClientSecretName: "git-auth", Targets: everyCluster}},
	)
	// Both are retried (a Secret or a push fixes them): Reconciling, never
	// Stalled, so kstatus-based tools keep waiting instead of failing.
	msg = waitRetrying(ctx, t, c, "wrong-auth", "AuthenticationFailed")
	if !strings.Contains(msg, "clientSecretName") {
		t.Fatalf("AuthenticationFailed message: %s", msg)
	}
	t.Logf("AuthenticationFailed: %s", msg)
	msg = waitRetrying(ctx, t, c, "no-branch", "BranchNotFound")
	if !strings.Contains(msg, `"release"`) || !strings.Contains(msg, "main") {
		t.Fatalf("BranchNotFound message: %s", msg)
	}
	t.Logf("BranchNotFound: %s", msg)
	// A transient fetch failure: nothing listens at the repository's
	// address. Retried, so Reconciling and not Stalled.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()
	createAll(ctx, t, c, &fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "unreachable"}, Spec: fleetv1.GitRepoSpec{
		Repo: "http://" + deadAddr + "/fleet.git", Branch: "main", Targets: everyCluster}})
	t.Logf("RepositoryUnreachable: %s", waitRetrying(ctx, t, c, "unreachable", "RepositoryUnreachable"))

	// Backoff, not a hot loop: failing GitRepos' retries are spaced out, so
	// the manager keeps serving everything else (checked above) and its
	// log shows few attempts.
	time.Sleep(5 * time.Second)
	if n := strings.Count(env.m.Output(), "GitRepo sync failed"); n > 60 {
		t.Fatalf("%d failed sync attempts logged: retries are not backing off", n)
	}

	// Fixing the Secret is enough: the retry picks the credentials up, no
	// change to the GitRepo needed.
	var sec corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "wrong-auth"}, &sec); err != nil {
		t.Fatal(err)
	}
	sec.Data[corev1.BasicAuthPasswordKey] = []byte("s3cret")
	if err := c.Update(ctx, &sec); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "wrong-auth Ready after its Secret was fixed", func() bool {
		gr := getGitRepo(ctx, t, c, "wrong-auth")
		ready := meta.FindStatusCondition(gr.Status.Conditions, fleetv1.ReadyCondition)
		return gr.Status.Commit == c5 && ready != nil && ready.Status == metav1.ConditionTrue && ready.Reason == fleetv1.NoTargetsReason
	})
	// Each condition change was recorded as one Event with the
	// condition's reason, not one per retry.
	waitFor(t, 30*time.Second, "GitRepo events AuthenticationFailed then NoTargets", func() bool {
		reasons := eventReasons(ctx, t, c, "GitRepo", "wrong-auth")
		return reasons["AuthenticationFailed"] == 1 && reasons["NoTargets"] >= 1
	})
}

// eventReasons counts the Events about one object in fleetNS by reason
// (a repeated Event counts once: the API folds repeats into a series).
func eventReasons(ctx context.Context, t *testing.T, c client.Client, kind, name string) map[string]int {
	t.Helper()
	var list eventsv1.EventList
	if err := c.List(ctx, &list, client.InNamespace(fleetNS)); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range list.Items {
		if e.Regarding.Kind == kind && e.Regarding.Name == name {
			out[e.Reason]++
		}
	}
	return out
}

// TestGitRepoWebhookAndLocalRepository: with polling disabled a commit
// waits for the webhook; a GitHub push event signed with the GitRepo's
// secret, posted to the manager's /webhooks/git, syncs it at once. A
// file:// repository is followed too (the manager allows local
// repositories: --allow-local-git-repos).
func TestGitRepoWebhookAndLocalRepository(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	repo := gitserver.NewRepo(t, root, "hooked.git")
	local := gitserver.NewRepo(t, root, "local.git")
	srv := gitserver.ServeHTTP(t, root, "", "")
	env := startFleet(t, "--allow-local-git-repos")
	c := env.m.Client

	c1 := repo.Commit(t, "main", "initial", gitserver.Files(gitApp("app", "gr-hook", "v1")))
	l1 := local.Commit(t, "main", "initial", gitserver.Files(gitApp(".", "gr-local", "v1")))
	createAll(ctx, t, c,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "hook"}, Data: map[string][]byte{webhook.SecretKey: []byte("hook-secret")}},
		&fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "hooked"}, Spec: fleetv1.GitRepoSpec{
			Repo: srv.URL + "/hooked.git", Branch: "main", Paths: []string{"app"}, DisablePolling: true, WebhookSecret: "hook", Targets: everyCluster}},
		&fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "local"}, Spec: fleetv1.GitRepoSpec{
			Repo: local.FileURL(), Branch: "main", PollingInterval: &metav1.Duration{Duration: time.Second}, Targets: everyCluster}},
	)
	waitFor(t, 2*time.Minute, "both repositories ready", func() bool {
		return gitRepoReady(ctx, c, "hooked", c1, 3) && gitRepoReady(ctx, c, "local", l1, 3) &&
			env.versionsEverywhere(ctx, "gr-hook", "v1") && env.versionsEverywhere(ctx, "gr-local", "v1")
	})
	l2 := local.Commit(t, "main", "v2", gitserver.Files(gitApp(".", "gr-local", "v2")))
	waitFor(t, time.Minute, "file:// repository v2 everywhere", func() bool {
		return gitRepoReady(ctx, c, "local", l2, 3) && env.versionsEverywhere(ctx, "gr-local", "v2")
	})

	c2 := repo.Commit(t, "main", "v2", gitserver.Files(gitApp("app", "gr-hook", "v2")))
	post := func(secret string) (int, string) {
		body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"clone_url":%q}}`, c2, srv.URL+"/hooked.git"))
		req, err := http.NewRequest(http.MethodPost, env.m.URL+webhook.Path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		k, v := webhook.Sign(webhook.GitHub, body, []byte(secret))
		req.Header.Set(k, v)
		resp, err := env.m.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	// A forged event is refused and triggers nothing; with polling off the
	// commit is not picked up on its own.
	if code, msg := post("forged"); code != http.StatusForbidden {
		t.Fatalf("forged webhook: HTTP %d %s, want 403", code, msg)
	}
	time.Sleep(3 * time.Second)
	if gr := getGitRepo(ctx, t, c, "hooked"); gr.Status.Commit != c1 || gr.Status.WebhookCommit != "" {
		t.Fatalf("without a valid webhook the GitRepo moved: commit %s webhookCommit %q", gr.Status.Commit, gr.Status.WebhookCommit)
	}

	start := time.Now()
	if code, msg := post("hook-secret"); code != http.StatusOK || !strings.Contains(msg, fleetNS+"/hooked") {
		t.Fatalf("webhook: HTTP %d %s", code, msg)
	}
	var deployed time.Duration
	waitFor(t, time.Minute, "webhook commit everywhere", func() bool {
		if deployed == 0 && env.versionsEverywhere(ctx, "gr-hook", "v2") {
			deployed = time.Since(start)
		}
		return deployed > 0 && gitRepoReady(ctx, c, "hooked", c2, 3)
	})
	t.Logf("latency, webhook (polling disabled): webhook POST → new ConfigMap on all clusters %s, → GitRepo Ready 3/3 at the commit %s",
		deployed.Round(10*time.Millisecond), time.Since(start).Round(10*time.Millisecond))
	if gr := getGitRepo(ctx, t, c, "hooked"); gr.Status.WebhookCommit != c2 {
		t.Fatalf("webhookCommit = %q, want %s", gr.Status.WebhookCommit, c2)
	}

	// Deleting a GitRepo deletes its bundles.
	if err := c.Delete(ctx, getGitRepo(ctx, t, c, "local")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "local's bundles and GitRepo gone", func() bool {
		var list fleetv1.BundleList
		var gr fleetv1.GitRepo
		return c.List(ctx, &list, client.InNamespace(fleetNS), client.MatchingLabels{fleetv1.RepoNameLabel: "local"}) == nil && len(list.Items) == 0 &&
			apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "local"}, &gr))
	})
}
