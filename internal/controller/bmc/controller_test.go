package bmc_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	bmcctrl "github.com/edgefleet/edgefleet/internal/controller/bmc"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/test/redfishemu"
)

const (
	ns       = "default"
	user     = "admin"
	password = "correct-horse-battery"
)

type fixture struct {
	t *testing.T
	c client.Client
}

func (f fixture) secret(name, pw string) {
	f.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: map[string]string{"username": user, "password": pw}}
	if err := f.c.Create(context.Background(), s); err != nil {
		f.t.Fatal(err)
	}
}

func (f fixture) create(name string, spec machinesv1.BMCSpec) {
	f.t.Helper()
	b := &machinesv1.BMC{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	if err := f.c.Create(context.Background(), b); err != nil {
		f.t.Fatal(err)
	}
	// Stop polling when the test's emulator goes (its port may be reused).
	f.t.Cleanup(func() { _ = f.c.Delete(context.Background(), b) })
}

func (f fixture) get(name string) *machinesv1.BMC {
	f.t.Helper()
	b := &machinesv1.BMC{}
	if err := f.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, b); err != nil {
		f.t.Fatal(err)
	}
	return b
}

// waitCondition waits until name's condition typ has status and reason,
// and returns the BMC.
func (f fixture) waitCondition(name, typ string, status metav1.ConditionStatus, reason string) *machinesv1.BMC {
	f.t.Helper()
	var b *machinesv1.BMC
	ctrltest.Eventually(f.t, 30*time.Second, func() error {
		b = f.get(name)
		c := meta.FindStatusCondition(b.Status.Conditions, typ)
		if c == nil || c.Status != status || c.Reason != reason {
			return fmt.Errorf("%s: %s is %+v, want %s %s; conditions %+v", name, typ, c, status, reason, b.Status.Conditions)
		}
		return nil
	})
	return b
}

func (f fixture) inventory(name, uuid, serial string) {
	f.t.Helper()
	ann := map[string]string{}
	if uuid != "" {
		ann[machinesv1.AnnotationSystemUUID] = uuid
	}
	if serial != "" {
		ann[machinesv1.AnnotationSystemSerial] = serial
	}
	inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann}}
	if err := f.c.Create(context.Background(), inv); err != nil {
		f.t.Fatal(err)
	}
}

func (f fixture) patch(name string, mutate func(*machinesv1.BMC)) {
	f.t.Helper()
	b := f.get(name)
	before := b.DeepCopy()
	mutate(b)
	if err := f.c.Patch(context.Background(), b, client.MergeFrom(before)); err != nil {
		f.t.Fatal(err)
	}
}

