package e2e

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/test/harness"
)

// TestDataDirDiskFull: with the data dir on a small tmpfs that another file
// fills, the manager stays up, serves reads and refuses writes with etcd's
// "database space exceeded"; when the space returns, writes are accepted
// again without a restart and nothing written before is lost.
func TestDataDirDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	// A real small file system; mounting needs root (CAP_SYS_ADMIN).
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() }) // after the manager stops (cleanups run last-in first-out)
	ctx := context.Background()
	m := harness.StartManager(t, harness.ManagerOptions{DataDir: filepath.Join(mnt, "data"), Args: []string{"--data-dir-min-free", "64Mi"}})
	cm := func(name string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Data: map[string]string{"k": strings.Repeat("x", 4096)}}
	}
	if err := m.Client.Create(ctx, cm("before")); err != nil {
		t.Fatal(err)
	}
	// kube-controller-manager exits if a write fails while it builds its
	// controllers (it mints their tokens); the disk fills in steady state.
	kcmLog := filepath.Join(m.DataDir, "controlplane", "logs", "kube-controller-manager.log")
	waitFor(t, 60*time.Second, "kube-controller-manager running its controllers", func() bool {
		b, _ := os.ReadFile(kcmLog)
		return strings.Contains(string(b), "Caches are synced")
	})

	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	// Leave 32 MiB: below the guard's 64 MiB, above what etcd needs to
	// record the alarm.
	if _, err := io.Copy(f, io.LimitReader(zeros{}, free-32<<20)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	filled := time.Now()
	var refusal string
	waitFor(t, 30*time.Second, "writes refused on the full disk", func() bool {
		err := m.Client.Create(ctx, cm("during"))
		if err == nil {
			_ = m.Client.Delete(ctx, cm("during"))
			return false
		}
		refusal = err.Error()
		return strings.Contains(refusal, "database space exceeded")
	})
	t.Logf("writes refused %v after the disk filled: %s", time.Since(filled).Round(100*time.Millisecond), refusal)
	var got corev1.ConfigMap
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "before"}, &got); err != nil {
		t.Fatalf("reads on a full disk: %v", err)
	}
	if !strings.Contains(m.Output(), "Data dir disk nearly full") {
		t.Error("the manager did not log that the data dir's disk is nearly full")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	waitFor(t, 30*time.Second, "writes accepted again once space returned", func() bool {
		return m.Client.Create(ctx, cm("after")) == nil
	})
	t.Logf("writes accepted %v after space returned, without a restart", time.Since(freed).Round(100*time.Millisecond))
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "before"}, &got); err != nil {
		t.Fatalf("object written before the disk filled: %v", err)
	}
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "during"}, &got); err == nil {
		t.Fatal("a write refused on the full disk exists")
	}
	if !strings.Contains(m.Output(), "writes accepted") {
		t.Error("the manager did not log that writes are accepted again")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
