package machineregistration_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/node/register"
	"github.com/edgefleet/edgefleet/internal/node/swtpmtest"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }

// A machine with a real TPM (swtpm, with an EK certificate) registers: its
// inventory is identified by the EK hash and labelled from its hardware; the
// same machine registering again updates the same inventory, keeps its
// random label, and refreshes hardware labels; a template naming an unknown
// field skips that label with a warning event; the credential it gets reads
// only its own plan and writes only its own inventory status.
func TestSwtpmMachineRegistersAndReRegisters(t *testing.T) {
	e := startEnv(t)
	ctx := context.Background()
	regURL := e.registration(t, "lab", machinesv1.MachineRegistrationSpec{
		MachineName: "${System Information/Manufacturer}-${System Information/UUID}",
		MachineInventoryLabels: map[string]string{
			"manufacturer": "${System Information/Manufacturer}",
			"uuid":         "${System Information/UUID}",
			"cpus":         "${CPU/TotalCores}",
			"location":     "rack-${Random/UUID}",
			"unknown":      "${System Information/No Such Field}",
		},
		MachineInventoryAnnotations: map[string]string{"serial": "${System Information/Serial Number}"},
		TPM:                         machinesv1.TPMTrustPolicy{TrustOnFirstUse: true},
	})
	sim := swtpmtest.Start(t, swtpmtest.Options{EKCert: true})
	dmi := fakeDMI(t, map[string]string{"sys_vendor": "Acme Corp.", "product_uuid": "6B29FC40-CA47-1067-B31D-00DD010662DA", "product_serial": "SN 0001", "product_name": "Edge Box/2"})
	cfg := e.nodeConfig(t, regURL, machinereg.NodeRegistration{TPMSocket: sim.Socket, DMIDir: dmi})

	res, err := register.Register(ctx, cfg, register.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Auth != machinereg.AuthTPM || res.ReRegistration {
		t.Fatalf("result %+v: want a first tpm registration", res)
	}
	inv := &machinesv1.MachineInventory{}
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: res.InventoryName}, inv); err != nil {
		t.Fatal(err)
	}
	if res.InventoryName != "acme-corp.6b29fc40-ca47-1067-b31d-00dd010662da" {
		t.Errorf("inventory name %q not rendered from machineName", res.InventoryName)
	}
	if len(inv.Spec.TPMHash) != 64 || inv.Spec.MachineHash != "" {
		t.Errorf("spec %+v: want the EK hash only", inv.Spec)
	}
	wantLabels := map[string]string{
		"manufacturer": "Acme-Corp", "uuid": "6B29FC40-CA47-1067-B31D-00DD010662DA",
		machinesv1.LabelManufacturer: "Acme-Corp", machinesv1.LabelProductName: "Edge-Box-2", machinesv1.LabelArchitecture: "amd64",
	}
	for k, v := range wantLabels {
		if inv.Labels[k] != v {
			t.Errorf("label %s = %q, want %q (labels %v)", k, inv.Labels[k], v, inv.Labels)
		}
	}
	if inv.Labels["cpus"] == "" || !strings.HasPrefix(inv.Labels["location"], "rack-") {
		t.Errorf("cpu/random labels missing: %v", inv.Labels)
	}
	if _, ok := inv.Labels["unknown"]; ok {
		t.Error("label with an unknown template field was set")
	}
	if inv.Annotations["serial"] != "SN 0001" || inv.Annotations[machineregistration.AnnotationAuth] != "tpm" {
		t.Errorf("annotations %v", inv.Annotations)
	}
	if c := meta.FindStatusCondition(inv.Status.Conditions, machinesv1.RegisteredCondition); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Registered condition: %+v", inv.Status.Conditions)
	}
	eventually(t, 20*time.Second, func() error {
		evs := &eventsv1.EventList{}
		if err := e.c.List(ctx, evs, client.InNamespace(e.ns)); err != nil {
			return err
		}
		for _, ev := range evs.Items {
			if ev.Reason == "TemplateUnresolved" && ev.Type == corev1.EventTypeWarning && ev.Regarding.Name == inv.Name && strings.Contains(ev.Note, "No Such Field") {
				return nil
			}
		}
		return fmt.Errorf("no TemplateUnresolved warning event for %s among %d events", inv.Name, len(evs.Items))
	})
	checkCredential(t, e, cfg, res)

	// Reboot: the same state directory, new hardware data.
	if err := writeDMI(dmi, "sys_vendor", "Acme Industries"); err != nil {
		t.Fatal(err)
	}
	again, err := register.Register(ctx, cfg, register.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if again.InventoryName != res.InventoryName || !again.ReRegistration {
		t.Fatalf("re-registration got %+v, want inventory %s", again, res.InventoryName)
	}
	if n := len(e.inventories(t)); n != 1 {
		t.Fatalf("%d inventories after re-registration, want 1", n)
	}
	inv2 := &machinesv1.MachineInventory{}
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(inv), inv2); err != nil {
		t.Fatal(err)
	}
	if inv2.Labels["location"] != inv.Labels["location"] {
		t.Errorf("random label changed on re-registration: %q → %q", inv.Labels["location"], inv2.Labels["location"])
	}
	if inv2.Labels["manufacturer"] != "Acme-Industries" {
		t.Errorf("manufacturer label not refreshed: %q", inv2.Labels["manufacturer"])
	}

	// The machine is deleted by an admin: its next registration is told to
	// re-provision, and nothing is created.
	if err := e.c.Delete(ctx, inv2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		err := e.c.Get(ctx, client.ObjectKeyFromObject(inv), &machinesv1.MachineInventory{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("inventory still there: %v", err)
	})
	_, err = register.Register(ctx, cfg, register.Options{})
	if !errors.Is(err, register.ErrReprovisioningNeeded) {
		t.Fatalf("registering a deleted machine: %v, want ErrReprovisioningNeeded", err)
	}
	if n := len(e.inventories(t)); n != 0 {
		t.Fatalf("%d inventories after a refused re-registration", n)
	}
}

