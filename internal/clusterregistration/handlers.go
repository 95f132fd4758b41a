package clusterregistration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
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

// handlers serve the join routes: they decode, authenticate, call the
// Service and encode.
type handlers struct {
	*Service
	externalURL *url.URL
	agentImage  string
	log         logr.Logger
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, clusterjoin.Error{Message: fmt.Sprintf(format, args...)})
}

// register: POST /v1/register.
func (h *handlers) register(w http.ResponseWriter, r *http.Request) {
	var req clusterjoin.RegisterRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "request body is not a JSON registration request: %v", err)
		return
	}
	crt, err := h.LookupToken(r.Context(), req.Token)
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
	if !validClientID(req.ClientID) {
		writeError(w, http.StatusBadRequest, "%v", errClientID)
		return
	}
	log := h.log.WithValues("clientID", req.ClientID, "ClusterRegistrationToken", klog.KObj(crt))
	cluster, resp, err := h.Register(ctrl.LoggerInto(r.Context(), log), RegisterInput{
		Token: crt, ClientID: req.ClientID, Labels: req.Labels, Credential: authn.BearerToken(r), RenewalKey: req.RenewalKey, Source: r.RemoteAddr,
	})
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
	log.Info("Registered cluster", "Cluster", klog.KObj(cluster))
	writeJSON(w, http.StatusOK, resp)
}

// renew: POST /v1/renew with the current credential or, once it expired,
// the registration's renewal key (RenewRequest body).
func (h *handlers) renew(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	cluster, err := ClusterOf(ctx, h.auth, h.client, r)
	if err != nil {
		var req clusterjoin.RenewRequest
		if json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&req) != nil || req.RenewalKey == "" {
			writeError(w, http.StatusUnauthorized, "%v", err)
			return
		}
		if cluster, err = h.ClusterOfRenewalKey(ctx, req); err != nil {
			writeError(w, http.StatusUnauthorized, "%v", err)
			return
		}
		h.log.Info("Renewing an expired credential with the registration's renewal key", "Cluster", klog.KObj(cluster))
	}
	resp, err := h.Renew(ctx, cluster)
	var ended *lifetimeEnded
	if errors.As(err, &ended) {
		h.log.Info("Refused renewal past the credential's maximum lifetime", "Cluster", klog.KObj(cluster), "registered", ended.registered)
		// On the Cluster, where an operator looking at an Offline cluster
		// sees why it stays so: its agent cannot say, it has no credential.
		h.recorder.Eventf(cluster, nil, corev1.EventTypeWarning, ReasonRenewalRefused, "Renew",
			"Refused to renew the cluster credential: %v. Create a token (`edgefleet token create`) and apply its import manifest on the cluster", err)
		writeError(w, http.StatusUnauthorized, "%v", err)
		return
	}
	if err != nil {
		h.log.Error(err, "Renewing credential failed", "Cluster", klog.KObj(cluster))
		writeError(w, http.StatusServiceUnavailable, "renewing the credential failed, retry: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// ClusterOf authenticates r and returns the Cluster whose credential it
// carries; any other caller is an error.
func ClusterOf(ctx context.Context, a *authn.Authenticator, c client.Reader, r *http.Request) (*fleetv1.Cluster, error) {
	return clusterOfCredential(ctx, a, c, authn.BearerToken(r))
}

// clusterOfCredential returns the Cluster whose credential tok is.
func clusterOfCredential(ctx context.Context, a *authn.Authenticator, c client.Reader, tok string) (*fleetv1.Cluster, error) {
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
