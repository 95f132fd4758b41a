package registration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	clusterctrl "github.com/edgefleet/edgefleet/internal/controller/cluster"
)

// ClientIDIndex indexes Clusters by spec.clientID.
const ClientIDIndex = "spec.clientID"

// ClusterName is the name a registering cluster gets:
// "cluster-<first 12 hex of sha256(clientID)>", as Fleet names them.
func ClusterName(clientID string) string {
	sum := sha256.Sum256([]byte(clientID))
	return "cluster-" + hex.EncodeToString(sum[:])[:12]
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
		if Reserved(k) || len(validation.IsQualifiedName(k)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
			dropped = append(dropped, k)
			continue
		}
		kept[k] = v
	}
	sort.Strings(dropped)
	return kept, dropped
}

// findOrCreateCluster returns the Cluster in namespace with clientID,
// creating it when none exists, and merges labels into it.
func (h *handlers) findOrCreateCluster(ctx context.Context, namespace, clientID string, labels map[string]string) (*fleetv1.Cluster, error) {
	var list fleetv1.ClusterList
	if err := h.cache.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{ClientIDIndex: clientID}); err != nil {
		return nil, fmt.Errorf("looking up cluster with clientID %q: %w", clientID, err)
	}
	var cluster *fleetv1.Cluster
	if len(list.Items) > 0 {
		cluster = &list.Items[0]
	} else {
		cluster = &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: ClusterName(clientID), Labels: labels}, Spec: fleetv1.ClusterSpec{ClientID: clientID}}
		err := h.client.Create(ctx, cluster)
		switch {
		case err == nil:
			ctrl.LoggerFrom(ctx).Info("Created cluster for registering agent", "Cluster", klogRef(cluster))
			return cluster, nil
		case apierrors.IsAlreadyExists(err):
			if err := h.client.Get(ctx, client.ObjectKeyFromObject(cluster), cluster); err != nil {
				return nil, fmt.Errorf("reading cluster %s: %w", klogRef(cluster), err)
			}
			if cluster.Spec.ClientID != clientID {
				return nil, fmt.Errorf("cluster %s exists with another clientID", klogRef(cluster))
			}
		default:
			return nil, fmt.Errorf("creating cluster %s: %w", klogRef(cluster), err)
		}
	}
	merged := maps.Clone(cluster.Labels)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, labels)
	if !maps.Equal(merged, cluster.Labels) {
		before := cluster.DeepCopy()
		cluster.Labels = merged
		if err := h.client.Patch(ctx, cluster, client.MergeFrom(before)); err != nil {
			return nil, fmt.Errorf("updating labels of cluster %s: %w", klogRef(cluster), err)
		}
	}
	return cluster, nil
}

// ensureNamespace creates the cluster's namespace as the cluster controller
// would, so the credential can be bound in it without waiting for that
// controller (which runs only on the leader).
func (h *handlers) ensureNamespace(ctx context.Context, cluster *fleetv1.Cluster) (*corev1.Namespace, error) {
	name := clusterctrl.NamespaceName(cluster.Namespace, cluster.Name)
	ns := &corev1.Namespace{}
	err := h.client.Get(ctx, client.ObjectKey{Name: name}, ns)
	if apierrors.IsNotFound(err) {
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			fleetv1.ManagedLabel: "true", fleetv1.ClusterNameLabel: cluster.Name, fleetv1.ClusterNamespaceLabel: cluster.Namespace,
		}}}
		err = h.client.Create(ctx, ns)
		if apierrors.IsAlreadyExists(err) {
			err = h.client.Get(ctx, client.ObjectKey{Name: name}, ns)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ensuring namespace %s of cluster %s: %w", name, klogRef(cluster), err)
	}
	if ns.Labels[fleetv1.ClusterNameLabel] != cluster.Name || ns.Labels[fleetv1.ClusterNamespaceLabel] != cluster.Namespace {
		return nil, fmt.Errorf("namespace %s does not belong to cluster %s", name, klogRef(cluster))
	}
	if !ns.DeletionTimestamp.IsZero() {
		return nil, fmt.Errorf("namespace %s of cluster %s is being deleted; retry when it is gone", name, klogRef(cluster))
	}
	return ns, nil
}

func klogRef(o client.Object) string { return o.GetNamespace() + "/" + o.GetName() }
