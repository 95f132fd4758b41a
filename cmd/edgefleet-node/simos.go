package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgefleet/edgefleet/internal/node/osinstall"
	"github.com/edgefleet/edgefleet/internal/node/register"
)

// simulatedOS is the OS state of a machine without an installed OS (a demo's
// or a lab's machine): the same status a disk's slots give, kept in a file.
type simulatedOS = osinstall.Status

// newSimulatedOSCommand is a stand-in for the OS commands on machines that
// run no edgefleet OS (`edgefleet demo` without VMs): it keeps the slots in
// a JSON file and reports them to the machine's inventory with the
// machine's own credential, exactly as `boot confirm` reports a disk. It
// writes no disk and never reboots, so it is hidden and says so.
func newSimulatedOSCommand() *cobra.Command {
	var configPath, stateFile, image string
	cmd := &cobra.Command{
		Use:    "simulated-os (report|upgrade) --state-file FILE --image REF",
		Short:  "Simulated OS for machines without an edgefleet OS (demos): record and report an image, write no disk",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if image == "" || stateFile == "" {
				return errors.New("--image and --state-file are required")
			}
			cfg, _, err := register.LoadConfig(configPath)
			if err != nil {
				return err
			}
			st := &simulatedOS{}
			if data, err := os.ReadFile(stateFile); err == nil {
				if err := json.Unmarshal(data, st); err != nil {
					return fmt.Errorf("%s: %w", stateFile, err)
				}
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if err := simulateOS(st, args[0], image, time.Now().UTC()); err != nil {
				return err
			}
			data, _ := json.MarshalIndent(st, "", "  ")
			if err := os.MkdirAll(filepath.Dir(stateFile), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(stateFile, data, 0o644); err != nil {
				return err
			}
			if err := report(cmd.Context(), cfg.StateDir, "", "", st); err != nil {
				return fmt.Errorf("reporting the simulated OS: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "simulated OS: slot %s runs %s\n", st.ActiveSlot, image)
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "node config (default: the usual places)")
	cmd.Flags().StringVar(&stateFile, "state-file", "", "where the simulated slots are kept")
	cmd.Flags().StringVar(&image, "image", "", "the OS image the slot runs")
	return cmd
}

// simulateOS changes st as action would on a disk: report (first boot:
// slot a runs image, unless slots are recorded already) or upgrade (image
// written to the passive slot, booted and confirmed: a healthy upgrade's
// end).
func simulateOS(st *simulatedOS, action, image string, now time.Time) error {
	switch action {
	case "report":
		if st.ActiveSlot == "" {
			st.ActiveSlot = osinstall.SlotA
			st.Slots = map[string]osinstall.SlotInfo{osinstall.SlotA: {Image: image, Name: "simulated", Version: versionOf(image), Written: now}}
		}
	case "upgrade":
		next := osinstall.SlotB
		if st.ActiveSlot == osinstall.SlotB {
			next = osinstall.SlotA
		}
		if st.Slots == nil {
			st.Slots = map[string]osinstall.SlotInfo{}
		}
		st.Slots[next] = osinstall.SlotInfo{Image: image, Name: "simulated", Version: versionOf(image), Written: now}
		st.ActiveSlot, st.BootedSlot = next, next
		st.LastUpgrade = &osinstall.UpgradeInfo{Image: image, Version: versionOf(image), Slot: next, Result: osinstall.UpgradeSucceeded, Time: now,
			Message: "simulated OS: no disk was written and the machine did not reboot"}
	default:
		return fmt.Errorf("unknown action %q: use report or upgrade", action)
	}
	return nil
}

// versionOf is an image reference's tag ("" without one).
func versionOf(image string) string {
	for i := len(image) - 1; i >= 0 && image[i] != '/'; i-- {
		if image[i] == ':' {
			return image[i+1:]
		}
	}
	return ""
}
