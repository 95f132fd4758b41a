package clusterregistration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// refusal is a registration the manager will not perform; status is the
// HTTP status the agent gets, the message says what to do.
type refusal struct {
	status int
	msg    string
}

func (e *refusal) Error() string { return e.msg }

// refusedStatus returns the HTTP status of err if it is a refusal.
func refusedStatus(err error) (int, bool) {
	var r *refusal
	if errors.As(err, &r) {
		return r.status, true
	}
	return 0, false
}

// Event reasons on a Cluster.
const (
	ReasonReregistrationRefused = "ReregistrationRefused"
	ReasonReregistered          = "Reregistered"
	// ReasonRenewalRefused: the credential's renewal was refused past the
	// registration's maximum lifetime; only a registration helps.
	ReasonRenewalRefused = "RenewalRefused"
	// ReasonMaxClustersReached is on the ClusterRegistrationToken.
	ReasonMaxClustersReached = "MaxClustersReached"
)

// reregistrationProof is why a registration may take over an existing
// Cluster with its clientID.
type reregistrationProof string

const (
	// proofCredential: the request carries the Cluster's current credential.
	proofCredential reregistrationProof = "credential"
	// proofRenewalKey: the request carries the renewal key of the
	// Cluster's current registration (a credential past the maximum
	// lifetime, renewed by registering with a new token).
	proofRenewalKey reregistrationProof = "renewal key"
	// proofApproval: an admin annotated the Cluster.
	proofApproval reregistrationProof = "approval"
	// proofNeverCheckedIn: no agent ever checked in for the Cluster (an
	// admin created it for this clientID, or the first registration's
	// answer was lost). Whoever holds a token of the namespace and knows the
	// clientID may claim such a Cluster, as they could have created it.
	proofNeverCheckedIn reregistrationProof = "never checked in"
)

// authorizeReregistration decides whether a registration with a token may
// take over cluster, which already has this clientID. Knowing a clientID (a
// namespace UID, not a secret) and holding any token of the namespace is not
// enough: that would let one token holder take over every cluster.
func (s *Service) authorizeReregistration(ctx context.Context, cluster *fleetv1.Cluster, in RegisterInput) (reregistrationProof, error) {
	if in.Credential != "" {
		if own, err := clusterOfCredential(ctx, s.auth, s.client, in.Credential); err == nil && own.UID == cluster.UID {
			return proofCredential, nil
		}
	}
	if in.RenewalKey != "" {
		if own, err := s.ClusterOfRenewalKey(ctx, clusterjoin.RenewRequest{ClusterNamespace: cluster.Namespace, ClusterName: cluster.Name, RenewalKey: in.RenewalKey}); err == nil && own.UID == cluster.UID {
			return proofRenewalKey, nil
		}
	}
	if cluster.Annotations[fleetv1.ApproveReregistrationAnnotation] == "true" {
		return proofApproval, nil
	}
	checkedIn, err := s.checkedIn(ctx, cluster)
	if err != nil {
		return "", err
	}
	if !checkedIn {
		return proofNeverCheckedIn, nil
	}
	msg := fmt.Sprintf("cluster %s is already registered with this clientID: a re-registration must present that cluster's current credential "+
		"(Authorization: Bearer, as the agent does when it still has one), or an admin approves it with "+
		"`kubectl annotate cluster -n %s %s %s=true`", klogRef(cluster), cluster.Namespace, cluster.Name, fleetv1.ApproveReregistrationAnnotation)
	s.recorder.Eventf(cluster, nil, corev1.EventTypeWarning, ReasonReregistrationRefused, "Register",
		"Refused a registration with this cluster's clientID that presented neither its credential nor an admin's approval (from %s)", in.Source)
	return "", &refusal{status: http.StatusConflict, msg: msg}
}

// checkedIn reports whether an agent ever checked in for cluster: a
// heartbeat in its status or its heartbeat Lease, or a tunnel probe.
func (s *Service) checkedIn(ctx context.Context, cluster *fleetv1.Cluster) (bool, error) {
	if !cluster.Status.Agent.LastSeen.IsZero() {
		return true, nil
	}
	ns := clusterns.Name(cluster.Namespace, cluster.Name)
	for _, name := range []string{clusterjoin.HeartbeatLease, clusterns.TunnelLease} {
		var lease coordinationv1.Lease
		err := s.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &lease)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return false, fmt.Errorf("reading Lease %s/%s: %w", ns, name, err)
		case lease.Spec.RenewTime != nil:
			return true, nil
		}
	}
	return false, nil
}

