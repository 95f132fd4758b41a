package machineregistration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/node/nodekube"
	"github.com/edgefleet/edgefleet/internal/node/osinstall"
	"github.com/edgefleet/edgefleet/internal/node/register"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// TestElementalLayoutAndOSStatus: a MachineRegistration written for Rancher
// Elemental (config.elemental.*) registers machines unchanged and hands them
// the same normalised config as edgefleet's layout; conflicting spellings are
// refused with a clear status; a machine reports its OS status with its own
// credential, only on its own inventory and without clobbering other fields.
func TestElementalLayoutAndOSStatus(t *testing.T) {
	e := startEnv(t)
	ctx := context.Background()
	var spec machinesv1.MachineRegistrationSpec
	if err := yaml.UnmarshalStrict([]byte(`
machineName: "m-${System Information/UUID}"
config:
  cloud-config:
    users: [{name: root, passwd: root}]
  elemental:
    registration:
      auth: mac
    install:
      device: /dev/vda
      system-uri: oci:registry.example/os:v1
      reboot: true
      tty: ttyS0
      snapshotter: {type: loopdevice, maxSnaps: 2}
    reset:
      enabled: true
      reset-oem: false
    system-agent:
      url: https://rancher.example/k8s/clusters/local
      secret-name: ignored
`), &spec); err != nil {
		t.Fatal(err)
	}
	regURL := e.registration(t, "elemental", spec)
	nic := func(uuid, mac string) map[string]string {
		return map[string]string{"System Information/UUID": uuid, "Network/NICs/0/MacAddress": mac, "Network/NICs/0/IsVirtual": "false"}
	}
	res, err := register.Register(ctx, e.nodeConfig(t, regURL, machinereg.NodeRegistration{Auth: "mac"}), register.Options{Data: nic("elemental-1", "02:00:00:00:00:11")})
	if err != nil {
		t.Fatalf("an Elemental registration (auth mac under config.elemental.registration) refused a mac machine: %v", err)
	}
	var install machinesv1.InstallConfig
	var reset machinesv1.ResetConfig
	if err := json.Unmarshal(res.Config.Install, &install); err != nil || install.Device != "/dev/vda" || !install.Reboot {
		t.Errorf("install config handed to the node = %s (%v)", res.Config.Install, err)
	}
	if err := json.Unmarshal(res.Config.Reset, &reset); err != nil || !reset.Enabled || reset.ResetOEM == nil || *reset.ResetOEM || reset.ResetPersistent == nil || !*reset.ResetPersistent {
		t.Errorf("reset config handed to the node = %s (%v): want enabled, reset-oem false, reset-persistent defaulted to true", res.Config.Reset, err)
	}
	if !strings.Contains(string(res.Config.CloudConfig), "root") {
		t.Errorf("cloud-config = %s", res.Config.CloudConfig)
	}

	t.Run("OS status from the node", func(t *testing.T) {
		st := &osinstall.Status{ActiveSlot: "b", BootedSlot: "b", Slots: map[string]osinstall.SlotInfo{
			"b": {Image: "registry.example/os:v2", Digest: "sha256:abc", Name: "edgefleet-test", Version: "2.0"},
		}, LastUpgrade: &osinstall.UpgradeInfo{Image: "registry.example/os:v3", Version: "3.0", Slot: "a", Result: osinstall.UpgradeRolledBack, Time: time.Now(), Message: "slot a did not confirm"}}
		if err := osinstall.ReportStatus(ctx, nodeKube(t, res.Config.Kubeconfig), res.Namespace, res.InventoryName, st); err != nil {
			t.Fatal(err)
		}
		inv := &machinesv1.MachineInventory{}
		if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: res.InventoryName}, inv); err != nil {
			t.Fatal(err)
		}
		os := inv.Status.OS
		if os.Version != "2.0" || os.ActiveSlot != "b" || os.Image != "registry.example/os:v2" || os.LastUpgrade == nil || os.LastUpgrade.Result != machinesv1.OSUpgradeRolledBack {
			t.Errorf("status.os = %+v", os)
		}
		if c := meta.FindStatusCondition(inv.Status.Conditions, machinesv1.RolledBackCondition); c == nil || c.Status != metav1.ConditionTrue {
			t.Errorf("RolledBack = %+v", c)
		}
		if c := meta.FindStatusCondition(inv.Status.Conditions, machinesv1.OSReadyCondition); c == nil || c.Reason != machinesv1.UpgradeRolledBackReason {
			t.Errorf("OSReady = %+v", c)
		}
		if !meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.RegisteredCondition) {
			t.Error("the node's report dropped the manager's Registered condition")
		}
		// Another machine's credential cannot touch this inventory.
		other, err := register.Register(ctx, e.nodeConfig(t, regURL, machinereg.NodeRegistration{Auth: "mac"}), register.Options{Data: nic("elemental-2", "02:00:00:00:00:12")})
		if err != nil {
			t.Fatal(err)
		}
		if err := osinstall.ReportStatus(ctx, nodeKube(t, other.Config.Kubeconfig), res.Namespace, res.InventoryName, st); err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("machine %s patched %s's status: %v", other.InventoryName, res.InventoryName, err)
		}
	})

	t.Run("deleted inventory: the node learns the reset settings", func(t *testing.T) {
		cfg := e.nodeConfig(t, regURL, machinereg.NodeRegistration{Auth: "mac"})
		r, err := register.Register(ctx, cfg, register.Options{Data: nic("elemental-3", "02:00:00:00:00:13")})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.c.Delete(ctx, &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: r.InventoryName}}); err != nil {
			t.Fatal(err)
		}
		var re *register.ReprovisionError
		eventually(t, 10*time.Second, func() error {
			_, err := register.Register(ctx, cfg, register.Options{Data: nic("elemental-3", "02:00:00:00:00:13")})
			if !errors.As(err, &re) {
				return fmt.Errorf("re-registration after the delete: %v", err)
			}
			return nil
		})
		var reset machinesv1.ResetConfig
		if err := json.Unmarshal(re.Reset, &reset); err != nil || !reset.Enabled || *reset.ResetOEM || !*reset.Reboot {
			t.Errorf("reset settings with ReprovisioningNeeded = %s (%v)", re.Reset, err)
		}
	})

	t.Run("both spellings differ", func(t *testing.T) {
		bad := e.registration(t, "conflict", machinesv1.MachineRegistrationSpec{Config: machinesv1.MachineRegistrationConfig{
			Registration: &machinesv1.RegistrationConfig{Auth: machinesv1.AuthMAC},
			Install:      &machinesv1.InstallConfig{Device: "/dev/sda"},
			Elemental:    &machinesv1.ElementalConfig{Install: &machinesv1.InstallConfig{Device: "/dev/vda"}},
		}})
		mr := &machinesv1.MachineRegistration{}
		eventually(t, 20*time.Second, func() error {
			if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "conflict"}, mr); err != nil {
				return err
			}
			c := meta.FindStatusCondition(mr.Status.Conditions, machinesv1.ReadyCondition)
			if c == nil || c.Reason != machinesv1.InvalidSpecReason || !strings.Contains(c.Message, "config.install and config.elemental.install") {
				return fmt.Errorf("Ready = %+v", c)
			}
			return nil
		})
		_, err := register.Register(ctx, e.nodeConfig(t, bad, machinereg.NodeRegistration{Auth: "mac"}), register.Options{Data: nic("conflict-1", "02:00:00:00:00:21")})
		if err == nil || !strings.Contains(err.Error(), "both set and differ") {
			t.Errorf("registering through a conflicting registration: %v", err)
		}
	})
}

// nodeKube is the node's API client with a machine's kubeconfig.
func nodeKube(t *testing.T, kubeconfig []byte) *nodekube.Client {
	t.Helper()
	c, err := nodekube.New(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
