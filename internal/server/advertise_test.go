package server

import (
	"net"
	"os"
	"strings"
	"testing"
)

func TestAdvertiseAddress(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		name, flag, podIP, listen, want, err string
	}{
		{name: "flag wins", flag: "manager-0.fleet:9443", podIP: "10.0.0.9", listen: "0.0.0.0:8443", want: "manager-0.fleet:9443"},
		{name: "pod IP with the listen port", podIP: "10.0.0.9", listen: "[::]:8443", want: "10.0.0.9:8443"},
		{name: "IPv6 pod IP", podIP: "fd00::9", listen: "0.0.0.0:8443", want: "[fd00::9]:8443"},
		{name: "specific listen address", listen: "127.0.0.1:8443", want: "127.0.0.1:8443"},
		{name: "wildcard listen falls back to the hostname", listen: "0.0.0.0:8443", want: net.JoinHostPort(host, "8443")},
		{name: "flag without port", flag: "10.0.0.9", listen: "0.0.0.0:8443", err: "host:port"},
		{name: "wildcard flag", flag: "0.0.0.0:8443", listen: "0.0.0.0:8443", err: "not an address others can dial"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvPodIP, tc.podIP)
			got, err := advertiseAddress(tc.flag, tc.listen)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
