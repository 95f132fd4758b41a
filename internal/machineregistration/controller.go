package machineregistration

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
)

// Keys of the registration token Secret <registration>-registration-token.
const (
	// TokenSecretKey holds the token.
	TokenSecretKey = "token"
	// URLSecretKey holds the full registration URL (with the token): what
	// users copy and seed media carry.
	URLSecretKey = "url"
	// TokenSecretType is the type of the token Secret.
	TokenSecretType = "machines.edgefleet.io/registration-token"
	// AnnotationTokenIssuedAt (on the token Secret) is when the token was
	// issued (RFC 3339); spec.token.ttl counts from it.
	AnnotationTokenIssuedAt = "machines.edgefleet.io/token-issued-at"
	// AnnotationTokenRotation (on the token Secret) is the
	// spec.token.rotation the token was issued for; a different value in the
	// spec issues a new token.
	AnnotationTokenRotation = "machines.edgefleet.io/token-rotation"
)

// RegisterPathPrefix is the route machines register at.
const RegisterPathPrefix = "/v1/machines/register/"

// TokenSecretName is the Secret holding a registration's token. The token
// lives only there: status carries its hash, never the token.
func TokenSecretName(registration string) string { return registration + "-registration-token" }

// TokenHash is what status.tokenHash holds and registrations are looked up
// by: it identifies a token without revealing it.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Reconciler keeps each MachineRegistration's token in a Secret owned by the
// registration, issues a new one when spec.token.rotation changes, and
// publishes the token's hash, Secret and expiry in status.
type Reconciler struct {
	Client      client.Client
	ExternalURL *url.URL
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
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
		return ctrl.Result{}, r.setReady(ctx, mr, metav1.ConditionFalse, machinesv1.RBACCreationFailedReason, fmt.Sprintf("cannot maintain the registration token Secret %s: %v", TokenSecretName(mr.Name), err))
	}
	before := mr.DeepCopy()
	issued := TokenIssuedAt(s)
	mr.Status.TokenSecretName = s.Name
	mr.Status.RegistrationEndpoint = RegistrationURL(r.ExternalURL, "")
	mr.Status.TokenHash = TokenHash(string(s.Data[TokenSecretKey]))
	mr.Status.TokenIssuedAt = &metav1.Time{Time: issued}
	mr.Status.TokenRotation = s.Annotations[AnnotationTokenRotation]
	mr.Status.TokenExpiresAt = nil
	var requeue time.Duration
	cond := metav1.Condition{
		Type: machinesv1.ReadyCondition, Status: metav1.ConditionTrue, Reason: machinesv1.RegistrationEndpointReadyReason, ObservedGeneration: mr.Generation,
		Message: fmt.Sprintf("machines register at the URL in Secret %s (key %s)", s.Name, URLSecretKey),
	}
	if exp := TokenExpiresAt(mr, s); exp != nil {
		mr.Status.TokenExpiresAt = &metav1.Time{Time: *exp}
		if left := exp.Sub(r.now()); left > 0 {
			requeue = left + time.Second
			cond.Message += fmt.Sprintf("; the token admits new machines until %s", exp.UTC().Format(time.RFC3339))
		} else {
			cond.Status, cond.Reason = metav1.ConditionFalse, machinesv1.TokenExpiredReason
			cond.Message = fmt.Sprintf("the registration token expired at %s (spec.token.ttl): new machines are refused; set spec.token.rotation to a new value to issue a new token", exp.UTC().Format(time.RFC3339))
		}
	}
	mr.Status.ObservedGeneration = mr.Generation
	meta.SetStatusCondition(&mr.Status.Conditions, cond)
	meta.RemoveStatusCondition(&mr.Status.Conditions, machinesv1.StalledCondition)
	if equalStatus(before, mr) {
		return ctrl.Result{RequeueAfter: requeue}, nil
	}
	return ctrl.Result{RequeueAfter: requeue}, r.Client.Status().Patch(ctx, mr, client.MergeFrom(before))
}

