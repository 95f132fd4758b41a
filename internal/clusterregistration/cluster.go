package clusterregistration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/kubenames"
)

// ClientIDIndex indexes Clusters by spec.clientID.
const ClientIDIndex = "spec.clientID"

// ClusterName is the name a registering cluster gets:
// "cluster-<first 24 hex of sha256(clientID)>". Fleet uses 12 hex (48 bits),
// few enough to search for a clientID whose name squats another cluster's;
// 96 bits are not, and still leave cluster-<namespace>-<name>-<hash> (the
// cluster's namespace) untruncated for Cluster namespaces of up to 13
// characters. Clusters registered with the short names keep them: they are
// found by clientID.
func ClusterName(clientID string) string {
	return "cluster-" + kubenames.HashHex(clientID, 24)
}

// Reserved reports whether a label key uses the reserved edgefleet.io domain.
func Reserved(key string) bool {
	prefix, _, ok := strings.Cut(key, "/")
	if !ok {
		return false
	}
	prefix = strings.ToLower(prefix)
	return prefix == fleetv1.ReservedLabelDomain || strings.HasSuffix(prefix, "."+fleetv1.ReservedLabelDomain)
}

// FilterLabels keeps the agent's labels that are valid and not reserved; it
// returns the dropped keys, sorted, for the log.
func FilterLabels(in map[string]string) (kept map[string]string, dropped []string) {
	kept = map[string]string{}
	for k, v := range in {
		if Reserved(k) || kubenames.ValidateLabel(k, v) != nil {
			dropped = append(dropped, k)
			continue
		}
		kept[k] = v
	}
	sort.Strings(dropped)
	return kept, dropped
}

// findOrCreateCluster returns the Cluster in crt's namespace with clientID,
// creating it when none exists (within crt's quota). An existing Cluster is
// taken over only with proof (authorizeReregistration); the agent's labels
// are merged without touching an admin's (mergeAgentLabels).
func (s *Service) findOrCreateCluster(ctx context.Context, in RegisterInput, labels map[string]string) (*fleetv1.Cluster, error) {
	crt, clientID := in.Token, in.ClientID
	namespace := crt.Namespace
	var list fleetv1.ClusterList
	if err := s.cache.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{ClientIDIndex: clientID}); err != nil {
		return nil, fmt.Errorf("looking up cluster with clientID %q: %w", clientID, err)
	}
	var cluster *fleetv1.Cluster
	if len(list.Items) > 0 {
		cluster = &list.Items[0]
	} else {
		created, err := s.createCluster(ctx, crt, clientID, labels)
		if created != nil || err != nil {
			return created, err
		}
		// The name exists with this clientID (the cache lagged): it is an
		// existing Cluster like any other.
		cluster = &fleetv1.Cluster{}
		if err := s.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ClusterName(clientID)}, cluster); err != nil {
			return nil, fmt.Errorf("reading cluster %s/%s: %w", namespace, ClusterName(clientID), err)
		}
	}
	var proof reregistrationProof
	for attempt := 1; ; attempt++ {
		var err error
		if proof, err = s.authorizeReregistration(ctx, cluster, in); err != nil {
			return nil, err
		}
		err = s.mergeLabels(ctx, cluster, labels)
		if err == nil {
			break
		}
		// The cache's copy was stale, or another registration changed the
		// Cluster: decide again on the stored object (an approval another
		// registration used is gone from it).
		if !apierrors.IsConflict(err) || attempt == 3 {
			return nil, fmt.Errorf("updating labels of cluster %s: %w", klogRef(cluster), err)
		}
		fresh := &fleetv1.Cluster{}
		if err := s.client.Get(ctx, client.ObjectKeyFromObject(cluster), fresh); err != nil {
			return nil, fmt.Errorf("reading cluster %s: %w", klogRef(cluster), err)
		}
		cluster = fresh
	}
	if proof != proofCredential {
		s.recorder.Eventf(cluster, nil, corev1.EventTypeNormal, ReasonReregistered, "Register", "Registered with token %s (%s)", crt.Name, proof)
	}
	return cluster, nil
}