// agentLabels reads the labels cluster's agent set (AgentLabelsAnnotation).
func agentLabels(cluster *fleetv1.Cluster) map[string]string {
	out := map[string]string{}
	if v := cluster.Annotations[fleetv1.AgentLabelsAnnotation]; v != "" {
		_ = json.Unmarshal([]byte(v), &out)
	}
	return out
}

// mergeAgentLabels applies the labels an agent proposes to cluster: a key
// the Cluster does not have, or one that still has the value the agent set
// last, is the agent's; any other is an admin's and stays. It returns the
// keys it left alone, sorted, and records what the agent owns now.
func mergeAgentLabels(cluster *fleetv1.Cluster, proposed map[string]string) (kept []string) {
	owned := agentLabels(cluster)
	if cluster.Labels == nil {
		cluster.Labels = map[string]string{}
	}
	for k, v := range proposed {
		cur, has := cluster.Labels[k]
		if ov, own := owned[k]; has && (!own || ov != cur) {
			kept = append(kept, k)
			continue
		}
		cluster.Labels[k] = v
		owned[k] = v
	}
	// Forget what the agent owned and no longer holds (an admin changed or
	// removed it).
	for k, v := range owned {
		if cur, has := cluster.Labels[k]; !has || cur != v {
			delete(owned, k)
		}
	}
	if cluster.Annotations == nil {
		cluster.Annotations = map[string]string{}
	}
	data, _ := json.Marshal(owned)
	cluster.Annotations[fleetv1.AgentLabelsAnnotation] = string(data)
	sort.Strings(kept)
	return kept
}

// tokenLocks serialises the creation of Clusters per token on this replica,
// so concurrent registrations cannot overshoot maxClusters.
type tokenLocks struct{ m sync.Map }

func (l *tokenLocks) lock(uid types.UID) func() {
	v, _ := l.m.LoadOrStore(uid, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// RegistrationTokenIndex indexes Clusters by the UID of the token that
// created them.
const RegistrationTokenIndex = "registrationTokenUID"

func indexRegistrationToken(o client.Object) []string {
	if uid := o.GetAnnotations()[fleetv1.RegistrationTokenUIDAnnotation]; uid != "" {
		return []string{uid}
	}
	return nil
}

// MaxClusters is crt's maxClusters, or the default.
func MaxClusters(crt *fleetv1.ClusterRegistrationToken) int {
	if crt.Spec.MaxClusters != nil {
		return int(*crt.Spec.MaxClusters)
	}
	return fleetv1.DefaultMaxClusters
}

// checkQuota refuses a new Cluster when crt has created maxClusters.
func (s *Service) checkQuota(ctx context.Context, crt *fleetv1.ClusterRegistrationToken) error {
	var list fleetv1.ClusterList
	if err := s.cache.List(ctx, &list, client.InNamespace(crt.Namespace), client.MatchingFields{RegistrationTokenIndex: string(crt.UID)}); err != nil {
		return fmt.Errorf("counting the clusters of token %s: %w", klogRef(crt), err)
	}
	if max := MaxClusters(crt); len(list.Items) >= max {
		s.recorder.Eventf(crt, nil, corev1.EventTypeWarning, ReasonMaxClustersReached, "Register",
			"Refused a new cluster: this token has registered its maximum of %d clusters (spec.maxClusters)", max)
		return &refusal{status: http.StatusForbidden, msg: fmt.Sprintf(
			"registration token %s has registered its maximum of %d clusters (spec.maxClusters): an admin raises spec.maxClusters or creates another token", klogRef(crt), max)}
	}
	return nil
}

// awaitCached waits until the manager's cache has cluster, so the next
// quota count includes it.
func (s *Service) awaitCached(ctx context.Context, cluster *fleetv1.Cluster) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if s.cache.Get(ctx, client.ObjectKeyFromObject(cluster), &fleetv1.Cluster{}) == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// clusterAnnotations are a new Cluster's: who created it and the agent's
// labels.
func newClusterAnnotations(crt *fleetv1.ClusterRegistrationToken, labels map[string]string) map[string]string {
	data, _ := json.Marshal(labels)
	return map[string]string{
		fleetv1.AgentLabelsAnnotation:          string(data),
		fleetv1.RegistrationTokenAnnotation:    crt.Name,
		fleetv1.RegistrationTokenUIDAnnotation: string(crt.UID),
	}
}
