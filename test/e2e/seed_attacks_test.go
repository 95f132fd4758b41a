package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	sit "github.com/edgefleet/edgefleet/internal/seedimage/seedimagetest"
	"github.com/edgefleet/edgefleet/test/harness"
)

// A tenant writes SeedImages; the manager builds them. The attacks: bake
// another namespace's MachineRegistration (its registration URL is the
// credential machines register with) into media the attacker downloads;
// name a file, a device or a link out of the allowed directory as the base
// image (read the manager's secrets, hang it on /dev/zero, fill its disk
// from /dev/urandom, probe which paths exist); make the manager fetch from
// its loopback or the cloud metadata address; and read the media the CLI
// wrote from another account. One manager, started as an administrator
// would: local base images only from one directory, no insecure sources.
func TestSeedImageAttacks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager")
	}
	sit.RequireTools(t, "xorriso")
	allowed := t.TempDir()
	iso := sit.MakeISO(t, "TESTOS", map[string]string{"os-release": "NAME=TestOS\n"})
	seedCopyFile(t, iso, filepath.Join(allowed, "os.iso"))
	m := harness.StartManager(t, harness.ManagerOptions{Args: []string{"--seed-base-image-dir", allowed}})
	ctx := context.Background()
	for _, ns := range []string{"tenant-a", "tenant-b"} {
		if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	victim := seedRegistration(t, m, "tenant-b", "victim")
	seedRegistration(t, m, "tenant-a", "own")
	seedDir := filepath.Join(m.DataDir, "seedimages")

	t.Run("registration of another namespace", func(t *testing.T) {
		var msgs []string
		for _, target := range []string{victim.Namespace, "no-such-tenant"} {
			si := seedCreate(t, m, "tenant-a", "steal-"+target, machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: victim.Name, Namespace: target}})
			si = seedWaitState(t, m, si, machinesv1.SeedImageFailed, 20*time.Second)
			stalled := meta.FindStatusCondition(si.Status.Conditions, machinesv1.StalledCondition)
			if stalled == nil || stalled.Status != metav1.ConditionTrue || stalled.Reason != machinesv1.InvalidSpecReason {
				t.Errorf("%s: Stalled condition %+v, want True/InvalidSpec", si.Name, stalled)
			}
			msg := seedMessage(si)
			if !strings.Contains(msg, "only use a MachineRegistration in its own namespace") || si.Status.DownloadURL != "" {
				t.Errorf("%s: message %q, downloadURL %q: want a refusal naming the namespace rule and no download", si.Name, msg, si.Status.DownloadURL)
			}
			msgs = append(msgs, strings.ReplaceAll(msg, target, "NS"))
		}
		// Whether the other namespace (or its registration) exists is not told.
		if msgs[0] != msgs[1] {
			t.Errorf("messages differ for an existing and a missing namespace:\n%s\n%s", msgs[0], msgs[1])
		}
		// Nothing was built: no media with the victim's registration exists.
		if imgs := seedFiles(t, seedDir); len(imgs) != 0 {
			t.Errorf("files built for refused SeedImages: %v", imgs)
		}
	})

	t.Run("local base images outside the allowed directory", func(t *testing.T) {
		outside := t.TempDir()
		if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("manager secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		up, err := filepath.Rel(allowed, filepath.Join(outside, "secret"))
		if err != nil {
			t.Fatal(err)
		}
		for name, target := range map[string]string{
			"escape":         filepath.Join(outside, "secret"),
			"escape-missing": filepath.Join(outside, "missing"),
			"escape-up":      up,
			"to-zero":        "/dev/zero",
			"to-etc":         "/etc",
		} {
			if err := os.Symlink(target, filepath.Join(allowed, name)); err != nil {
				t.Fatal(err)
			}
		}
		if err := syscall.Mkfifo(filepath.Join(allowed, "fifo.iso"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The template every refusal shares, the path aside.
		var template string
		for _, base := range []string{
			"/dev/zero", "/dev/urandom", "/etc/passwd", "/etc/no-such-file", seedBlockDevice(), "/dev/no-such-device",
			filepath.Join(outside, "secret"), filepath.Join(outside, "missing"), allowed + "/" + up,
			"escape", "escape-missing", "escape-up", "to-zero", "to-etc/passwd", "fifo.iso", "../../../../etc/passwd",
		} {
			t0 := time.Now()
			si := seedCreate(t, m, "tenant-a", "", machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "own"}, BaseImage: base})
			si = seedWaitState(t, m, si, machinesv1.SeedImageFailed, 20*time.Second)
			took := time.Since(t0)
			msg := strings.ReplaceAll(seedMessage(si), fmt.Sprintf("%q", base), "PATH")
			t.Logf("%-45s refused in %s: %s", base, took.Round(time.Millisecond), msg)
			if template == "" {
				template = msg
				if !strings.Contains(msg, "not a regular file in the manager's base image directory") {
					t.Errorf("refusal %q does not say what is allowed", msg)
				}
			} else if msg != template {
				t.Errorf("%s: %q differs from the other refusals' %q: an existence oracle", base, msg, template)
			}
		}
		if imgs := seedFiles(t, seedDir); len(imgs) != 0 {
			t.Errorf("files left by refused builds: %v", imgs)
		}
		// The allowed directory works, by name and by absolute path.
		for _, base := range []string{"os.iso", filepath.Join(allowed, "os.iso")} {
			si := seedCreate(t, m, "tenant-a", "", machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "own"}, BaseImage: base})
			si = seedWaitState(t, m, si, machinesv1.SeedImageReady, 60*time.Second)
			files := sit.ReadISO(t, downloadImage(t, m, si, "seed.iso"))
			if _, err := os.Stat(filepath.Join(files, "os-release")); err != nil {
				t.Errorf("%s: the base's files are missing from the image", base)
			}
			if err := m.Client.Delete(ctx, si); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("base image URLs to the manager's own networks", func(t *testing.T) {
		var hits atomic.Int32
		serve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			http.ServeFile(w, r, iso)
		})
		srv := httptest.NewTLSServer(serve)
		defer srv.Close()
		plain := httptest.NewServer(serve)
		defer plain.Close()
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		sum := seedFileSHA256(t, iso)
		for base, want := range map[string]string{
			srv.URL + "/os.iso":                           "a loopback address",
			"https://localhost:" + port + "/os.iso":       "a loopback address",
			"https://169.254.169.254/latest/meta-data/":   "a link-local",
			"https://[::ffff:127.0.0.1]:" + port + "/iso": "a loopback address",
			plain.URL + "/os.iso":                         "refusing plain HTTP",
		} {
			si := seedCreate(t, m, "tenant-a", "", machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "own"}, BaseImage: base, BaseImageSHA256: sum})
			si = seedWaitState(t, m, si, machinesv1.SeedImageFailed, 20*time.Second)
			if msg := seedMessage(si); !strings.Contains(msg, want) {
				t.Errorf("%s: %q, want it refused with %q", base, msg, want)
			}
		}
		// An OS image (spec.osImage) from a registry on the manager's own
		// networks is refused the same way, before any request.
		for ref, want := range map[string]string{
			srv.Listener.Addr().String() + "/os/live:1": "a loopback address",
			"localhost:" + port + "/os/live:1":          "a loopback address",
			"169.254.169.254/os/live:1":                 "a link-local",
		} {
			si := seedCreate(t, m, "tenant-a", "", machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "own"}, OSImage: ref})
			si = seedWaitState(t, m, si, machinesv1.SeedImageFailed, 20*time.Second)
			if msg := seedMessage(si); !strings.Contains(msg, want) {
				t.Errorf("osImage %s: %q, want it refused with %q", ref, msg, want)
			}
		}
		if n := hits.Load(); n != 0 {
			t.Errorf("the loopback servers were reached %d times", n)
		}
		// A URL without a checksum is refused when written.
		err := m.Client.Create(ctx, &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{GenerateName: "nosum-", Namespace: "tenant-a"},
			Spec: machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "own"}, BaseImage: "https://images.example/os.iso"}})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "baseImageSHA256 is required") {
			t.Errorf("URL without baseImageSHA256: %v, want Invalid", err)
		}
	})

	t.Run("CLI writes the media for its owner only", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "seed.iso")
		// An earlier world-readable file of that name is replaced, not reused.
		if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command(harness.EdgefleetBinary(t), "seed-image", "build", "--kubeconfig", m.Kubeconfig, "-n", "tenant-a", "--registration", "own", "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("edgefleet seed-image build: %v\n%s", err, b)
		}
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600: it carries the registration URL", out, st.Mode().Perm())
		}
	})
}

