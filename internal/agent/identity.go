package agent

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/apply"
	"github.com/edgefleet/edgefleet/internal/agent/helmdeploy"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// ServiceAccountNamespace is where a bundle's serviceAccount lives on the
// downstream cluster: the agent's own namespace, as in Fleet (which looks it
// up in the agent's namespace, not in the bundle's).
const ServiceAccountNamespace = clusterjoin.SystemNamespace

// serviceAccountUser is the user a bundle's serviceAccount option is
// impersonated as, or "" when the bundle deploys with the agent's identity
// ("-" is Fleet's "cleared by a target customization").
func serviceAccountUser(opts fleetv1.BundleDeploymentOptions) string {
	if opts.ServiceAccount == "" || opts.ServiceAccount == "-" {
		return ""
	}
	return "system:serviceaccount:" + ServiceAccountNamespace + ":" + opts.ServiceAccount
}

// identities hands out the downstream clients a deployment writes with: the
// agent's own, or one impersonating the bundle's serviceAccount (kept per
// account; they share the agent's RESTMapper).
type identities struct {
	config     *rest.Config
	downstream client.Client
	helm       *helmdeploy.Deployer

	mu      sync.Mutex
	clients map[string]client.Client
}

// deployer is how one deployment writes downstream.
type deployer struct {
	applier *apply.Applier
	helm    *helmdeploy.Deployer
}

// forOptions returns the writers for a deployment with opts. A named
// serviceAccount that does not exist is an error saying how to fix it: the
// deployment never falls back to the agent's broader identity.
func (i *identities) forOptions(ctx context.Context, opts fleetv1.BundleDeploymentOptions) (*deployer, error) {
	user := serviceAccountUser(opts)
	if user == "" {
		return &deployer{applier: &apply.Applier{Client: i.downstream}, helm: i.helm}, nil
	}
	sa := &corev1.ServiceAccount{}
	err := i.downstream.Get(ctx, client.ObjectKey{Namespace: ServiceAccountNamespace, Name: opts.ServiceAccount}, sa)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("serviceAccount %q does not exist in namespace %s of this cluster: the bundle deploys as that ServiceAccount, never with the agent's own rights. Create it there and bind it (RoleBinding/ClusterRoleBinding) to what the bundle deploys, or remove serviceAccount from the bundle", opts.ServiceAccount, ServiceAccountNamespace)
	}
	if err != nil {
		return nil, fmt.Errorf("looking up serviceAccount %s/%s: %w", ServiceAccountNamespace, opts.ServiceAccount, err)
	}
	c, err := i.client(user)
	if err != nil {
		return nil, err
	}
	return &deployer{applier: &apply.Applier{Client: c, Agent: i.downstream}, helm: i.helm.As(user)}, nil
}

func (i *identities) client(user string) (client.Client, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if c, ok := i.clients[user]; ok {
		return c, nil
	}
	cfg := rest.CopyConfig(i.config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: i.downstream.Scheme(), Mapper: i.downstream.RESTMapper()})
	if err != nil {
		return nil, fmt.Errorf("creating a downstream client impersonating %s: %w", user, err)
	}
	if i.clients == nil {
		i.clients = map[string]client.Client{}
	}
	i.clients[user] = c
	return c, nil
}
