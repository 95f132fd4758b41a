// Package helmop turns HelmOps into Bundles: it downloads the HelmOp's
// chart (Helm repository, OCI registry or archive URL) with the same reader
// and the same rules as a GitRepo's charts (internal/bundlereader: size
// limits, credentials bound to the chart's origin, digests checked), writes
// one Bundle named after the HelmOp with internal/bundlewriter, and rolls
// that bundle's deployments up into the HelmOp's status. The bundle
// controller does the rest, as for any Bundle.
//
// A version range (or no version: the latest) is resolved again every
// pollingInterval; an exact version only when the spec changes.
package helmop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
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
	sigsyaml "sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlereader"
	"github.com/edgefleet/edgefleet/internal/bundlewriter"
	"github.com/edgefleet/edgefleet/internal/controller/internal/finalizer"
	"github.com/edgefleet/edgefleet/internal/controller/internal/keyed"
	"github.com/edgefleet/edgefleet/internal/gitops"
	"github.com/edgefleet/edgefleet/internal/netguard"
)

// Finalizer makes the controller delete a HelmOp's Bundle first.
const Finalizer = "fleet.edgefleet.io/helmop"

// InsecurePlainHTTPKey in the helmSecretName Secret, "true", allows plain
// HTTP: credentials to http:// repositories, and OCI registries over HTTP.
const InsecurePlainHTTPKey = "insecurePlainHTTP"

// Retry bounds for a failed download.
const (
	MinBackoff = time.Second
	MaxBackoff = 5 * time.Minute
)

// DefaultStatusBatch is how long deployment changes are collected before a
// HelmOp's status is recomputed.
const DefaultStatusBatch = time.Second

// fetchTimeout bounds one download + write.
const fetchTimeout = 5 * time.Minute

// Reconciler syncs HelmOps.
type Reconciler struct {
	// Client reads HelmOps, Bundles and BundleDeployments from the cache.
	Client client.Client
	// Writer is uncached (Bundles and Contents); defaults to a new client.
	Writer client.Client
	// SecretReader reads helmSecretName; defaults to the API reader.
	SecretReader client.Reader
	// StatusBatch defaults to DefaultStatusBatch.
	StatusBatch time.Duration
	// Network is where charts may be downloaded from (netguard.Default when
	// nil; `edgefleet server --fetch-allowed-networks`).
	Network *netguard.Policy
	// Events records condition changes; the manager's recorder when nil.
	Events events.EventRecorder

	states keyed.Map[syncState]
}

// syncState is what the controller remembers of one HelmOp between
// reconciles; after a restart every HelmOp is fetched once.
type syncState struct {
	generation int64 // last attempted
	lastFetch  time.Time
	failures   int
	retryAt    time.Time
	failure    *failure
	// version is the chart version the last successful fetch wrote.
	version string
}

type failure struct {
	reason, message string
	retried         bool // the network: cleared by retrying
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
			return fmt.Errorf("creating helmop client: %w", err)
		}
		r.Writer = c
	}
	if r.StatusBatch <= 0 {
		r.StatusBatch = DefaultStatusBatch
	}
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder("edgefleet-helmop")
	}

	batch := func(q workqueue.TypedRateLimitingInterface[reconcile.Request], ns, name string) {
		if name != "" {
			q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}, r.StatusBatch)
		}
	}
	bundleEvents := handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(_ context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			batch(q, e.Object.GetNamespace(), e.Object.GetLabels()[fleetv1.HelmOpNameLabel])
		},
		UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			batch(q, e.ObjectNew.GetNamespace(), e.ObjectNew.GetLabels()[fleetv1.HelmOpNameLabel])
		},
		DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			batch(q, e.Object.GetNamespace(), e.Object.GetLabels()[fleetv1.HelmOpNameLabel])
		},
	}
	deployment := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], o client.Object) {
		bd, ok := o.(*fleetv1.BundleDeployment)
		if !ok || bd.Spec.BundleName == "" {
			return
		}
		var b fleetv1.Bundle
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: bd.Spec.BundleNamespace, Name: bd.Spec.BundleName}, &b); err != nil {
			return
		}
		batch(q, b.Namespace, b.Labels[fleetv1.HelmOpNameLabel])
	}
	deploymentEvents := handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			deployment(ctx, q, e.Object)
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			deployment(ctx, q, e.ObjectNew)
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			deployment(ctx, q, e.Object)
		},
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("helmop").
		For(&fleetv1.HelmOp{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&fleetv1.Bundle{}, bundleEvents).
		Watches(&fleetv1.BundleDeployment{}, deploymentEvents).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: 4,
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](MinBackoff, MaxBackoff),
		}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("creating helmop controller: %w", err)
	}
	return nil
}

