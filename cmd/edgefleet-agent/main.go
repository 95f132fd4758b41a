// Command edgefleet-agent is the cluster agent. It runs in (or next to) a
// downstream cluster on small devices, so it links neither the control plane
// nor the manager's controllers.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/edgefleet/edgefleet/internal/agent"
	"github.com/edgefleet/edgefleet/internal/logging"
	"github.com/edgefleet/edgefleet/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgefleet-agent: error: %v\n", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var logOpts logging.Options
	var log logr.Logger
	root := &cobra.Command{
		Use:           "edgefleet-agent",
		Short:         "edgefleet cluster agent: pulls BundleDeployments from the manager and applies them to its cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			l, err := logging.New(logOpts, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			log = l
			ctrl.SetLogger(l)
			klog.SetLogger(l)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&logOpts.Level, "log-level", "info", "log verbosity: debug, info, warn, error, or a number (higher is more verbose)")
	root.PersistentFlags().StringVar(&logOpts.Format, "log-format", "text", "log format: text or json")
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.String("edgefleet-agent"))
		},
	})
	f := &agent.Flags{}
	run := &cobra.Command{
		Use:   "run",
		Short: "Run the agent: deploy this cluster's BundleDeployments and report their status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.Complete()
			if err != nil {
				return err
			}
			o.Log = log
			if err := agent.Run(cmd.Context(), o); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	f.AddFlags(run.Flags())
	root.AddCommand(run)
	return root
}