// mergeLabels merges the agent's labels into cluster without touching an
// admin's, consumes a re-registration approval, and writes only when
// something changed. The optimistic lock makes a used approval count once.
func (s *Service) mergeLabels(ctx context.Context, cluster *fleetv1.Cluster, labels map[string]string) error {
	before := cluster.DeepCopy()
	cluster.Labels, cluster.Annotations = maps.Clone(cluster.Labels), maps.Clone(cluster.Annotations)
	if kept := mergeAgentLabels(cluster, labels); len(kept) > 0 {
		ctrl.LoggerFrom(ctx).Info("Kept admin-set labels the registering agent proposed to change", "Cluster", klog.KObj(cluster), "labels", kept)
	}
	delete(cluster.Annotations, fleetv1.ApproveReregistrationAnnotation)
	if maps.Equal(before.Labels, cluster.Labels) && maps.Equal(before.Annotations, cluster.Annotations) {
		return nil
	}
	return s.client.Patch(ctx, cluster, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
}

// createCluster creates the Cluster for clientID within crt's quota. It
// returns nil, nil when a Cluster of that name exists with the same
// clientID, and refuses one with another clientID: a colliding name is
// never adopted.
func (s *Service) createCluster(ctx context.Context, crt *fleetv1.ClusterRegistrationToken, clientID string, labels map[string]string) (*fleetv1.Cluster, error) {
	unlock := s.tokenLocks.lock(crt.UID)
	defer unlock()
	if err := s.checkQuota(ctx, crt); err != nil {
		return nil, err
	}
	// The annotation records the agent's own labels; the group label is the
	// token's, so the agent cannot take it away (nor, being reserved, set it).
	annotations := newClusterAnnotations(crt, labels)
	if g := crt.JoinGroup(); g != "" {
		if err := s.ensureJoinGroup(ctx, crt.Namespace, g); err != nil {
			return nil, err
		}
		labels = maps.Clone(labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[fleetv1.GroupLabelPrefix+g] = "true"
	}
	cluster := &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{
		Namespace: crt.Namespace, Name: ClusterName(clientID), Labels: labels, Annotations: annotations,
	}, Spec: fleetv1.ClusterSpec{ClientID: clientID}}
	err := s.client.Create(ctx, cluster)
	switch {
	case err == nil:
		ctrl.LoggerFrom(ctx).Info("Created cluster for registering agent", "Cluster", klog.KObj(cluster))
		s.awaitCached(ctx, cluster)
		return cluster, nil
	case apierrors.IsAlreadyExists(err):
		var existing fleetv1.Cluster
		if err := s.client.Get(ctx, client.ObjectKeyFromObject(cluster), &existing); err != nil {
			return nil, fmt.Errorf("reading cluster %s: %w", klogRef(cluster), err)
		}
		if existing.Spec.ClientID != clientID {
			return nil, &refusal{status: http.StatusConflict, msg: fmt.Sprintf(
				"cluster %s already exists for another clientID: the name derived from this clientID is taken; an admin deletes or renames that Cluster", klogRef(cluster))}
		}
		return nil, nil
	default:
		return nil, fmt.Errorf("creating cluster %s: %w", klogRef(cluster), err)
	}
}

// ensureJoinGroup creates ClusterGroup group in namespace, selecting the
// clusters labelled into it, unless a group of that name exists: an admin's
// own group (and selector) is never changed.
func (s *Service) ensureJoinGroup(ctx context.Context, namespace, group string) error {
	g := &fleetv1.ClusterGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: group},
		Spec:       fleetv1.ClusterGroupSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{fleetv1.GroupLabelPrefix + group: "true"}}},
	}
	var existing fleetv1.ClusterGroup
	if err := s.client.Get(ctx, client.ObjectKeyFromObject(g), &existing); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading ClusterGroup %s: %w", klogRef(g), err)
	}
	if err := s.client.Create(ctx, g); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ClusterGroup %s for the token's clusterGroup: %w", klogRef(g), err)
	}
	ctrl.LoggerFrom(ctx).Info("Created ClusterGroup for clusters joining with a token", "ClusterGroup", klogRef(g))
	return nil
}

// ensureNamespace creates the cluster's namespace as the cluster controller
// does, so the credential can be bound in it without waiting for that
// controller.
func (s *Service) ensureNamespace(ctx context.Context, cluster *fleetv1.Cluster) (*corev1.Namespace, error) {
	ns, err := clusterns.Ensure(ctx, s.client, cluster)
	switch name := clusterns.Name(cluster.Namespace, cluster.Name); {
	case errors.Is(err, clusterns.ErrNotOwned):
		return nil, fmt.Errorf("namespace %s does not belong to cluster %s", name, klogRef(cluster))
	case errors.Is(err, clusterns.ErrTerminating):
		return nil, fmt.Errorf("namespace %s of cluster %s is being deleted; retry when it is gone", name, klogRef(cluster))
	}
	return ns, err
}

func klogRef(o client.Object) string { return o.GetNamespace() + "/" + o.GetName() }
