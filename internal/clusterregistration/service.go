package clusterregistration

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// Service registers clusters and issues their credentials. The join routes
// call it for agents; a controller (cluster formation) calls it to create a
// Cluster and its credential itself. Every check of a registration (token
// validity, clientID takeover proof, label ownership, maxClusters, credential
// lifetime) is here, so no caller can skip one.
type Service struct {
	client    client.Client // direct reads and writes
	cache     client.Reader // the manager cache (clientID index)
	tokens    client.Reader // the cache of registration token Secrets (tokenindex.go)
	clientset kubernetes.Interface
	auth      *authn.Authenticator
	caPEM     []byte
	// credentialTTL is the lifetime of one credential.
	credentialTTL time.Duration
	// maxLifetime bounds renewals since registration (0 = unbounded).
	maxLifetime time.Duration
	now         func() time.Time
	recorder    events.EventRecorder // events on Clusters (refused takeovers) and tokens (quota)
	tokenLocks  tokenLocks           // per-token quota
}

// RegisterInput is one registration: an agent's, or a controller's on its
// behalf.
type RegisterInput struct {
	// Token is the registration token, already checked (LookupToken).
	Token *fleetv1.ClusterRegistrationToken
	// ClientID identifies the cluster (the agent sends its kube-system
	// namespace UID); 1 to 253 characters.
	ClientID string
	// Labels the cluster proposes; reserved and invalid ones are dropped.
	Labels map[string]string
	// Credential is the bearer credential the caller presented, if any: the
	// proof that lets a registration take over the Cluster it belongs to.
	Credential string
	// RenewalKey is the renewal key the caller presented, if any: also
	// proof, when it is the Cluster's current registration's.
	RenewalKey string
	// Source is where the registration came from (remote address), for
	// events.
	Source string
}

// LookupToken finds the ClusterRegistrationToken whose secret equals token
// and that has not expired; any other token is errInvalidToken.
func (s *Service) LookupToken(ctx context.Context, token string) (*fleetv1.ClusterRegistrationToken, error) {
	if token == "" || len(token) > 256 {
		return nil, errInvalidToken
	}
	var secrets corev1.SecretList
	if err := s.tokens.List(ctx, &secrets, client.MatchingFields{tokenHashIndex: TokenHash(token)}); err != nil {
		return nil, fmt.Errorf("looking up token: %w", err)
	}
	for i := range secrets.Items {
		sec := &secrets.Items[i]
		if sec.Type != TokenSecretType || subtle.ConstantTimeCompare(sec.Data[clusterjoin.KeyToken], []byte(token)) != 1 {
			continue
		}
		var crt fleetv1.ClusterRegistrationToken
		if err := s.client.Get(ctx, client.ObjectKey{Namespace: sec.Namespace, Name: sec.Labels[TokenNameLabel]}, &crt); err != nil {
			return nil, errInvalidToken
		}
		owned := false
		for _, o := range sec.OwnerReferences {
			owned = owned || o.UID == crt.UID
		}
		if !owned || !crt.DeletionTimestamp.IsZero() || !s.now().Before(Expires(&crt)) {
			return nil, errInvalidToken
		}
		return &crt, nil
	}
	return nil, errInvalidToken
}

// Register finds or creates the Cluster of in.ClientID in the token's
// namespace and issues it a fresh credential. A refusal (bad clientID,
// takeover without proof, quota reached, colliding name) is an error for
// which IsRefusal is true; any other error is worth a retry.
func (s *Service) Register(ctx context.Context, in RegisterInput) (*fleetv1.Cluster, *clusterjoin.RegisterResponse, error) {
	if !validClientID(in.ClientID) {
		return nil, nil, &refusal{status: http.StatusBadRequest, msg: errClientID.Error()}
	}
	labels, dropped := FilterLabels(in.Labels)
	if len(dropped) > 0 {
		ctrl.LoggerFrom(ctx).Info("Dropped reserved or invalid labels from registering agent", "labels", dropped)
	}
	cluster, err := s.findOrCreateCluster(ctx, in, labels)
	if err != nil {
		return nil, nil, err
	}
	resp, err := s.Issue(ctx, cluster)
	if err != nil {
		return nil, nil, err
	}
	return cluster, resp, nil
}

// IsRefusal reports whether err is a registration the manager will not
// perform (as opposed to one that failed and may be retried).
func IsRefusal(err error) bool {
	_, ok := refusedStatus(err)
	return ok
}

// Issue provisions cluster's namespace and RBAC and returns a fresh
// credential, restarting the credential's lifetime: it is a registration.
func (s *Service) Issue(ctx context.Context, cluster *fleetv1.Cluster) (*clusterjoin.RegisterResponse, error) {
	return s.issue(ctx, cluster, false)
}

// Renew returns a fresh credential for cluster within the lifetime of its
// registration; past it the error is a *lifetimeEnded.
func (s *Service) Renew(ctx context.Context, cluster *fleetv1.Cluster) (*clusterjoin.RegisterResponse, error) {
	return s.issue(ctx, cluster, true)
}

func (s *Service) issue(ctx context.Context, cluster *fleetv1.Cluster, renewing bool) (*clusterjoin.RegisterResponse, error) {
	ns, err := s.ensureNamespace(ctx, cluster)
	if err != nil {
		return nil, err
	}
	if err := s.ensureRBAC(ctx, cluster, ns); err != nil {
		return nil, err
	}
	var renewalKey string
	if !renewing {
		renewalKey = newRenewalKey()
		if err := s.stampRegistration(ctx, cluster, ns.Name, renewalKey); err != nil {
			return nil, err
		}
	}
	ttl, err := s.tokenTTL(ctx, cluster, ns.Name, renewing)
	if err != nil {
		return nil, err
	}
	secs := int64(ttl / time.Second)
	tr, err := s.clientset.CoreV1().ServiceAccounts(ns.Name).CreateToken(ctx, clusterjoin.ClusterServiceAccount,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("issuing credential for cluster %s: %w", klogRef(cluster), err)
	}
	return &clusterjoin.RegisterResponse{
		ClusterName:      cluster.Name,
		ClusterNamespace: cluster.Namespace,
		Namespace:        ns.Name,
		Token:            tr.Status.Token,
		Expires:          tr.Status.ExpirationTimestamp.Time,
		ManagerAPIPath:   clusterjoin.ManagerAPIPrefix,
		CACert:           string(s.caPEM),
		RenewalKey:       renewalKey,
	}, nil
}

var errClientID = errors.New("clientID must be 1 to 253 characters (the agent sends its kube-system namespace UID)")

func validClientID(id string) bool { return id != "" && len(id) <= 253 }

// errInvalidToken is the only answer to a bad token: whether it never
// existed or expired is not disclosed.
var errInvalidToken = errors.New("registration token is not valid or has expired: create a new one with `edgefleet token create` and use the printed command")
