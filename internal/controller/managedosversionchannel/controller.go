// Package managedosversionchannel syncs ManagedOSVersionChannels: it
// fetches the channel's JSON list of versions (from a URL, or from a file in
// an OCI channel image), validates all of it, and only then creates or
// updates the ManagedOSVersions it lists.
package managedosversionchannel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
)

// Limits on what a channel may hold: it comes from the network.
const (
	MaxChannelBytes = 4 << 20
	MaxVersions     = 1000
	defaultInterval = time.Hour
	defaultTimeout  = time.Minute
	minInterval     = 10 * time.Second
)

// Reconciler syncs channels.
type Reconciler struct {
	Client client.Client
	// Events records condition changes; SetupWithManager uses the
	// manager\'s recorder when nil.
	Events events.EventRecorder
	// HTTP fetches channel URLs; the manager passes one under its rules
	// for remote sources (seedimage.Sources.HTTPClient).
	HTTP *http.Client
	// Now is the clock (tests).
	Now func() time.Time
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr manager.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder("edgefleet-managedosversionchannel")
	}
	if r.HTTP == nil {
		return errors.New("managedosversionchannel: no HTTP client")
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	return ctrl.ControllerManagedBy(mgr).Named("managedosversionchannel").
		// Only spec changes: the status written after a failed fetch
		// (failedSynchronizationAttempts) must not start the next fetch at
		// once; RequeueAfter paces retries.
		For(&machinesv1.ManagedOSVersionChannel{}, ctrl.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&machinesv1.ManagedOSVersion{}).
		Complete(r)
}

// Entry is one version of a channel, in Elemental's channel format (a
// ManagedOSVersion without apiVersion/kind).
type Entry struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version  string `json:"version"`
		Type     string `json:"type"`
		Metadata struct {
			UpgradeImage string `json:"upgradeImage"`
			DisplayName  string `json:"displayName"`
			Created      string `json:"created"`
		} `json:"metadata"`
	} `json:"spec"`
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var ch machinesv1.ManagedOSVersionChannel
	if err := r.Client.Get(ctx, req.NamespacedName, &ch); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	before := ch.DeepCopy()
	res, err := r.sync(ctx, &ch)
	if perr := conditions.PatchStatus(ctx, r.Client, before, &ch, &ch.Status.ObservedGeneration, err, conditions.RecordTo(r.Events)); perr != nil && err == nil {
		err = perr
	}
	return res, err
}

func (r *Reconciler) sync(ctx context.Context, ch *machinesv1.ManagedOSVersionChannel) (reconcile.Result, error) {
	gen, st := ch.Generation, &ch.Status
	interval := max(ch.Spec.SyncInterval.Duration, minInterval)
	if ch.Spec.SyncInterval.Duration == 0 {
		interval = defaultInterval
	}
	if ch.Spec.Enabled != nil && !*ch.Spec.Enabled {
		conditions.MarkReady(&st.Conditions, machinesv1.SyncedReason, "disabled (spec.enabled false): not synced; synced versions stay", gen)
		return reconcile.Result{}, nil
	}
	// A sync due later waits for its time, unless the spec changed.
	if st.LastSyncedTime != nil && st.ObservedGeneration == gen {
		if due := st.LastSyncedTime.Add(interval); r.Now().Before(due) {
			return reconcile.Result{RequeueAfter: due.Sub(r.Now())}, nil
		}
	}
	entries, err := r.fetch(ctx, ch)
	var invalid *invalidError
	switch {
	case errors.As(err, &invalid):
		st.FailedSynchronizationAttempts++
		conditions.MarkStalled(&st.Conditions, machinesv1.InvalidChannelReason, fmt.Sprintf("channel %s is not a valid version list, no version of it was created or changed: %v; fix what it serves, it is fetched again in %s", source(ch), err, interval), gen)
		return reconcile.Result{RequeueAfter: interval}, nil
	case err != nil:
		st.FailedSynchronizationAttempts++
		msg := fmt.Sprintf("fetching channel %s: %v; retried in %s", source(ch), err, interval)
		conditions.Set(&st.Conditions, machinesv1.ReadyCondition, metav1.ConditionFalse, machinesv1.SyncFailedReason, msg, gen)
		conditions.MarkReconciling(&st.Conditions, machinesv1.SyncFailedReason, msg, gen)
		return reconcile.Result{RequeueAfter: interval}, nil
	}
	var foreign []string
	for _, e := range entries {
		mine, err := r.apply(ctx, ch, e)
		if err != nil {
			return reconcile.Result{}, err
		}
		if !mine {
			foreign = append(foreign, e.Metadata.Name)
		}
	}
	now := metav1.NewTime(r.Now())
	st.LastSyncedTime, st.Versions, st.FailedSynchronizationAttempts = &now, int32(len(entries)), 0
	msg := fmt.Sprintf("%d versions synced from %s", len(entries), source(ch))
	if len(foreign) > 0 {
		msg += fmt.Sprintf("; left alone because another owner has them: %v", foreign)
	}
	conditions.MarkReady(&st.Conditions, machinesv1.SyncedReason, msg, gen)
	return reconcile.Result{RequeueAfter: interval}, nil
}