// RegistrationURL is where machines of the registration with token connect;
// with token "" it is the endpoint published in status.
func RegistrationURL(external *url.URL, token string) string {
	u := *external
	u.Path = RegisterPathPrefix + token
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

// TokenIssuedAt is when the token in s was issued: its annotation, or the
// Secret's creation for tokens issued before the annotation existed.
func TokenIssuedAt(s *corev1.Secret) time.Time {
	if t, err := time.Parse(time.RFC3339, s.Annotations[AnnotationTokenIssuedAt]); err == nil {
		return t
	}
	return s.CreationTimestamp.Time
}

// TokenExpiresAt is when the token in s stops admitting new machines, or
// nil when mr sets no ttl.
func TokenExpiresAt(mr *machinesv1.MachineRegistration, s *corev1.Secret) *time.Time {
	if mr.Spec.Token.TTL == nil {
		return nil
	}
	t := TokenIssuedAt(s).Add(mr.Spec.Token.TTL.Duration)
	return &t
}

// RegistrationURLFromSecret reads the registration URL (with its token)
// from the registration's token Secret, for seed media.
func RegistrationURLFromSecret(ctx context.Context, c client.Reader, mr *machinesv1.MachineRegistration) (string, error) {
	if mr.Status.TokenSecretName == "" {
		return "", fmt.Errorf("MachineRegistration %s/%s has no token Secret yet", mr.Namespace, mr.Name)
	}
	s := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: mr.Namespace, Name: mr.Status.TokenSecretName}, s); err != nil {
		return "", fmt.Errorf("reading the registration token Secret %s/%s: %w", mr.Namespace, mr.Status.TokenSecretName, err)
	}
	if !metav1.IsControlledBy(s, mr) || len(s.Data[URLSecretKey]) == 0 {
		return "", fmt.Errorf("Secret %s/%s is not the token Secret of MachineRegistration %s (yet)", mr.Namespace, s.Name, mr.Name)
	}
	return string(s.Data[URLSecretKey]), nil
}

// ensureToken returns the registration's token Secret, creating it, or
// issuing a new token when spec.token.rotation asks for one. The Secret must
// be the registration's own: a Secret of that name made by anyone else is
// never used, so nobody can plant a token they know.
func (r *Reconciler) ensureToken(ctx context.Context, mr *machinesv1.MachineRegistration) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: mr.Namespace, Name: TokenSecretName(mr.Name)}
	s := &corev1.Secret{}
	err := r.Client.Get(ctx, key, s)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if apierrors.IsNotFound(err) {
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}, Type: TokenSecretType}
		if err := controllerutil.SetControllerReference(mr, s, r.Client.Scheme()); err != nil {
			return nil, err
		}
		if err := r.issue(mr, s); err != nil {
			return nil, err
		}
		return s, r.Client.Create(ctx, s)
	}
	if !metav1.IsControlledBy(s, mr) {
		return nil, fmt.Errorf("Secret %s exists but is not this registration's token (delete it to let the manager create one)", key.Name)
	}
	wantURL := ""
	switch {
	case len(s.Data[TokenSecretKey]) < 32 || s.Annotations[AnnotationTokenRotation] != mr.Spec.Token.Rotation:
		if err := r.issue(mr, s); err != nil {
			return nil, err
		}
	default:
		wantURL = RegistrationURL(r.ExternalURL, string(s.Data[TokenSecretKey]))
		if string(s.Data[URLSecretKey]) == wantURL {
			return s, nil
		}
		// A token from before the url key, or a changed external URL.
		s.Data[URLSecretKey] = []byte(wantURL)
	}
	// Update, not patch: the resourceVersion makes two reconciles racing on
	// a stale cache fail instead of issuing two tokens.
	return s, r.Client.Update(ctx, s)
}

// issue puts a fresh token (192 random bits) and its URL into s.
func (r *Reconciler) issue(mr *machinesv1.MachineRegistration, s *corev1.Secret) error {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	token := hex.EncodeToString(raw)
	s.Data = map[string][]byte{TokenSecretKey: []byte(token), URLSecretKey: []byte(RegistrationURL(r.ExternalURL, token))}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[AnnotationTokenIssuedAt] = r.now().UTC().Format(time.RFC3339)
	s.Annotations[AnnotationTokenRotation] = mr.Spec.Token.Rotation
	return nil
}

func (r *Reconciler) setReady(ctx context.Context, mr *machinesv1.MachineRegistration, status metav1.ConditionStatus, reason, msg string) error {
	before := mr.DeepCopy()
	meta.SetStatusCondition(&mr.Status.Conditions, metav1.Condition{Type: machinesv1.ReadyCondition, Status: status, Reason: reason, Message: msg, ObservedGeneration: mr.Generation})
	if err := r.Client.Status().Patch(ctx, mr, client.MergeFrom(before)); err != nil {
		return err
	}
	return fmt.Errorf("%s", msg)
}

func equalStatus(a, b *machinesv1.MachineRegistration) bool {
	x, y := a.Status, b.Status
	if x.TokenSecretName != y.TokenSecretName || x.RegistrationEndpoint != y.RegistrationEndpoint || x.TokenHash != y.TokenHash ||
		x.TokenRotation != y.TokenRotation || !timeEqual(x.TokenIssuedAt, y.TokenIssuedAt) || !timeEqual(x.TokenExpiresAt, y.TokenExpiresAt) ||
		x.ObservedGeneration != y.ObservedGeneration || len(x.Conditions) != len(y.Conditions) {
		return false
	}
	for i := range x.Conditions {
		p, q := x.Conditions[i], y.Conditions[i]
		if p.Type != q.Type || p.Status != q.Status || p.Reason != q.Reason || p.Message != q.Message || p.ObservedGeneration != q.ObservedGeneration {
			return false
		}
	}
	return true
}

func timeEqual(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Time.Truncate(time.Second).Equal(b.Time.Truncate(time.Second))
}
