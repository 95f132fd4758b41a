package clusterproxy

import (
	"context"
	"fmt"
	"strings"

	authzv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// The manager-side right to use a cluster's kube-api proxy: verb "proxy" on
// clusters/proxy in group fleet.edgefleet.io, in the Cluster's namespace, for
// the Cluster's name. Downstream RBAC still decides what the caller may do
// there; this decides whether the caller reaches the cluster at all.
const (
	ProxyVerb        = "proxy"
	ProxyResource    = "clusters"
	ProxySubresource = "proxy"
	// ProxyClusterRole grants ProxyVerb on every Cluster its binding covers:
	// bind it with a RoleBinding in a Cluster namespace (optionally
	// narrowed by a copy with resourceNames) to let users reach those
	// clusters.
	ProxyClusterRole = "edgefleet-cluster-proxy"
)

// Downstream identity mapping. Manager identities that mean something
// special to a Kubernetes API server are never replayed downstream as
// they are:
const (
	// ManagerAdminsGroup replaces system:masters. The agent binds it to
	// cluster-admin downstream (ClusterRoleBinding edgefleet-manager-admins),
	// so manager admins administer joined clusters through RBAC the
	// downstream cluster can see and remove, never through system:masters,
	// which bypasses downstream authorization.
	ManagerAdminsGroup = clusterjoin.ManagerAdminsGroup
	// ServiceAccountUserPrefix replaces "system:serviceaccount:": the manager's
	// ServiceAccount <ns>/<name> is "edgefleet:sa:<ns>:<name>" downstream, so it
	// can never act as the downstream ServiceAccount of the same name.
	ServiceAccountUserPrefix = "edgefleet:sa:"
	// ReservedUserPrefix is prepended to other manager user names that start
	// with "system:" or "edgefleet:" ("system:admin" -> "edgefleet:system:admin").
	ReservedUserPrefix = "edgefleet:"
)

// proxyAttributes is what the SubjectAccessReview asks about a cluster.
func proxyAttributes(key types.NamespacedName) *authzv1.ResourceAttributes {
	return &authzv1.ResourceAttributes{
		Namespace: key.Namespace, Name: key.Name, Verb: ProxyVerb,
		Group: fleetv1.GroupVersion.Group, Resource: ProxyResource, Subresource: ProxySubresource,
	}
}

// authorize asks the manager's RBAC whether u may proxy to the cluster.
func (s *Server) authorize(ctx context.Context, u *authn.User, key types.NamespacedName) error {
	ok, reason, err := s.authz.Allowed(ctx, u, proxyAttributes(key), nil)
	if err != nil {
		return err
	}
	if !ok {
		msg := fmt.Sprintf("%s may not use the kube-api proxy of cluster %s: it needs verb %q on %s/%s (group %s) in namespace %s on the manager, e.g. a RoleBinding to ClusterRole %s",
			u.Name, key, ProxyVerb, ProxyResource, ProxySubresource, fleetv1.GroupVersion.Group, key.Namespace, ProxyClusterRole)
		if reason != "" {
			msg += " (" + reason + ")"
		}
		return &forbidden{msg: msg}
	}
	return nil
}

type forbidden struct{ msg string }

func (f *forbidden) Error() string { return f.msg }

// DownstreamIdentity is the identity a manager caller has downstream (see
// docs/tunnel.md): ServiceAccounts and system users are renamed, system:masters
// becomes ManagerAdminsGroup, every other "system:" or "edgefleet:" group is
// dropped, and names and groups outside those prefixes pass unchanged.
func DownstreamIdentity(u *authn.User) *authn.User {
	out := &authn.User{Name: downstreamUser(u.Name), UID: u.UID, Extra: u.Extra}
	seen := map[string]bool{}
	for _, g := range u.Groups {
		switch {
		case g == "system:masters":
			g = ManagerAdminsGroup
		case strings.HasPrefix(g, "system:"), strings.HasPrefix(g, "edgefleet:"):
			continue
		}
		if !seen[g] {
			seen[g] = true
			out.Groups = append(out.Groups, g)
		}
	}
	return out
}

func downstreamUser(name string) string {
	if ns, sa, ok := (&authn.User{Name: name}).ServiceAccount(); ok {
		return ServiceAccountUserPrefix + ns + ":" + sa
	}
	if strings.HasPrefix(name, "system:") || strings.HasPrefix(name, "edgefleet:") {
		return ReservedUserPrefix + name
	}
	return name
}

// EnsureProxyClusterRole creates ProxyClusterRole, or resets its rules.
func EnsureProxyClusterRole(ctx context.Context, c client.Client) error {
	rules := []rbacv1.PolicyRule{{APIGroups: []string{fleetv1.GroupVersion.Group}, Resources: []string{ProxyResource + "/" + ProxySubresource}, Verbs: []string{ProxyVerb}}}
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ProxyClusterRole}, Rules: rules}
	err := c.Create(ctx, cr)
	if apierrors.IsAlreadyExists(err) {
		if err = c.Get(ctx, client.ObjectKeyFromObject(cr), cr); err == nil {
			cr.Rules = rules
			err = c.Update(ctx, cr)
		}
	}
	if err != nil {
		return fmt.Errorf("ensuring ClusterRole %s: %w", ProxyClusterRole, err)
	}
	return nil
}
