// Package seedimage builds SeedImages (installation media carrying a
// MachineRegistration's URL and the manager's CA) into the manager's data
// directory and expires them. Building and serving the media live in
// internal/seedimage.
package seedimage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/seedimage"
)

// Finalizer removes a SeedImage's file when it is deleted.
const Finalizer = "machines.edgefleet.io/seedimage-files"

// Reconciler builds SeedImages into Dir.
type Reconciler struct {
	Client client.Client
	// Reader reads SeedImages from the API server: a build takes seconds and
	// a stale cached copy would start a second one.
	Reader      client.Reader
	Dir         string
	ExternalURL *url.URL
	// CACertPEM is the manager's CA, baked into the media so machines trust
	// the registration URL.
	CACertPEM []byte
	// Sources limits where base images come from (server flags).
	Sources seedimage.Sources
	// Now is the clock (tests).
	Now func() time.Time
	// Events records condition changes; SetupWithManager uses the
	// manager's recorder when nil.
	Events events.EventRecorder
}

// maxBuildTime bounds a whole build, fetching the base image included, so
// no input can hold the controller forever.
const maxBuildTime = time.Hour

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder("edgefleet-seedimage")
	}
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return fmt.Errorf("creating the seed image directory: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).Named("seedimage").For(&machinesv1.SeedImage{}).Complete(r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	si := &machinesv1.SeedImage{}
	if err := r.Reader.Get(ctx, req.NamespacedName, si); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !si.DeletionTimestamp.IsZero() {
		r.removeFiles(si)
		if controllerutil.RemoveFinalizer(si, Finalizer) {
			return ctrl.Result{}, r.Client.Update(ctx, si)
		}
		return ctrl.Result{}, nil
	}
	if controllerutil.AddFinalizer(si, Finalizer) {
		if err := r.Client.Update(ctx, si); err != nil {
			return ctrl.Result{}, err
		}
	}
	st := si.Status
	current := st.ObservedGeneration == si.Generation
	switch {
	case current && st.State == machinesv1.SeedImageReady && st.ExpiresAt != nil && !r.Now().Before(st.ExpiresAt.Time):
		return ctrl.Result{}, r.expire(ctx, si)
	case current && st.State == machinesv1.SeedImageReady && r.fileExists(si):
		if st.ExpiresAt != nil {
			return ctrl.Result{RequeueAfter: st.ExpiresAt.Sub(r.Now()) + time.Second}, nil
		}
		return ctrl.Result{}, nil
	case current && (st.State == machinesv1.SeedImageFailed || st.State == machinesv1.SeedImageExpired) && !si.Spec.RetriggerBuild:
		return ctrl.Result{}, nil
	}
	return r.build(ctx, si)
}

func (r *Reconciler) build(ctx context.Context, si *machinesv1.SeedImage) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	r.removeFiles(si)
	files, err := seedimage.MediaFiles(ctx, r.Client, r.CACertPEM, si)
	if errors.Is(err, seedimage.ErrNotReady) {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, r.setState(ctx, si, machinesv1.SeedImagePending, machinesv1.ProgressingReason, err.Error())
	}
	var invalid seedimage.InvalidSpecError
	if errors.As(err, &invalid) {
		return ctrl.Result{}, r.setState(ctx, si, machinesv1.SeedImageFailed, machinesv1.InvalidSpecReason, err.Error())
	}
	if err != nil {
		return ctrl.Result{}, r.setState(ctx, si, machinesv1.SeedImageFailed, machinesv1.BuildFailedReason, err.Error())
	}
	if err := r.setState(ctx, si, machinesv1.SeedImageBuilding, machinesv1.BuildOngoingReason, "building the image"); err != nil {
		return ctrl.Result{}, err
	}
	token := seedimage.NewDownloadToken()
	started := time.Now()
	kind := string(si.Spec.Type)
	file := seedimage.ImageFileName(kind)
	stored := seedimage.StoredPath(r.Dir, token, file)
	buildCtx, cancel := context.WithTimeout(ctx, maxBuildTime)
	res, err := seedimage.BuildMedia(buildCtx, seedimage.Input{Files: files, Kind: kind, BaseImage: si.Spec.BaseImage, BaseImageSHA256: si.Spec.BaseImageSHA256, OSImage: si.Spec.OSImage, Sources: r.Sources}, stored)
	cancel()
	sum := res.SHA256
	var badOS seedimage.OSImageError
	if errors.As(err, &badOS) {
		return ctrl.Result{}, r.setState(ctx, si, machinesv1.SeedImageFailed, machinesv1.InvalidSpecReason, err.Error())
	}
	if err != nil {
		return ctrl.Result{}, r.setState(ctx, si, machinesv1.SeedImageFailed, machinesv1.BuildFailedReason, err.Error())
	}
	// Until the status names the new file nothing would ever remove it: on
	// any error below it goes, and the next reconcile builds again.
	discard := func(err error) (ctrl.Result, error) {
		_ = os.Remove(stored)
		_ = os.Remove(stored + ".sha256")
		return ctrl.Result{}, err
	}
	if err := os.WriteFile(stored+".sha256", []byte(sum+"  "+file+"\n"), 0o600); err != nil {
		return discard(err)
	}
	log.Info("Built seed image", "type", kind, "took", time.Since(started).Round(time.Millisecond).String())
	// retriggerBuild is reset before Ready is written, so Ready for the
	// current generation always means the request was served: a client
	// that waits for Ready never sees the flag still set.
	if si.Spec.RetriggerBuild {
		spec := si.DeepCopy()
		si.Spec.RetriggerBuild = false
		if err := r.Client.Patch(ctx, si, client.MergeFrom(spec)); err != nil {
			return discard(err)
		}
	}
	before := si.DeepCopy()
	si.Status.DownloadURL = seedimage.DownloadURL(r.ExternalURL, token, file)
	si.Status.ChecksumURL = seedimage.DownloadURL(r.ExternalURL, token, file+".sha256")
	si.Status.Checksum = sum
	si.Status.OSImageDigest = res.OSImageDigest
	si.Status.ExpiresAt = nil
	minutes := int32(machinesv1.DefaultSeedImageCleanupAfterMinutes)
	if si.Spec.CleanupAfterMinutes != nil {
		minutes = *si.Spec.CleanupAfterMinutes
	}
	if minutes > 0 {
		si.Status.ExpiresAt = &metav1.Time{Time: r.Now().Add(time.Duration(minutes) * time.Minute)}
	}
	markState(si, machinesv1.SeedImageReady, machinesv1.BuildSucceededReason, readyMessage)
	if err := conditions.PatchStatus(ctx, r.Client, before, si, &si.Status.ObservedGeneration, nil, conditions.RecordTo(r.Events)); err != nil {
		return discard(err)
	}
	if si.Status.ExpiresAt != nil {
		return ctrl.Result{RequeueAfter: time.Duration(minutes)*time.Minute + time.Second}, nil
	}
	return ctrl.Result{}, nil
}

