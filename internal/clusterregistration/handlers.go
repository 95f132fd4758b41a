package clusterregistration

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/go-logr/logr"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// DefaultCredentialTTL is how long a cluster credential is valid. Agents
// renew at half-life through /v1/renew with the credential itself, so a
// cluster keeps working after its registration token expired; deleting the
// Cluster (and with it the ServiceAccount) revokes every credential.
const DefaultCredentialTTL = 24 * time.Hour

// handlers serve the join routes.
type handlers struct {
	client        client.Client // direct reads and writes
	cache         client.Reader // the manager cache (clientID index)
	clientset     kubernetes.Interface
	auth          *authn.Authenticator
	externalURL   *url.URL
	caPEM         []byte
	credentialTTL time.Duration
	agentImage    string
	now           func() time.Time
	log           logr.Logger
	recorder      events.EventRecorder // events on Clusters (refused takeovers)
	tokenLocks    tokenLocks           // per-token quota

	// maxLifetime bounds renewals since registration (0 = unbounded).
	maxLifetime time.Duration
	// tokens is the cache of registration token Secrets (tokenindex.go).
	tokens client.Reader
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, clusterjoin.Error{Message: fmt.Sprintf(format, args...)})
}

// errInvalidToken is the only answer to a bad token: whether it never
// existed or expired is not disclosed.
var errInvalidToken = errors.New("registration token is not valid or has expired: create a new one with `edgefleet token create` and use the printed command")

// lookupToken finds the ClusterRegistrationToken whose secret equals token
// and that has not expired.
func (h *handlers) lookupToken(ctx context.Context, token string) (*fleetv1.ClusterRegistrationToken, error) {
	if token == "" || len(token) > 256 {
		return nil, errInvalidToken
	}
	var secrets corev1.SecretList
	if err := h.tokens.List(ctx, &secrets, client.MatchingFields{tokenHashIndex: TokenHash(token)}); err != nil {
		return nil, fmt.Errorf("looking up token: %w", err)
	}
	for i := range secrets.Items {
		s := &secrets.Items[i]
		if s.Type != TokenSecretType || subtle.ConstantTimeCompare(s.Data[clusterjoin.KeyToken], []byte(token)) != 1 {
			continue
		}
		var crt fleetv1.ClusterRegistrationToken
		if err := h.client.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: s.Labels[TokenNameLabel]}, &crt); err != nil {
			return nil, errInvalidToken
		}
		owned := false
		for _, o := range s.OwnerReferences {
			owned = owned || o.UID == crt.UID
		}
		if !owned || !crt.DeletionTimestamp.IsZero() || !h.now().Before(Expires(&crt)) {
			return nil, errInvalidToken
		}
		return &crt, nil
	}
	return nil, errInvalidToken
}

// register: POST /v1/register.
func (h *handlers) register(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req clusterjoin.RegisterRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "request body is not a JSON registration request: %v", err)
		return
	}
	crt, err := h.lookupToken(ctx, req.Token)
	if errors.Is(err, errInvalidToken) {
		h.log.Info("Rejected registration with an invalid token", "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "%v", err)
		return
	}
	if err != nil {
		h.log.Error(err, "Registration failed")
		writeError(w, http.StatusServiceUnavailable, "registration failed, retry: %v", err)
		return
	}
	if req.ClientID == "" || len(req.ClientID) > 253 {
		writeError(w, http.StatusBadRequest, "clientID must be 1 to 253 characters (the agent sends its kube-system namespace UID)")
		return
	}
	labels, dropped := FilterLabels(req.Labels)
	log := h.log.WithValues("clientID", req.ClientID, "ClusterRegistrationToken", klogRef(crt))
	if len(dropped) > 0 {
		log.Info("Dropped reserved or invalid labels from registering agent", "labels", dropped)
	}
	cluster, err := h.findOrCreateCluster(ctx, r, crt, req.ClientID, labels)
	if status, refused := refusedStatus(err); refused {
		log.Info("Refused registration", "remote", r.RemoteAddr, "reason", err.Error())
		writeError(w, status, "registration refused: %v", err)
		return
	}
	if err != nil {
		log.Error(err, "Registration failed")
		writeError(w, http.StatusServiceUnavailable, "registration failed, retry: %v", err)
		return
	}
	resp, err := h.issue(ctx, cluster, false)
	if err != nil {
		log.Error(err, "Registration failed")
		writeError(w, http.StatusServiceUnavailable, "registration failed, retry: %v", err)
		return
	}
	log.Info("Registered cluster", "Cluster", klogRef(cluster))
	writeJSON(w, http.StatusOK, resp)
}

