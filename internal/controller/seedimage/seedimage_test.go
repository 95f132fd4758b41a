package seedimage_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	seedimagectrl "github.com/edgefleet/edgefleet/internal/controller/seedimage"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/node/register"
	"github.com/edgefleet/edgefleet/internal/seedimage"
	sit "github.com/edgefleet/edgefleet/internal/seedimage/seedimagetest"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
	"github.com/edgefleet/edgefleet/test/harness"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// extract reads an ISO back with xorriso, as a user would.
func extract(t *testing.T, iso string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", dir).CombinedOutput(); err != nil {
		t.Fatalf("xorriso extract: %v\n%s", err, out)
	}
	return dir
}

func get(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The controller builds config-only and remastered ISOs (base from a file, a
// URL or an OCI registry) and raw disk images, serves them with a checksum,
// expires them after cleanupAfterMinutes, rebuilds on retriggerBuild,
// removes them with their SeedImage, and reports bad inputs as a failed
// build.
func TestSeedImageLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	sit.RequireTools(t, "xorriso", "sgdisk", "mkfs.ext4", "debugfs", "e2label")
	cl := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0]
	mgr, err := ctrl.NewManager(cl.RESTConfig(), ctrl.Options{
		Scheme: server.Scheme(), Logger: testr.New(t), Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	clk := &clock{now: time.Now()}
	// Local base images from baseImages; the URL and the registry below are
	// plain HTTP on loopback, allowed explicitly.
	baseImages := t.TempDir()
	r := &seedimagectrl.Reconciler{Dir: dir, ExternalURL: u, CACertPEM: []byte("-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n"), Now: clk.Now,
		Sources: seedimage.Sources{LocalDir: baseImages, AllowInsecure: true}}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mux.Handle("GET "+seedimage.DownloadPathPrefix+"{token}/{file}", &seedimage.Download{Dir: dir})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	c := cl.Client
	ns := "machines"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	mr := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: ns},
		Spec: machinesv1.MachineRegistrationSpec{Config: machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{Auth: machinesv1.AuthTPMOrFallback, Fallback: []machinesv1.FallbackAuth{machinesv1.FallbackEmulatedTPM}}}}}
	if err := c.Create(ctx, mr); err != nil {
		t.Fatal(err)
	}
	// No MachineRegistration controller runs here: publish the token
	// Secret by hand.
	regURL := "https://manager.example:8443/v1/machines/register/" + strings.Repeat("a", 48)
	tok := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: machineregistration.TokenSecretName(mr.Name), Namespace: ns}, Data: map[string][]byte{machineregistration.URLSecretKey: []byte(regURL)}}
	if err := controllerutil.SetControllerReference(mr, tok, c.Scheme()); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, tok); err != nil {
		t.Fatal(err)
	}
	mr.Status.TokenSecretName = tok.Name
	if err := c.Status().Update(ctx, mr); err != nil {
		t.Fatal(err)
	}

	// wait and download take the running (sub)test's t: FailNow belongs
	// to the goroutine of the test that calls it.
	wait := func(t *testing.T, name string, want machinesv1.SeedImageState) *machinesv1.SeedImage {
		t.Helper()
		si := &machinesv1.SeedImage{}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, si); err != nil {
				t.Fatal(err)
			}
			if si.Status.State == want && si.Status.ObservedGeneration == si.Generation {
				return si
			}
			if time.Now().After(deadline) {
				t.Fatalf("SeedImage %s: state %q, want %q (status %+v, now %s)", name, si.Status.State, want, si.Status, clk.Now())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	download := func(t *testing.T, si *machinesv1.SeedImage) string {
		t.Helper()
		code, iso := get(t, si.Status.DownloadURL)
		if code != http.StatusOK {
			t.Fatalf("download: %d %s", code, iso)
		}
		sum := sha256.Sum256(iso)
		if hex.EncodeToString(sum[:]) != si.Status.Checksum {
			t.Fatal("downloaded image does not match status.checksum")
		}
		if code, body := get(t, si.Status.ChecksumURL); code != http.StatusOK || !strings.HasPrefix(string(body), si.Status.Checksum+"  seed.iso") {
			t.Fatalf("checksum file: %d %q", code, body)
		}
		path := filepath.Join(t.TempDir(), "seed.iso")
		if err := os.WriteFile(path, iso, 0o600); err != nil {
			t.Fatal(err)
		}
		return extract(t, path)
	}

	si := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: "config-only", Namespace: ns}, Spec: machinesv1.SeedImageSpec{
		RegistrationRef: machinesv1.ObjectReference{Name: "lab"}, CleanupAfterMinutes: ptr.To[int32](5),
		CloudConfig: jsonRaw(`{"users":[{"name":"ops"}]}`),
	}}
	if err := c.Create(ctx, si); err != nil {
		t.Fatal(err)
	}
	si = wait(t, si.Name, machinesv1.SeedImageReady)
	files := download(t, si)
	nodeCfg, _, err := register.LoadConfig(filepath.Join(files, machinereg.SeedConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if nodeCfg.Registration.URL != regURL || !strings.Contains(nodeCfg.Registration.CACert, "TEST") ||
		nodeCfg.Registration.Auth != "tpm-or-fallback" || len(nodeCfg.Registration.Fallback) != 1 {
		t.Errorf("node config on the media: %+v", nodeCfg.Registration)
	}
	if cc, err := os.ReadFile(filepath.Join(files, seedimage.CloudConfigFile)); err != nil || !strings.Contains(string(cc), "name: ops") {
		t.Errorf("cloud-config on the media: %q %v", cc, err)
	}

	// Expiry: the file goes, the state says so, the URL answers 404.
	oldURL := si.Status.DownloadURL
	clk.Add(6 * time.Minute)
	touch(t, c, si) // the requeue is minutes away in real time; poke the controller
	si = wait(t, si.Name, machinesv1.SeedImageExpired)
	if code, _ := get(t, oldURL); code != http.StatusNotFound {
		t.Errorf("expired image still served: %d", code)
	}
	// retriggerBuild builds it again under a new URL.
	before := si.DeepCopy()
	si.Spec.RetriggerBuild = true
	if err := c.Patch(ctx, si, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	si = wait(t, si.Name, machinesv1.SeedImageReady)
	if si.Status.DownloadURL == oldURL || si.Spec.RetriggerBuild {
		t.Errorf("retrigger: url %s (old %s), retriggerBuild %v", si.Status.DownloadURL, oldURL, si.Spec.RetriggerBuild)
	}
	download(t, si)

	// A base ISO from a local file and from a URL keeps its content and gains the config.
	baseDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(baseDir, "os-release"), []byte("NAME=TestOS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(baseImages, "base.iso")
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-V", "TESTOS", "-J", "-R", "-o", base, baseDir).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	baseSrv := httptest.NewServer(http.FileServer(http.Dir(filepath.Dir(base))))
	t.Cleanup(baseSrv.Close)
	baseSum := fileSum(t, base)
	for name, b := range map[string]string{"local-base": base, "url-base": baseSrv.URL + "/base.iso"} {
		s := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "lab"}, BaseImage: b, BaseImageSHA256: baseSum}}
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		files := download(t, wait(t, name, machinesv1.SeedImageReady))
		for _, f := range []string{"os-release", machinereg.SeedConfigFile} {
			if _, err := os.Stat(filepath.Join(files, f)); err != nil {
				t.Errorf("%s: %s missing from the remastered image", name, f)
			}
		}
	}

	// type raw: a GPT disk image served as seed.img, its config partition
	// holding the same node config.
	rawSI := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: "raw", Namespace: ns}, Spec: machinesv1.SeedImageSpec{
		RegistrationRef: machinesv1.ObjectReference{Name: "lab"}, Type: machinesv1.SeedImageRaw, CloudConfig: jsonRaw(`{"users":[{"name":"ops"}]}`),
	}}
	if err := c.Create(ctx, rawSI); err != nil {
		t.Fatal(err)
	}
	rawSI = wait(t, rawSI.Name, machinesv1.SeedImageReady)
	if !strings.HasSuffix(rawSI.Status.DownloadURL, "/seed.img") {
		t.Errorf("raw downloadURL %s, want .../seed.img", rawSI.Status.DownloadURL)
	}
	rawFiles := downloadRaw(t, rawSI)
	rawCfg, _, err := register.LoadConfig(filepath.Join(rawFiles, machinereg.SeedConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rawCfg.Registration, nodeCfg.Registration) {
		t.Errorf("raw media config %+v differs from the ISO's %+v", rawCfg.Registration, nodeCfg.Registration)
	}
	if cc, err := os.ReadFile(filepath.Join(rawFiles, seedimage.CloudConfigFile)); err != nil || !strings.Contains(string(cc), "name: ops") {
		t.Errorf("cloud-config on the raw media: %q %v", cc, err)
	}
	// Deleting it removes the file.
	rawURL := rawSI.Status.DownloadURL
	if err := c.Delete(ctx, rawSI); err != nil {
		t.Fatal(err)
	}
	eventuallyGone(t, rawURL)

	// A base ISO from an OCI registry (in this process, on loopback).
	reg := sit.StartRegistry(t)
	ref := sit.Push(t, reg+"/os/iso:1", map[string]string{"os.iso": base})
	ociSI := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: "oci-base", Namespace: ns}, Spec: machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "lab"}, BaseImage: "oci://" + ref}}
	if err := c.Create(ctx, ociSI); err != nil {
		t.Fatal(err)
	}
	files = download(t, wait(t, ociSI.Name, machinesv1.SeedImageReady))
	for _, f := range []string{"os-release", machinereg.SeedConfigFile} {
		if _, err := os.Stat(filepath.Join(files, f)); err != nil {
			t.Errorf("oci-base: %s missing from the remastered image", f)
		}
	}

	for name, spec := range map[string]machinesv1.SeedImageSpec{
		"oci-missing": {RegistrationRef: machinesv1.ObjectReference{Name: "lab"}, BaseImage: "oci://" + reg + "/os/iso:404"},
		"raw-on-iso":  {RegistrationRef: machinesv1.ObjectReference{Name: "lab"}, Type: machinesv1.SeedImageRaw, BaseImage: base},
		"gone":        {RegistrationRef: machinesv1.ObjectReference{Name: "lab"}, BaseImage: "/no/such/base.iso"},
	} {
		s := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		s = wait(t, name, machinesv1.SeedImageFailed)
		if msg := readyMessage(s); msg == "" {
			t.Errorf("%s: failed without a message", name)
		} else {
			t.Logf("%s: %s", name, msg)
		}
	}

	// Bootable media from an OS image: the digest pulled is in the status;
	// an image without the contract's files is an invalid spec; osImage
	// and baseImage together are refused by the API.
	t.Run("osImage", func(t *testing.T) {
		sit.RequireTools(t, "grub-mkrescue", "mksquashfs", "mcopy")
		osRef := sit.PushEntries(t, reg+"/os/live:1", map[string]string{"io.edgefleet.os.version": "1"},
			sit.Entry{Name: "boot/vmlinuz", Data: []byte("kernel")},
			sit.Entry{Name: "boot/initrd", Data: []byte("initrd")},
			sit.Entry{Name: "usr/bin/edgefleet-node", Data: []byte("#!/bin/sh\n"), Mode: 0o755})
		_, digest, _ := strings.Cut(osRef, "@")
		live := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: "live", Namespace: ns}, Spec: machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "lab"}, OSImage: reg + "/os/live:1"}}
		if err := c.Create(ctx, live); err != nil {
			t.Fatal(err)
		}
		live = wait(t, live.Name, machinesv1.SeedImageReady)
		if live.Status.OSImageDigest != digest {
			t.Errorf("status.osImageDigest %q, want %s", live.Status.OSImageDigest, digest)
		}
		files := download(t, live)
		for _, f := range []string{"boot/vmlinuz", "boot/initrd", "edgefleet/rootfs.squashfs", "boot/grub/grub.cfg", machinereg.SeedConfigFile} {
			if _, err := os.Stat(filepath.Join(files, f)); err != nil {
				t.Errorf("live ISO: %s missing", f)
			}
		}

		notOS := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: "not-an-os", Namespace: ns}, Spec: machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "lab"}, OSImage: ref}}
		if err := c.Create(ctx, notOS); err != nil {
			t.Fatal(err)
		}
		notOS = wait(t, notOS.Name, machinesv1.SeedImageFailed)
		if cond := meta.FindStatusCondition(notOS.Status.Conditions, machinesv1.StalledCondition); cond == nil || cond.Reason != machinesv1.InvalidSpecReason ||
			!strings.Contains(cond.Message, "is not an edgefleet OS image: it has no /boot/vmlinuz, /boot/initrd, /usr/bin/edgefleet-node") {
			t.Errorf("not-an-os Stalled condition %+v", cond)
		}
		if notOS.Status.OSImageDigest != "" || notOS.Status.DownloadURL != "" {
			t.Errorf("failed build reports %q / %q", notOS.Status.OSImageDigest, notOS.Status.DownloadURL)
		}

		both := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: "both", Namespace: ns}, Spec: machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "lab"}, OSImage: osRef, BaseImage: "oci://" + ref}}
		if err := c.Create(ctx, both); err == nil || !strings.Contains(err.Error(), "osImage and baseImage are exclusive") {
			t.Errorf("creating a SeedImage with osImage and baseImage: %v", err)
		}
	})
}

