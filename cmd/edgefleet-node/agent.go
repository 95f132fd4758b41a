package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgefleet/edgefleet/internal/node/agent"
	"github.com/edgefleet/edgefleet/internal/node/osinstall"
	"github.com/edgefleet/edgefleet/internal/node/planner"
	"github.com/edgefleet/edgefleet/internal/node/register"
)

func newAgentCommand() *cobra.Command {
	var configPath, root, planState, imagesDir, logFormat string
	var slotFile, device, cloudDir string
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

On an installed OS (the boot init wrote a, b or recovery to --boot-slot-file)
it also does what the OS needs at boot, in order: apply EF_OEM's cloud-config
files not applied yet; once the manager is reached, report status.os and the
OSReady/RolledBack conditions and confirm a slot on trial (as 'boot confirm');
in a recovery boot scheduled for a reset, run the reset (as 'reset --pending').

The last plan and the progress on it stay in the state directory: after a
restart or a reboot the agent goes on where it stopped, and periodic
instructions and probes keep running while the manager is unreachable.

Exit code 3: the manager deleted this machine's inventory; it must be
re-provisioned (or its state directory removed to register as a new machine).
When its registration allows a reset (config.elemental.reset.enabled) and the
machine runs an installed slot, the reset is scheduled and the machine reboots
into recovery first.`,
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
				OS: &agent.OSOptions{BootSlotFile: slotFile, Device: device, CloudConfigDir: cloudDir, PowerAction: powerAction},
			})
			if errors.Is(err, register.ErrReprovisioningNeeded) {
				var current json.RawMessage
				if re := (*register.ReprovisionError)(nil); errors.As(err, &re) {
					current = re.Reset
				}
				if rerr := resetOnReprovision(cmd, cfg.StateDir, slotFile, device, current); rerr != nil {
					logTo(cmd)("warning: %v", rerr)
				}
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
	f.StringVar(&slotFile, "boot-slot-file", osinstall.BootSlotFile, "where the boot init recorded the booted slot (a, b or recovery: an installed OS)")
	f.StringVar(&device, "device", "", "installed disk (default: the disk with the EF_STATE partition)")
	f.StringVar(&cloudDir, "cloud-config-dir", "/oem/"+osinstall.OEMCloudConfigs, "cloud-config files applied at boot on an installed OS")
	return cmd
}
