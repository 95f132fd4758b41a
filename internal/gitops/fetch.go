package gitops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
	ctrl "sigs.k8s.io/controller-runtime"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/netguard"
)

// DefaultMaxConcurrent bounds simultaneous fetches and ls-remotes.
const DefaultMaxConcurrent = 4

// DefaultBranch is followed when neither branch nor revision is set, as in
// Fleet.
const DefaultBranch = "master"

var hexRevision = regexp.MustCompile(`^[0-9a-fA-F]{4,40}$`)

// Ref is what to follow in a repository: Revision (a tag, branch or
// commit) wins over Branch; neither means DefaultBranch.
type Ref struct {
	Branch   string
	Revision string
}

func (r Ref) String() string {
	if r.Revision != "" {
		return "revision " + r.Revision
	}
	return "branch " + r.branch()
}

func (r Ref) branch() string {
	if r.Branch == "" {
		return DefaultBranch
	}
	return r.Branch
}

// Fetcher fetches repositories into a cache directory, one bare shallow
// repository per (tenant, URL, credentials), and writes commits out as plain
// directories.
type Fetcher struct {
	// AllowLocal lets repository URLs be local paths or file:// URLs. Off
	// by default: a GitRepo could otherwise read any repository on the
	// manager's host, including other tenants' caches.
	AllowLocal bool
	// Guard is the network policy of every fetch (NewFetcher sets
	// netguard.Default: no loopback, link-local, unspecified or multicast
	// destination).
	Guard netguard.Policy

	dir   string
	sem   chan struct{}
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// NewFetcher caches under dir (created if missing) and runs at most
// maxConcurrent network operations at once (DefaultMaxConcurrent if <= 0).
func NewFetcher(dir string, maxConcurrent int) (*Fetcher, error) {
	if maxConcurrent <= 0 {
		maxConcurrent = DefaultMaxConcurrent
	}
	for _, d := range []string{dir, filepath.Join(dir, "repos"), filepath.Join(dir, "checkouts")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating git work directory: %w", err)
		}
	}
	// Checkouts left by a previous run (a crash mid-sync) are garbage.
	if entries, err := os.ReadDir(filepath.Join(dir, "checkouts")); err == nil {
		for _, e := range entries {
			_ = os.RemoveAll(filepath.Join(dir, "checkouts", e.Name()))
		}
	}
	return &Fetcher{Guard: netguard.Default(), dir: dir, sem: make(chan struct{}, maxConcurrent), locks: map[string]*sync.Mutex{}}, nil
}

func (f *Fetcher) acquire(ctx context.Context) (func(), error) {
	select {
	case f.sem <- struct{}{}:
		return func() { <-f.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *Fetcher) lock(key string) func() {
	f.mu.Lock()
	l, ok := f.locks[key]
	if !ok {
		l = &sync.Mutex{}
		f.locks[key] = l
	}
	f.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Resolve asks the remote (ls-remote, no objects transferred) which commit
// ref points to. A commit-like revision that no ref advertises is returned
// as is; Checkout verifies it.
func (f *Fetcher) Resolve(ctx context.Context, repoURL string, ref Ref, auth Auth) (_ string, err error) {
	defer func() { err = redactErr(err) }()
	if err := f.checkURL(repoURL); err != nil {
		return "", err
	}
	method, err := auth.method(repoURL)
	if err != nil {
		return "", err
	}
	release, err := f.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	rem := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{repoURL}})
	refs, err := rem.ListContext(netguard.NewContext(ctx, f.Guard), &git.ListOptions{
		Auth:            method,
		CABundle:        auth.CABundle,
		InsecureSkipTLS: auth.InsecureSkipTLSVerify,
		PeelingOption:   git.AppendPeeled,
		ProxyOptions:    proxyOptions(repoURL, f.Guard),
	})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) || (err == nil && len(refs) == 0) {
		return "", &Error{Reason: fleetv1.BranchNotFoundReason, Err: fmt.Errorf("repository %s is empty: push a commit to %s", repoURL, ref.branch())}
	}
	if err != nil {
		return "", classify(repoURL, err)
	}
	byName := map[string]string{}
	for _, r := range refs {
		if r.Type() == plumbing.HashReference {
			byName[r.Name().String()] = r.Hash().String()
		}
	}
	if ref.Revision == "" {
		if h, ok := byName["refs/heads/"+ref.branch()]; ok {
			return h, nil
		}
		return "", &Error{Reason: fleetv1.BranchNotFoundReason, Err: fmt.Errorf("branch %q does not exist in %s: push it or set spec.branch to one of: %s", ref.branch(), repoURL, strings.Join(branches(byName), ", "))}
	}
	rev := ref.Revision
	for _, name := range []string{"refs/tags/" + rev + "^{}", "refs/tags/" + rev, "refs/heads/" + rev, rev} {
		if h, ok := byName[name]; ok {
			return h, nil
		}
	}
	if hexRevision.MatchString(rev) {
		for _, h := range byName {
			if strings.HasPrefix(h, strings.ToLower(rev)) {
				return h, nil
			}
		}
		return strings.ToLower(rev), nil
	}
	return "", &Error{Reason: fleetv1.RevisionNotFoundReason, Err: fmt.Errorf("revision %q is neither a tag, a branch nor a commit of %s: fix spec.revision", rev, repoURL)}
}

