// Package machineregistration keeps each MachineRegistration's token in a
// Secret owned by the registration and publishes its hash, Secret and
// expiry in status. The token format and the registration endpoint live in
// internal/machineregistration.
package machineregistration

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
)

// Reconciler keeps each MachineRegistration's token in a Secret owned by the
// registration, issues a new one when spec.token.rotation changes, and
// publishes the token's hash, Secret and expiry in status.
type Reconciler struct {
	Client      client.Client
	ExternalURL *url.URL
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
	// Events records condition changes; SetupWithManager uses the
	// manager's recorder when nil.
	Events events.EventRecorder
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder("edgefleet-machineregistration")
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("machineregistration").
		For(&machinesv1.MachineRegistration{}).
		Owns(&corev1.Secret{}).
		Complete(r)
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	mr := &machinesv1.MachineRegistration{}
	if err := r.Client.Get(ctx, req.NamespacedName, mr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mr.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	s, err := r.ensureToken(ctx, mr)
	if apierrors.IsConflict(err) {
		// The cache was behind the Secret (another reconcile rotated it):
		// read again rather than report a failure.
		return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, nil
	}
	if err != nil {
		before := mr.DeepCopy()
		msg := fmt.Sprintf("cannot maintain the registration token Secret %s: %v", machineregistration.TokenSecretName(mr.Name), err)
		conditions.Set(&mr.Status.Conditions, conditions.Ready, metav1.ConditionFalse, machinesv1.RBACCreationFailedReason, msg, mr.Generation)
		if perr := conditions.PatchStatus(ctx, r.Client, before, mr, nil, err, conditions.RecordTo(r.Events)); perr != nil {
			return ctrl.Result{}, perr
		}
		return ctrl.Result{}, errors.New(msg)
	}
	before := mr.DeepCopy()
	// Times as the API stores them (whole seconds), so an unchanged status
	// compares equal and is not written again.
	issued := machineregistration.TokenIssuedAt(s).Truncate(time.Second)
	mr.Status.TokenSecretName = s.Name
	mr.Status.RegistrationEndpoint = machineregistration.RegistrationURL(r.ExternalURL, "")
	mr.Status.TokenHash = machineregistration.TokenHash(string(s.Data[machineregistration.TokenSecretKey]))
	mr.Status.TokenIssuedAt = &metav1.Time{Time: issued}
	mr.Status.TokenRotation = s.Annotations[machineregistration.AnnotationTokenRotation]
	mr.Status.TokenExpiresAt = nil
	// The policy in force is the normalised one (Elemental's
	// config.elemental.registration counts too).
	mr.Status.EffectiveAuth = nil
	if cfg, nerr := mr.Spec.Config.Normalized(); nerr == nil {
		mr.Status.EffectiveAuth = machineregistration.AllowedMethods(cfg.Registration)
	}
	var requeue time.Duration
	status, reason := metav1.ConditionTrue, machinesv1.RegistrationEndpointReadyReason
	msg := fmt.Sprintf("machines register at the URL in Secret %s (key %s)", s.Name, machineregistration.URLSecretKey)
	if exp := machineregistration.TokenExpiresAt(mr, s); exp != nil {
		mr.Status.TokenExpiresAt = &metav1.Time{Time: exp.Truncate(time.Second)}
		if left := exp.Sub(r.now()); left > 0 {
			requeue = left + time.Second
			msg += fmt.Sprintf("; the token admits new machines until %s", exp.UTC().Format(time.RFC3339))
		} else {
			status, reason = metav1.ConditionFalse, machinesv1.TokenExpiredReason
			msg = fmt.Sprintf("the registration token expired at %s (spec.token.ttl): new machines are refused; set spec.token.rotation to a new value to issue a new token", exp.UTC().Format(time.RFC3339))
		}
	}
	if _, nerr := mr.Spec.Config.Normalized(); nerr != nil {
		// Machines are refused (InvalidRegistration) until the spec is fixed.
		conditions.MarkStalled(&mr.Status.Conditions, machinesv1.InvalidSpecReason, nerr.Error()+"; machines are refused until then", mr.Generation)
	} else {
		conditions.Set(&mr.Status.Conditions, conditions.Ready, status, reason, msg, mr.Generation)
		meta.RemoveStatusCondition(&mr.Status.Conditions, conditions.Stalled)
	}
	err = conditions.PatchStatus(ctx, r.Client, before, mr, &mr.Status.ObservedGeneration, nil, conditions.RecordTo(r.Events))
	if apierrors.IsConflict(err) {
		// The cache was behind the registration (the Secret's event came
		// first): read again rather than report a failure.
		return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, nil
	}
	return ctrl.Result{RequeueAfter: requeue}, err
}

// ensureToken returns the registration's token Secret, creating it, or
// issuing a new token when spec.token.rotation asks for one. The Secret must
// be the registration's own: a Secret of that name made by anyone else is
// never used, so nobody can plant a token they know.
func (r *Reconciler) ensureToken(ctx context.Context, mr *machinesv1.MachineRegistration) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: mr.Namespace, Name: machineregistration.TokenSecretName(mr.Name)}
	s := &corev1.Secret{}
	err := r.Client.Get(ctx, key, s)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if apierrors.IsNotFound(err) {
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}, Type: machineregistration.TokenSecretType}
		if err := controllerutil.SetControllerReference(mr, s, r.Client.Scheme()); err != nil {
			return nil, err
		}
		if err := machineregistration.IssueToken(mr, s, r.ExternalURL, r.now()); err != nil {
			return nil, err
		}
		return s, r.Client.Create(ctx, s)
	}
	if !metav1.IsControlledBy(s, mr) {
		return nil, fmt.Errorf("Secret %s exists but is not this registration's token (delete it to let the manager create one)", key.Name)
	}
	wantURL := ""
	switch {
	case len(s.Data[machineregistration.TokenSecretKey]) < 32 || s.Annotations[machineregistration.AnnotationTokenRotation] != mr.Spec.Token.Rotation:
		if err := machineregistration.IssueToken(mr, s, r.ExternalURL, r.now()); err != nil {
			return nil, err
		}
	default:
		wantURL = machineregistration.RegistrationURL(r.ExternalURL, string(s.Data[machineregistration.TokenSecretKey]))
		if string(s.Data[machineregistration.URLSecretKey]) == wantURL {
			return s, nil
		}
		// A token from before the url key, or a changed external URL.
		s.Data[machineregistration.URLSecretKey] = []byte(wantURL)
	}
	// Update, not patch: the resourceVersion makes two reconciles racing on
	// a stale cache fail instead of issuing two tokens.
	return s, r.Client.Update(ctx, s)
}
