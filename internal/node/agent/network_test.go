package agent

import (
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/edgefleet/edgefleet/internal/wire/nodestatus"
)

func ips(s ...string) []net.IP {
	var out []net.IP
	for _, a := range s {
		out = append(out, net.ParseIP(a))
	}
	return out
}

func TestNetworkStatus(t *testing.T) {
	lo := nic{Name: "lo", Up: true, Loopback: true, Addrs: ips("127.0.0.1", "::1")}
	for name, tc := range map[string]struct {
		nics []nic
		def  string
		want nodestatus.Network
	}{
		"default route interface first, IPv4 primary": {
			nics: []nic{lo, {Name: "eth0", Up: true, Addrs: ips("fd00::5", "192.168.1.5")}, {Name: "eth1", Up: true, Addrs: ips("10.0.0.7", "fe80::1")}},
			def:  "eth1",
			want: nodestatus.Network{PrimaryAddress: "10.0.0.7", Addresses: []string{"10.0.0.7", "fd00::5", "192.168.1.5"}},
		},
		"no default route: first interface": {
			nics: []nic{lo, {Name: "eth0", Up: true, Addrs: ips("fd00::5")}, {Name: "eth1", Up: true, Addrs: ips("10.0.0.7")}},
			want: nodestatus.Network{PrimaryAddress: "fd00::5", Addresses: []string{"fd00::5", "10.0.0.7"}},
		},
		"down, pod network and link-local only are left out": {
			nics: []nic{lo, {Name: "eth0", Up: false, Addrs: ips("10.0.0.1")}, {Name: "cni0", Up: true, Addrs: ips("10.42.0.1")},
				{Name: "veth12", Up: true, Addrs: ips("fe80::2")}, {Name: "eth1", Up: true, Addrs: ips("169.254.1.1", "10.0.0.9")}},
			want: nodestatus.Network{PrimaryAddress: "10.0.0.9", Addresses: []string{"10.0.0.9"}},
		},
		"only loopback": {nics: []nic{lo}, want: nodestatus.Network{}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := networkStatus(tc.nics, tc.def); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDefaultRouteInterface(t *testing.T) {
	table := `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	0000A8C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
wlan0	00000000	0101A8C0	0003	0	0	600	00000000	0	0	0
eth0	00000000	0101A8C0	0003	0	0	100	00000000	0	0	0
`
	if got := defaultRouteInterface(strings.NewReader(table)); got != "eth0" {
		t.Errorf("got %q, want eth0 (lowest metric)", got)
	}
	if got := defaultRouteInterface(strings.NewReader("Iface\tDestination\n")); got != "" {
		t.Errorf("got %q without a default route", got)
	}
}