func branches(byName map[string]string) []string {
	var out []string
	for name := range byName {
		if b, ok := strings.CutPrefix(name, "refs/heads/"); ok {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return []string{"(none)"}
	}
	return out
}

// Checkout makes sure commit (as returned by Resolve for ref) is in the
// cache, fetching shallowly when it is not, and writes its files to a new
// directory. It returns the directory (remove it with os.RemoveAll when
// done) and the full commit hash.
func (f *Fetcher) Checkout(ctx context.Context, repoURL string, ref Ref, commit string, auth Auth) (_ string, _ string, err error) {
	defer func() { err = redactErr(err) }()
	if err := f.checkURL(repoURL); err != nil {
		return "", "", err
	}
	method, err := auth.method(repoURL)
	if err != nil {
		return "", "", err
	}
	full := ref.Revision != "" && hexRevision.MatchString(ref.Revision)
	key := cacheKey(repoURL, auth, full)
	unlock := f.lock(key)
	defer unlock()
	release, err := f.acquire(ctx)
	if err != nil {
		return "", "", err
	}
	defer release()

	path := filepath.Join(f.dir, "repos", key)
	repo, hash, err := f.fetch(ctx, path, repoURL, ref, commit, method, auth, full)
	if err != nil && ReasonOf(err) == "" && ctx.Err() == nil {
		// A cache that go-git cannot update (interrupted fetch, shallow
		// boundary trouble) is only a cache: start over once.
		ctrl.LoggerFrom(ctx).Info("Re-cloning git cache", "repo", RedactURL(repoURL), "error", RedactURLs(err.Error()))
		if rmErr := os.RemoveAll(path); rmErr != nil {
			return "", "", fmt.Errorf("removing git cache %s: %w", path, rmErr)
		}
		repo, hash, err = f.fetch(ctx, path, repoURL, ref, commit, method, auth, full)
	}
	if err != nil {
		return "", "", err
	}
	dir, err := os.MkdirTemp(filepath.Join(f.dir, "checkouts"), "c-")
	if err != nil {
		return "", "", fmt.Errorf("creating checkout directory: %w", err)
	}
	if err := writeCommit(repo, hash, dir); err != nil {
		_ = os.RemoveAll(dir)
		return "", "", err
	}
	return dir, hash.String(), nil
}

// cacheKey names a repository's cache directory. Tenants and credentials
// never share one: what one tenant fetched with its credentials must not be
// served to another tenant (or to a GitRepo without those credentials), and
// the name must not be guessable by someone who does not hold them.
func cacheKey(repoURL string, auth Auth, full bool) string {
	h := sha256.New()
	for _, part := range []string{repoURL, auth.Tenant, auth.identity()} {
		fmt.Fprintf(h, "%d:%s", len(part), part)
	}
	key := hex.EncodeToString(h.Sum(nil)[:16])
	if full {
		key += "-full"
	}
	return key
}

func (f *Fetcher) fetch(ctx context.Context, path, repoURL string, ref Ref, commit string, method transport.AuthMethod, auth Auth, full bool) (*git.Repository, plumbing.Hash, error) {
	repo, err := git.PlainOpen(path)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.PlainInit(path, true)
		if err == nil {
			_, err = repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{repoURL}})
		}
	}
	if err != nil {
		return nil, plumbing.ZeroHash, fmt.Errorf("opening git cache %s: %w", path, err)
	}
	if h, err := repo.ResolveRevision(plumbing.Revision(commit)); err == nil {
		if _, err := repo.CommitObject(*h); err == nil {
			return repo, *h, nil
		}
	}
	opts := &git.FetchOptions{
		RemoteName:      "origin",
		Auth:            method,
		CABundle:        auth.CABundle,
		InsecureSkipTLS: auth.InsecureSkipTLSVerify,
		ProxyOptions:    proxyOptions(repoURL, f.Guard),
		Force:           true,
		Tags:            git.NoTags,
	}
	switch {
	case full:
		opts.RefSpecs = []config.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}
	case ref.Revision != "":
		opts.Depth = 1
		opts.RefSpecs = []config.RefSpec{config.RefSpec("+refs/tags/" + ref.Revision + ":refs/tags/" + ref.Revision)}
	default:
		opts.Depth = 1
		b := ref.branch()
		opts.RefSpecs = []config.RefSpec{config.RefSpec("+refs/heads/" + b + ":refs/heads/" + b)}
	}
	ctx = netguard.NewContext(ctx, f.Guard)
	err = repo.FetchContext(ctx, opts)
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		if ref.Revision != "" && !full && strings.Contains(err.Error(), "couldn't find remote ref") {
			// The revision is a branch, not a tag.
			b := ref.Revision
			opts.RefSpecs = []config.RefSpec{config.RefSpec("+refs/heads/" + b + ":refs/heads/" + b)}
			err = repo.FetchContext(ctx, opts)
		}
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			if strings.Contains(err.Error(), "couldn't find remote ref") {
				return nil, plumbing.ZeroHash, &Error{Reason: fleetv1.BranchNotFoundReason, Err: fmt.Errorf("%s no longer exists in %s: %v", ref, repoURL, err)}
			}
			if c := classify(repoURL, err); ReasonOf(c) == fleetv1.AuthenticationFailedReason || netguard.IsRefused(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil, plumbing.ZeroHash, c
			}
			return nil, plumbing.ZeroHash, fmt.Errorf("fetching %s from %s: %w", ref, repoURL, err)
		}
	}
	h, err := repo.ResolveRevision(plumbing.Revision(commit))
	if err != nil {
		if full {
			return nil, plumbing.ZeroHash, &Error{Reason: fleetv1.RevisionNotFoundReason, Err: fmt.Errorf("commit %s is not in %s: fix spec.revision", commit, repoURL)}
		}
		return nil, plumbing.ZeroHash, fmt.Errorf("commit %s not found after fetching %s from %s (the branch moved; retrying)", commit, ref, repoURL)
	}
	if _, err := repo.CommitObject(*h); err != nil {
		return nil, plumbing.ZeroHash, fmt.Errorf("reading commit %s of %s: %w", h, repoURL, err)
	}
	return repo, *h, nil
}