// With insecure sources allowed (tests, labs), a base image that does not
// match baseImageSHA256 fails the build naming both sums, and nothing of
// it is left on the manager's disk; the right sum builds.
func TestSeedImageBaseURLChecksum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager")
	}
	sit.RequireTools(t, "xorriso")
	iso := sit.MakeISO(t, "TESTOS", map[string]string{"os-release": "NAME=TestOS\n"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, iso) }))
	defer srv.Close()
	m := harness.StartManager(t, harness.ManagerOptions{Args: []string{"--seed-allow-insecure-base-urls"}})
	ctx := context.Background()
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant-a"}}); err != nil {
		t.Fatal(err)
	}
	seedRegistration(t, m, "tenant-a", "own")
	wrong := strings.Repeat("ab", 32)
	si := seedCreate(t, m, "tenant-a", "", machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "own"}, BaseImage: srv.URL + "/os.iso", BaseImageSHA256: wrong})
	si = seedWaitState(t, m, si, machinesv1.SeedImageFailed, 30*time.Second)
	if msg := seedMessage(si); !strings.Contains(msg, "has sha256 "+seedFileSHA256(t, iso)) || !strings.Contains(msg, "spec.baseImageSHA256 is "+wrong) {
		t.Errorf("mismatch message %q, want both sums", msg)
	}
	if left := seedFiles(t, filepath.Join(m.DataDir, "seedimages")); len(left) != 0 {
		t.Errorf("a failed download left %v", left)
	}
	ok := seedCreate(t, m, "tenant-a", "", machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: "own"}, BaseImage: srv.URL + "/os.iso", BaseImageSHA256: seedFileSHA256(t, iso)})
	ok = seedWaitState(t, m, ok, machinesv1.SeedImageReady, 60*time.Second)
	files := sit.ReadISO(t, downloadImage(t, m, ok, "seed.iso"))
	if _, err := os.Stat(filepath.Join(files, "os-release")); err != nil {
		t.Error("the base's files are missing from the image")
	}
}

