package gitops

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/test/gitserver"
)

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// checkout resolves ref and writes it out, as the GitRepo controller does.
func checkout(t *testing.T, f *Fetcher, url string, ref Ref, auth Auth) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	commit, err := f.Resolve(ctx, url, ref, auth)
	if err != nil {
		return "", "", err
	}
	dir, full, err := f.Checkout(ctx, url, ref, commit, auth)
	if err != nil {
		return "", "", err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir, full, nil
}

func TestFetchFollowsBranchOverEveryTransport(t *testing.T) {
	root := t.TempDir()
	repo := gitserver.NewRepo(t, root, "fleet.git")
	srv := gitserver.ServeHTTP(t, root, "alice", "s3cret")
	first := repo.Commit(t, "main", "first", gitserver.Files(map[string]string{"app/cm.yaml": "v: 1\n", "README": "hi\n"}))
	content, n := "v: 1\n", 1

	for _, tc := range []struct {
		name string
		url  string
		auth Auth
	}{
		{"file", repo.FileURL(), Auth{}},
		{"path", repo.Bare, Auth{}},
		{"http basic auth", srv.URL + "/fleet.git", Auth{Username: "alice", Password: "s3cret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := newLoopbackFetcher(t.TempDir(), 2)
			if err != nil {
				t.Fatal(err)
			}
			f.AllowLocal = true
			dir, commit, err := checkout(t, f, tc.url, Ref{Branch: "main"}, tc.auth)
			if err != nil {
				t.Fatal(err)
			}
			if commit != first || readFile(t, dir, "app/cm.yaml") != content {
				t.Fatalf("got commit %s, want %s", commit, first)
			}
			// A new commit is fetched into the same (shallow) cache.
			n++
			content = fmt.Sprintf("v: %d\n", n)
			second := repo.Commit(t, "main", "next", gitserver.Files(map[string]string{"app/cm.yaml": content}))
			dir, commit, err = checkout(t, f, tc.url, Ref{Branch: "main"}, tc.auth)
			if err != nil {
				t.Fatal(err)
			}
			if commit != second || readFile(t, dir, "app/cm.yaml") != content {
				t.Fatalf("got commit %s, want %s", commit, second)
			}
			first = second
		})
	}
}

func TestFetchRevisionTagOrCommit(t *testing.T) {
	root := t.TempDir()
	repo := gitserver.NewRepo(t, root, "r.git")
	c1 := repo.Commit(t, "main", "one", gitserver.Files(map[string]string{"f": "1"}))
	repo.Tag(t, "v1", c1)
	c2 := repo.Commit(t, "main", "two", gitserver.Files(map[string]string{"f": "2"}))
	repo.Commit(t, "main", "three", gitserver.Files(map[string]string{"f": "3"}))
	f, err := newLoopbackFetcher(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	f.AllowLocal = true
	for _, tc := range []struct {
		rev, want, content string
	}{
		{"v1", c1, "1"},
		{c2, c2, "2"},
		{c2[:10], c2, "2"},
	} {
		dir, commit, err := checkout(t, f, repo.FileURL(), Ref{Revision: tc.rev}, Auth{})
		if err != nil {
			t.Fatalf("revision %s: %v", tc.rev, err)
		}
		if commit != tc.want || readFile(t, dir, "f") != tc.content {
			t.Errorf("revision %s: commit %s content %q, want %s %q", tc.rev, commit, readFile(t, dir, "f"), tc.want, tc.content)
		}
	}
}

func TestFetchFailuresHaveReasons(t *testing.T) {
	root := t.TempDir()
	repo := gitserver.NewRepo(t, root, "r.git")
	repo.Commit(t, "main", "one", gitserver.Files(map[string]string{"f": "1"}))
	srv := gitserver.ServeHTTP(t, root, "alice", "s3cret")
	f, err := newLoopbackFetcher(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	f.AllowLocal = true
	for _, tc := range []struct {
		name   string
		url    string
		ref    Ref
		auth   Auth
		reason string
	}{
		{"wrong password", srv.URL + "/r.git", Ref{Branch: "main"}, Auth{Username: "alice", Password: "nope"}, fleetv1.AuthenticationFailedReason},
		{"no credentials", srv.URL + "/r.git", Ref{Branch: "main"}, Auth{}, fleetv1.AuthenticationFailedReason},
		{"missing branch", srv.URL + "/r.git", Ref{Branch: "nope"}, Auth{Username: "alice", Password: "s3cret"}, fleetv1.BranchNotFoundReason},
		{"default branch master missing", repo.FileURL(), Ref{}, Auth{}, fleetv1.BranchNotFoundReason},
		{"missing tag", repo.FileURL(), Ref{Revision: "v9"}, Auth{}, fleetv1.RevisionNotFoundReason},
		{"missing commit", repo.FileURL(), Ref{Revision: "0123456789abcdef0123456789abcdef01234567"}, Auth{}, fleetv1.RevisionNotFoundReason},
		{"no such repository", srv.URL + "/missing.git", Ref{Branch: "main"}, Auth{Username: "alice", Password: "s3cret"}, fleetv1.RepositoryUnreachableReason},
		{"nothing listening", "http://127.0.0.1:1/r.git", Ref{Branch: "main"}, Auth{}, fleetv1.RepositoryUnreachableReason},
		{"ssh without key", "git@127.0.0.1:r.git", Ref{Branch: "main"}, Auth{}, fleetv1.AuthenticationFailedReason},
		{"ssh with a bad key", "git@127.0.0.1:r.git", Ref{Branch: "main"}, Auth{SSHPrivateKey: []byte("not a key")}, fleetv1.AuthenticationFailedReason},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := checkout(t, f, tc.url, tc.ref, tc.auth)
			if ReasonOf(err) != tc.reason {
				t.Fatalf("error %v has reason %q, want %q", err, ReasonOf(err), tc.reason)
			}
			if len(err.Error()) < 20 {
				t.Fatalf("error message too terse: %v", err)
			}
		})
	}
}