func writeDMI(dir, name, v string) error {
	return writeFile(dir+"/"+name, v+"\n")
}

// checkCredential: the kubeconfig the node stored points at the manager's
// endpoint (<external URL>/k8s/manager, trusting the endpoint's CA), not at
// the kube-apiserver; through it the machine can read its plan Secret and
// update its inventory status, and nothing of another machine.
func checkCredential(t *testing.T, e *env, node *machinereg.NodeConfig, res *register.Result) {
	t.Helper()
	ctx := context.Background()
	stored, err := os.ReadFile(filepath.Join(node.StateDir, register.KubeconfigFile))
	if err != nil {
		t.Fatalf("the node stored no kubeconfig: %v", err)
	}
	kc, err := clientcmd.Load(stored)
	if err != nil {
		t.Fatal(err)
	}
	cluster := kc.Clusters[kc.Contexts[kc.CurrentContext].Cluster]
	if want := e.url.String() + "/k8s/manager"; cluster.Server != want || string(cluster.CertificateAuthorityData) != e.caPEM {
		t.Fatalf("machine kubeconfig server %q (CA %d bytes), want %q with the endpoint CA", cluster.Server, len(cluster.CertificateAuthorityData), want)
	}
	if strings.Contains(string(stored), e.apiServer) {
		t.Fatalf("machine kubeconfig names the kube-apiserver's own address %s", e.apiServer)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(stored)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := client.New(cfg, client.Options{Scheme: server.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	plan := &corev1.Secret{}
	if err := mc.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: res.Config.PlanSecret}, plan); err != nil {
		t.Fatalf("machine cannot read its own plan: %v", err)
	}
	inv := &machinesv1.MachineInventory{}
	if err := mc.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: res.InventoryName}, inv); err != nil {
		t.Fatalf("machine cannot read its own inventory: %v", err)
	}
	before := inv.DeepCopy()
	inv.Status.Plan.State = machinesv1.PlanApplied
	if err := mc.Status().Patch(ctx, inv, client.MergeFrom(before)); err != nil {
		t.Fatalf("machine cannot write its own inventory status: %v", err)
	}
	// Another machine's objects and the registration token are off limits.
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other-machine", Namespace: e.ns}, Data: map[string][]byte{"plan": []byte("{}")}}
	if err := e.c.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"other-machine", machineregistration.TokenSecretName("lab")} {
		if err := mc.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: name}, &corev1.Secret{}); !apierrors.IsForbidden(err) {
			t.Errorf("reading Secret %s with the machine's credential: %v, want Forbidden", name, err)
		}
	}
	if err := mc.List(ctx, &corev1.SecretList{}, client.InNamespace(e.ns)); !apierrors.IsForbidden(err) {
		t.Errorf("listing Secrets with the machine's credential: %v, want Forbidden", err)
	}
	if err := mc.Patch(ctx, inv, client.MergeFrom(before)); !apierrors.IsForbidden(err) {
		t.Errorf("patching its own inventory spec/labels: %v, want Forbidden", err)
	}
	otherInv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Name: "other-machine", Namespace: e.ns}}
	if err := e.c.Create(ctx, otherInv); err != nil {
		t.Fatal(err)
	}
	otherBefore := otherInv.DeepCopy()
	otherInv.Status.Plan.State = machinesv1.PlanApplied
	if err := mc.Status().Patch(ctx, otherInv, client.MergeFrom(otherBefore)); !apierrors.IsForbidden(err) {
		t.Errorf("writing another machine's inventory status: %v, want Forbidden", err)
	}
	if err := e.c.Delete(ctx, otherInv); err != nil {
		t.Fatal(err)
	}
	if err := mc.List(ctx, &machinesv1.MachineInventoryList{}, client.InNamespace(e.ns)); !apierrors.IsForbidden(err) {
		t.Errorf("listing MachineInventories with the machine's credential: %v, want Forbidden", err)
	}
	if err := mc.List(ctx, &corev1.SecretList{}, client.InNamespace("kube-system")); !apierrors.IsForbidden(err) {
		t.Errorf("listing kube-system Secrets with the machine's credential: %v, want Forbidden", err)
	}
	// The endpoint forwards nothing without a bearer token.
	anon := *cfg
	anon.BearerToken = ""
	ac, err := client.New(&anon, client.Options{Scheme: server.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ac.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: res.Config.PlanSecret}, &corev1.Secret{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("reading the plan through the endpoint without a token: %v, want Unauthorized", err)
	}
}

