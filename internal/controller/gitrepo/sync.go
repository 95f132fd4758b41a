package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlereader"
	"github.com/edgefleet/edgefleet/internal/bundlewriter"
	"github.com/edgefleet/edgefleet/internal/gitops"
	"github.com/edgefleet/edgefleet/internal/netguard"
)

// failure is why the last sync did not fully succeed.
type failure struct {
	reason  string
	message string
	// network: every cause was a download that failed on the network (a
	// chart repository down), which the retry may get past with the same
	// commit.
	network bool
}

// sync fetches the followed commit and, when it (or the spec) is new or
// force is set, renders every path and writes the Bundles. Every outcome is
// recorded in st for updateStatus.
func (r *Reconciler) sync(ctx context.Context, gr, base *fleetv1.GitRepo, st *syncState, force bool) {
	log := logf.FromContext(ctx)
	st.lastPoll = time.Now()
	fail := func(reason string, err error, fetch bool) {
		st.failures++
		st.retryAt = time.Now().Add(backoff(st.failures))
		st.fetchFailed = fetch
		// Messages quote URLs (git, chart repositories) that may carry
		// tokens; status and logs are readable by more people than the spec.
		msg := gitops.RedactURLs(err.Error())
		st.failure = &failure{reason: reason, message: msg}
		st.attemptedGeneration, st.attemptedPolicy = gr.Generation, st.policy
		log.Info("GitRepo sync failed", "reason", reason, "error", msg, "retryIn", backoff(st.failures).String())
	}

	auth, err := r.gitAuth(ctx, gr)
	if err != nil {
		fail(fleetv1.SecretNotFoundReason, err, true)
		return
	}
	ref := gitops.Ref{Branch: gr.Spec.Branch, Revision: gr.Spec.Revision}
	log.V(1).Info("Polling repository", "repo", gitops.RedactURL(gr.Spec.Repo), "ref", ref.String())
	commit, err := r.fetcher.Resolve(ctx, gr.Spec.Repo, ref, auth)
	if err != nil {
		fail(reasonOr(err, fleetv1.RepositoryUnreachableReason), err, true)
		return
	}
	upToDate := commit == st.attemptedCommit && gr.Generation == st.attemptedGeneration && st.policy == st.attemptedPolicy
	if upToDate && (st.failures == 0 || (!force && time.Now().Before(st.retryAt))) {
		if st.fetchFailed {
			// The repository answers again and nothing changed.
			st.failures, st.fetchFailed, st.failure = 0, false, nil
		}
		return
	}

	if commit != gr.Status.Commit {
		r.markUpdating(ctx, base, commit)
	}
	dir, full, err := r.fetcher.Checkout(ctx, gr.Spec.Repo, ref, commit, auth)
	if err != nil {
		fail(reasonOr(err, fleetv1.RepositoryUnreachableReason), err, gitops.ReasonOf(err) != "")
		return
	}
	defer os.RemoveAll(dir)
	st.attemptedCommit, st.attemptedGeneration, st.attemptedPolicy = commit, gr.Generation, st.policy

	httpClient, err := r.helmClient(ctx, gr)
	if err != nil {
		fail(fleetv1.SecretNotFoundReason, err, false)
		return
	}
	bundles, pathFailure := r.readPaths(ctx, gr, st, dir, full, httpClient)
	changes, err := bundlewriter.Write(ctx, r.Writer, gr.Namespace, gr.Name, bundles, bundlewriter.Options{NoPrune: pathFailure != nil})
	st.written = map[string]string{}
	for _, ch := range changes {
		switch ch.Action {
		case bundlewriter.Created, bundlewriter.Configured:
			st.written[ch.Name] = full
		}
		if ch.Action != bundlewriter.Unchanged {
			log.Info("Wrote Bundle", "Bundle", klog.KRef(gr.Namespace, ch.Name), "action", ch.Action, "commit", full)
		}
	}
	if err != nil {
		fail(fleetv1.WriteFailedReason, err, false)
		return
	}
	// Bundles at this commit are written (all of them, or all but the
	// failing paths' ones, which keep their last good version).
	gr.Status.Commit = full
	if pathFailure != nil {
		fail(pathFailure.reason, errors.New(pathFailure.message), false)
		return
	}
	st.failures, st.fetchFailed, st.failure = 0, false, nil
	gr.Status.ObservedGeneration = gr.Generation
}

func reasonOr(err error, def string) string {
	if r := gitops.ReasonOf(err); r != "" {
		return r
	}
	return def
}