// downloadRaw downloads a raw image, checks it against status.checksum and
// the checksum file, and reads the config partition back with sgdisk and
// debugfs.
func downloadRaw(t *testing.T, si *machinesv1.SeedImage) string {
	t.Helper()
	code, img := get(t, si.Status.DownloadURL)
	if code != http.StatusOK {
		t.Fatalf("download: %d %s", code, img)
	}
	sum := sha256.Sum256(img)
	if hex.EncodeToString(sum[:]) != si.Status.Checksum {
		t.Fatal("downloaded image does not match status.checksum")
	}
	if code, body := get(t, si.Status.ChecksumURL); code != http.StatusOK || string(body) != si.Status.Checksum+"  seed.img\n" {
		t.Fatalf("checksum file: %d %q", code, body)
	}
	path := filepath.Join(t.TempDir(), "seed.img")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	parts := sit.Partitions(t, path)
	if len(parts) != 1 || parts[0].Name != seedimage.RawPartitionName {
		t.Fatalf("partitions of seed.img: %+v", parts)
	}
	dir, label := sit.ReadExt4(t, sit.ExtractPartition(t, path, parts[0]))
	if label != seedimage.VolumeID {
		t.Errorf("config partition label %q, want %q", label, seedimage.VolumeID)
	}
	return dir
}

func eventuallyGone(t *testing.T, u string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := get(t, u)
		if code == http.StatusNotFound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still answers %d after its SeedImage was deleted", u, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readyMessage(si *machinesv1.SeedImage) string {
	for _, c := range si.Status.Conditions {
		if c.Type == machinesv1.ReadyCondition && c.Status == metav1.ConditionFalse {
			return c.Message
		}
	}
	return ""
}

func touch(t *testing.T, c client.Client, si *machinesv1.SeedImage) {
	t.Helper()
	before := si.DeepCopy()
	if si.Annotations == nil {
		si.Annotations = map[string]string{}
	}
	si.Annotations["test/poke"] = fmt.Sprint(time.Now().UnixNano())
	if err := c.Patch(context.Background(), si, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

func jsonRaw(s string) *runtime.RawExtension { return &runtime.RawExtension{Raw: []byte(s)} }

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