const readyMessage = "download the image from status.downloadURL"

func (r *Reconciler) expire(ctx context.Context, si *machinesv1.SeedImage) error {
	r.removeFiles(si)
	before := si.DeepCopy()
	si.Status.DownloadURL, si.Status.ChecksumURL = "", ""
	markState(si, machinesv1.SeedImageExpired, machinesv1.ImageExpiredReason, "the image was removed after cleanupAfterMinutes; set spec.retriggerBuild to true to build it again")
	return conditions.PatchStatus(ctx, r.Client, before, si, &si.Status.ObservedGeneration, nil, conditions.RecordTo(r.Events))
}

// setState records a state other than Ready, which has no media to offer.
func (r *Reconciler) setState(ctx context.Context, si *machinesv1.SeedImage, state machinesv1.SeedImageState, reason, msg string) error {
	before := si.DeepCopy()
	si.Status.DownloadURL, si.Status.ChecksumURL, si.Status.Checksum, si.Status.ExpiresAt = "", "", "", nil
	si.Status.OSImageDigest = ""
	markState(si, state, reason, msg)
	return conditions.PatchStatus(ctx, r.Client, before, si, &si.Status.ObservedGeneration, nil, conditions.RecordTo(r.Events))
}

// markState sets status.state and the conditions it implies: Ready True
// only for Ready; Reconciling while pending or building; Stalled when the
// build failed (it is not retried until the spec changes). Every state is
// the outcome of acting on the current spec, a failed build included, so
// each status write sets observedGeneration.
func markState(si *machinesv1.SeedImage, state machinesv1.SeedImageState, reason, msg string) {
	si.Status.State = state
	conds, gen := &si.Status.Conditions, si.Generation
	switch state {
	case machinesv1.SeedImageReady:
		conditions.MarkReady(conds, reason, msg, gen)
	case machinesv1.SeedImagePending, machinesv1.SeedImageBuilding:
		conditions.Set(conds, conditions.Ready, metav1.ConditionFalse, reason, msg, gen)
		conditions.MarkReconciling(conds, reason, msg, gen)
	case machinesv1.SeedImageFailed:
		conditions.MarkStalled(conds, reason, msg, gen)
	default: // Expired: done, nothing to offer until retriggered.
		conditions.Set(conds, conditions.Ready, metav1.ConditionFalse, reason, msg, gen)
		meta.RemoveStatusCondition(conds, conditions.Reconciling)
		meta.RemoveStatusCondition(conds, conditions.Stalled)
	}
}

func (r *Reconciler) fileExists(si *machinesv1.SeedImage) bool {
	p := seedimage.StoredFile(r.Dir, si)
	if p == "" {
		return false
	}
	_, err := os.Stat(p)
	return err == nil
}

func (r *Reconciler) removeFiles(si *machinesv1.SeedImage) {
	if p := seedimage.StoredFile(r.Dir, si); p != "" {
		_ = os.Remove(p)
		_ = os.Remove(p + ".sha256")
	}
}