func startBMC(t *testing.T, opts redfishemu.Options) *redfishemu.BMC {
	t.Helper()
	opts.Username, opts.Password = user, password
	b, err := redfishemu.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// The BMC controller against emulated BMCs (no VM: the machine behind the
// BMC is simulated), sharing one kube-apiserver.
func TestBMCController(t *testing.T) {
	c := ctrltest.Start(t, func(m ctrl.Manager) error {
		return (&bmcctrl.Reconciler{PollInterval: 2 * time.Second}).SetupWithManager(m)
	})
	f := fixture{t: t, c: c}
	f.secret("creds", password)
	f.secret("wrong", "not-the-password")

	t.Run("facts, link by UUID, power on and off", func(t *testing.T) {
		f := fixture{t: t, c: c}
		m := &redfishemu.SimulatedMachine{IgnorePowerButton: true}
		emu := startBMC(t, redfishemu.Options{Machine: m, Manufacturer: "ACME", Model: "R1", SerialNumber: "SN-1", UUID: "0F3A5B2C-1111-4A4A-9C9C-000000000001"})
		f.create("one", machinesv1.BMCSpec{Address: emu.URL, CredentialsSecretRef: machinesv1.ObjectReference{Name: "creds"}, CABundle: string(emu.CA.CertPEM)})
		b := f.waitCondition("one", "Ready", metav1.ConditionTrue, machinesv1.BMCReadyReason)
		if s := b.Status.System; s == nil || s.SerialNumber != "SN-1" || s.UUID != "0f3a5b2c-1111-4a4a-9c9c-000000000001" || s.Manufacturer != "ACME" || s.Model != "R1" {
			t.Errorf("status.system %+v", b.Status.System)
		}
		if b.Status.PowerState != machinesv1.PowerOff || b.Status.InventoryRef != nil {
			t.Errorf("power %q, inventory %+v: want Off and none yet", b.Status.PowerState, b.Status.InventoryRef)
		}
		// The machine registers later: its inventory carries the UUID.
		f.inventory("m-one", "0f3a5b2c-1111-4a4a-9c9c-000000000001", "SN-1")
		ctrltest.Eventually(t, 20*time.Second, func() error {
			b = f.get("one")
			if b.Status.InventoryRef == nil || b.Status.InventoryRef.Name != "m-one" || b.Status.FactsAgree == nil || !*b.Status.FactsAgree {
				return fmt.Errorf("inventoryRef %+v factsAgree %v", b.Status.InventoryRef, b.Status.FactsAgree)
			}
			return nil
		})

		f.patch("one", func(b *machinesv1.BMC) { b.Spec.Power = machinesv1.PowerOn })
		ctrltest.Eventually(t, 20*time.Second, func() error {
			b = f.get("one")
			if !m.PoweredOn() || b.Status.PowerState != machinesv1.PowerOn || b.Status.LastAction == nil || b.Status.LastAction.Action != "PowerOn" || b.Status.LastAction.Result != machinesv1.ActionSucceeded {
				return fmt.Errorf("machine on %v, status power %q, last action %+v", m.PoweredOn(), b.Status.PowerState, b.Status.LastAction)
			}
			return nil
		})
		// The OS ignores the power button: the power is forced off after
		// the graceful timeout.
		one := int32(1)
		f.patch("one", func(b *machinesv1.BMC) {
			b.Spec.Power, b.Spec.GracefulShutdownTimeoutSeconds = machinesv1.PowerOff, &one
		})
		ctrltest.Eventually(t, 30*time.Second, func() error {
			b = f.get("one")
			if m.PoweredOn() || b.Status.PowerState != machinesv1.PowerOff || b.Status.LastAction == nil || b.Status.LastAction.Action != "ForceOff" {
				return fmt.Errorf("machine on %v, status power %q, last action %+v", m.PoweredOn(), b.Status.PowerState, b.Status.LastAction)
			}
			return nil
		})
		f.waitCondition("one", "Ready", metav1.ConditionTrue, machinesv1.BMCReadyReason)
		var evs corev1.EventList
		if err := c.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "one" {
				seen[e.Reason] = true
				if strings.Contains(e.Message, password) {
					t.Errorf("event %s carries the password", e.Reason)
				}
			}
		}
		for _, want := range []string{"PowerOn", "GracefulShutdown", "ForceOff"} {
			if !seen[want] {
				t.Errorf("no %s event; saw %v", want, seen)
			}
		}
		if emu.Sessions() != 1 {
			t.Errorf("%d sessions open on the BMC, want the one reused", emu.Sessions())
		}
		// The BMC forgets the session (idle timeout, BMC reboot): the next
		// poll logs in again instead of reporting wrong credentials.
		emu.ExpireSessions()
		ctrltest.Eventually(t, 20*time.Second, func() error {
			if emu.Sessions() != 1 {
				return fmt.Errorf("%d sessions open", emu.Sessions())
			}
			return nil
		})
		f.waitCondition("one", "Ready", metav1.ConditionTrue, machinesv1.BMCReadyReason)
	})

	t.Run("one-time boot from virtual media", func(t *testing.T) {
		f := fixture{t: t, c: c}
		iso := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("an ISO")) }))
		defer iso.Close()
		m := &redfishemu.SimulatedMachine{}
		_ = m.PowerOn(context.Background(), "")
		emu := startBMC(t, redfishemu.Options{Machine: m, SerialNumber: "SN-2", UUID: "0f3a5b2c-2222-4a4a-9c9c-000000000002", MediaClient: iso.Client()})
		f.create("two", machinesv1.BMCSpec{Address: emu.URL + "/redfish/v1/Systems/1", CredentialsSecretRef: machinesv1.ObjectReference{Name: "creds"}, CertificateSHA256: emu.CertSHA256,
			Boot: &machinesv1.BMCBootRequest{ID: "install", Image: iso.URL + "/seed.iso"}})
		var b *machinesv1.BMC
		ctrltest.Eventually(t, 30*time.Second, func() error {
			b = f.get("two")
			if b.Status.Boot == nil || b.Status.Boot.Result != machinesv1.ActionSucceeded {
				return fmt.Errorf("status.boot %+v, conditions %+v", b.Status.Boot, b.Status.Conditions)
			}
			return nil
		})
		if boots := m.Boots(); len(boots) != 2 || boots[1] != "Cd" {
			t.Errorf("power-ons %q: want the machine forced off and booted once from Cd", boots)
		}
		if emu.Image() != iso.URL+"/seed.iso" || m.Medium() == "" {
			t.Errorf("virtual CD holds %q (machine medium %q)", emu.Image(), m.Medium())
		}
		if tgt, en := emu.BootOverride(); en != "Disabled" {
			t.Errorf("boot override %s/%s after the boot: want it consumed", tgt, en)
		}
		f.waitCondition("two", "Ready", metav1.ConditionTrue, machinesv1.BMCReadyReason)
		// Done once per id: later polls do not boot again.
		time.Sleep(5 * time.Second)
		if boots := m.Boots(); len(boots) != 2 {
			t.Errorf("the boot request ran again: power-ons %q", boots)
		}
	})

	t.Run("a power-cycle request is carried out once per id", func(t *testing.T) {
		f := fixture{t: t, c: c}
		m := &redfishemu.SimulatedMachine{}
		emu := startBMC(t, redfishemu.Options{Machine: m, SerialNumber: "SN-PC"})
		if err := m.PowerOn(context.Background(), ""); err != nil {
			t.Fatal(err)
		}
		f.create("cycle", machinesv1.BMCSpec{Address: emu.URL, CredentialsSecretRef: machinesv1.ObjectReference{Name: "creds"}, CertificateSHA256: emu.CertSHA256})
		f.waitCondition("cycle", "Ready", metav1.ConditionTrue, machinesv1.BMCReadyReason)
		for i, id := range []string{"r-1", "r-2"} {
			f.patch("cycle", func(b *machinesv1.BMC) { b.Annotations = map[string]string{machinesv1.AnnotationPowerCycle: id} })
			ctrltest.Eventually(t, 20*time.Second, func() error {
				b := f.get("cycle")
				if pc := b.Status.PowerCycle; pc == nil || pc.ID != id || pc.Result != machinesv1.ActionSucceeded || b.Status.PowerState != machinesv1.PowerOn {
					return fmt.Errorf("status.powerCycle %+v, power %q", pc, b.Status.PowerState)
				}
				return nil
			})
			// Off, then on again: one more boot each time, on at the end.
			if got := len(m.Boots()); got != i+2 || !m.PoweredOn() {
				t.Fatalf("after request %s: %d boots, on %v; want %d boots and on", id, got, m.PoweredOn(), i+2)
			}
		}
		// The same id again does nothing more.
		time.Sleep(3 * time.Second)
		if got := len(m.Boots()); got != 3 {
			t.Fatalf("%d boots after the requests settled, want 3 (one per id)", got)
		}
	})

	t.Run("one-time boot from the network", func(t *testing.T) {
		f := fixture{t: t, c: c}
		m := &redfishemu.SimulatedMachine{}
		emu := startBMC(t, redfishemu.Options{Machine: m, SerialNumber: "SN-5", UUID: "0f3a5b2c-5555-4a4a-9c9c-000000000005"})
		f.create("five", machinesv1.BMCSpec{Address: emu.URL, CredentialsSecretRef: machinesv1.ObjectReference{Name: "creds"}, CABundle: string(emu.CA.CertPEM),
			Boot: &machinesv1.BMCBootRequest{ID: "pxe", Source: machinesv1.BootPXE}})
		ctrltest.Eventually(t, 30*time.Second, func() error {
			if b := f.get("five"); b.Status.Boot == nil || b.Status.Boot.Result != machinesv1.ActionSucceeded || b.Status.Boot.Image != "" {
				return fmt.Errorf("status.boot %+v", b.Status.Boot)
			}
			return nil
		})
		if boots := m.Boots(); len(boots) != 1 || boots[0] != "Pxe" {
			t.Errorf("power-ons %q, want one from Pxe", boots)
		}
		if emu.Image() != "" {
			t.Errorf("a PXE boot inserted %q", emu.Image())
		}
	})

	t.Run("link by serial, ambiguous inventories", func(t *testing.T) {
		f := fixture{t: t, c: c}
		emu := startBMC(t, redfishemu.Options{SerialNumber: "SN-4", UUID: "0f3a5b2c-4444-4a4a-9c9c-000000000004"})
		// The inventory has no UUID annotation (a machine sent none): the
		// serial number links it.
		f.inventory("m-four", "", "SN-4")
		f.create("four", machinesv1.BMCSpec{Address: emu.URL, CredentialsSecretRef: machinesv1.ObjectReference{Name: "creds"}, CABundle: string(emu.CA.CertPEM)})
		ctrltest.Eventually(t, 20*time.Second, func() error {
			if b := f.get("four"); b.Status.InventoryRef == nil || b.Status.InventoryRef.Name != "m-four" {
				return fmt.Errorf("inventoryRef %+v", b.Status.InventoryRef)
			}
			return nil
		})
		// A second inventory claims the same UUID: nothing is linked.
		f.inventory("m-four-a", "0f3a5b2c-4444-4a4a-9c9c-000000000004", "")
		f.inventory("m-four-b", "0f3a5b2c-4444-4a4a-9c9c-000000000004", "")
		b := f.waitCondition("four", "Ready", metav1.ConditionFalse, machinesv1.AmbiguousInventoryReason)
		if b.Status.InventoryRef != nil {
			t.Errorf("linked to %s although two inventories match", b.Status.InventoryRef.Name)
		}
		if msg := meta.FindStatusCondition(b.Status.Conditions, "Ready").Message; !strings.Contains(msg, "m-four-a, m-four-b") || !strings.Contains(msg, "set spec.inventoryRef") {
			t.Errorf("Ready message %q", msg)
		}
	})

	t.Run("bad input gets a clear status", func(t *testing.T) {
		f := fixture{t: t, c: c}
		emu := startBMC(t, redfishemu.Options{SerialNumber: "SN-3", UUID: "0f3a5b2c-3333-4a4a-9c9c-000000000003"})
		other, err := redfishemu.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "https://" + ln.Addr().String()
		ln.Close()
		f.inventory("m-other", "0f3a5b2c-9999-4a4a-9c9c-000000000009", "SN-9")
		for _, tc := range []struct {
			name        string
			spec        machinesv1.BMCSpec
			typ, reason string
			says        string
		}{
			{"wrong-credentials", machinesv1.BMCSpec{Address: emu.URL, CredentialsSecretRef: machinesv1.ObjectReference{Name: "wrong"}, CABundle: string(emu.CA.CertPEM)},
				"Stalled", machinesv1.AuthenticationFailedReason, "check the username and password"},
			{"no-secret", machinesv1.BMCSpec{Address: emu.URL, CredentialsSecretRef: machinesv1.ObjectReference{Name: "missing"}, CABundle: string(emu.CA.CertPEM)},
				"Stalled", machinesv1.CredentialsNotFoundReason, "does not exist"},
			{"unreachable", machinesv1.BMCSpec{Address: dead, CredentialsSecretRef: machinesv1.ObjectReference{Name: "creds"}, CABundle: string(emu.CA.CertPEM)},
				"Reconciling", machinesv1.UnreachableReason, "retrying in"},
			{"other-ca", machinesv1.BMCSpec{Address: emu.URL, CredentialsSecretRef: machinesv1.ObjectReference{Name: "creds"}, CABundle: string(other.CertPEM)},
				"Stalled", machinesv1.BadCertificateReason, "set caBundle to the CA that signed it"},
			{"pin-mismatch", machinesv1.BMCSpec{Address: emu.URL, CredentialsSecretRef: machinesv1.ObjectReference{Name: "creds"}, CertificateSHA256: strings.Repeat("0", 64)},
				"Stalled", machinesv1.BadCertificateReason, "does not match certificateSHA256"},
			{"facts-mismatch", machinesv1.BMCSpec{Address: emu.URL, CredentialsSecretRef: machinesv1.ObjectReference{Name: "creds"}, CABundle: string(emu.CA.CertPEM),
				InventoryRef: &machinesv1.ObjectReference{Name: "m-other"}, Power: machinesv1.PowerOn},
				"Stalled", machinesv1.FactsMismatchReason, `serial number "SN-3" on the BMC, "SN-9" on the inventory`},
		} {
			outer := f
			t.Run(tc.name, func(t *testing.T) {
				f := fixture{t: t, c: c}
				outer.create(tc.name, tc.spec)
				b := f.waitCondition(tc.name, tc.typ, metav1.ConditionTrue, tc.reason)
				ready := meta.FindStatusCondition(b.Status.Conditions, "Ready")
				if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != tc.reason {
					t.Errorf("Ready %+v, want False %s", ready, tc.reason)
				}
				if !strings.Contains(ready.Message, tc.says) {
					t.Errorf("Ready message %q does not say %q", ready.Message, tc.says)
				}
				if strings.Contains(ready.Message, password) || strings.Contains(ready.Message, "not-the-password") {
					t.Errorf("Ready message %q carries a password", ready.Message)
				}
			})
		}
		// Facts that disagree stop every action.
		b := f.get("facts-mismatch")
		if b.Status.FactsAgree == nil || *b.Status.FactsAgree {
			t.Errorf("factsAgree %v, want false", b.Status.FactsAgree)
		}
		if emu.Machine.PoweredOn() {
			t.Error("the BMC powered a machine on whose facts do not match its inventory")
		}
		if b := f.get("unreachable"); b.Status.ConsecutiveFailures < 1 {
			t.Errorf("consecutiveFailures %d", b.Status.ConsecutiveFailures)
		}
	})
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int32]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 4: 80 * time.Second, 7: 10 * time.Minute, 30: 10 * time.Minute} {
		if got := bmcctrl.Backoff(n); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
}
