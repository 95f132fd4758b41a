// Package gitserver runs real git repositories for tests: bare repositories
// written with the git CLI, served over file:// and over smart HTTP by
// `git http-backend` (CGI) on 127.0.0.1 behind basic auth.
package gitserver

import (
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Repo is a bare repository with a work clone to commit from.
type Repo struct {
	// Name is the bare repository's directory name, e.g. "fleet.git".
	Name string
	// Bare is the bare repository's path.
	Bare string
	work string
}

// Git runs git with a fixed identity and no user or system config.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.com",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// NewRepo creates root/name as an empty bare repository.
func NewRepo(t testing.TB, root, name string) *Repo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed (hack/install-deps.sh)")
	}
	r := &Repo{Name: name, Bare: filepath.Join(root, name), work: t.TempDir()}
	if err := os.MkdirAll(r.Bare, 0o755); err != nil {
		t.Fatal(err)
	}
	Git(t, r.Bare, "init", "--bare", "--quiet")
	Git(t, r.work, "init", "--quiet")
	Git(t, r.work, "remote", "add", "origin", r.Bare)
	return r
}

// FileURL is the repository's file:// URL.
func (r *Repo) FileURL() string { return "file://" + r.Bare }

// Commit writes files (path → content; "" deletes the path, file or
// directory) on top of branch's current tree, commits and pushes to branch.
// It returns the new commit's hash.
func (r *Repo) Commit(t testing.TB, branch, message string, files map[string]*string) string {
	t.Helper()
	if Git(t, r.work, "ls-remote", "--heads", "origin", branch) != "" {
		Git(t, r.work, "fetch", "--quiet", "origin", branch)
		Git(t, r.work, "checkout", "--quiet", "-B", branch, "FETCH_HEAD")
	} else {
		Git(t, r.work, "checkout", "--quiet", "--orphan", branch)
		Git(t, r.work, "rm", "-r", "--quiet", "--cached", "--ignore-unmatch", ".")
	}
	for name, data := range files {
		p := filepath.Join(r.work, filepath.FromSlash(name))
		if data == nil {
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(*data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	Git(t, r.work, "add", "-A")
	Git(t, r.work, "commit", "--quiet", "--allow-empty", "-m", message)
	Git(t, r.work, "push", "--quiet", "origin", "HEAD:refs/heads/"+branch)
	return Git(t, r.work, "rev-parse", "HEAD")
}

// Tag tags commit and pushes the tag.
func (r *Repo) Tag(t testing.TB, tag, commit string) {
	t.Helper()
	Git(t, r.work, "tag", "-f", tag, commit)
	Git(t, r.work, "push", "--quiet", "-f", "origin", "refs/tags/"+tag)
}

// Files is a helper to build Commit's argument from plain strings.
func Files(kv map[string]string) map[string]*string {
	out := make(map[string]*string, len(kv))
	for k, v := range kv {
		out[k] = &v
	}
	return out
}

// Delete lists paths to delete in Commit.
func Delete(paths ...string) map[string]*string {
	out := make(map[string]*string, len(paths))
	for _, p := range paths {
		out[p] = nil
	}
	return out
}

// HTTPServer serves every repository under a root over smart HTTP.
type HTTPServer struct {
	// URL is the base URL; a repository is at URL + "/" + Repo.Name.
	URL    string
	server *httptest.Server
}

// ServeHTTP serves root's repositories with `git http-backend` on
// 127.0.0.1, requiring basic auth user/password (none when user is "").
func ServeHTTP(t testing.TB, root, user, password string) *HTTPServer {
	t.Helper()
	execPath := Git(t, root, "--exec-path")
	backend := filepath.Join(execPath, "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("git-http-backend not found at %s (Debian package git)", backend)
	}
	cgiHandler := &cgi.Handler{
		Path:   backend,
		Stderr: io.Discard,
		Env:    []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"},
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		cgiHandler.ServeHTTP(w, r)
	})
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return &HTTPServer{URL: s.URL, server: s}
}
