package gitops

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

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
			f, err := NewFetcher(t.TempDir(), 2)
			if err != nil {
				t.Fatal(err)
			}
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
	f, err := NewFetcher(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
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
	f, err := NewFetcher(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		url    string
		ref    Ref
		auth   Auth
		reason string
	}{
		{"wrong password", srv.URL + "/r.git", Ref{Branch: "main"}, Auth{Username: "alice", Password: "nope"}, ReasonAuthenticationFailed},
		{"no credentials", srv.URL + "/r.git", Ref{Branch: "main"}, Auth{}, ReasonAuthenticationFailed},
		{"missing branch", srv.URL + "/r.git", Ref{Branch: "nope"}, Auth{Username: "alice", Password: "s3cret"}, ReasonBranchNotFound},
		{"default branch master missing", repo.FileURL(), Ref{}, Auth{}, ReasonBranchNotFound},
		{"missing tag", repo.FileURL(), Ref{Revision: "v9"}, Auth{}, ReasonRevisionNotFound},
		{"missing commit", repo.FileURL(), Ref{Revision: "0123456789abcdef0123456789abcdef01234567"}, Auth{}, ReasonRevisionNotFound},
		{"no such repository", srv.URL + "/missing.git", Ref{Branch: "main"}, Auth{Username: "alice", Password: "s3cret"}, ReasonRepositoryUnreachable},
		{"nothing listening", "http://127.0.0.1:1/r.git", Ref{Branch: "main"}, Auth{}, ReasonRepositoryUnreachable},
		{"ssh without key", "git@127.0.0.1:r.git", Ref{Branch: "main"}, Auth{}, ReasonAuthenticationFailed},
		{"ssh with a bad key", "git@127.0.0.1:r.git", Ref{Branch: "main"}, Auth{SSHPrivateKey: []byte("not a key")}, ReasonAuthenticationFailed},
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
