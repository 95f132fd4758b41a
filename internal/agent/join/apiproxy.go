package join

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// impersonatorTokenTTL is the life of the impersonator's token; it is
// refreshed at half-life.
const impersonatorTokenTTL = time.Hour

// ensureImpersonator creates the downstream ServiceAccount that may only
// impersonate (the import manifest creates the same objects).
func ensureImpersonator(ctx context.Context, c client.Client) error {
	if err := ensureNamespace(ctx, c); err != nil {
		return err
	}
	name := clusterjoin.ImpersonatorServiceAccount
	objs := []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: clusterjoin.SystemNamespace, Name: name}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: clusterjoin.ImpersonatorRules},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: clusterjoin.SystemNamespace, Name: name}}},
		// The manager's admins arrive as this group, never as
		// system:masters: they are cluster-admin here through a binding
		// this cluster's admin can see (and delete while the agent runs;
		// the agent recreates it when it starts).
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: clusterjoin.ManagerAdminsBinding},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: clusterjoin.ManagerAdminsGroup}}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	// An existing ClusterRole is reset to exactly the impersonation rules.
	var cr rbacv1.ClusterRole
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &cr); err != nil {
		return fmt.Errorf("reading ClusterRole %s: %w", name, err)
	}
	cr.Rules = clusterjoin.ImpersonatorRules
	if err := c.Update(ctx, &cr); err != nil {
		return fmt.Errorf("updating ClusterRole %s: %w", name, err)
	}
	return nil
}

// impersonatorToken keeps a fresh token of the impersonator account.
type impersonatorToken struct {
	cs      corev1client.CoreV1Interface
	mu      sync.Mutex
	token   string
	expires time.Time
}

func (t *impersonatorToken) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && time.Until(t.expires) > impersonatorTokenTTL/2 {
		return t.token, nil
	}
	secs := int64(impersonatorTokenTTL / time.Second)
	tr, err := t.cs.ServiceAccounts(clusterjoin.SystemNamespace).CreateToken(ctx, clusterjoin.ImpersonatorServiceAccount,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for %s/%s: %w", clusterjoin.SystemNamespace, clusterjoin.ImpersonatorServiceAccount, err)
	}
	t.token, t.expires = tr.Status.Token, tr.Status.ExpirationTimestamp.Time
	return t.token, nil
}

// APIServerHandler serves the manager's tunnel streams: it forwards to this
// cluster's own API server only, as the impersonator account, keeping the
// Impersonate-* headers the manager set for the caller. Requests for any
// other host, and CONNECT, are refused: the tunnel is not an open proxy.
func APIServerHandler(downstream *rest.Config) (http.Handler, error) {
	target, err := url.Parse(downstream.Host)
	if err != nil || target.Host == "" {
		return nil, fmt.Errorf("downstream API address %q is not a URL", downstream.Host)
	}
	if target.Scheme == "" {
		target.Scheme = "https"
	}
	// Server verification only: not the agent's own credentials.
	tlsCfg, err := rest.TLSConfigFor(&rest.Config{Host: downstream.Host, TLSClientConfig: rest.TLSClientConfig{
		CAData: downstream.CAData, CAFile: downstream.CAFile, ServerName: downstream.ServerName, Insecure: downstream.Insecure,
	}})
	if err != nil {
		return nil, fmt.Errorf("building downstream TLS config: %w", err)
	}
	if tlsCfg != nil {
		// HTTP/1.1 so upgrades (exec, attach, port-forward) pass through.
		tlsCfg.NextProtos = []string{"http/1.1"}
	}
	// Only TokenRequests are needed: a core/v1 client, not a clientset
	// with a REST client for every API group.
	cs, err := corev1client.NewForConfig(downstream)
	if err != nil {
		return nil, fmt.Errorf("creating downstream client for impersonator tokens: %w", err)
	}
	tok := &impersonatorToken{cs: cs}
	transport := &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 32, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect || r.Host != clusterjoin.TunnelAPIServerHost {
			http.Error(w, fmt.Sprintf("refused: this tunnel only reaches the cluster's own Kubernetes API (host %q), not %q", clusterjoin.TunnelAPIServerHost, r.Host), http.StatusForbidden)
			return
		}
		token, err := tok.get(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.Host = ""
				pr.Out.Header.Set("Authorization", "Bearer "+token)
			},
			Transport:     transport,
			FlushInterval: -1,
		}
		rp.ServeHTTP(w, r)
	}), nil
}
