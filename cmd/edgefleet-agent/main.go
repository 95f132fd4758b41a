// Command edgefleet-agent is the cluster agent. It runs in (or next to) a
// downstream cluster on small devices, so it links neither the control plane
// nor the manager's controllers.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/edgefleet/edgefleet/internal/version"
)

func main() {
	root := &cobra.Command{
		Use:           "edgefleet-agent",
		Short:         "edgefleet cluster agent: pulls BundleDeployments from the manager and applies them to its cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), version.String("edgefleet-agent")) },
	})
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "edgefleet-agent: error: %v\n", err)
		os.Exit(1)
	}
}