// 50 machines with emulated TPMs register at the same moment: every one
// succeeds and gets its own inventory. Reports latency and throughput.
func TestFiftyEmulatedMachinesRegisterConcurrently(t *testing.T) {
	e := startEnv(t)
	regURL := e.registration(t, "fleet", machinesv1.MachineRegistrationSpec{
		MachineInventoryLabels: map[string]string{"cpus": "${CPU/TotalCores}"},
		Config:                 machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{EmulateTPM: true, EmulatedTPMSeed: -1}},
	})
	// One machine alone first: the latency without contention.
	solo := e.nodeConfig(t, regURL, machinereg.NodeRegistration{EmulateTPM: true, EmulatedTPMSeed: -1})
	t0 := time.Now()
	if _, err := register.Register(context.Background(), solo, register.Options{Data: map[string]string{"System Information/UUID": "solo", "CPU/TotalCores": "2"}}); err != nil {
		t.Fatal(err)
	}
	t.Logf("single emulated-TPM registration: %s", time.Since(t0).Round(time.Millisecond))
	const n = 50
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	names := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		cfg := e.nodeConfig(t, regURL, machinereg.NodeRegistration{EmulateTPM: true, EmulatedTPMSeed: -1})
		data := map[string]string{
			"System Information/UUID":         fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
			"System Information/Manufacturer": "Acme", "CPU/TotalCores": "4", "Runtime/Arch": "arm64",
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			res, err := register.Register(context.Background(), cfg, register.Options{Data: data})
			lat[i], errs[i] = time.Since(t0), err
			if err == nil {
				names[i] = res.InventoryName
			}
		}()
	}
	t0 = time.Now()
	close(start)
	wg.Wait()
	total := time.Since(t0)
	for i, err := range errs {
		if err != nil {
			t.Errorf("machine %d: %v", i, err)
		}
	}
	slices.Sort(names)
	if len(slices.Compact(names)) != n {
		t.Errorf("machines share inventories: %v", names)
	}
	if got := len(e.inventories(t)); got != n+1 {
		t.Errorf("%d inventories, want %d", got, n)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("%d concurrent emulated-TPM registrations: p50 %s, p99 %s, max %s, total %s, throughput %.1f registrations/s",
		n, lat[n/2].Round(time.Millisecond), lat[n*99/100].Round(time.Millisecond), lat[n-1].Round(time.Millisecond), total.Round(time.Millisecond), float64(n)/total.Seconds())
}