// checkURL refuses local repositories unless the manager allows them, and
// always refuses the fetcher's own cache, which holds every tenant's
// fetched repositories.
func (f *Fetcher) checkURL(repoURL string) error {
	if !IsLocal(repoURL) {
		return checkScheme(repoURL)
	}
	if !f.AllowLocal {
		return &Error{Reason: fleetv1.LocalRepositoryNotAllowedReason, Err: fmt.Errorf("spec.repo %q is a local path or file:// URL, which would let a GitRepo read any repository on the manager's host: use an https:// or ssh URL (an administrator can allow local repositories with `edgefleet server --%s`)", RedactURL(repoURL), AllowLocalFlag)}
	}
	if insideDir(localPath(repoURL), f.dir) {
		return &Error{Reason: fleetv1.LocalRepositoryNotAllowedReason, Err: fmt.Errorf("spec.repo %q is inside the manager's git cache, which holds other GitRepos' repositories: use the repository's own URL", RedactURL(repoURL))}
	}
	return nil
}

// insideDir tells whether p is dir or below it, following symbolic links
// as the kernel will when go-git opens p.
func insideDir(p, dir string) bool {
	if p == "" {
		return false
	}
	resolve := func(s string) string {
		s = filepath.Clean(s)
		if r, err := filepath.EvalSymlinks(s); err == nil {
			return r
		}
		return s
	}
	for _, cand := range []string{filepath.Clean(p), resolve(p)} {
		for _, d := range []string{filepath.Clean(dir), resolve(dir)} {
			if rel, err := filepath.Rel(d, cand); err == nil && (rel == "." || filepath.IsLocal(rel)) {
				return true
			}
		}
	}
	return false
}