// TestLocalRepositoriesRefusedByDefault: without AllowLocal every form of
// local URL is refused before anything is read; with it, the fetcher's own
// cache (other GitRepos' repositories) stays refused.
func TestLocalRepositoriesRefusedByDefault(t *testing.T) {
	root := t.TempDir()
	repo := gitserver.NewRepo(t, root, "r.git")
	repo.Commit(t, "main", "one", gitserver.Files(map[string]string{"f": "1"}))
	work := t.TempDir()
	f, err := newLoopbackFetcher(work, 0)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(mustGetwd(t), repo.Bare)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{repo.FileURL(), repo.Bare, rel, "./" + rel, "FILE://" + repo.Bare, "file:" + repo.Bare} {
		_, _, err := checkout(t, f, u, Ref{Branch: "main"}, Auth{})
		if ReasonOf(err) != fleetv1.LocalRepositoryNotAllowedReason || !strings.Contains(err.Error(), "--"+AllowLocalFlag) {
			t.Errorf("%s: got %v (reason %q), want %s naming --%s", u, err, ReasonOf(err), fleetv1.LocalRepositoryNotAllowedReason, AllowLocalFlag)
		}
	}
	f.AllowLocal = true
	if _, _, err := checkout(t, f, repo.FileURL(), Ref{Branch: "main"}, Auth{}); err != nil {
		t.Fatalf("allowed local repository: %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(work, "repos"))
	if err != nil || len(entries) == 0 {
		t.Fatalf("no cache entry: %v", err)
	}
	cached := filepath.Join(work, "repos", entries[0].Name())
	for _, u := range []string{"file://" + cached, cached, work + "/checkouts/../repos/" + entries[0].Name()} {
		_, _, err := checkout(t, f, u, Ref{Branch: "main"}, Auth{})
		if ReasonOf(err) != fleetv1.LocalRepositoryNotAllowedReason {
			t.Errorf("%s (the cache): got %v, want %s", u, err, fleetv1.LocalRepositoryNotAllowedReason)
		}
	}
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

// TestCacheKeySeparatesTenantsAndCredentials: one URL fetched by two
// tenants, or with and without credentials, never shares a cache entry.
func TestCacheKeySeparatesTenantsAndCredentials(t *testing.T) {
	u := "https://git.example.com/org/private.git"
	keys := map[string]string{}
	for name, a := range map[string]Auth{
		"tenant a with credentials":   {Tenant: "a", Username: "alice", Password: "s3cret"},
		"tenant b with credentials":   {Tenant: "b", Username: "alice", Password: "s3cret"},
		"tenant a without":            {Tenant: "a"},
		"tenant a other password":     {Tenant: "a", Username: "alice", Password: "other"},
		"tenant a ssh key":            {Tenant: "a", SSHPrivateKey: []byte("key")},
		"tenant a insecure":           {Tenant: "a", InsecureSkipTLSVerify: true},
		"ambiguous concatenation a":   {Tenant: "a", Username: "ab", Password: "c"},
		"ambiguous concatenation a 2": {Tenant: "a", Username: "a", Password: "bc"},
	} {
		k := cacheKey(u, a, false)
		if other, dup := keys[k]; dup {
			t.Errorf("%s and %s share cache key %s", name, other, k)
		}
		keys[k] = name
	}
	if cacheKey(u, Auth{Tenant: "a"}, false) != cacheKey(u, Auth{Tenant: "a"}, false) {
		t.Error("cache key is not stable")
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://ghp_TOKEN@github.com/org/repo.git":       "https://REDACTED@github.com/org/repo.git",
		"https://bot:hunter2@git.example.com/r.git?x=tok": "https://REDACTED@git.example.com/r.git?REDACTED",
		"https://github.com/org/repo":                     "https://github.com/org/repo",
		"git@github.com:org/repo.git":                     "git@github.com:org/repo.git",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	msg := `cannot reach https://bot:hunter2@h/r.git: Get "https://bot:***@h/r.git/info/refs": dial tcp: refused`
	if got := RedactURLs(msg); strings.Contains(got, "hunter2") || strings.Contains(got, "bot") {
		t.Errorf("RedactURLs left credentials: %s", got)
	}
}