type invalidError struct{ err error }

func (e *invalidError) Error() string { return e.err.Error() }

// source names where the channel is, for messages.
func source(ch *machinesv1.ManagedOSVersionChannel) string {
	if ch.Spec.Type == TypeCustom {
		return ch.Spec.Options.Image + " (" + channelPath(ch) + ")"
	}
	return ch.Spec.Options.URI
}

// The channel types.
const (
	TypeJSON   = "json"
	TypeCustom = "custom"
)

// fetch gets and validates the whole list; any invalid entry refuses all.
func (r *Reconciler) fetch(ctx context.Context, ch *machinesv1.ManagedOSVersionChannel) ([]Entry, error) {
	timeout := ch.Spec.Options.Timeout.Duration
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if ch.Spec.Type == TypeCustom {
		body, err := r.fetchImage(ctx, ch)
		if err != nil {
			return nil, err
		}
		entries, err := Parse(body)
		if err != nil {
			return nil, &invalidError{err}
		}
		return entries, nil
	}
	if ch.Spec.Options.URI == "" {
		return nil, &invalidError{errors.New("type json needs spec.options.uri")}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ch.Spec.Options.URI, nil)
	if err != nil {
		return nil, &invalidError{fmt.Errorf("spec.options.uri: %v", err)}
	}
	resp, err := r.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxChannelBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxChannelBytes {
		return nil, &invalidError{fmt.Errorf("more than %d bytes", MaxChannelBytes)}
	}
	entries, err := Parse(body)
	if err != nil {
		return nil, &invalidError{err}
	}
	return entries, nil
}

// Parse decodes and validates a json channel: a JSON array of versions.
func Parse(body []byte) ([]Entry, error) {
	var entries []Entry
	if err := json.Unmarshal(body, &entries); err != nil {
		return nil, fmt.Errorf("not a JSON list of versions: %v", err)
	}
	if len(entries) > MaxVersions {
		return nil, fmt.Errorf("%d versions, at most %d", len(entries), MaxVersions)
	}
	var errs []error
	seen := map[string]bool{}
	for i, e := range entries {
		where := fmt.Sprintf("[%d]", i)
		if msgs := validation.IsDNS1123Subdomain(e.Metadata.Name); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s.metadata.name %q: %v", where, e.Metadata.Name, msgs))
		} else if seen[e.Metadata.Name] {
			errs = append(errs, fmt.Errorf("%s.metadata.name %q appears twice", where, e.Metadata.Name))
		}
		seen[e.Metadata.Name] = true
		if e.Spec.Version == "" || len(e.Spec.Version) > 256 {
			errs = append(errs, fmt.Errorf("%s.spec.version must be 1 to 256 characters", where))
		}
		if e.Spec.Type != "" && e.Spec.Type != "container" {
			errs = append(errs, fmt.Errorf("%s.spec.type %q: only container versions can be installed by upgrade", where, e.Spec.Type))
		}
		if _, err := name.ParseReference(e.Spec.Metadata.UpgradeImage); err != nil || len(e.Spec.Metadata.UpgradeImage) > 4096 {
			errs = append(errs, fmt.Errorf("%s.spec.metadata.upgradeImage %q is not an image reference", where, e.Spec.Metadata.UpgradeImage))
		}
		if len(e.Spec.Metadata.DisplayName) > 256 || len(e.Spec.Metadata.Created) > 64 {
			errs = append(errs, fmt.Errorf("%s.spec.metadata: displayName or created too long", where))
		}
	}
	return entries, errors.Join(errs...)
}

// apply creates or updates the version e, owned by the channel; a version
// of the same name that the channel does not own is left alone.
func (r *Reconciler) apply(ctx context.Context, ch *machinesv1.ManagedOSVersionChannel, e Entry) (bool, error) {
	v := &machinesv1.ManagedOSVersion{ObjectMeta: metav1.ObjectMeta{Namespace: ch.Namespace, Name: e.Metadata.Name}}
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(v), v)
	if err == nil && !metav1.IsControlledBy(v, ch) {
		return false, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return false, err
	}
	_, err = controllerutil.CreateOrUpdate(ctx, r.Client, v, func() error {
		if v.Labels == nil {
			v.Labels = map[string]string{}
		}
		v.Labels[machinesv1.LabelChannel] = ch.Name
		v.Spec = machinesv1.ManagedOSVersionSpec{Version: e.Spec.Version, Type: "container", Metadata: machinesv1.ManagedOSVersionMetadata{
			UpgradeImage: e.Spec.Metadata.UpgradeImage, DisplayName: e.Spec.Metadata.DisplayName, Created: e.Spec.Metadata.Created,
		}}
		return controllerutil.SetControllerReference(ch, v, r.Client.Scheme())
	})
	return true, err
}
