package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// kubeFlags are the manager-API connection flags of the token and
// kubeconfig commands.
type kubeFlags struct {
	kubeconfig, context string
}

func (k *kubeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig of the edgefleet API (default $KUBECONFIG, then ~/.kube/config)")
	cmd.Flags().StringVar(&k.context, "context", "", "kubeconfig context to use")
}

func (k *kubeFlags) loader() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context})
}

func (k *kubeFlags) client() (client.Client, *rest.Config, error) {
	cfg, err := k.loader().ClientConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("loading kubeconfig: %w (pass --kubeconfig; an embedded edgefleet server writes <data-dir>/kubeconfig)", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, nil, err
	}
	if err := fleetv1.AddToScheme(scheme); err != nil {
		return nil, nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", cfg.Host, err)
	}
	return c, cfg, nil
}

// endpointInfo reads the URL and CA the manager publishes: the CLI's only
// source of the endpoint's CA. It never reads the CA Secret, which holds the
// key (TestCLINeverReadsTheCASecret).
func endpointInfo(ctx context.Context, c client.Client) (*corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	if err := c.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.EndpointConfigMap}, &cm); err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s, where the manager publishes its URL and CA: %w (is `edgefleet server` running against this API?)", clusterjoin.SystemNamespace, clusterjoin.EndpointConfigMap, err)
	}
	return &cm, nil
}

func newTokenCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage cluster registration tokens"}
	cmd.AddCommand(newTokenCreateCommand(g))
	return cmd
}

func newTokenCreateCommand(_ *globals) *cobra.Command {
	var k kubeFlags
	var namespace string
	var ttl time.Duration
	var maxClusters int32
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a registration token and print the commands that join a cluster with it",
		Long: `Create a ClusterRegistrationToken and print it with ready-to-paste join
commands. Clusters that join with it become Clusters in --namespace. The token
can be used by many clusters until it expires (--ttl); expired tokens are
deleted. Joined clusters keep working after their token expires or is
deleted: they hold their own credential. A token creates at most
--max-clusters Clusters.`,
		Example: `  edgefleet token create --kubeconfig ./edgefleet-data/kubeconfig
  edgefleet token create -n fleet-default --ttl 24h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl <= 0 {
				return fmt.Errorf("--ttl must be positive, e.g. 168h")
			}
			if maxClusters < 1 || maxClusters > 100000 {
				return fmt.Errorf("--max-clusters must be 1 to 100000")
			}
			c, _, err := k.client()
			if err != nil {
				return err
			}
			return createToken(cmd.Context(), c, namespace, ttl, maxClusters, cmd.OutOrStdout())
		},
	}
	k.add(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", defaultApplyNamespace, "namespace of the token; joined clusters are created here")
	cmd.Flags().DurationVar(&ttl, "ttl", fleetv1.DefaultClusterRegistrationTokenTTL, "how long the token is valid")
	cmd.Flags().Int32Var(&maxClusters, "max-clusters", fleetv1.DefaultMaxClusters, "how many Clusters registrations with this token may create (spec.maxClusters)")
	return cmd
}

func createToken(ctx context.Context, c client.Client, namespace string, ttl time.Duration, maxClusters int32, out io.Writer) error {
	ep, err := endpointInfo(ctx, c)
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	crt := &fleetv1.ClusterRegistrationToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, GenerateName: "token-"},
		Spec:       fleetv1.ClusterRegistrationTokenSpec{TTL: &metav1.Duration{Duration: ttl}, MaxClusters: &maxClusters},
	}
	if err := c.Create(ctx, crt); err != nil {
		return fmt.Errorf("creating ClusterRegistrationToken in %s: %w", namespace, err)
	}
	var sec corev1.Secret
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := c.Get(ctx, client.ObjectKeyFromObject(crt), crt); err == nil && crt.Status.SecretName != "" {
			if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: crt.Status.SecretName}, &sec); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ClusterRegistrationToken %s/%s has no Secret after 30s: is the manager's controller running? (kubectl describe crt -n %s %s)", namespace, crt.Name, namespace, crt.Name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	url, sum, token := ep.Data["url"], ep.Data["caChecksum"], string(sec.Data[clusterjoin.KeyToken])
	fmt.Fprintf(out, `Token %s/%s (valid until %s):
  %s

Join a cluster (run against that cluster), either by applying the import manifest:
  kubectl apply -f %s%s%s.yaml
or, trusting only the manager's CA:
  curl -sfL --cacert <(kubectl --kubeconfig <manager kubeconfig> get cm -n %s %s -o jsonpath='{.data.ca\.crt}') %s%s%s.yaml | kubectl apply -f -
or by running the agent directly:
  edgefleet agent --server %s --token %s --ca-checksum %s --kubeconfig <downstream kubeconfig> [--label env=prod]

CA sha256: %s
`, namespace, crt.Name, crt.Status.Expires.UTC().Format(time.RFC3339), token,
		url, clusterjoin.ImportPathPrefix, token,
		clusterjoin.SystemNamespace, clusterjoin.EndpointConfigMap, url, clusterjoin.ImportPathPrefix, token,
		url, token, sum, sum)
	return nil
}

func newKubeconfigCommand(_ *globals) *cobra.Command {
	var k kubeFlags
	var namespace string
	cmd := &cobra.Command{
		Use:   "kubeconfig CLUSTER",
		Short: "Print a kubeconfig that reaches a downstream cluster through the manager's proxy",
		Long: `Print a kubeconfig whose server is https://<manager>/k8s/clusters/<namespace>.<cluster>:
requests go through the cluster's agent tunnel, so the cluster needs no
inbound access. You authenticate to the manager with the credentials of your
current kubeconfig context (client certificate or token); the downstream
cluster sees you by impersonation and its own RBAC decides.`,
		Example: `  edgefleet kubeconfig cluster-1a2b3c4d5e6f --kubeconfig ./edgefleet-data/kubeconfig > edge.kubeconfig
  kubectl --kubeconfig edge.kubeconfig get nodes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := k.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var cluster fleetv1.Cluster
			if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: args[0]}, &cluster); err != nil {
				return fmt.Errorf("reading Cluster %s/%s: %w (list them with kubectl get clusters.fleet.edgefleet.io -A)", namespace, args[0], err)
			}
			ep, err := endpointInfo(ctx, c)
			if err != nil {
				return err
			}
			raw, err := k.loader().RawConfig()
			if err != nil {
				return err
			}
			out, err := proxyKubeconfig(raw, k.context, ep.Data["url"]+clusterjoin.ClusterProxyPrefix+namespace+"."+cluster.Name, []byte(ep.Data["ca.crt"]), namespace+"."+cluster.Name)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	k.add(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", defaultApplyNamespace, "namespace of the Cluster")
	return cmd
}

// proxyKubeconfig keeps the current context's user and points a new
// context at the proxy URL.
func proxyKubeconfig(raw clientcmdapi.Config, contextName, server string, ca []byte, name string) ([]byte, error) {
	if contextName == "" {
		contextName = raw.CurrentContext
	}
	kctx, ok := raw.Contexts[contextName]
	if !ok {
		return nil, fmt.Errorf("kubeconfig has no context %q", contextName)
	}
	user, ok := raw.AuthInfos[kctx.AuthInfo]
	if !ok {
		return nil, fmt.Errorf("kubeconfig context %q names user %q, which it does not define", contextName, kctx.AuthInfo)
	}
	out := clientcmdapi.NewConfig()
	out.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	out.AuthInfos[name] = user
	out.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	out.CurrentContext = name
	return clientcmd.Write(*out)
}
