package main

import (
	"encoding/json"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgefleet/edgefleet/internal/node/hwinfo"
	"github.com/edgefleet/edgefleet/internal/node/register"
)

// exitReprovision is the exit code when the manager says the machine must be
// re-provisioned, so a systemd unit can tell it from a transient failure.
const exitReprovision = 3

// exitError ends the command with code instead of 1; main exits, so deferred
// cleanup runs first.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newRegisterCommand() *cobra.Command {
	var configPath string
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Register this machine with the manager (TPM-attested) and store its credential",
		Long: `Register this machine at the registration URL of its config: prove its
identity (TPM 2.0 credential activation, or the fallback the registration
allows), send its hardware data, and store the config and credential it gets
back in the state directory. Run it again (or with --every) to refresh the
machine's labels; the state directory makes it the same machine.

The config is --config, or the first of:
  /run/edgefleet/seed/edgefleet-node.yaml    (seed media mounted by the OS)
  /run/initramfs/live/edgefleet-node.yaml
  /etc/edgefleet/edgefleet-node.yaml

Exit code 3: the manager deleted this machine's inventory; it must be
re-provisioned (or its state directory removed to register as a new machine).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, path, err := register.LoadConfig(configPath)
			if err != nil {
				return err
			}
			warn := func(s string) { fmt.Fprintf(cmd.ErrOrStderr(), "edgefleet-node: warning: %s\n", s) }
			for {
				res, err := register.Register(cmd.Context(), cfg, register.Options{Warn: warn})
				switch {
				case errors.Is(err, register.ErrReprovisioningNeeded):
					var current json.RawMessage
					if re := (*register.ReprovisionError)(nil); errors.As(err, &re) {
						current = re.Reset
					}
					if rerr := resetOnReprovision(cmd, cfg.StateDir, "", "", current); rerr != nil {
						warn(rerr.Error())
					}
					return &exitError{code: exitReprovision, err: err}
				case err != nil && every == 0:
					return fmt.Errorf("registering with %s (config %s): %w", cfg.Registration.URL, path, err)
				case err != nil:
					warn(err.Error())
				default:
					verb := "registered"
					if res.ReRegistration {
						verb = "re-registered"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s as MachineInventory %s/%s (auth %s); state in %s\n", verb, res.Namespace, res.InventoryName, res.Auth, cfg.StateDir)
				}
				if every == 0 {
					return nil
				}
				// Jitter spreads a fleet that booted together.
				wait := every + time.Duration(mathrand.Int64N(int64(every/60)+1))
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(wait):
				}
			}
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "node config file (registration URL, CA, auth)")
	cmd.Flags().DurationVar(&every, "every", 0, "keep running and re-register at this interval (e.g. 30m) to refresh labels")
	return cmd
}

func newInventoryCommand() *cobra.Command {
	var dmiDir string
	var noSMBIOS bool
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Print the hardware data sent at registration, as JSON (keys are template paths)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, warnings := hwinfo.Collect(hwinfo.Options{DMIDir: dmiDir, NoSMBIOS: noSMBIOS})
			for _, w := range warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "edgefleet-node: warning: %s\n", w)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(data)
		},
	}
	cmd.Flags().StringVar(&dmiDir, "dmi-dir", "", "read SMBIOS fields from this directory instead of /sys/class/dmi/id")
	cmd.Flags().BoolVar(&noSMBIOS, "no-smbios", false, "leave SMBIOS data out")
	return cmd
}
