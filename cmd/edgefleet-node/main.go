// Command edgefleet-node is the node agent. It runs on each machine (register,
// inventory, plans) on small devices, so it links neither the control plane
// nor the manager's controllers.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/edgefleet/edgefleet/internal/version"
)

func main() {
	root := &cobra.Command{
		Use:           "edgefleet-node",
		Short:         "edgefleet node agent: registers the machine and runs its plans",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.String("edgefleet-node"))
		},
	})
	root.AddCommand(newRegisterCommand(), newInventoryCommand(), newAgentCommand())
	root.AddCommand(newInstallCommand(), newUpgradeCommand(), newBootCommand(), newResetCommand(), newCloudConfigCommand())
	root.AddCommand(newKubernetesCommand())
	root.AddCommand(newSimulatedOSCommand())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, root)
	stop()
	os.Exit(code)
}

// run executes root and returns the process's exit code.
func run(ctx context.Context, root *cobra.Command) int {
	err := root.ExecuteContext(ctx)
	var exit *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		fmt.Fprintf(os.Stderr, "edgefleet-node: %v\n", err)
		return exit.code
	default:
		fmt.Fprintf(os.Stderr, "edgefleet-node: error: %v\n", err)
		return 1
	}
}