// Reconcile fetches the chart when the spec changed, a poll or a retry is
// due, and always recomputes the status from the bundle's deployments.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var op fleetv1.HelmOp
	if err := r.Client.Get(ctx, req.NamespacedName, &op); err != nil {
		if apierrors.IsNotFound(err) {
			r.states.Forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !op.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, &op)
	}
	if err := finalizer.Ensure(ctx, r.Client, &op, Finalizer); err != nil {
		return ctrl.Result{}, err
	}
	st := r.states.Get(req.NamespacedName)
	base := op.DeepCopy()
	now := time.Now()
	due := op.Generation != st.generation ||
		(st.failures > 0 && !now.Before(st.retryAt)) ||
		(floating(&op) && !now.Before(st.lastFetch.Add(pollingInterval(&op))))
	if due {
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		r.fetch(fctx, &op, st)
		cancel()
	}
	if err := r.updateStatus(ctx, &op, base, st); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: nextWake(&op, st, time.Now())}, nil
}

// floating: the version can resolve to something new (a range, or the
// latest), so it is polled.
func floating(op *fleetv1.HelmOp) bool {
	if op.Spec.Helm == nil {
		return false
	}
	v := strings.TrimPrefix(op.Spec.Helm.Version, "v")
	return !exactVersion.MatchString(v)
}

var exactVersion = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

func pollingInterval(op *fleetv1.HelmOp) time.Duration {
	if op.Spec.PollingInterval != nil && op.Spec.PollingInterval.Duration > 0 {
		return op.Spec.PollingInterval.Duration
	}
	return fleetv1.DefaultHelmOpPollingInterval
}

// nextWake is when the next retry (failures the network may clear) or poll
// (floating versions, even after a failure: the version may be published
// later) is due; zero when neither is.
func nextWake(op *fleetv1.HelmOp, st *syncState, now time.Time) time.Duration {
	var next time.Duration
	consider := func(at time.Time) {
		d := max(at.Sub(now), 10*time.Millisecond)
		if next == 0 || d < next {
			next = d
		}
	}
	if st.failures > 0 && st.failure != nil && st.failure.retried {
		consider(st.retryAt)
	}
	if floating(op) {
		consider(st.lastFetch.Add(pollingInterval(op)))
	}
	return next
}

