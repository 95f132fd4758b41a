package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	nodereg "github.com/edgefleet/edgefleet/internal/node/register"
	"github.com/edgefleet/edgefleet/internal/seedimage"
	sit "github.com/edgefleet/edgefleet/internal/seedimage/seedimagetest"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
	"github.com/edgefleet/edgefleet/test/harness"
)

// A raw seed disk image and an ISO remastered from an OCI base image, both
// built by the manager: the raw image is read back with sgdisk and debugfs
// and its config registers a machine; the kubeconfig the machine stores
// reaches the manager's API through the endpoint (<url>/k8s/manager), where
// it reads its own plan and writes its own inventory status, and nothing
// else.
func TestMachineOnboardingFromRawSeedAndOCIBase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager")
	}
	sit.RequireTools(t, "xorriso", "sgdisk", "mkfs.ext4", "debugfs", "e2label")
	// The OCI registry below is plain HTTP on loopback: allowed explicitly.
	m := harness.StartManager(t, harness.ManagerOptions{Args: []string{"--seed-allow-insecure-base-urls"}})
	ctx := context.Background()
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
	reg := sit.StartRegistry(t)
	iso := sit.MakeISO(t, "TESTOS", map[string]string{"os-release": "NAME=TestOS\n"})
	ref := sit.Push(t, reg+"/os/iso:1", map[string]string{"os.iso": iso})
	raw := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: "raw", Namespace: ns}, Spec: machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "lab"}, Type: machinesv1.SeedImageRaw}}
	oci := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: "oci", Namespace: ns}, Spec: machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "lab"}, BaseImage: "oci://" + ref}}
	t0 := time.Now()
	for _, si := range []*machinesv1.SeedImage{raw, oci} {
		if err := m.Client.Create(ctx, si); err != nil {
			t.Fatal(err)
		}
	}
	for _, si := range []*machinesv1.SeedImage{raw, oci} {
		waitUntil(t, 60*time.Second, func() error {
			if err := m.Client.Get(ctx, client.ObjectKeyFromObject(si), si); err != nil {
				return err
			}
			if si.Status.State != machinesv1.SeedImageReady {
				return fmt.Errorf("SeedImage %s state %q: %+v", si.Name, si.Status.State, si.Status.Conditions)
			}
			return nil
		})
	}
	t.Logf("raw and OCI-based seed images built and published in %s", time.Since(t0).Round(time.Millisecond))

	// The OCI-based ISO: the base's files and the node config.
	files := sit.ReadISO(t, downloadImage(t, m, oci, "seed.iso"))
	for _, f := range []string{"os-release", machinereg.SeedConfigFile} {
		if _, err := os.Stat(filepath.Join(files, f)); err != nil {
			t.Errorf("%s missing from the ISO remastered from %s", f, ref)
		}
	}

	// The raw image, read back as a user would.
	img := downloadImage(t, m, raw, "seed.img")
	parts := sit.Partitions(t, img)
	if len(parts) != 1 || parts[0].Name != seedimage.RawPartitionName {
		t.Fatalf("partitions of seed.img: %+v", parts)
	}
	dir, label := sit.ReadExt4(t, sit.ExtractPartition(t, img, parts[0]))
	if label != seedimage.VolumeID {
		t.Errorf("config partition label %q", label)
	}
	cfg, _, err := nodereg.LoadConfig(filepath.Join(dir, machinereg.SeedConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	res, err := nodereg.Register(ctx, cfg, nodereg.Options{Data: map[string]string{"System Information/Serial Number": "R1"}})
	if err != nil {
		t.Fatalf("registering with the config from the raw seed image: %v", err)
	}
	if res.InventoryName != "edge-r1" {
		t.Fatalf("registered as %s, want edge-r1", res.InventoryName)
	}

	// The stored credential goes through the endpoint.
	stored, err := os.ReadFile(filepath.Join(cfg.StateDir, nodereg.KubeconfigFile))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(stored)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSuffix(m.URL, "/") + "/k8s/manager"; rc.Host != want {
		t.Fatalf("machine kubeconfig server %s, want %s", rc.Host, want)
	}
	mc, err := client.New(rc, client.Options{Scheme: server.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.Get(ctx, client.ObjectKey{Namespace: ns, Name: res.Config.PlanSecret}, &corev1.Secret{}); err != nil {
		t.Fatalf("machine reading its plan through the endpoint: %v", err)
	}
	inv := &machinesv1.MachineInventory{}
	if err := mc.Get(ctx, client.ObjectKey{Namespace: ns, Name: res.InventoryName}, inv); err != nil {
		t.Fatal(err)
	}
	before := inv.DeepCopy()
	inv.Status.Plan.State = machinesv1.PlanApplied
	if err := mc.Status().Patch(ctx, inv, client.MergeFrom(before)); err != nil {
		t.Fatalf("machine writing its inventory status through the endpoint: %v", err)
	}
	if err := mc.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)); !apierrors.IsForbidden(err) {
		t.Errorf("machine listing Secrets: %v, want Forbidden", err)
	}
	if err := mc.List(ctx, &machinesv1.SeedImageList{}, client.InNamespace(ns)); !apierrors.IsForbidden(err) {
		t.Errorf("machine listing SeedImages: %v, want Forbidden", err)
	}
}

// downloadImage downloads a SeedImage over the endpoint and checks it
// against status.checksum and the checksum file.
func downloadImage(t *testing.T, m *harness.Manager, si *machinesv1.SeedImage, file string) string {
	t.Helper()
	if !strings.HasSuffix(si.Status.DownloadURL, "/"+file) {
		t.Fatalf("downloadURL %s, want .../%s", si.Status.DownloadURL, file)
	}
	resp, err := m.HTTP.Get(si.Status.DownloadURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum := sha256.Sum256(body)
	if resp.StatusCode != 200 || hex.EncodeToString(sum[:]) != si.Status.Checksum {
		t.Fatalf("download %s: %s, checksum mismatch with status", si.Status.DownloadURL, resp.Status)
	}
	r2, err := m.HTTP.Get(si.Status.ChecksumURL)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Body.Close()
	sumFile, _ := io.ReadAll(r2.Body)
	if string(sumFile) != si.Status.Checksum+"  "+file+"\n" {
		t.Fatalf("checksum file %q, want %s  %s", sumFile, si.Status.Checksum, file)
	}
	path := filepath.Join(t.TempDir(), file)
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
