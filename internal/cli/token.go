package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
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
	var group string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a registration token and print the commands that join a cluster with it",
		Long: `Create a ClusterRegistrationToken and print it with ready-to-paste join
commands. Clusters that join with it become Clusters in --namespace. The token
can be used by many clusters until it expires (--ttl); expired tokens are
deleted. Joined clusters keep working after their token expires or is
deleted: they hold their own credential. A token creates at most
--max-clusters Clusters. Joining clusters are put in ClusterGroup
--cluster-group ("default" unless set: bundles without targets go to that
group, as in Fleet; "-" for none).

The first join command printed works as printed, in bash, on any machine
with curl and kubectl: it carries the manager's CA, so nothing has to be
trusted or downloaded first.`,
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
			return createToken(cmd.Context(), c, namespace, ttl, maxClusters, group, cmd.OutOrStdout())
		},
	}
	k.add(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", defaultApplyNamespace, "namespace of the token; joined clusters are created here")
	cmd.Flags().DurationVar(&ttl, "ttl", fleetv1.DefaultClusterRegistrationTokenTTL, "how long the token is valid")
	cmd.Flags().Int32Var(&maxClusters, "max-clusters", fleetv1.DefaultMaxClusters, "how many Clusters registrations with this token may create (spec.maxClusters)")
	cmd.Flags().StringVar(&group, "cluster-group", "", `ClusterGroup joining clusters are put in (spec.clusterGroup; default "default", "-" for none)`)
	return cmd
}

func createToken(ctx context.Context, c client.Client, namespace string, ttl time.Duration, maxClusters int32, group string, out io.Writer) error {
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
		Spec:       fleetv1.ClusterRegistrationTokenSpec{TTL: &metav1.Duration{Duration: ttl}, MaxClusters: &maxClusters, ClusterGroup: group},
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
	importURL := url + clusterjoin.ImportPathPrefix + token + ".yaml"
	groupLine := "Joining clusters are put in no ClusterGroup (--cluster-group -): give bundles targets that select them."
	if g := crt.JoinGroup(); g != "" {
		groupLine = fmt.Sprintf("Joining clusters are put in ClusterGroup %s/%s: bundles without targets (Fleet's default target) deploy to them.", namespace, g)
	}
	fmt.Fprintf(out, `Token %s/%s (valid until %s):
  %s

%s

Join a cluster: with kubectl pointing at that cluster, run (bash; the manager's CA is in the command):
  %s
or run the agent directly:
  edgefleet agent --server %s --token %s --ca-checksum %s --kubeconfig <downstream kubeconfig> [--label env=prod]
or, where this machine already trusts the manager's CA (it is not a public CA by default):
  kubectl apply -f %s

CA sha256: %s
`, namespace, crt.Name, crt.Status.Expires.UTC().Format(time.RFC3339), token,
		groupLine,
		curlJoinCommand([]byte(ep.Data["ca.crt"]), importURL),
		url, token, sum,
		importURL, sum)
	return nil
}

// curlJoinCommand is a one-line bash command that fetches the import
// manifest trusting exactly the manager's CA, given inline (PEM lines hold
// only base64 and dashes, safe in single quotes), and applies it.
func curlJoinCommand(caPEM []byte, importURL string) string {
	if strings.ContainsAny(importURL, "'\"\\ \t\r\n`$") {
		return fmt.Sprintf("# the manager's URL %q cannot be quoted safely; fix --external-url", importURL)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(caPEM)), "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		// The ConfigMap is read from the API: never let its content break
		// out of the quotes of a command a user pastes.
		if strings.Trim(l, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= -") != "" {
			return fmt.Sprintf("# the CA published in ConfigMap %s/%s is not plain PEM; fetch it yourself and run: curl -sSfL --cacert ca.pem '%s' | kubectl apply -f -", clusterjoin.SystemNamespace, clusterjoin.EndpointConfigMap, importURL)
		}
		lines = append(lines, "'"+l+"'")
	}
	return fmt.Sprintf(`curl -sSfL --cacert <(printf '%%s\n' %s) '%s' | kubectl apply -f -`, strings.Join(lines, " "), importURL)
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