// tpm-or-fallback: a machine without a TPM registers with the first fallback
// it can do; mac identifies by the lowest physical MAC and registering again
// finds the same inventory.
func TestFallbackAuthPolicies(t *testing.T) {
	e := startEnv(t)
	ctx := context.Background()
	fallback := e.registration(t, "mixed", machinesv1.MachineRegistrationSpec{Config: machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{
		Auth: machinesv1.AuthTPMOrFallback, Fallback: []machinesv1.FallbackAuth{machinesv1.FallbackEmulatedTPM},
	}}})
	noTPM := e.nodeConfig(t, fallback, machinereg.NodeRegistration{Auth: "tpm-or-fallback", Fallback: []string{"emulated-tpm"}, TPMSocket: "/nonexistent/tpm.sock"})
	res, err := register.Register(ctx, noTPM, register.Options{Data: map[string]string{"System Information/UUID": "no-tpm-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Auth != machinereg.AuthEmulatedTPM {
		t.Fatalf("auth %s, want the emulated-tpm fallback", res.Auth)
	}

	macReg := e.registration(t, "by-mac", machinesv1.MachineRegistrationSpec{Config: machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{Auth: machinesv1.AuthMAC}}})
	data := map[string]string{"System Information/UUID": "mac-1", "Network/NICs/0/MacAddress": "02:00:00:00:00:01", "Network/NICs/0/IsVirtual": "false"}
	first, err := register.Register(ctx, e.nodeConfig(t, macReg, machinereg.NodeRegistration{Auth: "mac"}), register.Options{Data: data})
	if err != nil {
		t.Fatal(err)
	}
	// The same NIC seen by a machine that lost its state: same inventory.
	second, err := register.Register(ctx, e.nodeConfig(t, macReg, machinereg.NodeRegistration{Auth: "mac"}), register.Options{Data: data})
	if err != nil {
		t.Fatal(err)
	}
	if first.InventoryName != second.InventoryName {
		t.Fatalf("mac identity gave two inventories: %s, %s", first.InventoryName, second.InventoryName)
	}
	inv := &machinesv1.MachineInventory{}
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: first.InventoryName}, inv); err != nil {
		t.Fatal(err)
	}
	if inv.Spec.MachineHash == "" || inv.Spec.TPMHash != "" || inv.Annotations[machineregistration.AnnotationAuth] != "mac" {
		t.Fatalf("mac inventory spec %+v annotations %v", inv.Spec, inv.Annotations)
	}
}

// TestAuthPolicyIsExplicit: tpm-or-fallback without a fallback list is
// refused by the API server (it used to mean TPM only, silently), and every
// registration shows the methods it accepts in status.effectiveAuth.
func TestAuthPolicyIsExplicit(t *testing.T) {
	e := startEnv(t)
	ctx := context.Background()
	bad := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: "no-fallback", Namespace: e.ns}, Spec: machinesv1.MachineRegistrationSpec{
		Config: machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{Auth: machinesv1.AuthTPMOrFallback}}}}
	err := e.c.Create(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "tpm-or-fallback needs a fallback list") {
		t.Fatalf("tpm-or-fallback without fallback: %v, want the schema to refuse it naming the fix", err)
	}
	for _, tc := range []struct {
		name string
		reg  *machinesv1.RegistrationConfig
		want []string
	}{
		{"default", nil, []string{"tpm"}},
		{"fallbacks", &machinesv1.RegistrationConfig{Auth: machinesv1.AuthTPMOrFallback, Fallback: []machinesv1.FallbackAuth{machinesv1.FallbackMAC, machinesv1.FallbackSysUUID}}, []string{"tpm", "mac", "sys-uuid"}},
		{"sys-uuid", &machinesv1.RegistrationConfig{Auth: machinesv1.AuthSysUUID}, []string{"sys-uuid"}},
		{"emulated", &machinesv1.RegistrationConfig{EmulateTPM: true}, []string{"tpm", "emulated-tpm"}},
	} {
		e.registration(t, "policy-"+tc.name, machinesv1.MachineRegistrationSpec{Config: machinesv1.MachineRegistrationConfig{Registration: tc.reg}})
		eventually(t, 30*time.Second, func() error {
			mr := &machinesv1.MachineRegistration{}
			if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: "policy-" + tc.name}, mr); err != nil {
				return err
			}
			if fmt.Sprint(mr.Status.EffectiveAuth) != fmt.Sprint(tc.want) {
				return fmt.Errorf("%s: effectiveAuth %v, want %v", tc.name, mr.Status.EffectiveAuth, tc.want)
			}
			return nil
		})
	}
}
