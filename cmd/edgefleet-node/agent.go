package main

import (
	"errors"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgefleet/edgefleet/internal/node/agent"
	"github.com/edgefleet/edgefleet/internal/node/planner"
	"github.com/edgefleet/edgefleet/internal/node/register"
)

func newAgentCommand() *cobra.Command {
	var configPath, root, planState, imagesDir, logFormat string
	var reRegister, retryBase, retryMax time.Duration
	var noImages bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: register if needed, then apply this machine's plan and report it",
		Long: `Run until stopped: register the machine if its state directory holds no
credential yet (as 'register' does), then watch the machine's own plan Secret
on the manager with the machine's own credential, apply the plan (files,
one-time instructions once per plan, periodic instructions, probes; see
docs/spec/plan.md) and report the result on the MachineInventory's
status.plan.

The last plan and the progress on it stay in the state directory: after a
restart or a reboot the agent goes on where it stopped, and periodic
instructions and probes keep running while the manager is unreachable.

Exit code 3: the manager deleted this machine's inventory; it must be
re-provisioned (or its state directory removed to register as a new machine).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := register.LoadConfig(configPath)
			if err != nil {
				return err
			}
			var h slog.Handler = slog.NewTextHandler(cmd.ErrOrStderr(), nil)
			if logFormat == "json" {
				h = slog.NewJSONHandler(cmd.ErrOrStderr(), nil)
			}
			var images planner.ImageStore
			if !noImages {
				if imagesDir == "" {
					imagesDir = cfg.StateDir + "/images"
				}
				images = &planner.RegistryImages{Dir: imagesDir}
			}
			err = agent.Run(cmd.Context(), agent.Options{
				Config: cfg, Root: root, PlanStateDir: planState, ReRegisterEvery: reRegister,
				BackoffBase: retryBase, BackoffMax: retryMax, Images: images, Log: slog.New(h),
			})
			if errors.Is(err, register.ErrReprovisioningNeeded) {
				return &exitError{code: exitReprovision, err: err}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "node config file (default: the seed media's, then /etc/edgefleet/edgefleet-node.yaml)")
	f.StringVar(&root, "root", "/", "directory plan files are written below")
	f.StringVar(&planState, "plan-state-dir", "", "where the plan and its progress are kept (default <state-dir>/plan)")
	f.StringVar(&imagesDir, "images-dir", "", "where instruction images are extracted (default <state-dir>/images)")
	f.BoolVar(&noImages, "no-images", false, "refuse instructions with an image")
	f.DurationVar(&reRegister, "re-register-every", agent.DefaultReRegisterEvery, "register again at this interval to renew the credential and refresh labels")
	f.DurationVar(&retryBase, "retry-base", planner.DefaultBackoffBase, "first wait before a failed plan is retried (doubles each time)")
	f.DurationVar(&retryMax, "retry-max", planner.DefaultBackoffMax, "longest wait before a failed plan is retried")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	return cmd
}
