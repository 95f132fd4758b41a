package cli

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

func newClusterCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Manage joined clusters"}
	cmd.AddCommand(newClusterRevokeCommand(g), newClusterPreviewCommand(), newClusterDescribeCommand())
	return cmd
}

func newClusterRevokeCommand(_ *globals) *cobra.Command {
	var k kubeFlags
	var namespace string
	cmd := &cobra.Command{
		Use:   "revoke CLUSTER",
		Short: "Invalidate a cluster's credentials and close its tunnel",
		Long: `Revoke every credential of a joined cluster: its ServiceAccount on the
manager is deleted (which invalidates every token issued for it: the
manager's API refuses them within its 10 s token cache), its credential
generation is bumped (the endpoint refuses renewals and tunnels of older
generations at once), and its tunnel is closed at the next probe on
whichever replica holds it. The Cluster, its labels and its deployments
stay. The agent can only come back by registering again with a valid
registration token (edgefleet token create).`,
		Example: `  edgefleet cluster revoke cluster-1a2b3c4d5e6f -n fleet-default --kubeconfig ./edgefleet-data/kubeconfig`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := k.client()
			if err != nil {
				return err
			}
			gen, ns, err := revokeCluster(cmd.Context(), c, types.NamespacedName{Namespace: namespace, Name: args[0]})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked the credentials of cluster %s/%s (generation %s; ServiceAccount %s/%s deleted).\nIts agent must register again with a registration token.\n", namespace, args[0], gen, ns, clusterjoin.ClusterServiceAccount)
			return nil
		},
	}
	k.add(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", defaultApplyNamespace, "namespace of the Cluster")
	return cmd
}

// revokeCluster bumps the Cluster's credential generation, then deletes the
// cluster's ServiceAccount in each namespace the manager made for it. The
// generation goes first: from then on the endpoint refuses the old
// credential even where the kube-apiserver still caches it.
func revokeCluster(ctx context.Context, c client.Client, key types.NamespacedName) (gen, nsName string, err error) {
	var cluster fleetv1.Cluster
	if err := c.Get(ctx, key, &cluster); err != nil {
		return "", "", fmt.Errorf("reading Cluster %s: %w (list them with kubectl get clusters.fleet.edgefleet.io -A)", key, err)
	}
	before := cluster.DeepCopy()
	n, _ := strconv.Atoi(clusterregistration.CredentialGeneration(&cluster))
	gen = strconv.Itoa(n + 1)
	if cluster.Annotations == nil {
		cluster.Annotations = map[string]string{}
	}
	cluster.Annotations[clusterregistration.CredentialGenerationAnnotation] = gen
	if err := c.Patch(ctx, &cluster, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return "", "", fmt.Errorf("bumping the credential generation of Cluster %s: %w (retry)", key, err)
	}
	// The namespaces are found by the labels the manager sets, not by
	// anything the agent writes.
	var nss corev1.NamespaceList
	if err := c.List(ctx, &nss, client.MatchingLabels{fleetv1.ManagedLabel: "true", fleetv1.ClusterNameLabel: key.Name, fleetv1.ClusterNamespaceLabel: key.Namespace}); err != nil {
		return "", "", fmt.Errorf("finding the namespace of Cluster %s: %w", key, err)
	}
	for _, ns := range nss.Items {
		sa := &corev1.ServiceAccount{}
		sa.Namespace, sa.Name = ns.Name, clusterjoin.ClusterServiceAccount
		if err := c.Delete(ctx, sa); err != nil && !apierrors.IsNotFound(err) {
			return "", "", fmt.Errorf("deleting ServiceAccount %s/%s of Cluster %s: %w (the generation is bumped already; retry to finish)", ns.Name, sa.Name, key, err)
		}
		nsName = ns.Name
	}
	return gen, nsName, nil
}
