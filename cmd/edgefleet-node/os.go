package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/edgefleet/edgefleet/internal/node/cloudconfig"
	"github.com/edgefleet/edgefleet/internal/node/nodekube"
	"github.com/edgefleet/edgefleet/internal/node/osinstall"
	"github.com/edgefleet/edgefleet/internal/node/register"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// pullFlags are the registry flags shared by install and upgrade.
type pullFlags struct {
	dockerConfig, cacheDir, workDir string
}

func (p *pullFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&p.dockerConfig, "docker-config", "", "docker config.json with registry credentials (default $DOCKER_CONFIG or ~/.docker/config.json)")
	cmd.Flags().StringVar(&p.cacheDir, "cache-dir", "/var/cache/edgefleet/layers", "downloaded layers, kept so a failed pull resumes")
	cmd.Flags().StringVar(&p.workDir, "work-dir", "", "scratch space for the squashfs (default a temporary directory)")
}

func (p *pullFlags) options(image string, log func(string, ...any)) osinstall.PullOptions {
	return osinstall.PullOptions{Image: image, DockerConfig: p.dockerConfig, CacheDir: p.cacheDir, WorkDir: p.workDir, Log: log}
}

func logTo(cmd *cobra.Command) func(string, ...any) {
	return func(f string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), "edgefleet-node: "+f+"\n", a...) }
}

// registeredConfig is the config the manager gave at the last registration
// (state-dir/config.json), or nil.
func registeredConfig(stateDir string) *machinereg.Config {
	c, err := register.Registered(stateDir)
	if err != nil {
		return nil
	}
	return c
}

