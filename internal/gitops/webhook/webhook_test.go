package webhook

import (
	"net/http"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func TestVerifySignaturePerProvider(t *testing.T) {
	body := []byte(`{"ref":"refs/heads/main"}`)
	secret := []byte("s3cret")
	for _, p := range []Provider{GitHub, GitLab, Gitea, Gogs, Bitbucket, BitbucketServer} {
		_, good := Sign(p, body, secret)
		_, otherSecret := Sign(p, body, []byte("other"))
		_, otherBody := Sign(p, []byte(`{"ref":"refs/heads/evil"}`), secret)
		for _, tc := range []struct {
			name   string
			header string
			want   error
		}{
			{"valid", good, nil},
			{"missing", "", errMissingSignature},
			{"other secret", otherSecret, errBadSignature},
			{"body changed", otherBody, errBadSignature},
			{"garbage", "sha256=zz", errBadSignature},
		} {
			if p == GitLab && tc.name == "body changed" {
				continue // GitLab sends the token, not a signature of the body
			}
			if got := Verify(p, body, tc.header, secret); got != tc.want {
				t.Errorf("%s, %s signature: Verify = %v, want %v", p, tc.name, got, tc.want)
			}
		}
	}
	// GitHub's header carries the algorithm; a bare hex HMAC is refused.
	_, gitea := Sign(Gitea, body, secret)
	if Verify(GitHub, body, gitea, secret) == nil {
		t.Error("GitHub accepted a signature without the sha256= prefix")
	}
}

func TestDetectAndParsePushEvents(t *testing.T) {
	for _, tc := range []struct {
		name     string
		headers  map[string]string
		body     string
		provider Provider
		push     bool
		urls     []string
	}{
		{
			name:     "github",
			headers:  map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=00"},
			body:     `{"ref":"refs/heads/main","after":"abc","repository":{"html_url":"https://github.com/Org/Repo","clone_url":"https://github.com/Org/Repo.git","ssh_url":"git@github.com:Org/Repo.git"}}`,
			provider: GitHub, push: true,
			urls: []string{"github.com/org/repo", "github.com/org/repo", "github.com/org/repo"},
		},
		{
			name:     "gitlab",
			headers:  map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "t"},
			body:     `{"object_kind":"push","ref":"refs/heads/main","after":"abc","project":{"web_url":"https://gitlab.example.com/g/r","git_ssh_url":"ssh://git@gitlab.example.com:2222/g/r.git"}}`,
			provider: GitLab, push: true,
			urls: []string{"gitlab.example.com/g/r", "gitlab.example.com/g/r"},
		},
		{
			name:     "gitea sends gogs and github headers too",
			headers:  map[string]string{"X-Gitea-Event": "push", "X-Gogs-Event": "push", "X-GitHub-Event": "push", "X-Gitea-Signature": "00"},
			body:     `{"ref":"refs/heads/main","after":"abc","repository":{"clone_url":"http://gitea.local/o/r.git"}}`,
			provider: Gitea, push: true,
			urls: []string{"gitea.local/o/r"},
		},
		{
			name:     "gogs",
			headers:  map[string]string{"X-Gogs-Event": "push", "X-Gogs-Signature": "00"},
			body:     `{"ref":"refs/heads/main","after":"abc","repository":{"html_url":"http://gogs.local/o/r"}}`,
			provider: Gogs, push: true,
			urls: []string{"gogs.local/o/r"},
		},
		{
			name:     "bitbucket cloud",
			headers:  map[string]string{"X-Event-Key": "repo:push", "X-Hook-UUID": "{5f0c}", "X-Hub-Signature": "sha256=00"},
			body:     `{"push":{"changes":[{"new":{"type":"branch","name":"main","target":{"hash":"abc"}}}]},"repository":{"full_name":"org/repo","links":{"html":{"href":"https://bitbucket.org/org/repo"},"self":{"href":"https://api.bitbucket.org/2.0/repositories/org/repo"}}}}`,
			provider: Bitbucket, push: true,
			urls: []string{"bitbucket.org/org/repo"},
		},
		{
			name:     "bitbucket server",
			headers:  map[string]string{"X-Event-Key": "repo:refs_changed", "X-Request-Id": "r1", "X-Hub-Signature": "sha256=00"},
			body:     `{"eventKey":"repo:refs_changed","changes":[{"ref":{"id":"refs/heads/main","type":"BRANCH"},"refId":"refs/heads/main","fromHash":"000","toHash":"abc","type":"UPDATE"}],"repository":{"slug":"repo","links":{"clone":[{"href":"ssh://git@bb.example.com:7999/prj/repo.git","name":"ssh"},{"href":"https://bb.example.com/scm/prj/repo.git","name":"http"}],"self":[{"href":"https://bb.example.com/projects/PRJ/repos/repo/browse"}]}}}`,
			provider: BitbucketServer, push: true,
			urls: []string{"bb.example.com/prj/repo", "bb.example.com/scm/prj/repo"},
		},
		{
			name:     "bitbucket cloud pull request is not a push",
			headers:  map[string]string{"X-Event-Key": "pullrequest:created", "X-Hook-UUID": "{5f0c}"},
			provider: Bitbucket,
		},
		{
			name:     "github issue event is not a push",
			headers:  map[string]string{"X-GitHub-Event": "issues"},
			provider: GitHub,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			ev, ok := detect(h)
			if !ok || ev.provider != tc.provider || ev.isPush() != tc.push {
				t.Fatalf("detect: %+v %v", ev, ok)
			}
			if !tc.push {
				return
			}
			if err := ev.parse([]byte(tc.body)); err != nil {
				t.Fatal(err)
			}
			if ev.ref != "refs/heads/main" || ev.after != "abc" || len(ev.urls) != len(tc.urls) {
				t.Fatalf("parsed %+v", ev)
			}
			for i := range tc.urls {
				if ev.urls[i] != tc.urls[i] {
					t.Errorf("url %d = %q, want %q", i, ev.urls[i], tc.urls[i])
				}
			}
		})
	}
	if _, ok := detect(http.Header{}); ok {
		t.Error("a request without a provider header was accepted")
	}
}

func TestRefMatchesBranchOrRevision(t *testing.T) {
	gr := func(branch, rev string) *fleetv1.GitRepo {
		return &fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: fleetv1.GitRepoSpec{Branch: branch, Revision: rev}}
	}
	for _, tc := range []struct {
		gr   *fleetv1.GitRepo
		ref  string
		want bool
	}{
		{gr("main", ""), "refs/heads/main", true},
		{gr("main", ""), "refs/heads/dev", false},
		{gr("", ""), "refs/heads/master", true},
		{gr("main", "v1"), "refs/heads/main", false},
		{gr("main", "v1"), "refs/tags/v1", true},
		{gr("", "release"), "refs/heads/release", true},
	} {
		if got := refMatches(tc.gr, tc.ref); got != tc.want {
			t.Errorf("branch %q revision %q, ref %s: %v, want %v", tc.gr.Spec.Branch, tc.gr.Spec.Revision, tc.ref, got, tc.want)
		}
	}
}
