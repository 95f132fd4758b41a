package clusterregistration

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// DefaultCredentialMaxLifetime bounds how long a cluster keeps renewing its
// credential after it registered: then renewal is refused and the cluster
// must register again with a registration token an admin issues. A stolen
// credential therefore dies at the latest this long after the registration it
// came from (`edgefleet server --cluster-credential-max-lifetime`; 0 = no
// bound).
const DefaultCredentialMaxLifetime = 90 * 24 * time.Hour

// Annotations of credential revocation and lifetime.
const (
	// CredentialGenerationAnnotation on a Cluster is bumped by `edgefleet
	// cluster revoke`; the cluster's ServiceAccount carries the generation it
	// was registered under. A credential whose ServiceAccount is of another
	// generation is refused, and a tunnel opened under an older generation is
	// closed. Agents cannot write Cluster metadata.
	CredentialGenerationAnnotation = "fleet.edgefleet.io/credential-generation"
	// RegisteredAtAnnotation on the cluster's ServiceAccount is when the
	// cluster last registered with a registration token (RFC 3339).
	RegisteredAtAnnotation = "fleet.edgefleet.io/registered-at"
	// RenewalKeyHashAnnotation on the cluster's ServiceAccount is the
	// SHA-256 (hex) of the renewal key issued with its last registration.
	RenewalKeyHashAnnotation = "fleet.edgefleet.io/renewal-key-sha256"
)

// minTokenTTL is the kube-apiserver's shortest TokenRequest.
const minTokenTTL = 10 * time.Minute

// CredentialGeneration is the Cluster's current credential generation.
func CredentialGeneration(c *fleetv1.Cluster) string {
	return c.Annotations[CredentialGenerationAnnotation]
}

// errRevoked is the answer to a credential of a revoked generation.
var errRevoked = errors.New("cluster credential was revoked (`edgefleet cluster revoke`): register the cluster again with a new registration token")

// checkServiceAccount verifies that u's token belongs to the cluster's
// current ServiceAccount (a revocation deletes it, so the UID changes) and
// generation.
func checkServiceAccount(ctx context.Context, c client.Reader, u *authn.User, nsName string, cluster *fleetv1.Cluster) (*corev1.ServiceAccount, error) {
	var sa corev1.ServiceAccount
	if err := c.Get(ctx, client.ObjectKey{Namespace: nsName, Name: clusterjoin.ClusterServiceAccount}, &sa); err != nil || !sa.DeletionTimestamp.IsZero() {
		return nil, errRevoked
	}
	if u.UID != "" && string(sa.UID) != u.UID {
		return nil, errRevoked
	}
	if sa.Annotations[CredentialGenerationAnnotation] != CredentialGeneration(cluster) {
		return nil, errRevoked
	}
	return &sa, nil
}

// registeredAt is when the ServiceAccount's cluster last registered; ok is
// false for a ServiceAccount from before lifetimes were recorded.
func registeredAt(sa *corev1.ServiceAccount) (t time.Time, ok bool) {
	t, err := time.Parse(time.RFC3339, sa.Annotations[RegisteredAtAnnotation])
	return t, err == nil
}

// stampRegistration records a registration on the cluster's ServiceAccount:
// its time (the lifetime starts again), the Cluster's generation and, when
// renewalKey is set, the hash of the renewal key issued with it (replacing
// the previous registration's).
func (s *Service) stampRegistration(ctx context.Context, cluster *fleetv1.Cluster, nsName, renewalKey string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: nsName, Name: clusterjoin.ClusterServiceAccount}}
	annotations := map[string]string{
		RegisteredAtAnnotation:         s.now().UTC().Format(time.RFC3339),
		CredentialGenerationAnnotation: CredentialGeneration(cluster),
	}
	if renewalKey != "" {
		annotations[RenewalKeyHashAnnotation] = renewalKeyHash(renewalKey)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		return err
	}
	if err := s.client.Patch(ctx, sa, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("recording the registration of cluster %s: %w", klogRef(cluster), err)
	}
	return nil
}

// tokenTTL is the credential's life: credentialTTL, cut so that it never
// outlives the maximum lifetime since registration. renewing reports
// whether a renewal is asked for; past the lifetime that is refused.
func (s *Service) tokenTTL(ctx context.Context, cluster *fleetv1.Cluster, nsName string, renewing bool) (time.Duration, error) {
	if s.maxLifetime <= 0 {
		return s.credentialTTL, nil
	}
	var sa corev1.ServiceAccount
	if err := s.client.Get(ctx, client.ObjectKey{Namespace: nsName, Name: clusterjoin.ClusterServiceAccount}, &sa); err != nil {
		return 0, fmt.Errorf("reading the ServiceAccount of cluster %s: %w", klogRef(cluster), err)
	}
	registered, ok := registeredAt(&sa)
	if !ok {
		// Registered before lifetimes were recorded (an upgrade): the
		// lifetime starts now rather than cutting off every old cluster.
		if err := s.stampRegistration(ctx, cluster, nsName, ""); err != nil {
			return 0, err
		}
		registered = s.now()
	}
	left := registered.Add(s.maxLifetime).Sub(s.now())
	if renewing && left < minTokenTTL {
		return 0, &lifetimeEnded{registered: registered, max: s.maxLifetime}
	}
	return max(min(s.credentialTTL, left), minTokenTTL), nil
}

type lifetimeEnded struct {
	registered time.Time
	max        time.Duration
}

func (e *lifetimeEnded) Error() string {
	return fmt.Sprintf("cluster credential reached its maximum lifetime (%s since registration at %s): register the cluster again with a registration token (the manager's --cluster-credential-max-lifetime)",
		e.max, e.registered.UTC().Format(time.RFC3339))
}

// newRenewalKey is a registration's renewal key: 256 random bits.
func newRenewalKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func renewalKeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// errRenewalKey answers every renewal key that does not renew: which check
// failed is not disclosed.
var errRenewalKey = errors.New("cluster credential is not valid and the renewal key does not renew it (expired past the registration's maximum lifetime, revoked, or from another registration): register the cluster again with a registration token")

// ClusterOfRenewalKey returns the Cluster whose current registration issued
// the renewal key in req: the stand-in for a credential that expired while
// its agent could not renew it (a site dark for longer than the
// credential's life). A revocation (new ServiceAccount or generation) or a
// newer registration invalidates the key; Renew still enforces the
// registration's maximum lifetime.
func (s *Service) ClusterOfRenewalKey(ctx context.Context, req clusterjoin.RenewRequest) (*fleetv1.Cluster, error) {
	if req.RenewalKey == "" || len(req.RenewalKey) > 256 || req.ClusterName == "" || req.ClusterNamespace == "" {
		return nil, errRenewalKey
	}
	var cluster fleetv1.Cluster
	if err := s.client.Get(ctx, client.ObjectKey{Namespace: req.ClusterNamespace, Name: req.ClusterName}, &cluster); err != nil || !cluster.DeletionTimestamp.IsZero() {
		return nil, errRenewalKey
	}
	nsName, ok := clusterns.Of(&cluster)
	if !ok {
		return nil, errRenewalKey
	}
	sa, err := checkServiceAccount(ctx, s.client, &authn.User{}, nsName, &cluster)
	if err != nil {
		return nil, errRenewalKey
	}
	want := sa.Annotations[RenewalKeyHashAnnotation]
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(renewalKeyHash(req.RenewalKey))) != 1 {
		return nil, errRenewalKey
	}
	return &cluster, nil
}
