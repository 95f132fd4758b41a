package controlplane

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

// Ports are chosen one after another and a free port is released before the
// next is chosen; the kernel may hand the same one out again. The control
// plane must still get three distinct ports, keep a previous port when it is
// free, and move off one that is taken.
func TestChoosePortsAreDistinct(t *testing.T) {
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	x := free()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().(*net.TCPAddr).Port

	cases := []struct {
		name     string
		prev     ports
		keepsAPI bool
	}{
		{"fresh data dir", ports{}, false},
		{"every previous port the same free port", ports{APIServer: x, EtcdClient: x, EtcdPeer: x}, true},
		{"previous etcd ports equal", ports{EtcdClient: x, EtcdPeer: x}, false},
		{"previous API server port taken", ports{APIServer: taken, EtcdClient: taken}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &Processes{cfg: Config{Host: "127.0.0.1", Log: logr.Discard()}}
			for range 20 {
				pt, err := p.choosePorts(tc.prev)
				if err != nil {
					t.Fatalf("choosePorts(%+v): %v", tc.prev, err)
				}
				if pt.APIServer == pt.EtcdClient || pt.APIServer == pt.EtcdPeer || pt.EtcdClient == pt.EtcdPeer {
					t.Fatalf("choosePorts(%+v) = %+v: ports not distinct", tc.prev, pt)
				}
				if pt.APIServer == taken || pt.EtcdClient == taken || pt.EtcdPeer == taken {
					t.Fatalf("choosePorts(%+v) = %+v: chose port %d which is in use", tc.prev, pt, taken)
				}
				if tc.keepsAPI && pt.APIServer != tc.prev.APIServer {
					t.Fatalf("API server port %d, want the previous free port %d kept (kubeconfigs point at it)", pt.APIServer, tc.prev.APIServer)
				}
			}
		})
	}

	t.Run("configured API server port in use", func(t *testing.T) {
		p := &Processes{cfg: Config{Host: "127.0.0.1", APIServerPort: taken, Log: logr.Discard()}}
		_, err := p.choosePorts(ports{})
		if err == nil {
			t.Fatal("choosePorts with the configured port in use succeeded")
		}
		if want := "port " + strconv.Itoa(taken) + " on 127.0.0.1 is in use"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	})
}
