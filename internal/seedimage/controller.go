package seedimage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// Finalizer removes a SeedImage's file when it is deleted.
const Finalizer = "machines.edgefleet.io/seedimage-files"

// Files on config-only media, and the names images are downloaded as.
const (
	CloudConfigFile = "cloud-config.yaml"
	ImageFile       = "seed.iso"
	RawImageFile    = "seed.img"
)

// imageFile is the download name of an image of kind (KindISO or KindRaw).
func imageFile(kind string) string {
	if kind == KindRaw {
		return RawImageFile
	}
	return ImageFile
}

// fileExts are the extensions an image is stored under in Dir
// (<token>.<ext>, with <token>.<ext>.sha256 next to it).
var fileExts = map[string]string{ImageFile: "iso", RawImageFile: "img"}

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
	Sources Sources
	// Now is the clock (tests).
	Now func() time.Time
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
	log := ctrl.LoggerFrom(ctx)
	r.removeFiles(si)
	files, err := r.mediaFiles(ctx, si)
	if errors.Is(err, errNotReady) {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, r.setStatus(ctx, si, machinesv1.SeedImagePending, metav1.ConditionFalse, machinesv1.ProgressingReason, err.Error())
	}
	var invalid invalidSpecError
	if errors.As(err, &invalid) {
		return ctrl.Result{}, r.setStatus(ctx, si, machinesv1.SeedImageFailed, metav1.ConditionFalse, machinesv1.InvalidSpecReason, err.Error())
	}
	if err != nil {
		return ctrl.Result{}, r.setStatus(ctx, si, machinesv1.SeedImageFailed, metav1.ConditionFalse, machinesv1.BuildFailedReason, err.Error())
	}
	if err := r.setStatus(ctx, si, machinesv1.SeedImageBuilding, metav1.ConditionFalse, machinesv1.BuildOngoingReason, "building the image"); err != nil {
		return ctrl.Result{}, err
	}
	token := randomToken()
	started := time.Now()
	kind := string(si.Spec.Type)
	file := imageFile(kind)
	stored := filepath.Join(r.Dir, token+"."+fileExts[file])
	buildCtx, cancel := context.WithTimeout(ctx, maxBuildTime)
	sum, err := Build(buildCtx, Input{Files: files, Kind: kind, BaseImage: si.Spec.BaseImage, BaseImageSHA256: si.Spec.BaseImageSHA256, Sources: r.Sources}, stored)
	cancel()
	if err != nil {
		return ctrl.Result{}, r.setStatus(ctx, si, machinesv1.SeedImageFailed, metav1.ConditionFalse, machinesv1.BuildFailedReason, err.Error())
	}
	if err := os.WriteFile(stored+".sha256", []byte(sum+"  "+file+"\n"), 0o600); err != nil {
		return ctrl.Result{}, err
	}
	log.Info("Built seed image", "seedImage", si.Name, "type", kind, "took", time.Since(started).Round(time.Millisecond).String())
	before := si.DeepCopy()
	si.Status.DownloadURL = r.url(token, file)
	si.Status.ChecksumURL = r.url(token, file+".sha256")
	si.Status.Checksum = sum
	si.Status.ExpiresAt = nil
	minutes := int32(machinesv1.DefaultSeedImageCleanupAfterMinutes)
	if si.Spec.CleanupAfterMinutes != nil {
		minutes = *si.Spec.CleanupAfterMinutes
	}
	if minutes > 0 {
		si.Status.ExpiresAt = &metav1.Time{Time: r.Now().Add(time.Duration(minutes) * time.Minute)}
	}
	r.conditions(si, machinesv1.SeedImageReady, metav1.ConditionTrue, machinesv1.BuildSucceededReason, "download the image from status.downloadURL")
	if err := r.Client.Status().Patch(ctx, si, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, err
	}
	if si.Spec.RetriggerBuild {
		spec := si.DeepCopy()
		si.Spec.RetriggerBuild = false
		if err := r.Client.Patch(ctx, si, client.MergeFrom(spec)); err != nil {
			return ctrl.Result{}, err
		}
		// Resetting retriggerBuild is not a change to build again for.
		st := si.DeepCopy()
		r.conditions(si, machinesv1.SeedImageReady, metav1.ConditionTrue, machinesv1.BuildSucceededReason, "download the image from status.downloadURL")
		if err := r.Client.Status().Patch(ctx, si, client.MergeFrom(st)); err != nil {
			return ctrl.Result{}, err
		}
	}
	if si.Status.ExpiresAt != nil {
		return ctrl.Result{RequeueAfter: time.Duration(minutes)*time.Minute + time.Second}, nil
	}
	return ctrl.Result{}, nil
}

var errNotReady = errors.New("waiting for the MachineRegistration and its registration token Secret")

// invalidSpecError is a spec that cannot be built as written.
type invalidSpecError struct{ msg string }

func (e invalidSpecError) Error() string { return e.msg }

