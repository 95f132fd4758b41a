package nodeops

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/edgefleet/edgefleet/internal/clusterproxy"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

const (
	// ServiceAccount is the manager identity formation acts as downstream.
	ServiceAccount = "edgefleet-formation"
	// proxyBinding lets it use the kube-api proxy of every cluster.
	proxyBinding = "edgefleet-formation-proxy"
	// DownstreamRole is the ClusterRole (and binding) in formed clusters.
	DownstreamRole = "edgefleet-formation"
	tokenLifetime  = time.Hour
	// requestTimeout bounds each request through a tunnel.
	requestTimeout = 15 * time.Second
)

// DownstreamUser is the ServiceAccount's name in formed clusters.
func DownstreamUser() string {
	return clusterproxy.ServiceAccountUserPrefix + clusterjoin.SystemNamespace + ":" + ServiceAccount
}

// DownstreamRBAC is the YAML appended to formed clusters' import manifest:
// the rights node operations need, bound to DownstreamUser.
func DownstreamRBAC() []byte {
	role := rbacv1.ClusterRole{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: DownstreamRole},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "patch", "delete"}},
			// delete: a ManagedOSImage's drain.disableEviction deletes pods.
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}},
			// The kubelets' heartbeats (kube-node-lease): health checks see
			// a site going dark as a whole.
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"list"}},
		}}
	binding := rbacv1.ClusterRoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: DownstreamRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: DownstreamRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: DownstreamUser()}}}
	r, _ := yaml.Marshal(role)
	b, _ := yaml.Marshal(binding)
	return []byte("---\n" + string(r) + "---\n" + string(b))
}

// Tunnel makes clients of formed clusters through the manager's own
// endpoint: their kube-api proxy, authenticated as ServiceAccount with a
// short-lived token (TokenRequest), renewed before it expires.
type Tunnel struct {
	// Manager writes the ServiceAccount, its proxy binding and token
	// requests.
	Manager client.Client
	// Endpoint is the manager's URL (--external-url) and CAPEM its CA.
	Endpoint *url.URL
	CAPEM    []byte

	mu      sync.Mutex
	token   string
	expires time.Time
}

// Clientset is a client of the formed cluster registered as fleet Cluster key.
func (t *Tunnel) Clientset(ctx context.Context, key types.NamespacedName) (kubernetes.Interface, error) {
	tok, err := t.bearer(ctx)
	if err != nil {
		return nil, err
	}
	cfg := &rest.Config{
		Host:            t.Endpoint.String() + clusterproxy.ClusterPath(key.Namespace, key.Name),
		BearerToken:     tok,
		TLSClientConfig: rest.TLSClientConfig{CAData: t.CAPEM},
		Timeout:         requestTimeout,
		QPS:             20, Burst: 40,
	}
	return kubernetes.NewForConfig(cfg)
}

func (t *Tunnel) bearer(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && time.Until(t.expires) > tokenLifetime/4 {
		return t.token, nil
	}
	if err := t.ensureIdentity(ctx); err != nil {
		return "", err
	}
	secs := int64(tokenLifetime.Seconds())
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: clusterjoin.SystemNamespace, Name: ServiceAccount}}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}
	if err := t.Manager.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", fmt.Errorf("requesting a token of ServiceAccount %s/%s: %w", sa.Namespace, sa.Name, err)
	}
	t.token, t.expires = tr.Status.Token, tr.Status.ExpirationTimestamp.Time
	return t.token, nil
}

// ensureIdentity creates the ServiceAccount and binds it to the proxy role.
func (t *Tunnel) ensureIdentity(ctx context.Context) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterjoin.SystemNamespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: clusterjoin.SystemNamespace, Name: ServiceAccount}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: proxyBinding},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterproxy.ProxyClusterRole},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: clusterjoin.SystemNamespace, Name: ServiceAccount}}},
	}
	for _, o := range objs {
		if err := t.Manager.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}
