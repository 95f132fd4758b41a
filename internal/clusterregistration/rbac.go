package clusterregistration

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// contentBindingPrefix + the cluster namespace named the ClusterRoleBinding
// that once let every cluster credential get any Content. Agents now read
// Contents only through the endpoint (contentGuard), which checks that the
// cluster's BundleDeployments use them; ensureRBAC deletes old bindings.
const contentBindingPrefix = "edgefleet-content-"

// clusterRoleName is the per-cluster Role (in the Cluster's namespace) and
// ClusterRoleBinding name.
func clusterRoleName(cluster *fleetv1.Cluster) string {
	return "edgefleet-agent-" + cluster.Name
}

// agentRules are the credential's rights in the cluster's own namespace.
var agentRules = []rbacv1.PolicyRule{
	{APIGroups: []string{fleetv1.GroupVersion.Group}, Resources: []string{"bundledeployments"}, Verbs: []string{"get", "list", "watch", "patch", "update"}},
	{APIGroups: []string{fleetv1.GroupVersion.Group}, Resources: []string{"bundledeployments/status"}, Verbs: []string{"get", "patch", "update"}},
	// The heartbeat: only the agent's own Lease, created by the manager (no
	// create right, so the agent cannot plant the tunnel Lease).
	{APIGroups: []string{coordinationv1.GroupName}, Resources: []string{"leases"}, ResourceNames: []string{clusterjoin.HeartbeatLease}, Verbs: []string{"get", "patch", "update"}},
}

// ensureRBAC gives the cluster's ServiceAccount exactly: its namespace's
// BundleDeployments, its heartbeat Lease and get on its own Cluster
// (Contents it reads through the endpoint, see contentGuard). It has no right on the Cluster's status: status.namespace decides
// where the manager writes, so the manager alone writes status (the agent's
// facts come from its heartbeat Lease).
func (s *Service) ensureRBAC(ctx context.Context, cluster *fleetv1.Cluster, ns *corev1.Namespace) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: clusterjoin.ClusterServiceAccount}}
	if err := s.client.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating service account %s/%s: %w", sa.Namespace, sa.Name, err)
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns.Name, Name: clusterjoin.ClusterServiceAccount}}
	clusterOwner := []metav1.OwnerReference{{APIVersion: fleetv1.GroupVersion.String(), Kind: "Cluster", Name: cluster.Name, UID: cluster.UID}}
	objs := []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: clusterjoin.ClusterServiceAccount}, Rules: agentRules},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: clusterjoin.ClusterServiceAccount}, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: clusterjoin.ClusterServiceAccount}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: cluster.Namespace, Name: clusterRoleName(cluster), OwnerReferences: clusterOwner}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{fleetv1.GroupVersion.Group}, Resources: []string{"clusters"}, ResourceNames: []string{cluster.Name}, Verbs: []string{"get"}},
		}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: cluster.Namespace, Name: clusterRoleName(cluster), OwnerReferences: clusterOwner}, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: clusterRoleName(cluster)}},
	}
	for _, o := range objs {
		if err := s.upsert(ctx, o); err != nil {
			return err
		}
	}
	old := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: contentBindingPrefix + ns.Name}}
	if err := s.client.Delete(ctx, old); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the former content binding %s: %w", old.Name, err)
	}
	return clusterns.EnsureHeartbeatLease(ctx, s.client, ns.Name)
}

// upsert creates o, or updates the existing object's rules, subjects and
// owners when they differ.
func (s *Service) upsert(ctx context.Context, o client.Object) error {
	err := s.client.Create(ctx, o)
	if err == nil || !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("creating %T %s: %w", o, klogRef(o), err)
		}
		return nil
	}
	existing := o.DeepCopyObject().(client.Object)
	if err := s.client.Get(ctx, client.ObjectKeyFromObject(o), existing); err != nil {
		return fmt.Errorf("reading %T %s: %w", o, klogRef(o), err)
	}
	same := equality.Semantic.DeepEqual(existing.GetOwnerReferences(), o.GetOwnerReferences()) || len(o.GetOwnerReferences()) == 0
	switch want := o.(type) {
	case *rbacv1.Role:
		same = same && equality.Semantic.DeepEqual(existing.(*rbacv1.Role).Rules, want.Rules)
	case *rbacv1.ClusterRole:
		same = same && equality.Semantic.DeepEqual(existing.(*rbacv1.ClusterRole).Rules, want.Rules)
	case *rbacv1.RoleBinding:
		same = same && equality.Semantic.DeepEqual(existing.(*rbacv1.RoleBinding).Subjects, want.Subjects)
	case *rbacv1.ClusterRoleBinding:
		same = same && equality.Semantic.DeepEqual(existing.(*rbacv1.ClusterRoleBinding).Subjects, want.Subjects)
	}
	if same {
		return nil
	}
	o.SetResourceVersion(existing.GetResourceVersion())
	if err := s.client.Update(ctx, o); err != nil {
		return fmt.Errorf("updating %T %s: %w", o, klogRef(o), err)
	}
	return nil
}
