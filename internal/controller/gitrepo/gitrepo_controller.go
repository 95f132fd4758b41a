// Package gitrepo turns GitRepos into Bundles: it follows a branch or a
// revision of a git repository (fetched inside the manager by
// internal/gitops, by polling or when the webhook sets
// status.webhookCommit), reads every path the way `edgefleet apply` does and
// writes, updates and prunes the repository's Bundles with
// internal/bundlewriter. It also rolls the Bundles' deployments up into the
// GitRepo's status.
//
// A failure (credentials, missing branch or path, a bad fleet.yaml) leaves
// the Bundles it could not produce as they were, sets a condition naming the
// problem and is retried with exponential backoff; polling for new commits
// goes on meanwhile, except while the repository itself cannot be reached.
package gitrepo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlereader"
	"github.com/edgefleet/edgefleet/internal/controller/internal/finalizer"
	"github.com/edgefleet/edgefleet/internal/controller/internal/keyed"
	"github.com/edgefleet/edgefleet/internal/gitops"
	"github.com/edgefleet/edgefleet/internal/netguard"
)

// Finalizer makes the controller delete a GitRepo's Bundles before the
// GitRepo goes away (their deployed resources stay when keepResources).
const Finalizer = "fleet.edgefleet.io/gitrepo"

// SyncRequestedAnnotation forces an immediate sync whenever its value
// changes (e.g. a timestamp), like Flux's reconcile.fluxcd.io/requestedAt:
// useful after fixing credentials, which is not a change of the GitRepo.
const SyncRequestedAnnotation = "fleet.edgefleet.io/sync-requested-at"

// Backoff bounds for retrying a failed sync.
const (
	MinBackoff = time.Second
	MaxBackoff = 5 * time.Minute
)

// syncTimeout bounds one fetch + render + write.
const syncTimeout = 5 * time.Minute

// DefaultStatusBatch is how long Bundle and BundleDeployment changes are
// collected before a GitRepo's status is recomputed.
const DefaultStatusBatch = time.Second

// Reconciler syncs GitRepos.
type Reconciler struct {
	// Client reads GitRepos, Bundles and BundleDeployments from the cache.
	Client client.Client
	// Writer is uncached: it writes Bundles and Contents and reads them back
	// without waiting for the cache. Defaults to an uncached client.
	Writer client.Client
	// SecretReader reads credentials without caching every Secret of the
	// cluster; defaults to the manager's API reader.
	SecretReader client.Reader
	// WorkDir caches repositories; defaults to <user cache dir>/edgefleet/git.
	WorkDir string
	// MaxConcurrentFetches defaults to gitops.DefaultMaxConcurrent.
	MaxConcurrentFetches int
	// AllowLocalRepos lets spec.repo be a local path or file:// URL
	// (`edgefleet server --allow-local-git-repos`; tests and demos).
	AllowLocalRepos bool
	// Network is where repositories and Helm charts may be fetched from
	// (netguard.Default when nil: no loopback, link-local, unspecified or
	// multicast address; `edgefleet server --fetch-allowed-networks`).
	Network *netguard.Policy
	// StatusBatch defaults to DefaultStatusBatch.
	StatusBatch time.Duration
	// Events records condition changes; SetupWithManager uses the
	// manager's recorder when nil.
	Events events.EventRecorder

	fetcher *gitops.Fetcher
	states  keyed.Map[syncState]
}

