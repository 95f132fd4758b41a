// Package cli defines the `edgefleet` command line; cmd/edgefleet only calls Execute.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/edgefleet/edgefleet/internal/logging"
	"github.com/edgefleet/edgefleet/internal/version"
)

type globals struct {
	logOpts logging.Options
	log     logr.Logger
}

// NewRoot builds the command tree.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "edgefleet",
		Short: "Take edge machines from power-on to GitOps-managed Kubernetes clusters",
		Long: `edgefleet registers machines, forms and imports Kubernetes clusters, and
deploys to thousands of them from Git. The Kubernetes API is its only API.

Start with:  edgefleet server --data-dir ./edgefleet-data`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(g.logOpts, stderr)
			if err != nil {
				return err
			}
			g.log = log
			ctrl.SetLogger(log)
			klog.SetLogger(log) // client-go and leader election log through klog
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.logOpts.Level, "log-level", "info", "log verbosity: debug, info, warn, error, or a number (higher is more verbose)")
	root.PersistentFlags().StringVar(&g.logOpts.Format, "log-format", "text", "log format: text or json")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())
	})
	root.AddCommand(
		newServerCommand(g),
		newDevClusterCommand(g),
		newAgentCommand(g),
		newVersionCommand(),
		newApplyCommand(g),
		newSeedImageCommand(g),
		newTokenCommand(g),
		newKubeconfigCommand(g),
		newClusterCommand(g),
		newMachineCommand(g),
		newFleetTestCommand(),
		newBackupCommand(),
		newRestoreCommand(),
		newDemoCommand(),
	)
	return root
}

// Execute runs the CLI and returns the process exit code.
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRoot(os.Stdout, os.Stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "edgefleet: error: %v\n", err)
		return 1
	}
	return 0
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), version.String("edgefleet"))
			return nil
		},
	}
}

// ignoreCanceled treats a shutdown by signal as success.
func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
