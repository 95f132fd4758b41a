package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	nodereg "github.com/edgefleet/edgefleet/internal/node/register"
	"github.com/edgefleet/edgefleet/internal/node/swtpmtest"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
	"github.com/edgefleet/edgefleet/test/harness"
)

// machineLab is one manager and a namespace where machines register with
// the real node client (emulated TPMs unless said otherwise).
type machineLab struct {
	m     *harness.Manager
	ns    string
	caPEM string
}

// registration creates a MachineRegistration and returns it with the URL
// from its token Secret, once the endpoint serves it.
func (l *machineLab) registration(t *testing.T, name string, spec machinesv1.MachineRegistrationSpec) (*machinesv1.MachineRegistration, string) {
	t.Helper()
	ctx := context.Background()
	mr := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: l.ns}, Spec: spec}
	if err := l.m.Client.Create(ctx, mr); err != nil {
		t.Fatal(err)
	}
	return mr, l.servedURL(t, mr, "")
}

// servedURL waits until the registration's token Secret holds a URL other
// than not and the endpoint accepts it.
func (l *machineLab) servedURL(t *testing.T, mr *machinesv1.MachineRegistration, not string) string {
	t.Helper()
	ctx := context.Background()
	var u string
	waitUntil(t, 30*time.Second, func() error {
		if err := l.m.Client.Get(ctx, client.ObjectKeyFromObject(mr), mr); err != nil {
			return err
		}
		var err error
		if u, err = machineregistration.RegistrationURLFromSecret(ctx, l.m.Client, mr); err != nil {
			return err
		}
		if u == not {
			return fmt.Errorf("the token Secret still holds the old URL")
		}
		if code := l.status(t, u); code == http.StatusUnauthorized {
			return fmt.Errorf("URL not served yet")
		}
		return nil
	})
	return u
}

func (l *machineLab) status(t *testing.T, u string) int {
	t.Helper()
	resp, err := l.m.HTTP.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// machine is a new machine (its own state directory, so its own emulated
// TPM seed) for regURL.
func (l *machineLab) machine(t *testing.T, regURL string) *machinereg.NodeConfig {
	t.Helper()
	return &machinereg.NodeConfig{
		Registration: machinereg.NodeRegistration{URL: regURL, CACert: l.caPEM, EmulateTPM: true, EmulatedTPMSeed: -1},
		StateDir:     filepath.Join(t.TempDir(), "state"),
	}
}

func (l *machineLab) register(cfg *machinereg.NodeConfig, serial string) (*nodereg.Result, error) {
	return nodereg.Register(context.Background(), cfg, nodereg.Options{Data: map[string]string{
		"System Information/Serial Number": serial, "System Information/UUID": "uuid-" + serial, "Runtime/Arch": "amd64",
	}})
}

func refusedWith(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("registration succeeded, want it refused with %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("registration error %q does not say %q", err, w)
		}
	}
}

// warningEvent waits for a Warning event with reason on the registration.
func (l *machineLab) warningEvent(t *testing.T, mr *machinesv1.MachineRegistration, reason, note string) {
	t.Helper()
	waitUntil(t, 20*time.Second, func() error {
		evs := &eventsv1.EventList{}
		if err := l.m.Client.List(context.Background(), evs, client.InNamespace(l.ns)); err != nil {
			return err
		}
		for _, ev := range evs.Items {
			if ev.Reason == reason && ev.Type == corev1.EventTypeWarning && ev.Regarding.Kind == "MachineRegistration" && ev.Regarding.Name == mr.Name && strings.Contains(ev.Note, note) {
				return nil
			}
		}
		return fmt.Errorf("no %s warning event on MachineRegistration %s", reason, mr.Name)
	})
}

var hashSuffix = regexp.MustCompile(`-[0-9a-f]{8}$`)

