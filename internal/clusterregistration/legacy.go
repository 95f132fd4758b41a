package clusterregistration

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// legacyContentReaderRole is the ClusterRole that let every cluster
// credential get any Content.
const legacyContentReaderRole = "edgefleet-content-reader"

// RevokeLegacyRights brings the RBAC of clusters registered by older
// versions to today's at start-up, rather than at each agent's next renewal
// (up to 12 h later): no more patching of the Cluster's status, no more
// reading every Content, and the heartbeat Lease right. It runs once, on the
// leader, with one list per kind.
func RevokeLegacyRights(ctx context.Context, c client.Client) error {
	var roles rbacv1.RoleList
	if err := c.List(ctx, &roles); err != nil {
		return fmt.Errorf("listing roles: %w", err)
	}
	for i := range roles.Items {
		role := &roles.Items[i]
		want, ok := currentAgentRules(role)
		if ok && role.Name == clusterjoin.ClusterServiceAccount && !clusterNamespace(ctx, c, role.Namespace) {
			continue
		}
		if !ok || equality.Semantic.DeepEqual(role.Rules, want) {
			continue
		}
		role.Rules = want
		if err := c.Update(ctx, role); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("updating role %s/%s: %w", role.Namespace, role.Name, err)
		}
	}
	var bindings rbacv1.ClusterRoleBindingList
	if err := c.List(ctx, &bindings); err != nil {
		return fmt.Errorf("listing cluster role bindings: %w", err)
	}
	for i := range bindings.Items {
		b := &bindings.Items[i]
		if strings.HasPrefix(b.Name, contentBindingPrefix) && b.RoleRef.Kind == "ClusterRole" && b.RoleRef.Name == legacyContentReaderRole {
			if err := c.Delete(ctx, b); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting cluster role binding %s: %w", b.Name, err)
			}
		}
	}
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: legacyContentReaderRole}}
	if err := c.Delete(ctx, cr); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting cluster role %s: %w", cr.Name, err)
	}
	return nil
}

// currentAgentRules returns the rules role should have if it is one of the
// Roles ensureRBAC writes: the agent's Role in a cluster namespace, or the
// per-cluster Role that may get the Cluster (minus any right on its status).
func currentAgentRules(role *rbacv1.Role) ([]rbacv1.PolicyRule, bool) {
	switch {
	case role.Name == clusterjoin.ClusterServiceAccount && strings.HasPrefix(role.Namespace, "cluster-"):
		return agentRules, true
	case strings.HasPrefix(role.Name, "edgefleet-agent-") && ownedByCluster(role):
		return slices.DeleteFunc(slices.Clone(role.Rules), func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.APIGroups, fleetv1.GroupVersion.Group) && slices.Contains(r.Resources, "clusters/status")
		}), true
	}
	return nil, false
}

func ownedByCluster(o client.Object) bool {
	for _, ref := range o.GetOwnerReferences() {
		if ref.Kind == "Cluster" && ref.APIVersion == fleetv1.GroupVersion.String() {
			return true
		}
	}
	return false
}

// clusterNamespace reports whether ns is a cluster namespace edgefleet made.
func clusterNamespace(ctx context.Context, c client.Client, ns string) bool {
	var n corev1.Namespace
	return c.Get(ctx, client.ObjectKey{Name: ns}, &n) == nil && n.Labels[fleetv1.ManagedLabel] == "true" && n.Labels[fleetv1.ClusterNameLabel] != ""
}