// syncState is what the controller remembers of one GitRepo between
// reconciles; after a restart every GitRepo is synced once.
type syncState struct {
	attemptedCommit     string
	attemptedGeneration int64
	handledWebhook      string
	handledRequest      string
	lastPoll            time.Time
	// failures counts consecutive failed syncs; retryAt is when the next
	// retry is due. fetchFailed means the repository itself could not be
	// asked (no polling until retryAt).
	failures    int
	retryAt     time.Time
	fetchFailed bool
	failure     *failure
	// written maps the bundles the last sync created or changed to the
	// commit written; the cache may not show them yet, and until it does
	// the status must not report the old deployments as this commit's.
	written map[string]string
	// warnings are the fleet.yaml keys ignored at the last rendered commit
	// (FleetYAMLWarnings condition).
	warnings []bundlereader.Warning
	// policy is what the namespace's GitRepoRestrictions make of the spec
	// (defaults filled in); attemptedPolicy is the one last rendered, so
	// a changed default re-renders. restricted: the last check refused
	// the GitRepo.
	policy, attemptedPolicy string
	restricted              bool
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.SecretReader == nil {
		r.SecretReader = mgr.GetAPIReader()
	}
	if r.Writer == nil {
		c, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
		if err != nil {
			return fmt.Errorf("creating gitrepo client: %w", err)
		}
		r.Writer = c
	}
	if r.StatusBatch <= 0 {
		r.StatusBatch = DefaultStatusBatch
	}
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder("edgefleet-gitrepo")
	}
	if r.WorkDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		r.WorkDir = filepath.Join(dir, "edgefleet", "git")
	}
	f, err := gitops.NewFetcher(r.WorkDir, r.MaxConcurrentFetches)
	if err != nil {
		return err
	}
	f.AllowLocal = r.AllowLocalRepos
	f.Guard = r.network()
	r.fetcher = f

	batch := func(q workqueue.TypedRateLimitingInterface[reconcile.Request], ns, repo string) {
		if repo != "" {
			q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: repo}}, r.StatusBatch)
		}
	}
	bundleEvents := handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(_ context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			batch(q, e.Object.GetNamespace(), e.Object.GetLabels()[fleetv1.RepoNameLabel])
		},
		UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			batch(q, e.ObjectNew.GetNamespace(), e.ObjectNew.GetLabels()[fleetv1.RepoNameLabel])
		},
		DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			batch(q, e.Object.GetNamespace(), e.Object.GetLabels()[fleetv1.RepoNameLabel])
		},
	}
	deploymentEvents := handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.enqueueDeployment(ctx, q, e.Object, batch)
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.enqueueDeployment(ctx, q, e.ObjectNew, batch)
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.enqueueDeployment(ctx, q, e.Object, batch)
		},
	}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("gitrepo").
		For(&fleetv1.GitRepo{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{},
			webhookCommitChanged{},
		))).
		Watches(&fleetv1.Bundle{}, bundleEvents).
		Watches(&fleetv1.BundleDeployment{}, deploymentEvents).
		// A restriction added, changed or removed re-checks every GitRepo
		// of its namespace.
		Watches(&fleetv1.GitRepoRestriction{}, handler.EnqueueRequestsFromMapFunc(r.reposOfNamespace)).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: 4,
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](MinBackoff, MaxBackoff),
		}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("creating gitrepo controller: %w", err)
	}
	return nil
}

func (r *Reconciler) enqueueDeployment(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], o client.Object, batch func(workqueue.TypedRateLimitingInterface[reconcile.Request], string, string)) {
	bd, ok := o.(*fleetv1.BundleDeployment)
	if !ok || bd.Spec.BundleName == "" {
		return
	}
	var b fleetv1.Bundle
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: bd.Spec.BundleNamespace, Name: bd.Spec.BundleName}, &b); err != nil {
		return
	}
	batch(q, b.Namespace, b.Labels[fleetv1.RepoNameLabel])
}

func (r *Reconciler) reposOfNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list fleetv1.GitRepoList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		logf.FromContext(ctx).Error(err, "Listing GitRepos for a changed GitRepoRestriction")
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, gr := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: gr.Namespace, Name: gr.Name}})
	}
	return out
}

// webhookCommitChanged lets the webhook's status write through the
// predicates that otherwise ignore status changes.
type webhookCommitChanged struct{ predicate.Funcs }

func (webhookCommitChanged) Update(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*fleetv1.GitRepo)
	n, ok2 := e.ObjectNew.(*fleetv1.GitRepo)
	return ok1 && ok2 && o.Status.WebhookCommit != n.Status.WebhookCommit
}

// Reconcile syncs a GitRepo when its spec changed, a webhook announced a
// commit, a poll is due or a failed sync is due for a retry, and always
// recomputes its status from its Bundles.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var gr fleetv1.GitRepo
	if err := r.Client.Get(ctx, req.NamespacedName, &gr); err != nil {
		if apierrors.IsNotFound(err) {
			r.states.Forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !gr.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, &gr)
	}
	if err := finalizer.Ensure(ctx, r.Client, &gr, Finalizer); err != nil {
		return ctrl.Result{}, err
	}
	if gr.Spec.Suspend {
		// Nothing but deletion runs, as Flux's suspend; resuming is a spec
		// change, so the next reconcile syncs at once.
		return ctrl.Result{}, nil
	}

	st := r.states.Get(req.NamespacedName)
	// base is the status as last written; gr's status is what sync learns.
	base := gr.DeepCopy()
	refused, err := r.restrict(ctx, &gr, st)
	if err != nil {
		return ctrl.Result{}, err
	}
	if refused {
		// Nothing is fetched or written until the GitRepo or the
		// restrictions change (both enqueue it).
		if err := r.updateStatus(ctx, &gr, base, st); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, nil
	}
	now := time.Now()
	interval := pollingInterval(&gr)
	webhook := gr.Status.WebhookCommit != "" && gr.Status.WebhookCommit != st.handledWebhook && gr.Status.WebhookCommit != gr.Status.Commit
	pollDue := !gr.Spec.DisablePolling && !now.Before(st.lastPoll.Add(interval))
	retryDue := st.failures > 0 && !now.Before(st.retryAt)
	specChanged := gr.Generation != st.attemptedGeneration
	requested := gr.Annotations[SyncRequestedAnnotation] != st.handledRequest
	specChanged = specChanged || st.policy != st.attemptedPolicy

	if specChanged || webhook || requested || retryDue || (pollDue && !(st.failures > 0 && st.fetchFailed)) {
		sctx, cancel := context.WithTimeout(ctx, syncTimeout)
		r.sync(sctx, &gr, base, st, specChanged || webhook || requested || retryDue)
		cancel()
		st.handledWebhook = gr.Status.WebhookCommit
		st.handledRequest = gr.Annotations[SyncRequestedAnnotation]
	}

	if err := r.updateStatus(ctx, &gr, base, st); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: nextWake(&gr, st, time.Now())}, nil
}