// mediaFiles are the node config (registration URL, CA, auth policy) and the
// SeedImage's cloud-config.
func (r *Reconciler) mediaFiles(ctx context.Context, si *machinesv1.SeedImage) (map[string][]byte, error) {
	ref := si.Spec.RegistrationRef
	ns := si.Namespace
	// Namespaces are tenants and the media carries the registration's URL,
	// which is its credential: a SeedImage may only use a registration of
	// its own namespace. Refused before any read, so the message says
	// nothing about the other namespace.
	if ref.Namespace != "" && ref.Namespace != si.Namespace {
		return nil, invalidSpecError{fmt.Sprintf("spec.registrationRef.namespace %q is not the SeedImage's namespace %q: a SeedImage can only use a MachineRegistration in its own namespace; leave registrationRef.namespace empty and create the SeedImage in the registration's namespace", ref.Namespace, si.Namespace)}
	}
	mr := &machinesv1.MachineRegistration{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, mr); err != nil {
		return nil, fmt.Errorf("%w: MachineRegistration %s/%s: %v", errNotReady, ns, ref.Name, err)
	}
	// The URL carries the registration token, which lives in the
	// registration's Secret only.
	regURL, err := machineregistration.RegistrationURLFromSecret(ctx, r.Client, mr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotReady, err)
	}
	files, err := NodeConfigFiles(mr, regURL, r.CACertPEM)
	if err != nil {
		return nil, err
	}
	if cc := si.Spec.CloudConfig; cc != nil && len(cc.Raw) > 0 {
		y, err := yaml.JSONToYAML(cc.Raw)
		if err != nil {
			return nil, fmt.Errorf("spec.cloud-config: %w", err)
		}
		files[CloudConfigFile] = append([]byte("#cloud-config\n"), y...)
	}
	return files, nil
}

// NodeConfigFiles is the edgefleet-node config for machines of mr, which
// register at regURL.
func NodeConfigFiles(mr *machinesv1.MachineRegistration, regURL string, caPEM []byte) (map[string][]byte, error) {
	reg := machinereg.NodeRegistration{URL: regURL, CACert: string(caPEM)}
	if rc := mr.Spec.Config.Registration; rc != nil {
		reg.Auth = string(rc.Auth)
		for _, f := range rc.Fallback {
			reg.Fallback = append(reg.Fallback, string(f))
		}
		reg.EmulateTPM, reg.EmulatedTPMSeed, reg.NoSMBIOS = rc.EmulateTPM, rc.EmulatedTPMSeed, rc.NoSMBIOS
	}
	data, err := yaml.Marshal(&machinereg.NodeConfig{Registration: reg})
	if err != nil {
		return nil, err
	}
	return map[string][]byte{machinereg.SeedConfigFile: data}, nil
}

func (r *Reconciler) expire(ctx context.Context, si *machinesv1.SeedImage) error {
	r.removeFiles(si)
	before := si.DeepCopy()
	si.Status.DownloadURL, si.Status.ChecksumURL = "", ""
	r.conditions(si, machinesv1.SeedImageExpired, metav1.ConditionFalse, machinesv1.ImageExpiredReason, "the image was removed after cleanupAfterMinutes; set spec.retriggerBuild to true to build it again")
	return r.Client.Status().Patch(ctx, si, client.MergeFrom(before))
}

func (r *Reconciler) setStatus(ctx context.Context, si *machinesv1.SeedImage, state machinesv1.SeedImageState, status metav1.ConditionStatus, reason, msg string) error {
	before := si.DeepCopy()
	if state != machinesv1.SeedImageReady {
		si.Status.DownloadURL, si.Status.ChecksumURL, si.Status.Checksum, si.Status.ExpiresAt = "", "", "", nil
	}
	r.conditions(si, state, status, reason, msg)
	return r.Client.Status().Patch(ctx, si, client.MergeFrom(before))
}

func (r *Reconciler) conditions(si *machinesv1.SeedImage, state machinesv1.SeedImageState, status metav1.ConditionStatus, reason, msg string) {
	si.Status.State = state
	si.Status.ObservedGeneration = si.Generation
	meta.SetStatusCondition(&si.Status.Conditions, metav1.Condition{Type: machinesv1.ReadyCondition, Status: status, Reason: reason, Message: msg, ObservedGeneration: si.Generation})
	if state == machinesv1.SeedImageBuilding || state == machinesv1.SeedImagePending {
		meta.SetStatusCondition(&si.Status.Conditions, metav1.Condition{Type: machinesv1.ReconcilingCondition, Status: metav1.ConditionTrue, Reason: reason, Message: msg, ObservedGeneration: si.Generation})
	} else {
		meta.RemoveStatusCondition(&si.Status.Conditions, machinesv1.ReconcilingCondition)
	}
	if state == machinesv1.SeedImageFailed {
		meta.SetStatusCondition(&si.Status.Conditions, metav1.Condition{Type: machinesv1.StalledCondition, Status: metav1.ConditionTrue, Reason: reason, Message: msg, ObservedGeneration: si.Generation})
	} else {
		meta.RemoveStatusCondition(&si.Status.Conditions, machinesv1.StalledCondition)
	}
}

func (r *Reconciler) url(token, file string) string {
	u := *r.ExternalURL
	u.Path = DownloadPathPrefix + token + "/" + file
	return u.String()
}

// storedFile is the path of the image named by the status URL ("" when
// none).
func (r *Reconciler) storedFile(si *machinesv1.SeedImage) string {
	rest := si.Status.DownloadURL
	i := strings.Index(rest, DownloadPathPrefix)
	if i < 0 {
		return ""
	}
	tok, file, _ := strings.Cut(rest[i+len(DownloadPathPrefix):], "/")
	ext, ok := fileExts[file]
	if !validToken(tok) || !ok {
		return ""
	}
	return filepath.Join(r.Dir, tok+"."+ext)
}

func (r *Reconciler) fileExists(si *machinesv1.SeedImage) bool {
	p := r.storedFile(si)
	if p == "" {
		return false
	}
	_, err := os.Stat(p)
	return err == nil
}

func (r *Reconciler) removeFiles(si *machinesv1.SeedImage) {
	if p := r.storedFile(si); p != "" {
		_ = os.Remove(p)
		_ = os.Remove(p + ".sha256")
	}
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func validToken(s string) bool {
	if len(s) != 48 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