func newInstallCommand() *cobra.Command {
	var device, image, configPath, stateDir string
	var cloudFiles []string
	var reboot, poweroff bool
	var pf pullFlags
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the OS image to a disk: GPT layout, slot a + recovery, GRUB with boot assessment",
		Long: `Install an edgefleet OS image (docs/os.md) to a disk or disk-image file.

Without --device/--image the MachineRegistration's install section, received
at registration (state-dir/config.json), says where and what: device and
system-uri. Its cloud-config and config-urls are written to the OEM partition
and applied at first boot (users, write_files, runcmd).

The disk is bootable only once install has finished; after a failure or power
loss, run install again (it starts over).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logTo(cmd)
			cfg, cfgPath, err := register.LoadConfig(configPath)
			if err != nil {
				return err
			}
			if stateDir == "" {
				stateDir = cfg.StateDir
			}
			nodeConfig, err := os.ReadFile(cfgPath)
			if err != nil {
				return err
			}
			cloud := map[string][]byte{}
			var urls []string
			if rc := registeredConfig(stateDir); rc != nil {
				var in machinereg.InstallConfig
				if len(rc.Install) > 0 {
					if err := json.Unmarshal(rc.Install, &in); err != nil {
						return fmt.Errorf("the registration's install config: %w", err)
					}
				}
				if device == "" {
					device = in.Device
					if device == "" && len(in.DeviceSelector) > 0 {
						disks, err := osinstall.ListDisks("")
						if err != nil {
							return err
						}
						if device, err = osinstall.SelectDevice(in.DeviceSelector, disks, osinstall.DiskInUse); err != nil {
							return err
						}
						log("install.device-selector picked %s", device)
					}
				}
				if image == "" {
					image = in.SystemURI
				}
				reboot, poweroff = reboot || in.Reboot, poweroff || in.PowerOff
				urls = in.ConfigURLs
				if len(rc.CloudConfig) > 0 && string(rc.CloudConfig) != "null" {
					y, err := yaml.JSONToYAML(rc.CloudConfig)
					if err != nil {
						return err
					}
					cloud["90_registration.yaml"] = append([]byte("#cloud-config\n"), y...)
				}
			}
			if device == "" || image == "" {
				return errors.New("nothing says where or what to install: pass --device and --image, or register first with a MachineRegistration whose install section sets device and system-uri")
			}
			for i, u := range urls {
				b, err := fetchConfigURL(cmd.Context(), u)
				if err != nil {
					return fmt.Errorf("install.config-urls[%d]: %w", i, err)
				}
				cloud[fmt.Sprintf("91_config-url-%d.yaml", i)] = b
			}
			for _, f := range cloudFiles {
				b, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				cloud["92_"+filepath.Base(f)] = b
			}
			for name, b := range cloud {
				_, warnings, err := cloudconfig.Parse(b)
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				for _, w := range warnings {
					log("warning: %s: %s", name, w)
				}
			}
			report := installReporter(cmd, stateDir, image, device)
			report(nil)
			res, err := osinstall.Install(cmd.Context(), osinstall.InstallOptions{Device: device, Pull: pf.options(image, log), NodeConfig: nodeConfig, CloudConfigs: cloud, NodeState: stateDir, Log: log})
			if err != nil {
				report(err)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "installed %s %s (%s) to %s slot a in %s\n", res.Image.Name, res.Image.Version, res.Image.Digest, device, res.Duration.Round(time.Millisecond))
			return powerAction(reboot, poweroff)
		},
	}
	cmd.Flags().StringVar(&device, "device", "", "target disk or disk-image file (default: the registration's install.device)")
	cmd.Flags().StringVar(&image, "image", "", "OS image reference (default: the registration's install.system-uri)")
	cmd.Flags().StringVar(&configPath, "config", "", "node config written to the installed system (default: the seed media's)")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "node state directory (default: the node config's)")
	cmd.Flags().StringArrayVar(&cloudFiles, "cloud-config", nil, "extra cloud-config file for the installed system (repeatable)")
	cmd.Flags().BoolVar(&reboot, "reboot", false, "reboot when done")
	cmd.Flags().BoolVar(&poweroff, "poweroff", false, "power off when done")
	pf.add(cmd)
	return cmd
}

// installReporter reports an install starting (nil) or failed on the
// machine's MachineInventory (OSReady Installing / InstallFailed), when the
// machine is registered; the manager's absence never stops an install.
func installReporter(cmd *cobra.Command, stateDir, image, device string) func(error) {
	rc := registeredConfig(stateDir)
	if rc == nil || rc.Namespace == "" || rc.InventoryName == "" || len(rc.Kubeconfig) == 0 {
		return func(error) {}
	}
	kube, err := nodekube.New(rc.Kubeconfig)
	if err != nil {
		return func(error) {}
	}
	started := time.Now()
	return func(installErr error) {
		ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
		defer cancel()
		if err := osinstall.ReportInstall(ctx, kube, rc.Namespace, rc.InventoryName, image, device, started, installErr); err != nil {
			logTo(cmd)("warning: reporting the install on MachineInventory %s/%s: %v", rc.Namespace, rc.InventoryName, err)
		}
	}
}

// fetchConfigURL reads a config-url: http(s) or a local path.
func fetchConfigURL(ctx context.Context, u string) ([]byte, error) {
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return os.ReadFile(u)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", u, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// powerAction reboots or powers off the machine (a variable so tests do not).
var powerAction = func(reboot, poweroff bool) error {
	switch {
	case poweroff:
		return exec.Command("poweroff").Run()
	case reboot:
		return exec.Command("reboot").Run()
	}
	return nil
}

func newUpgradeCommand() *cobra.Command {
	var device, image, slotFile string
	var tries int
	var reboot bool
	var pf pullFlags
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Write an OS image to the passive slot and boot it on trial",
		Long: `Write the OS image to the passive slot and put it on trial: GRUB boots it
--tries times; unless 'edgefleet-node boot confirm' runs on it (the node
reached the manager), GRUB goes back to the active slot by itself. A power cut
during the upgrade boots the active slot as before.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if image == "" {
				return errors.New("--image is required")
			}
			info, err := osinstall.Upgrade(cmd.Context(), osinstall.UpgradeOptions{Device: device, Pull: pf.options(image, logTo(cmd)), Tries: tries, BootedSlot: osinstall.BootedSlot(slotFile), Log: logTo(cmd)})
			reportBestEffort(cmd, device, slotFile)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", info.Message)
			return powerAction(reboot, false)
		},
	}
	cmd.Flags().StringVar(&device, "device", "", "installed disk (default: the disk with the EF_STATE partition)")
	cmd.Flags().StringVar(&image, "image", "", "OS image reference")
	cmd.Flags().IntVar(&tries, "tries", osinstall.DefaultTries, "boots the new slot gets before falling back")
	cmd.Flags().StringVar(&slotFile, "boot-slot-file", osinstall.BootSlotFile, "where the boot init recorded the booted slot")
	cmd.Flags().BoolVar(&reboot, "reboot", false, "reboot into the new slot when done")
	pf.add(cmd)
	return cmd
}

// reportBestEffort reports the OS status when the machine is registered;
// failures are warnings (the next confirm or status reports again).
func reportBestEffort(cmd *cobra.Command, device, slotFile string) {
	cfg, _, err := register.LoadConfig("")
	if err != nil {
		return
	}
	if err := report(cmd.Context(), cfg.StateDir, device, slotFile, nil); err != nil {
		logTo(cmd)("warning: reporting the OS status: %v", err)
	}
}

