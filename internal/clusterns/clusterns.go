// Package clusterns names and creates the namespace on the manager that
// belongs to a Cluster (its BundleDeployments, credential, heartbeat Lease).
// The cluster controller and registration both create it, so a registering
// agent can get its credential before the controller ran: both call Ensure.
package clusterns

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/kubenames"
)

// Name is the namespace on the manager that holds the BundleDeployments of
// Cluster namespace/name:
// "cluster-<namespace>-<name>-<first 8 hex of sha256(namespace/name)>",
// lower-cased, with characters other than [a-z0-9-] replaced by "-" and the
// readable part shortened so the whole is a valid namespace name (at most
// 63 characters). The hash keeps names distinct after shortening.
func Name(namespace, name string) string {
	readable := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '-'
	}, "cluster-"+namespace+"-"+name)
	return kubenames.Shorten(readable, 63, kubenames.HashHex(namespace+"/"+name, 8), "-")
}

// Of returns the cluster's namespace on the manager and whether the
// cluster controller has created it. The name is always derived from the
// Cluster's own namespace and name, never read from status: status was
// once writable by the cluster's agent, and a namespace taken from it let
// one agent steer the manager's writes and deletes into any namespace.
// status.namespace only signals readiness, and only when it equals the
// derived name.
func Of(c *fleetv1.Cluster) (name string, ready bool) {
	name = Name(c.Namespace, c.Name)
	return name, c.Status.Namespace == name
}

// Errors of Ensure that no retry fixes by itself.
var (
	// ErrNotOwned: a namespace of the derived name exists and its labels do
	// not name the cluster. It is never adopted.
	ErrNotOwned = errors.New("namespace exists and does not belong to this cluster")
	// ErrTerminating: the namespace is being deleted (the Cluster was
	// deleted and recreated); retry when it is gone.
	ErrTerminating = errors.New("namespace is terminating")
)

// Owns reports whether ns is cluster's by its labels.
func Owns(ns *corev1.Namespace, cluster *fleetv1.Cluster) bool {
	return ns.Labels[fleetv1.ClusterNameLabel] == cluster.Name && ns.Labels[fleetv1.ClusterNamespaceLabel] == cluster.Namespace
}

// Ensure returns cluster's namespace, creating it if it does not exist. A
// namespace of that name that is not the cluster's is ErrNotOwned, one
// being deleted ErrTerminating (both wrapped with the name).
func Ensure(ctx context.Context, c client.Client, cluster *fleetv1.Cluster) (*corev1.Namespace, error) {
	name := Name(cluster.Namespace, cluster.Name)
	ns := &corev1.Namespace{}
	err := c.Get(ctx, client.ObjectKey{Name: name}, ns)
	if apierrors.IsNotFound(err) {
		ctrl.LoggerFrom(ctx).Info("Creating cluster namespace", "Namespace", name)
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			fleetv1.ManagedLabel: "true", fleetv1.ClusterNameLabel: cluster.Name, fleetv1.ClusterNamespaceLabel: cluster.Namespace,
		}}}
		err = c.Create(ctx, ns)
		if apierrors.IsAlreadyExists(err) {
			err = c.Get(ctx, client.ObjectKey{Name: name}, ns)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ensuring namespace %s of cluster %s/%s: %w", name, cluster.Namespace, cluster.Name, err)
	}
	if !Owns(ns, cluster) {
		return nil, fmt.Errorf("namespace %s: %w", name, ErrNotOwned)
	}
	if !ns.DeletionTimestamp.IsZero() {
		return nil, fmt.Errorf("namespace %s: %w", name, ErrTerminating)
	}
	return ns, nil
}