// readPaths reads each of the GitRepo's paths (globs, relative to the
// repository root) into bundles. A path that matches nothing or fails to
// read is reported (every such path, in one failure) and skipped; the other
// paths' bundles are returned.
func (r *Reconciler) readPaths(ctx context.Context, gr *fleetv1.GitRepo, st *syncState, root, commit string, httpClient *http.Client) ([]*bundlereader.Bundle, *failure) {
	st.warnings = nil
	paths := gr.Spec.Paths
	if len(paths) == 0 {
		paths = []string{"."}
	}
	targets := gitTargets(gr.Spec.Targets)
	opts := bundlereader.Options{
		Name:       gr.Name,
		Namespace:  gr.Namespace,
		Labels:     map[string]string{fleetv1.RepoNameLabel: gr.Name, fleetv1.CommitLabel: commit},
		Targets:    targets,
		Paused:     gr.Spec.Paused,
		BaseDir:    root,
		HTTPClient: httpClient,
		Strict:     gr.Annotations[fleetv1.StrictFleetYAMLAnnotation] == "true",
	}
	short := commit
	if len(short) > 12 {
		short = short[:12]
	}
	var out []*bundlereader.Bundle
	seen := map[string]string{}
	var notFound, broken []string
	network := true // every broken path failed on a download
	for _, p := range paths {
		clean := filepath.Clean(filepath.FromSlash(p))
		if filepath.IsAbs(clean) || !filepath.IsLocal(clean) {
			notFound = append(notFound, fmt.Sprintf("path %q is outside the repository: paths are relative to its root", p))
			continue
		}
		matches, err := filepath.Glob(filepath.Join(root, clean))
		if err != nil {
			notFound = append(notFound, fmt.Sprintf("path %q is not a valid glob: %v", p, err))
			continue
		}
		var dirs []string
		for _, m := range matches {
			// Beneath the checkout only: a match whose link leaves it is
			// passed on for Read to name, never stat'ed on the host.
			if isDir, err := bundlereader.IsDirBeneath(root, m); isDir || err != nil {
				dirs = append(dirs, m)
			}
		}
		if len(dirs) == 0 {
			notFound = append(notFound, fmt.Sprintf("path %q matches no directory at commit %s: fix spec.paths or add the directory", p, short))
			continue
		}
		sort.Strings(dirs)
		for _, d := range dirs {
			bs, err := bundlereader.Read(ctx, opts, d)
			if err != nil {
				broken = append(broken, strings.ReplaceAll(err.Error(), root+string(filepath.Separator), ""))
				network = network && isNetworkError(err)
				continue
			}
			for _, b := range bs {
				if prev, dup := seen[b.Bundle.Name]; dup {
					if prev != b.Dir {
						broken = append(broken, fmt.Sprintf("%s and %s both make bundle %q: set a different name in one fleet.yaml", displayDir(root, prev), displayDir(root, b.Dir), b.Bundle.Name))
					}
					continue
				}
				seen[b.Bundle.Name] = b.Dir
				for _, w := range b.Warnings {
					w.File = strings.TrimPrefix(w.File, root+string(filepath.Separator))
					st.warnings = append(st.warnings, w)
				}
				customize(b.Bundle, gr)
				out = append(out, b)
			}
		}
	}
	switch {
	case len(broken) > 0:
		msg := strings.Join(broken, "; ")
		if len(notFound) > 0 {
			msg += "; " + strings.Join(notFound, "; ")
		}
		return out, &failure{reason: fleetv1.RenderErrorReason, message: msg, network: network && len(notFound) == 0}
	case len(notFound) > 0:
		return out, &failure{reason: fleetv1.PathNotFoundReason, message: strings.Join(notFound, "; ")}
	}
	return out, nil
}

// isNetworkError tells a download that failed on the network or timed out
// from a broken file.
func isNetworkError(err error) bool {
	if netguard.IsRefused(err) {
		// Refused by the manager's network policy: no retry helps until
		// its administrator changes the policy.
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)
}

func displayDir(root, dir string) string {
	if rel, err := filepath.Rel(root, dir); err == nil {
		return rel
	}
	return dir
}

// customize applies the GitRepo-wide options to one bundle.
func customize(b *fleetv1.Bundle, gr *fleetv1.GitRepo) {
	b.Spec.KeepResources = b.Spec.KeepResources || gr.Spec.KeepResources
	b.Spec.ForceSyncGeneration = gr.Spec.ForceSyncGeneration
	if gr.Spec.TargetNamespace != "" {
		b.Spec.Namespace = gr.Spec.TargetNamespace
	}
	if gr.Spec.CorrectDrift != nil && gr.Spec.CorrectDrift.Enabled {
		b.Spec.CorrectDrift = gr.Spec.CorrectDrift.DeepCopy()
	}
	if gr.Spec.ServiceAccount != "" {
		// The GitRepo's owner decides the identity, not the committer: a
		// target customization cannot pick another account either.
		b.Spec.ServiceAccount = gr.Spec.ServiceAccount
		for i := range b.Spec.Targets {
			b.Spec.Targets[i].ServiceAccount = ""
		}
	}
}

