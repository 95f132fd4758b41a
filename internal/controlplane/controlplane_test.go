package controlplane

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// A port tested free can be taken before etcd binds it (another control
// plane, an outgoing connection). Start must choose new ports, not fail.
func TestStartChoosesNewPortsWhenOneIsTakenBeforeBinding(t *testing.T) {
	bin := os.Getenv(EnvBinDir)
	if bin == "" {
		t.Fatalf("$%s is unset: run through `make test`, which builds the binaries", EnvBinDir)
	}
	var taken []net.Listener
	var chosen []ports
	afterChoosePorts = func(pt ports) {
		chosen = append(chosen, pt)
		if len(chosen) > 1 {
			return
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(pt.EtcdClient)))
		if err != nil {
			t.Fatalf("taking etcd's port: %v", err)
		}
		taken = append(taken, l)
	}
	t.Cleanup(func() {
		afterChoosePorts = func(ports) {}
		for _, l := range taken {
			l.Close()
		}
	})

	p, err := New(Config{DataDir: t.TempDir(), BinDir: bin, UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start with etcd's first port taken: %v", err)
	}
	defer p.Stop()
	if len(chosen) != 2 {
		t.Fatalf("ports were chosen %d times, want 2 (the first etcd port was taken)", len(chosen))
	}
	if chosen[1].EtcdClient == chosen[0].EtcdClient {
		t.Errorf("retry kept the taken etcd port %d", chosen[0].EtcdClient)
	}
	saved, err := loadPorts(p.cfg.DataDir + "/ports.json")
	if err != nil || saved != chosen[1] {
		t.Errorf("ports.json = %+v (%v), want the ports in use %+v", saved, err, chosen[1])
	}
	if p.started() != 2 {
		t.Errorf("%d processes supervised, want etcd and kube-apiserver only (the failed etcd forgotten)", p.started())
	}
}

func startTestControlPlane(t *testing.T) *Processes {
	t.Helper()
	bin := os.Getenv(EnvBinDir)
	if bin == "" {
		t.Fatalf("$%s is unset: run through `make test`, which builds the binaries", EnvBinDir)
	}
	p, err := New(Config{DataDir: t.TempDir(), BinDir: bin, UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func (p *Processes) pidOf(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, proc := range p.procs {
		if proc.name == name {
			return proc.cmd.Process.Pid
		}
	}
	return 0
}

// A component killed after start (OOM killer, an operator, a crash) is
// started again in place: the API answers again with the data written
// before, and nothing is reported as Failed.
func TestKilledComponentsAreRestarted(t *testing.T) {
	p := startTestControlPlane(t)
	cs, err := kubernetes.NewForConfig(p.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{BinAPIServer, BinEtcd} {
		pid := p.pidOf(name)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("killing %s (pid %d): %v", name, pid, err)
		}
		deadline := time.Now().Add(90 * time.Second)
		for {
			_, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "before", metav1.GetOptions{})
			if err == nil && p.pidOf(name) != pid {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the API did not answer after %s was killed: %v", name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-" + name}}, metav1.CreateOptions{}); err != nil {
			t.Errorf("writing after %s was restarted: %v", name, err)
		}
	}
	if got := p.Restarts(); got[BinAPIServer] != 1 || got[BinEtcd] != 1 {
		t.Errorf("Restarts() = %v, want kube-apiserver and etcd once each", got)
	}
	select {
	case err := <-p.Failed():
		t.Errorf("the control plane reported a failure for killed-and-restarted components: %v", err)
	default:
	}
}

// A component that keeps exiting is a crash loop no restart fixes: Failed
// reports it, with its log, after restartLimit restarts.
func TestCrashLoopIsReportedAsFailed(t *testing.T) {
	p := startTestControlPlane(t)
	deadline := time.After(2 * time.Minute)
	killed := 0
	for {
		select {
		case err := <-p.Failed():
			if killed != restartLimit+1 {
				t.Errorf("Failed after %d kills, want %d", killed, restartLimit+1)
			}
			if !strings.Contains(err.Error(), "etcd exited 6 times") {
				t.Errorf("Failed says %q, want it to name etcd's crash loop", err)
			}
			return
		case <-deadline:
			t.Fatalf("no failure reported after etcd was killed %d times", killed)
		case <-time.After(100 * time.Millisecond):
		}
		if pid := p.pidOf(BinEtcd); pid != 0 && syscall.Kill(pid, 0) == nil && killed <= restartLimit {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed++
			for p.pidOf(BinEtcd) == pid && killed <= restartLimit {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}