func backoff(failures int) time.Duration {
	d := MinBackoff
	for i := 1; i < failures && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// finalize deletes the HelmOp's Bundle, then releases the HelmOp.
func (r *Reconciler) finalize(ctx context.Context, op *fleetv1.HelmOp) error {
	if !controllerutil.ContainsFinalizer(op, Finalizer) {
		return nil
	}
	if err := r.Writer.DeleteAllOf(ctx, &fleetv1.Bundle{}, client.InNamespace(op.Namespace),
		client.MatchingLabels{fleetv1.HelmOpNameLabel: op.Name}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the bundle of HelmOp %s/%s: %w", op.Namespace, op.Name, err)
	}
	orig := op.DeepCopy()
	controllerutil.RemoveFinalizer(op, Finalizer)
	if err := r.Client.Patch(ctx, op, client.MergeFrom(orig)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing finalizer: %w", err)
	}
	r.states.Forget(client.ObjectKeyFromObject(op))
	return nil
}

// fetch downloads the chart into a Bundle and writes it; the outcome is
// recorded in st.
func (r *Reconciler) fetch(ctx context.Context, op *fleetv1.HelmOp, st *syncState) {
	log := logf.FromContext(ctx)
	st.generation = op.Generation
	st.lastFetch = time.Now()
	fail := func(f *failure) {
		st.failures++
		st.retryAt = time.Now().Add(backoff(st.failures))
		f.message = gitops.RedactURLs(f.message)
		st.failure = f
		log.Info("HelmOp fetch failed", "reason", f.reason, "error", f.message)
	}
	if err := validate(op); err != nil {
		fail(&failure{reason: fleetv1.InvalidSpecReason, message: err.Error()})
		return
	}
	opts, err := r.readerOptions(ctx, op)
	if err != nil {
		fail(&failure{reason: fleetv1.SecretNotFoundReason, message: err.Error(), retried: true})
		return
	}
	b, err := read(ctx, op, opts)
	if err != nil {
		fail(&failure{reason: fleetv1.ChartFetchFailedReason, message: err.Error(), retried: isNetworkError(err)})
		return
	}
	changes, err := bundlewriter.Write(ctx, r.Writer, op.Namespace, setName(op), []*bundlereader.Bundle{b}, bundlewriter.Options{})
	if err != nil {
		fail(&failure{reason: fleetv1.WriteFailedReason, message: err.Error(), retried: true})
		return
	}
	for _, ch := range changes {
		if ch.Action != bundlewriter.Unchanged {
			log.Info("Wrote Bundle", "action", ch.Action, "version", b.Bundle.Spec.Helm.Version)
		}
	}
	st.failures, st.failure = 0, nil
	st.version = b.Bundle.Spec.Helm.Version
}

// setName is the HelmOp's bundle set (bundlewriter prunes by it): prefixed,
// so a GitRepo of the same name in the namespace is another set.
func setName(op *fleetv1.HelmOp) string {
	return bundlereader.SafeName("helmop-" + op.Name)
}

// validate refuses what cannot be a chart source of a HelmOp: it has no
// directory, so only remote charts make sense.
func validate(op *fleetv1.HelmOp) error {
	if errs := validation.IsValidLabelValue(op.Name); len(errs) > 0 {
		// It labels the Bundle (fleet.edgefleet.io/helmop-name).
		return fmt.Errorf("the HelmOp's name %q must be a valid label value (at most 63 characters): %s", op.Name, strings.Join(errs, "; "))
	}
	h := op.Spec.Helm
	if h == nil || h.Chart == "" {
		return errors.New("spec.helm.chart is required: a chart name with spec.helm.repo, an oci:// reference or an https:// archive URL")
	}
	remote := h.Repo != "" || strings.HasPrefix(h.Chart, "oci://") || strings.HasPrefix(h.Chart, "https://") || strings.HasPrefix(h.Chart, "http://")
	if !remote {
		return fmt.Errorf("spec.helm.chart %q: a HelmOp has no files of its own; set spec.helm.repo to the chart's Helm repository, or use an oci:// reference or an https:// archive URL", h.Chart)
	}
	if len(h.ValuesFiles) > 0 {
		return errors.New("spec.helm.valuesFiles: a HelmOp has no files of its own; put the values in spec.helm.values or spec.helm.valuesFrom")
	}
	if op.Spec.Kustomize != nil || op.Spec.YAML != nil {
		return errors.New("spec.kustomize and spec.yaml need files a HelmOp does not have: remove them")
	}
	return nil
}

// readerOptions are the reader's settings for the HelmOp's chart source:
// helmSecretName's credentials (bound to the chart's origin), CAs and
// plain-HTTP permission, and the HelmOp's TLS setting.
func (r *Reconciler) readerOptions(ctx context.Context, op *fleetv1.HelmOp) (bundlereader.Options, error) {
	labels := map[string]string{}
	for k, v := range op.Spec.Labels {
		if !reserved(k) {
			labels[k] = v
		}
	}
	labels[fleetv1.HelmOpNameLabel] = op.Name
	opts := bundlereader.Options{Name: setName(op), Namespace: op.Namespace, Labels: labels, Paused: op.Spec.Paused}
	var creds bundlereader.HelmCredentials
	var caPEM []byte
	if name := op.Spec.HelmSecretName; name != "" {
		var s corev1.Secret
		if err := r.SecretReader.Get(ctx, client.ObjectKey{Namespace: op.Namespace, Name: name}, &s); err != nil {
			if apierrors.IsNotFound(err) {
				return opts, fmt.Errorf("helmSecretName: Secret %s/%s does not exist: create it or fix spec.helmSecretName", op.Namespace, name)
			}
			return opts, fmt.Errorf("reading Secret %s/%s: %w", op.Namespace, name, err)
		}
		creds.Username, creds.Password = string(s.Data[corev1.BasicAuthUsernameKey]), string(s.Data[corev1.BasicAuthPasswordKey])
		creds.AllowPlainHTTP = strings.EqualFold(strings.TrimSpace(string(s.Data[InsecurePlainHTTPKey])), "true")
		opts.RegistryPlainHTTP = creds.AllowPlainHTTP
		caPEM = s.Data["cacerts"]
	}
	network := netguard.Default()
	if r.Network != nil {
		network = *r.Network
	}
	c, err := bundlereader.HelmHTTPClient(creds, caPEM, op.Spec.InsecureSkipTLSVerify, network)
	if err != nil {
		return opts, err
	}
	opts.HTTPClient = c
	return opts, nil
}

// read renders the HelmOp as the fleet.yaml of an otherwise empty bundle
// directory and reads it with the same reader as a GitRepo: the chart (and
// any chart a target switches to) is downloaded into the bundle.
func read(ctx context.Context, op *fleetv1.HelmOp, opts bundlereader.Options) (*bundlereader.Bundle, error) {
	fy := map[string]any{}
	spec := op.Spec.DeepCopy()
	raw, err := json.Marshal(spec.BundleDeploymentOptions)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &fy); err != nil {
		return nil, err
	}
	fy["name"] = op.Name
	if spec.RolloutStrategy != nil {
		fy["rolloutStrategy"] = spec.RolloutStrategy
	}
	if len(spec.DependsOn) > 0 {
		fy["dependsOn"] = spec.DependsOn
	}
	if len(spec.Targets) > 0 {
		fy["targets"] = spec.Targets
	}
	data, err := sigsyaml.Marshal(fy)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "helmop-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "fleet.yaml"), data, 0o600); err != nil {
		return nil, err
	}
	bs, err := bundlereader.Read(ctx, opts, dir)
	if err != nil {
		return nil, &readError{msg: cleanReaderError(err.Error(), dir), err: err}
	}
	if len(bs) != 1 {
		return nil, fmt.Errorf("internal error: the HelmOp read as %d bundles", len(bs))
	}
	// Without targets the reader gives Fleet's default: the "default"
	// ClusterGroup.
	return bs[0], nil
}

