package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	nodereg "github.com/edgefleet/edgefleet/internal/node/register"
	"github.com/edgefleet/edgefleet/internal/node/swtpmtest"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
	"github.com/edgefleet/edgefleet/test/harness"
)

// nodeBinary builds edgefleet-node once per test run.
func nodeBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("EDGEFLEET_NODE_BIN"); p != "" {
		return p
	}
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "edgefleet-node")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/edgefleet-node")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building edgefleet-node: %v\n%s", err, b)
	}
	return out
}

// The whole onboarding path with real parts: the manager builds a seed ISO
// for a MachineRegistration; it is downloaded and checked against its
// checksum, read back with xorriso, and edgefleet-node registers with the
// config on it, proving its identity with a TPM (swtpm). The machine shows up
// labelled from its hardware and registers again as the same inventory. The
// CLI builds the same media.
func TestMachineOnboardingFromSeedISO(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager")
	}
	for _, tool := range []string{"xorriso", "swtpm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (hack/install-deps.sh)", tool)
		}
	}
	node := nodeBinary(t)
	sim := swtpmtest.Start(t, swtpmtest.Options{EKCert: true})
	m := harness.StartManager(t, harness.ManagerOptions{})
	ctx := context.Background()
	ns := "machines"
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	mr := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: ns}, Spec: machinesv1.MachineRegistrationSpec{
		MachineName:            "edge-${System Information/Serial Number}",
		MachineInventoryLabels: map[string]string{"vendor": "${System Information/Manufacturer}", "cores": "${CPU/TotalCores}"},
		TPM:                    machinesv1.TPMTrustPolicy{TrustOnFirstUse: true}, // swtpm's EK is not from a vendor CA
	}}
	if err := m.Client.Create(ctx, mr); err != nil {
		t.Fatal(err)
	}
	si := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: "lab-seed", Namespace: ns}, Spec: machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "lab"}}}
	if err := m.Client.Create(ctx, si); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	waitUntil(t, 60*time.Second, func() error {
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(si), si); err != nil {
			return err
		}
		if si.Status.State != machinesv1.SeedImageReady {
			return fmt.Errorf("SeedImage state %q: %+v", si.Status.State, si.Status.Conditions)
		}
		return nil
	})
	t.Logf("seed ISO built and published in %s", time.Since(t0).Round(time.Millisecond))

	iso := downloadImage(t, m, si, "seed.iso")
	files := t.TempDir()
	if out, err := exec.Command("xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", files).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}
	cfg, _, err := nodereg.LoadConfig(filepath.Join(files, machinereg.SeedConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Client.Get(ctx, client.ObjectKeyFromObject(mr), mr); err != nil {
		t.Fatal(err)
	}
	regURL, err := machineregistration.RegistrationURLFromSecret(ctx, m.Client, mr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Registration.URL != regURL {
		t.Fatalf("seed media registers at %q, the registration's token Secret says %q", cfg.Registration.URL, regURL)
	}
	// The lab machine: this host's hardware, a simulated TPM, SMBIOS tables
	// copied to a directory.
	dmi := t.TempDir()
	for k, v := range map[string]string{"sys_vendor": "Acme", "product_serial": "A1B2", "product_uuid": "0f9e8d7c-0000-4000-8000-000000000001"} {
		if err := os.WriteFile(filepath.Join(dmi, k), []byte(v), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Registration.TPMSocket, cfg.Registration.DMIDir = sim.Socket, dmi
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfgPath := filepath.Join(t.TempDir(), "node.yaml")
	data, _ := yaml.Marshal(cfg)
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}

	for i, want := range []string{"registered as MachineInventory machines/edge-a1b2", "re-registered as MachineInventory machines/edge-a1b2"} {
		// GNU time measures the node's own peak RSS (a child's rusage would
		// include this test process's pages copied at fork).
		rss := filepath.Join(t.TempDir(), "rss")
		cmd := exec.Command(node, "register", "--config", cfgPath)
		if gnuTime, err := exec.LookPath("time"); err == nil {
			cmd = exec.Command(gnuTime, "-f", "%M", "-o", rss, node, "register", "--config", cfgPath)
		}
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("edgefleet-node register: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), want) {
			t.Fatalf("run %d: %q, want %q", i, out, want)
		}
		peak, _ := os.ReadFile(rss)
		t.Logf("edgefleet-node register (swtpm) run %d: %s, max RSS %s KiB", i+1, time.Since(t0).Round(time.Millisecond), strings.TrimSpace(string(peak)))
	}
	inv := &machinesv1.MachineInventory{}
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "edge-a1b2"}, inv); err != nil {
		t.Fatal(err)
	}
	if inv.Labels["vendor"] != "Acme" || inv.Labels["cores"] == "" || len(inv.Spec.TPMHash) != 64 {
		t.Errorf("inventory labels %v, spec %+v", inv.Labels, inv.Spec)
	}
	list := &machinesv1.MachineInventoryList{}
	if err := m.Client.List(ctx, list, client.InNamespace(ns)); err != nil || len(list.Items) != 1 {
		t.Fatalf("%d inventories (%v), want 1", len(list.Items), err)
	}

	// The same media from the CLI.
	cliISO := filepath.Join(t.TempDir(), "cli.iso")
	out, err := exec.Command(harness.EdgefleetBinary(t), "seed-image", "build", "--kubeconfig", m.Kubeconfig, "-n", ns, "--registration", "lab", "-o", cliISO).CombinedOutput()
	if err != nil {
		t.Fatalf("edgefleet seed-image build: %v\n%s", err, out)
	}
	cliFiles := t.TempDir()
	if out, err := exec.Command("xorriso", "-osirrox", "on", "-indev", cliISO, "-extract", "/", cliFiles).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}
	a, _ := os.ReadFile(filepath.Join(files, machinereg.SeedConfigFile))
	b, _ := os.ReadFile(filepath.Join(cliFiles, machinereg.SeedConfigFile))
	if string(a) != string(b) {
		t.Errorf("CLI media config differs:\n%s\nvs\n%s", b, a)
	}
}

func waitUntil(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
