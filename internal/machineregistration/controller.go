package machineregistration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"

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

// TokenSecretKey is the data key of the registration token in the Secret
// <registration>-registration-token.
const TokenSecretKey = "token"

// RegisterPathPrefix is the route machines register at.
const RegisterPathPrefix = "/v1/machines/register/"

// TokenSecretName is the Secret holding a registration's token; it is the
// source of truth, status only publishes it.
func TokenSecretName(registration string) string { return registration + "-registration-token" }

// Reconciler publishes each MachineRegistration's URL: it keeps a random token
// in a Secret owned by the registration and sets status.registrationURL.
type Reconciler struct {
	Client      client.Client
	ExternalURL *url.URL
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

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	mr := &machinesv1.MachineRegistration{}
	if err := r.Client.Get(ctx, req.NamespacedName, mr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mr.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	token, err := r.ensureToken(ctx, mr)
	if err != nil {
		return ctrl.Result{}, r.setReady(ctx, mr, metav1.ConditionFalse, machinesv1.RBACCreationFailedReason, fmt.Sprintf("cannot create the registration token Secret %s: %v", TokenSecretName(mr.Name), err))
	}
	before := mr.DeepCopy()
	mr.Status.RegistrationToken = token
	mr.Status.RegistrationURL = RegistrationURL(r.ExternalURL, token)
	mr.Status.ObservedGeneration = mr.Generation
	meta.SetStatusCondition(&mr.Status.Conditions, metav1.Condition{
		Type: machinesv1.ReadyCondition, Status: metav1.ConditionTrue, Reason: machinesv1.RegistrationEndpointReadyReason,
		Message: "machines can register at " + mr.Status.RegistrationURL, ObservedGeneration: mr.Generation,
	})
	meta.RemoveStatusCondition(&mr.Status.Conditions, machinesv1.StalledCondition)
	if equalStatus(before, mr) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.Client.Status().Patch(ctx, mr, client.MergeFrom(before))
}

// RegistrationURL is where machines of the registration with token connect.
func RegistrationURL(external *url.URL, token string) string {
	u := *external
	u.Path = RegisterPathPrefix + token
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

func (r *Reconciler) ensureToken(ctx context.Context, mr *machinesv1.MachineRegistration) (string, error) {
	key := types.NamespacedName{Namespace: mr.Namespace, Name: TokenSecretName(mr.Name)}
	s := &corev1.Secret{}
	err := r.Client.Get(ctx, key, s)
	if err == nil && len(s.Data[TokenSecretKey]) >= 32 && metav1.IsControlledBy(s, mr) {
		return string(s.Data[TokenSecretKey]), nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return "", err
	}
	if err == nil {
		return "", fmt.Errorf("Secret %s exists but is not this registration's token (delete it to let the manager create one)", key.Name)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	s = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace},
		Type:       "machines.edgefleet.io/registration-token",
		Data:       map[string][]byte{TokenSecretKey: []byte(hex.EncodeToString(raw))},
	}
	if err := controllerutil.SetControllerReference(mr, s, r.Client.Scheme()); err != nil {
		return "", err
	}
	if err := r.Client.Create(ctx, s); err != nil {
		return "", err
	}
	return string(s.Data[TokenSecretKey]), nil
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
	if a.Status.RegistrationURL != b.Status.RegistrationURL || a.Status.RegistrationToken != b.Status.RegistrationToken || a.Status.ObservedGeneration != b.Status.ObservedGeneration || len(a.Status.Conditions) != len(b.Status.Conditions) {
		return false
	}
	for i := range a.Status.Conditions {
		x, y := a.Status.Conditions[i], b.Status.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || x.ObservedGeneration != y.ObservedGeneration {
			return false
		}
	}
	return true
}