// restrict applies the namespace's GitRepoRestrictions to gr's spec (in
// memory: defaults are not written back) and tells whether they refuse it;
// a refusal is recorded in st as a terminal failure.
func (r *Reconciler) restrict(ctx context.Context, gr *fleetv1.GitRepo, st *syncState) (bool, error) {
	var list fleetv1.GitRepoRestrictionList
	if err := r.Client.List(ctx, &list, client.InNamespace(gr.Namespace)); err != nil {
		return false, fmt.Errorf("listing GitRepoRestrictions: %w", err)
	}
	if err := authorize(list.Items, &gr.Spec); err != nil {
		logf.FromContext(ctx).Info("GitRepo refused by a GitRepoRestriction", "error", err.Error())
		st.restricted = true
		st.failure = &failure{reason: fleetv1.RestrictedReason, message: err.Error()}
		st.fetchFailed = false
		return true, nil
	}
	if st.restricted {
		// Allowed again: sync at once.
		st.restricted, st.failure = false, nil
		st.attemptedPolicy = "\x00refused"
	}
	st.policy = gr.Spec.ServiceAccount + "\x00" + gr.Spec.ClientSecretName
	return false, nil
}

// nextWake is when the next poll or retry is due; zero when neither is.
func nextWake(gr *fleetv1.GitRepo, st *syncState, now time.Time) time.Duration {
	var next time.Duration
	consider := func(at time.Time) {
		d := at.Sub(now)
		if d <= 0 {
			d = 10 * time.Millisecond
		}
		if next == 0 || d < next {
			next = d
		}
	}
	if !gr.Spec.DisablePolling && !(st.failures > 0 && st.fetchFailed) {
		consider(st.lastPoll.Add(pollingInterval(gr)))
	}
	if st.failures > 0 {
		consider(st.retryAt)
	}
	return next
}

func pollingInterval(gr *fleetv1.GitRepo) time.Duration {
	if gr.Spec.PollingInterval != nil && gr.Spec.PollingInterval.Duration > 0 {
		return gr.Spec.PollingInterval.Duration
	}
	return fleetv1.DefaultGitRepoPollingInterval
}

// backoff is the delay before retry number failures (1, 2, 4 … seconds up
// to MaxBackoff).
func backoff(failures int) time.Duration {
	d := MinBackoff
	for i := 1; i < failures && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// finalize deletes the GitRepo's Bundles, then releases the GitRepo.
func (r *Reconciler) finalize(ctx context.Context, gr *fleetv1.GitRepo) error {
	if !controllerutil.ContainsFinalizer(gr, Finalizer) {
		return nil
	}
	logf.FromContext(ctx).Info("Deleting the GitRepo's bundles", "keepResources", gr.Spec.KeepResources)
	if err := r.Writer.DeleteAllOf(ctx, &fleetv1.Bundle{}, client.InNamespace(gr.Namespace),
		client.MatchingLabels{fleetv1.RepoNameLabel: gr.Name}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the bundles of %s/%s: %w", gr.Namespace, gr.Name, err)
	}
	orig := gr.DeepCopy()
	controllerutil.RemoveFinalizer(gr, Finalizer)
	if err := r.Client.Patch(ctx, gr, client.MergeFrom(orig)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing finalizer: %w", err)
	}
	r.states.Forget(client.ObjectKeyFromObject(gr))
	return nil
}

// network is the policy for the GitRepo's repository and chart downloads.
func (r *Reconciler) network() netguard.Policy {
	if r.Network != nil {
		return *r.Network
	}
	return netguard.Default()
}