// gitTargets converts a GitRepo's targets; none means Fleet's default
// target, the ClusterGroup named "default".
func gitTargets(ts []fleetv1.GitTarget) []fleetv1.BundleTarget {
	if len(ts) == 0 {
		return []fleetv1.BundleTarget{bundlereader.DefaultTarget}
	}
	out := make([]fleetv1.BundleTarget, 0, len(ts))
	for _, t := range ts {
		out = append(out, fleetv1.BundleTarget{
			Name:                 t.Name,
			ClusterName:          t.ClusterName,
			ClusterSelector:      t.ClusterSelector,
			ClusterGroup:         t.ClusterGroup,
			ClusterGroupSelector: t.ClusterGroupSelector,
		})
	}
	return out
}

// secret reads a Secret of the GitRepo's namespace.
func (r *Reconciler) secret(ctx context.Context, gr *fleetv1.GitRepo, name, field string) (*corev1.Secret, error) {
	var s corev1.Secret
	if err := r.SecretReader.Get(ctx, client.ObjectKey{Namespace: gr.Namespace, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%s: Secret %s/%s does not exist: create it or fix spec.%s", field, gr.Namespace, name, field)
		}
		return nil, fmt.Errorf("reading Secret %s/%s: %w", gr.Namespace, name, err)
	}
	return &s, nil
}

// gitAuth builds the credentials for the repository from clientSecretName
// (username/password, or ssh-privatekey and known_hosts), caBundle and
// insecureSkipTLSVerify.
func (r *Reconciler) gitAuth(ctx context.Context, gr *fleetv1.GitRepo) (gitops.Auth, error) {
	auth := gitops.Auth{CABundle: gr.Spec.CABundle, InsecureSkipTLSVerify: gr.Spec.InsecureSkipTLSVerify, Tenant: gr.Namespace}
	if gr.Spec.ClientSecretName == "" {
		return auth, nil
	}
	s, err := r.secret(ctx, gr, gr.Spec.ClientSecretName, "clientSecretName")
	if err != nil {
		return auth, err
	}
	auth.Username = string(s.Data[corev1.BasicAuthUsernameKey])
	auth.Password = string(s.Data[corev1.BasicAuthPasswordKey])
	auth.SSHPrivateKey = s.Data[corev1.SSHAuthPrivateKey]
	auth.KnownHosts = s.Data["known_hosts"]
	if auth.Username == "" && auth.Password == "" && len(auth.SSHPrivateKey) == 0 {
		return auth, fmt.Errorf("clientSecretName: Secret %s/%s has none of the keys username/password or ssh-privatekey", gr.Namespace, gr.Spec.ClientSecretName)
	}
	return auth, nil
}

// helmClient is the HTTP client for chart downloads: basic auth from
// helmSecretName (username/password, optional cacerts and
// insecurePlainHTTP), bound to the chart repository or chart URL each
// fleet.yaml names (bundlereader.NewCredentialsTransport), and the GitRepo's
// TLS settings. nil means the default client.
func (r *Reconciler) helmClient(ctx context.Context, gr *fleetv1.GitRepo) (*http.Client, error) {
	var creds bundlereader.HelmCredentials
	caPEM := append([]byte(nil), gr.Spec.CABundle...)
	if gr.Spec.HelmSecretName != "" {
		s, err := r.secret(ctx, gr, gr.Spec.HelmSecretName, "helmSecretName")
		if err != nil {
			return nil, err
		}
		creds.Username, creds.Password = string(s.Data[corev1.BasicAuthUsernameKey]), string(s.Data[corev1.BasicAuthPasswordKey])
		creds.AllowPlainHTTP = strings.EqualFold(strings.TrimSpace(string(s.Data[HelmInsecurePlainHTTPKey])), "true")
		caPEM = append(caPEM, s.Data["cacerts"]...)
	}
	return bundlereader.HelmHTTPClient(creds, caPEM, gr.Spec.InsecureSkipTLSVerify, r.network())
}

// HelmInsecurePlainHTTPKey in the helmSecretName Secret, set to "true",
// lets its credentials go to http:// chart repositories.
const HelmInsecurePlainHTTPKey = "insecurePlainHTTP"