// report sends st (or the disk's status) to the machine's inventory.
func report(ctx context.Context, stateDir, device, slotFile string, st *osinstall.Status) error {
	rc := registeredConfig(stateDir)
	if rc == nil || len(rc.Kubeconfig) == 0 {
		return errors.New("this machine is not registered (no credential in " + stateDir + ")")
	}
	if st == nil {
		var err error
		if st, err = osinstall.ReadStatus(ctx, device, osinstall.BootedSlot(slotFile)); err != nil {
			return err
		}
	}
	kube, err := nodekube.New(rc.Kubeconfig)
	if err != nil {
		return fmt.Errorf("the machine's kubeconfig: %w", err)
	}
	return osinstall.ReportStatus(ctx, kube, rc.Namespace, rc.InventoryName, st)
}

func newBootCommand() *cobra.Command {
	boot := &cobra.Command{Use: "boot", Short: "Boot assessment: confirm a healthy boot, show the slots"}
	var device, slotFile, slot, stateDir string
	var offline bool
	confirm := &cobra.Command{
		Use:   "confirm",
		Short: "Confirm this boot is healthy: a slot on trial becomes the active slot",
		Long: `Confirm a healthy boot once the node reaches the manager: the booted slot,
if it was on trial, becomes the active slot. A rollback GRUB made since is
recorded (status.os.lastUpgrade RolledBack) and its flag cleared. The OS status
is reported to the machine's MachineInventory; without --offline, a manager
that cannot be reached means no confirmation (the trial continues).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			booted := slot
			if booted == "" {
				booted = osinstall.BootedSlot(slotFile)
			}
			if booted == "" {
				return fmt.Errorf("the booted slot is unknown (%s is missing): pass --slot", slotFile)
			}
			if stateDir == "" {
				if cfg, _, err := register.LoadConfig(""); err == nil {
					stateDir = cfg.StateDir
				} else {
					stateDir = register.DefaultStateDir
				}
			}
			if !offline {
				// Reaching the manager is the health check.
				st, err := osinstall.ReadStatus(cmd.Context(), device, booted)
				if err != nil {
					return err
				}
				if err := report(cmd.Context(), stateDir, device, slotFile, st); err != nil {
					return fmt.Errorf("not confirming slot %s: the manager is not reachable (%w)", booted, err)
				}
			}
			res, err := osinstall.Confirm(cmd.Context(), device, booted)
			if err != nil {
				return err
			}
			if !offline {
				if err := report(cmd.Context(), stateDir, device, slotFile, res.Status); err != nil {
					logTo(cmd)("warning: reporting the OS status: %v", err)
				}
			}
			switch {
			case res.Confirmed:
				fmt.Fprintf(cmd.OutOrStdout(), "slot %s confirmed: it is the active slot\n", booted)
			case res.RolledBack != "":
				fmt.Fprintf(cmd.OutOrStdout(), "slot %s was rolled back by the bootloader; running slot %s\n", res.RolledBack, booted)
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "slot %s: nothing to confirm\n", booted)
			}
			return nil
		},
	}
	confirm.Flags().StringVar(&slot, "slot", "", "the booted slot (default: read from --boot-slot-file)")
	confirm.Flags().BoolVar(&offline, "offline", false, "confirm without reaching the manager (and without reporting)")
	confirm.Flags().StringVar(&stateDir, "state-dir", "", "node state directory (credential)")
	var reportIt bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the slots, the trial and the last upgrade as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := osinstall.ReadStatus(cmd.Context(), device, osinstall.BootedSlot(slotFile))
			if err != nil {
				return err
			}
			if reportIt {
				dir := stateDir
				if dir == "" {
					dir = register.DefaultStateDir
				}
				if err := report(cmd.Context(), dir, device, slotFile, st); err != nil {
					return err
				}
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		},
	}
	status.Flags().BoolVar(&reportIt, "report", false, "also report it to the machine's MachineInventory")
	status.Flags().StringVar(&stateDir, "state-dir", "", "node state directory (credential)")
	for _, c := range []*cobra.Command{confirm, status} {
		c.Flags().StringVar(&device, "device", "", "installed disk (default: the disk with the EF_STATE partition)")
		c.Flags().StringVar(&slotFile, "boot-slot-file", osinstall.BootSlotFile, "where the boot init recorded the booted slot")
	}
	boot.AddCommand(confirm, status)
	return boot
}

func newResetCommand() *cobra.Command {
	var device, slotFile string
	var persistent, oem, reboot, poweroff, pending bool
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Reset the machine: rebuild the OS from recovery, wipe data, register again as new",
		Long: `Reset the machine to its first boot. From the installed system (slot a or b)
the reset is scheduled: GRUB boots recovery once, where 'edgefleet-node reset
--pending' runs it. From recovery it runs at once: EF_STATE is rebuilt from the
recovery image, EF_PERSISTENT is wiped (--reset-persistent) or only the node's
state removed, EF_OEM's cloud-config removed (--reset-oem; the node config
stays), and the machine registers again as a new machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := osinstall.ResetOptions{Device: device, ResetPersistent: persistent, ResetOEM: oem, BootedSlot: osinstall.BootedSlot(slotFile), Log: logTo(cmd)}
			if pending {
				p, err := osinstall.PendingReset(cmd.Context(), device)
				if err != nil || p == nil {
					return err
				}
				p.BootedSlot, p.Log = o.BootedSlot, o.Log
				o = *p
				reboot, poweroff = reboot || p.Reboot, poweroff || p.PowerOff
			}
			o.Reboot, o.PowerOff = reboot, poweroff
			if o.BootedSlot == osinstall.SlotA || o.BootedSlot == osinstall.SlotB {
				if err := osinstall.ScheduleReset(cmd.Context(), o); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "reset scheduled: the next boot runs recovery, which resets the machine")
				return powerAction(reboot, poweroff)
			}
			if err := osinstall.Reset(cmd.Context(), o); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "reset done: the machine registers again as a new machine")
			return powerAction(reboot, poweroff)
		},
	}
	cmd.Flags().StringVar(&device, "device", "", "installed disk (default: the disk with the EF_STATE partition)")
	cmd.Flags().StringVar(&slotFile, "boot-slot-file", osinstall.BootSlotFile, "where the boot init recorded the booted slot")
	cmd.Flags().BoolVar(&persistent, "reset-persistent", true, "wipe EF_PERSISTENT (else only the node state)")
	cmd.Flags().BoolVar(&oem, "reset-oem", true, "remove the cloud-config files from EF_OEM")
	cmd.Flags().BoolVar(&reboot, "reboot", false, "reboot when done (or scheduled)")
	cmd.Flags().BoolVar(&poweroff, "poweroff", false, "power off when done")
	cmd.Flags().BoolVar(&pending, "pending", false, "run the reset the installed system scheduled, if any (recovery boot)")
	return cmd
}