// seedRegistration creates a MachineRegistration and waits until it is Ready.
func seedRegistration(t *testing.T, m *harness.Manager, ns, name string) *machinesv1.MachineRegistration {
	t.Helper()
	ctx := context.Background()
	mr := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if err := m.Client.Create(ctx, mr); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, func() error {
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(mr), mr); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(mr.Status.Conditions, machinesv1.ReadyCondition) {
			return fmt.Errorf("MachineRegistration %s/%s not ready: %+v", ns, name, mr.Status.Conditions)
		}
		return nil
	})
	return mr
}

func seedCreate(t *testing.T, m *harness.Manager, ns, name string, spec machinesv1.SeedImageSpec) *machinesv1.SeedImage {
	t.Helper()
	si := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	if name == "" {
		si.GenerateName = "si-"
	}
	if err := m.Client.Create(context.Background(), si); err != nil {
		t.Fatal(err)
	}
	return si
}

func seedWaitState(t *testing.T, m *harness.Manager, si *machinesv1.SeedImage, want machinesv1.SeedImageState, timeout time.Duration) *machinesv1.SeedImage {
	t.Helper()
	waitUntil(t, timeout, func() error {
		if err := m.Client.Get(context.Background(), client.ObjectKeyFromObject(si), si); err != nil {
			return err
		}
		if si.Status.State != want || si.Status.ObservedGeneration != si.Generation {
			return fmt.Errorf("SeedImage %s (baseImage %q): state %q, want %q: %s", si.Name, si.Spec.BaseImage, si.Status.State, want, seedMessage(si))
		}
		return nil
	})
	return si
}

func seedMessage(si *machinesv1.SeedImage) string {
	if c := meta.FindStatusCondition(si.Status.Conditions, machinesv1.ReadyCondition); c != nil {
		return c.Message
	}
	return ""
}

// seedFiles lists everything under the manager's seed image directory.
func seedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			out = append(out, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// seedBlockDevice is a block device of this host (a loop device in most CI
// containers), or a typical path when there is none.
func seedBlockDevice() string {
	entries, _ := os.ReadDir("/dev")
	for _, e := range entries {
		if st, err := os.Stat("/dev/" + e.Name()); err == nil && st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0 && strings.HasPrefix(e.Name(), "loop") {
			return "/dev/" + e.Name()
		}
	}
	return "/dev/sda"
}

func seedCopyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func seedFileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
