package controlplane

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"
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