// readError is the reader's error without the synthesized fleet.yaml's
// path and line; Unwrap keeps network errors recognisable.
type readError struct {
	msg string
	err error
}

func (e *readError) Error() string { return e.msg }
func (e *readError) Unwrap() error { return e.err }

// fleetYAMLPosition is the reader's "<dir>/fleet.yaml:<line>: " prefix,
// meaningless for a HelmOp.
var fleetYAMLPosition = regexp.MustCompile(`\S*fleet\.yaml(:[0-9]+)?: `)

func cleanReaderError(msg, dir string) string {
	msg = fleetYAMLPosition.ReplaceAllString(msg, "")
	return strings.ReplaceAll(msg, dir+string(filepath.Separator), "")
}

// reserved tells labels of edgefleet's own domain, which spec.labels may
// not set: they would make the Bundle pass for another GitRepo's or set's.
func reserved(key string) bool {
	prefix, _, ok := strings.Cut(key, "/")
	return ok && (prefix == fleetv1.ReservedLabelDomain || strings.HasSuffix(prefix, "."+fleetv1.ReservedLabelDomain))
}

func isNetworkError(err error) bool {
	if netguard.IsRefused(err) {
		// Refused by the manager's network policy: no retry helps until
		// its administrator changes the policy.
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)
}