func newCloudConfigCommand() *cobra.Command {
	var dir, stateDir string
	cmd := &cobra.Command{
		Use:   "cloud-config-apply",
		Short: "Apply the OEM partition's cloud-config files not applied yet (run at boot)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cloudconfig.ApplyDir(cmd.Context(), dir, "/", stateDir, func(s string) { logTo(cmd)("warning: %s", s) })
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "/oem/"+osinstall.OEMCloudConfigs, "cloud-config directory")
	cmd.Flags().StringVar(&stateDir, "state-dir", register.DefaultStateDir, "where applied files are recorded")
	return cmd
}

// resetOnReprovision: the manager deleted this machine's inventory. When
// the registration allowed a reset (config.reset.enabled, as received at
// the last registration) and the machine runs an installed OS, schedule the
// reset and reboot into recovery.
func resetOnReprovision(cmd *cobra.Command, stateDir, slotFile, device string, current json.RawMessage) error {
	settings := current
	if len(settings) == 0 {
		// A manager that does not send them: the settings received at the
		// last registration.
		if rc := registeredConfig(stateDir); rc != nil {
			settings = rc.Reset
		}
	}
	if len(settings) == 0 {
		return nil
	}
	var r machinereg.ResetConfig
	if err := json.Unmarshal(settings, &r); err != nil || !r.Enabled {
		return err
	}
	r = r.Defaults()
	booted := osinstall.BootedSlot(slotFile)
	if booted != osinstall.SlotA && booted != osinstall.SlotB {
		return nil
	}
	o := osinstall.ResetOptions{Device: device, ResetPersistent: *r.ResetPersistent, ResetOEM: *r.ResetOEM, Reboot: *r.Reboot, PowerOff: r.PowerOff}
	if err := osinstall.ScheduleReset(cmd.Context(), o); err != nil {
		return fmt.Errorf("the registration allows a reset, but scheduling it failed: %w", err)
	}
	logTo(cmd)("the MachineInventory was deleted and the registration allows a reset: rebooting into recovery to reset")
	return powerAction(*r.Reboot, r.PowerOff)
}
