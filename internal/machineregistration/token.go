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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

// IssueToken puts a fresh token (192 random bits) and its URL into s, the
// token Secret of mr, stamped with now.
func IssueToken(mr *machinesv1.MachineRegistration, s *corev1.Secret, external *url.URL, now time.Time) error {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	token := hex.EncodeToString(raw)
	s.Data = map[string][]byte{TokenSecretKey: []byte(token), URLSecretKey: []byte(RegistrationURL(external, token))}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[AnnotationTokenIssuedAt] = now.UTC().Format(time.RFC3339)
	s.Annotations[AnnotationTokenRotation] = mr.Spec.Token.Rotation
	return nil
}