// A machine is an attacker that controls its SMBIOS data and so the name
// of the inventory it gets, and may hold a leaked registration token. It
// must not take over objects in the namespace, other machines'
// inventories, the token, or get past the registration's limits.
func TestMachineRegistrationAttacks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager")
	}
	m := harness.StartManager(t, harness.ManagerOptions{})
	ctx := context.Background()
	l := &machineLab{m: m, ns: "site"}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.ns}}); err != nil {
		t.Fatal(err)
	}
	_, l.caPEM = get(t, m, "/cacerts")
	emulated := machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{EmulateTPM: true, EmulatedTPMSeed: -1}}
	bySerial := machinesv1.MachineRegistrationSpec{MachineName: "${System Information/Serial Number}", Config: emulated}

	t.Run("SMBIOS naming existing Secrets and ServiceAccounts: refused, nothing adopted", func(t *testing.T) {
		mr, regURL := l.registration(t, "victims", bySerial)
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db-password", Namespace: l.ns}, Data: map[string][]byte{"password": []byte("hunter2")}}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer", Namespace: l.ns}}
		for _, o := range []client.Object{secret, sa} {
			if err := m.Client.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		tokenSecret := &corev1.Secret{}
		if err := m.Client.Get(ctx, client.ObjectKey{Namespace: l.ns, Name: machineregistration.TokenSecretName(mr.Name)}, tokenSecret); err != nil {
			t.Fatal(err)
		}
		victims := []client.Object{secret, sa, tokenSecret}
		for _, victim := range victims {
			before, owners := victim.GetResourceVersion(), len(victim.GetOwnerReferences())
			_, err := l.register(l.machine(t, regURL), victim.GetName())
			refusedWith(t, err, "already exists", victim.GetName(), "never takes over")
			now := victim.DeepCopyObject().(client.Object)
			if err := m.Client.Get(ctx, client.ObjectKeyFromObject(victim), now); err != nil {
				t.Fatal(err)
			}
			if now.GetResourceVersion() != before || len(now.GetOwnerReferences()) != owners || now.GetLabels()[machineregistration.LabelInventory] != "" {
				t.Errorf("%T %s was changed by the refused registration: owners %v labels %v", victim, victim.GetName(), now.GetOwnerReferences(), now.GetLabels())
			}
			err = m.Client.Get(ctx, client.ObjectKey{Namespace: l.ns, Name: victim.GetName()}, &machinesv1.MachineInventory{})
			if !apierrors.IsNotFound(err) {
				t.Errorf("a MachineInventory %s is left after the refused registration: %v", victim.GetName(), err)
			}
		}
		if now := (&corev1.Secret{}); m.Client.Get(ctx, client.ObjectKeyFromObject(secret), now) != nil || string(now.Data["password"]) != "hunter2" {
			t.Errorf("victim Secret data changed: %v", now.Data)
		}
		l.warningEvent(t, mr, "NameConflict", "db-password")
	})

	t.Run("a second identity claiming an existing inventory's name does not take it over", func(t *testing.T) {
		_, regURL := l.registration(t, "shared-name", bySerial)
		first, err := l.register(l.machine(t, regURL), "box-1")
		if err != nil {
			t.Fatal(err)
		}
		victim := &machinesv1.MachineInventory{}
		// Snapshot once the MachineInventory controller has set Ready, its
		// own write after the registration (False: no node agent applies
		// the machine's plan here).
		waitFor(t, 30*time.Second, "Ready of inventory "+first.InventoryName, func() bool {
			if m.Client.Get(ctx, client.ObjectKey{Namespace: l.ns, Name: first.InventoryName}, victim) != nil {
				return false
			}
			c := meta.FindStatusCondition(victim.Status.Conditions, machinesv1.ReadyCondition)
			return c != nil && c.Reason == machinesv1.WaitingForPlanReason
		})
		second, err := l.register(l.machine(t, regURL), "box-1")
		if err != nil {
			t.Fatal(err)
		}
		if second.InventoryName == first.InventoryName {
			t.Fatalf("a second machine got inventory %s", first.InventoryName)
		}
		// A third machine that says it was box-1 before (its state names it).
		liar := l.machine(t, regURL)
		if err := os.MkdirAll(liar.StateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		state, _ := json.Marshal(nodereg.State{RegistrationURL: regURL, InventoryName: first.InventoryName, Namespace: l.ns})
		if err := os.WriteFile(filepath.Join(liar.StateDir, "state.json"), state, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = l.register(liar, "box-1")
		refusedWith(t, err, "no longer exists")
		now := &machinesv1.MachineInventory{}
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(victim), now); err != nil {
			t.Fatal(err)
		}
		if now.ResourceVersion != victim.ResourceVersion || now.Spec.TPMHash != victim.Spec.TPMHash {
			t.Errorf("inventory %s changed by other machines: tpmHash %s → %s", victim.Name, victim.Spec.TPMHash, now.Spec.TPMHash)
		}
	})

	t.Run("over-long and hostile SMBIOS names are sanitised and bounded", func(t *testing.T) {
		_, regURL := l.registration(t, "hostile", bySerial)
		long := strings.Repeat("Edge/Box ", 40)
		var names []string
		for _, serial := range []string{long + "1", long + "2", "../../kube-system/\u202eDEFAULT\x7f"} {
			res, err := l.register(l.machine(t, regURL), serial)
			if err != nil {
				t.Fatal(err)
			}
			if errs := validation.IsDNS1123Subdomain(res.InventoryName); len(errs) > 0 || len(res.InventoryName) > 58 {
				t.Errorf("inventory name %q from SMBIOS %q: %v", res.InventoryName, serial, errs)
			}
			names = append(names, res.InventoryName)
		}
		if names[0] == names[1] || !hashSuffix.MatchString(names[0]) || !hashSuffix.MatchString(names[1]) || len(names[0]) != 58 {
			t.Errorf("long names %q, %q: want distinct 58-character names ending in a hash of the full name", names[0], names[1])
		}
		if names[2] != "kube-system--default" {
			t.Errorf("hostile name became %q, want kube-system--default", names[2])
		}
	})

	t.Run("the token is not in the MachineRegistration, only in its Secret", func(t *testing.T) {
		mr, regURL := l.registration(t, "quiet", machinesv1.MachineRegistrationSpec{Config: emulated})
		token := regURL[strings.LastIndex(regURL, "/")+1:]
		// Everything the API server stores for the registration, not only
		// the fields the Go type knows.
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(machinesv1.GroupVersion.WithKind("MachineRegistration"))
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(mr), u); err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), token) {
			t.Fatalf("the MachineRegistration shows its token: %s", raw)
		}
		out, err := exec.Command("kubectl", "--kubeconfig", m.Kubeconfig, "get", "machineregistration", "-n", l.ns, mr.Name, "-o", "wide").CombinedOutput()
		if err == nil && strings.Contains(string(out), token) {
			t.Errorf("kubectl get shows the token:\n%s", out)
		}
		if mr.Status.TokenSecretName != machineregistration.TokenSecretName(mr.Name) || !strings.HasSuffix(regURL, mr.Status.RegistrationEndpoint+token) && regURL != mr.Status.RegistrationEndpoint+token {
			t.Errorf("status %+v does not lead to the URL in the Secret", mr.Status)
		}
		if c := meta.FindStatusCondition(mr.Status.Conditions, machinesv1.ReadyCondition); c == nil || c.Status != metav1.ConditionTrue || strings.Contains(c.Message, token) {
			t.Errorf("Ready condition %+v", c)
		}
		if _, err := l.register(l.machine(t, regURL), "quiet-1"); err != nil {
			t.Fatalf("the URL from the Secret does not register: %v", err)
		}
	})

	t.Run("rotation: the old token is refused, the new one works", func(t *testing.T) {
		mr, oldURL := l.registration(t, "rotating", machinesv1.MachineRegistrationSpec{Config: emulated})
		before := mr.DeepCopy()
		mr.Spec.Token.Rotation = "leaked-2026-12-06"
		if err := m.Client.Patch(ctx, mr, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
		newURL := l.servedURL(t, mr, oldURL)
		if code := l.status(t, oldURL); code != http.StatusUnauthorized {
			t.Errorf("old URL answered %d, want 401", code)
		}
		_, err := l.register(l.machine(t, oldURL), "rot-old")
		refusedWith(t, err, "401", "unknown registration token")
		if _, err := l.register(l.machine(t, newURL), "rot-new"); err != nil {
			t.Fatalf("the rotated token does not register: %v", err)
		}
		waitUntil(t, 10*time.Second, func() error {
			if err := m.Client.Get(ctx, client.ObjectKeyFromObject(mr), mr); err != nil {
				return err
			}
			if mr.Status.TokenRotation != "leaked-2026-12-06" || mr.Status.TokenHash == before.Status.TokenHash {
				return fmt.Errorf("status.tokenRotation %q, tokenHash unchanged %v", mr.Status.TokenRotation, mr.Status.TokenHash == before.Status.TokenHash)
			}
			return nil
		})
	})

	t.Run("expiry: new machines refused, machines it registered renew", func(t *testing.T) {
		const ttl = 8 * time.Second
		spec := machinesv1.MachineRegistrationSpec{Config: emulated, Token: machinesv1.RegistrationTokenSpec{TTL: &metav1.Duration{Duration: ttl}}}
		mr, regURL := l.registration(t, "expiring", spec)
		early := l.machine(t, regURL)
		if _, err := l.register(early, "exp-early"); err != nil {
			t.Fatalf("registering before the token expires: %v", err)
		}
		waitUntil(t, ttl+20*time.Second, func() error {
			if err := m.Client.Get(ctx, client.ObjectKeyFromObject(mr), mr); err != nil {
				return err
			}
			if c := meta.FindStatusCondition(mr.Status.Conditions, machinesv1.ReadyCondition); c == nil || c.Reason != machinesv1.TokenExpiredReason {
				return fmt.Errorf("Ready condition %+v, want reason TokenExpired", c)
			}
			return nil
		})
		_, err := l.register(l.machine(t, regURL), "exp-late")
		refusedWith(t, err, "expired", "spec.token.rotation")
		if _, err := l.register(early, "exp-early"); err != nil {
			t.Errorf("a machine the token registered cannot renew after expiry: %v", err)
		}
	})

	t.Run("maxMachines: a machine over the quota is refused", func(t *testing.T) {
		spec := bySerial
		spec.MaxMachines = 2
		mr, regURL := l.registration(t, "small", spec)
		first := l.machine(t, regURL)
		for i, cfg := range []*machinereg.NodeConfig{first, l.machine(t, regURL)} {
			if _, err := l.register(cfg, fmt.Sprintf("q-%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		_, err := l.register(l.machine(t, regURL), "q-2")
		refusedWith(t, err, "spec.maxMachines 2")
		if err := m.Client.Get(ctx, client.ObjectKey{Namespace: l.ns, Name: "q-2"}, &machinesv1.MachineInventory{}); !apierrors.IsNotFound(err) {
			t.Errorf("the machine over the quota got an inventory: %v", err)
		}
		if _, err := l.register(first, "q-0"); err != nil {
			t.Errorf("a registered machine cannot re-register at the quota: %v", err)
		}
		l.warningEvent(t, mr, "QuotaExceeded", "spec.maxMachines")
	})

	t.Run("TPM trust on first use is off by default", func(t *testing.T) {
		if _, err := exec.LookPath("swtpm"); err != nil {
			t.Skip("swtpm not installed (hack/install-deps.sh)")
		}
		sim := swtpmtest.Start(t, swtpmtest.Options{EKCert: true})
		mr, regURL := l.registration(t, "tpm-default", machinesv1.MachineRegistrationSpec{MachineName: "${System Information/Serial Number}"})
		cfg := &machinereg.NodeConfig{Registration: machinereg.NodeRegistration{URL: regURL, CACert: l.caPEM, TPMSocket: sim.Socket}, StateDir: filepath.Join(t.TempDir(), "state")}
		_, err := l.register(cfg, "tpm-1")
		refusedWith(t, err, "not trusted", "tpm-ca", "trustOnFirstUse")
		if err := m.Client.Get(ctx, client.ObjectKey{Namespace: l.ns, Name: "tpm-1"}, &machinesv1.MachineInventory{}); !apierrors.IsNotFound(err) {
			t.Errorf("an untrusted TPM got an inventory: %v", err)
		}
		before := mr.DeepCopy()
		mr.Spec.TPM.TrustOnFirstUse = true
		if err := m.Client.Patch(ctx, mr, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 10*time.Second, func() error {
			_, err := l.register(cfg, "tpm-1")
			return err
		})
	})
}
