// Package clusterregistrationtoken gives each ClusterRegistrationToken its
// Secret and expiry, and deletes it once expired. The token's Secret format
// and lookups live in internal/clusterregistration, which serves the join
// routes.
package clusterregistrationtoken

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
)

// Reconciler gives each ClusterRegistrationToken its Secret and expiry,
// and deletes it once expired.
type Reconciler struct {
	Client client.Client
	// Reader reads Secrets directly, so the manager does not cache them all.
	Reader client.Reader
	// Now is for tests.
	Now func() time.Time
	// Events records condition changes; SetupWithManager uses the
	// manager's recorder when nil.
	Events events.EventRecorder
}

// SetupWithManager registers the controller.
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
		r.Events = mgr.GetEventRecorder("edgefleet-clusterregistrationtoken")
	}
	if err := ctrl.NewControllerManagedBy(mgr).Named("clusterregistrationtoken").For(&fleetv1.ClusterRegistrationToken{}).Complete(r); err != nil {
		return fmt.Errorf("creating clusterregistrationtoken controller: %w", err)
	}
	return nil
}

// Reconcile ensures the token's Secret and status, or deletes an expired
// token.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var crt fleetv1.ClusterRegistrationToken
	if err := r.Client.Get(ctx, req.NamespacedName, &crt); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !crt.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	log := logf.FromContext(ctx)
	expires := clusterregistration.Expires(&crt)
	if !r.Now().Before(expires) {
		log.Info("Deleting expired registration token", "expired", expires.UTC().Format(time.RFC3339))
		// The Secret is owned by the token; delete it too in case no
		// garbage collector runs.
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: crt.Namespace, Name: clusterregistration.TokenSecretName(crt.Name)}}
		if err := r.Client.Delete(ctx, sec); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("deleting secret of expired token %s: %w", req.NamespacedName, err)
		}
		if err := r.Client.Delete(ctx, &crt); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("deleting expired token %s: %w", req.NamespacedName, err)
		}
		return ctrl.Result{}, nil
	}
	if err := r.ensureSecret(ctx, &crt); err != nil {
		return ctrl.Result{}, err
	}
	before := crt.DeepCopy()
	st := &crt.Status
	st.Expires = &metav1.Time{Time: expires}
	st.SecretName = clusterregistration.TokenSecretName(crt.Name)
	conditions.MarkReady(&st.Conditions, fleetv1.SecretCreatedReason,
		fmt.Sprintf("Token in Secret %s, valid until %s", st.SecretName, expires.UTC().Format(time.RFC3339)), crt.Generation)
	if err := conditions.PatchStatus(ctx, r.Client, before, &crt, &st.ObservedGeneration, nil, conditions.RecordTo(r.Events)); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: time.Until(expires) + time.Second}, nil
}

func (r *Reconciler) ensureSecret(ctx context.Context, crt *fleetv1.ClusterRegistrationToken) error {
	var sec corev1.Secret
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: crt.Namespace, Name: clusterregistration.TokenSecretName(crt.Name)}, &sec)
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading token secret: %w", err)
	}
	created, err := clusterregistration.NewTokenSecret(crt, r.Client.Scheme())
	if err != nil {
		return err
	}
	sec = *created
	logf.FromContext(ctx).Info("Creating registration token secret", "Secret", klog.KObj(&sec))
	if err := r.Client.Create(ctx, &sec); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating token secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	return nil
}
