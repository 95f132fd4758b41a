package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	sit "github.com/edgefleet/edgefleet/internal/seedimage/seedimagetest"
)

const (
	seedRuns     = 5
	seedBaseSize = 100 << 20
)

// TestSeedISOBuild times SeedImages through the manager: create → status
// Ready with a download URL, for config-only ISOs, raw disk images, and ISOs
// remastered from a 100 MiB base ISO on the manager's disk.
func TestSeedISOBuild(t *testing.T) {
	requireBench(t)
	sit.RequireTools(t, "xorriso", "sgdisk", "mkfs.ext4")
	ctx := context.Background()
	// Incompressible data, so the base is 100 MiB on disk and in the ISO.
	payload := make([]byte, seedBaseSize)
	_, _ = rand.Read(payload)
	base := sit.MakeISO(t, "BASEOS", map[string]string{"rootfs.squashfs": string(payload), "os-release": "NAME=BaseOS\n"})
	m := startQuietManager(t, "--seed-base-image-dir", filepath.Dir(base))
	ns := "machines"
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	mr := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: ns}, Spec: machinesv1.MachineRegistrationSpec{
		MachineName: "edge-${System Information/Serial Number}",
		Config:      machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{EmulateTPM: true, EmulatedTPMSeed: -1}},
	}}
	if err := m.Client.Create(ctx, mr); err != nil {
		t.Fatal(err)
	}
	kinds := []struct {
		label string
		spec  machinesv1.SeedImageSpec
	}{
		{"config-only ISO", machinesv1.SeedImageSpec{}},
		{"config-only raw disk image", machinesv1.SeedImageSpec{Type: machinesv1.SeedImageRaw}},
		{"ISO remastered from a 100 MiB base ISO (--seed-base-image-dir)", machinesv1.SeedImageSpec{BaseImage: filepath.Base(base)}},
	}
	// The first SeedImage waits for the registration's URL; it is not timed.
	warm := seedImage(t, m.Client, ns, "warm-up", machinesv1.SeedImageSpec{})
	waitSeedReady(t, m.Client, warm)

	type row struct {
		label string
		runs  []time.Duration
	}
	var rows []row
	for k, kind := range kinds {
		r := row{label: kind.label}
		for i := range seedRuns {
			spec := kind.spec
			spec.RegistrationRef = machinesv1.ObjectReference{Name: "lab"}
			t0 := time.Now()
			si := seedImage(t, m.Client, ns, fmt.Sprintf("k%d-%d", k, i), spec)
			waitSeedReady(t, m.Client, si)
			r.runs = append(r.runs, time.Since(t0))
		}
		t.Logf("%s: median %s, runs %v", r.label, ms(quantile(r.runs, .5)), r.runs)
		rows = append(rows, r)
	}

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("## Seed image build\n\n")
	w("Through the manager, as a user does it: a SeedImage is created for a MachineRegistration and the clock stops when its status is ")
	w("`Ready` with a download URL (polled every 50 ms), so it includes the controller's reconcile, the node config and CA rendered ")
	w("for the registration, the `xorriso` / `sgdisk` + `mkfs.ext4` run, the SHA-256 and the status writes. %d SeedImages of each kind, one after another, ", seedRuns)
	w("after one untimed warm-up. The remastered ISO's base is a 100 MiB ISO of random data built with xorriso on the manager's disk (`spec.baseImage` as a local path; ")
	w("a download or OCI pull would add the transfer).\n\n")
	w("| image | median | min | max | target |\n|---|---|---|---|---|\n")
	for i, r := range rows {
		target := "—"
		if i == 0 {
			target = "≤ 5 s"
		}
		w("| %s | %s | %s | %s | %s |\n", r.label, ms(quantile(r.runs, .5)), ms(quantile(r.runs, 0)), ms(quantile(r.runs, 1)), target)
	}
	addSection(orderSeedImage, b.String())
}

func seedImage(t *testing.T, c client.Client, ns, name string, spec machinesv1.SeedImageSpec) *machinesv1.SeedImage {
	t.Helper()
	spec.RegistrationRef = machinesv1.ObjectReference{Name: "lab"}
	si := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	if err := c.Create(context.Background(), si); err != nil {
		t.Fatal(err)
	}
	return si
}

func waitSeedReady(t *testing.T, c client.Client, si *machinesv1.SeedImage) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(si), si); err != nil {
			t.Fatal(err)
		}
		switch {
		case si.Status.State == machinesv1.SeedImageReady && si.Status.DownloadURL != "":
			return
		case si.Status.State == machinesv1.SeedImageFailed:
			t.Fatalf("SeedImage %s failed: %+v", si.Name, si.Status.Conditions)
		case time.Now().After(deadline):
			t.Fatalf("SeedImage %s not ready after 2 minutes: state %q, %+v", si.Name, si.Status.State, si.Status.Conditions)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