// issue provisions the cluster's namespace and RBAC and returns a fresh
// credential. A registration (renewing false) restarts the credential's
// lifetime; a renewal is refused past it.
func (h *handlers) issue(ctx context.Context, cluster *fleetv1.Cluster, renewing bool) (*clusterjoin.RegisterResponse, error) {
	ns, err := h.ensureNamespace(ctx, cluster)
	if err != nil {
		return nil, err
	}
	if err := h.ensureRBAC(ctx, cluster, ns); err != nil {
		return nil, err
	}
	if !renewing {
		if err := h.stampRegistration(ctx, cluster, ns.Name); err != nil {
			return nil, err
		}
	}
	ttl, err := h.tokenTTL(ctx, cluster, ns.Name, renewing)
	if err != nil {
		return nil, err
	}
	secs := int64(ttl / time.Second)
	tr, err := h.clientset.CoreV1().ServiceAccounts(ns.Name).CreateToken(ctx, clusterjoin.ClusterServiceAccount,
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
		CACert:           string(h.caPEM),
	}, nil
}

// renew: POST /v1/renew with the current credential.
func (h *handlers) renew(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	cluster, err := ClusterOf(ctx, h.auth, h.client, r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "%v", err)
		return
	}
	resp, err := h.issue(ctx, cluster, true)
	var ended *lifetimeEnded
	if errors.As(err, &ended) {
		h.log.Info("Refused renewal past the credential's maximum lifetime", "Cluster", klogRef(cluster), "registered", ended.registered)
		writeError(w, http.StatusUnauthorized, "%v", err)
		return
	}
	if err != nil {
		h.log.Error(err, "Renewing credential failed", "Cluster", klogRef(cluster))
		writeError(w, http.StatusServiceUnavailable, "renewing the credential failed, retry: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// ClusterOf authenticates r and returns the Cluster whose credential it
// carries; any other caller is an error.
func ClusterOf(ctx context.Context, a *authn.Authenticator, c client.Reader, r *http.Request) (*fleetv1.Cluster, error) {
	tok := authn.BearerToken(r)
	if tok == "" {
		return nil, errors.New("no cluster credential: send Authorization: Bearer <token from registration>")
	}
	u, err := a.Token(ctx, tok)
	if err != nil {
		return nil, errors.New("cluster credential is not valid: the agent registers again with its registration token")
	}
	nsName, sa, ok := u.ServiceAccount()
	if !ok || sa != clusterjoin.ClusterServiceAccount {
		return nil, errors.New("credential is not a cluster credential")
	}
	var ns corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: nsName}, &ns); err != nil || ns.Labels[fleetv1.ManagedLabel] != "true" {
		return nil, errors.New("credential is not a cluster credential")
	}
	var cluster fleetv1.Cluster
	key := client.ObjectKey{Namespace: ns.Labels[fleetv1.ClusterNamespaceLabel], Name: ns.Labels[fleetv1.ClusterNameLabel]}
	if err := c.Get(ctx, key, &cluster); err != nil || !cluster.DeletionTimestamp.IsZero() {
		return nil, fmt.Errorf("cluster %s of this credential no longer exists", key)
	}
	if _, err := checkServiceAccount(ctx, c, u, nsName, &cluster); err != nil {
		return nil, err
	}
	return &cluster, nil
}
