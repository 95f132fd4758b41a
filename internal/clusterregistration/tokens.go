package clusterregistration

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// Labels and type of a token's Secret.
const (
	// TokenHashLabel holds the first 40 hex digits of sha256(token), so the
	// register route finds the Secret without scanning every token.
	TokenHashLabel = "fleet.edgefleet.io/token-hash"
	// TokenNameLabel names the ClusterRegistrationToken.
	TokenNameLabel = "fleet.edgefleet.io/registration-token"
	// TokenSecretType is the type of a token's Secret.
	TokenSecretType corev1.SecretType = "fleet.edgefleet.io/cluster-registration-token"
)

// TokenSecretName is the Secret holding the token of CRT name.
func TokenSecretName(crtName string) string { return crtName + "-token" }

// TokenHash is the value of TokenHashLabel for token.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:40]
}

// NewTokenSecret is a fresh Secret holding a new token for crt, owned by
// crt so it goes with the token.
func NewTokenSecret(crt *fleetv1.ClusterRegistrationToken, scheme *runtime.Scheme) (*corev1.Secret, error) {
	value, err := newTokenValue()
	if err != nil {
		return nil, err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: crt.Namespace, Name: TokenSecretName(crt.Name),
			Labels: map[string]string{TokenHashLabel: TokenHash(value), TokenNameLabel: crt.Name},
		},
		Type:       TokenSecretType,
		StringData: map[string]string{clusterjoin.KeyToken: value},
	}
	if err := controllerutil.SetControllerReference(crt, sec, scheme); err != nil {
		return nil, fmt.Errorf("owning token secret: %w", err)
	}
	return sec, nil
}

// newTokenValue is 32 random bytes, base32 without padding, lower case.
func newTokenValue() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating token: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)), nil
}

// Expires is when crt stops being accepted: creation + ttl (default 168h).
func Expires(crt *fleetv1.ClusterRegistrationToken) time.Time {
	ttl := fleetv1.DefaultClusterRegistrationTokenTTL
	if crt.Spec.TTL != nil && crt.Spec.TTL.Duration > 0 {
		ttl = crt.Spec.TTL.Duration
	}
	return crt.CreationTimestamp.Add(ttl)
}
