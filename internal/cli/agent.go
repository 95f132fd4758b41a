package cli

import (
	"github.com/spf13/cobra"

	"github.com/edgefleet/edgefleet/internal/agent"
)

func newAgentCommand(g *globals) *cobra.Command {
	f := &agent.Flags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the cluster agent (the same code as edgefleet-agent run)",
		Long: `Run the cluster agent: watch this cluster's BundleDeployments on the manager's
Kubernetes API, deploy them to the downstream cluster, and report status back.
Usually the small edgefleet-agent binary runs this in the downstream cluster;
this command is for trying edgefleet from one binary.`,
		Example: `  edgefleet agent --manager-kubeconfig ./edgefleet-data/kubeconfig \
    --cluster-namespace cluster-fleet-local-local --kubeconfig ./downstream-1/kubeconfig`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.Complete()
			if err != nil {
				return err
			}
			o.Log = g.log
			return ignoreCanceled(agent.Run(cmd.Context(), o))
		},
	}
	f.AddFlags(cmd.Flags())
	return cmd
}
