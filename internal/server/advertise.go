package server

import (
	"fmt"
	"net"
	"os"
)

// EnvPodIP is read for the default advertise address; set it from the
// downward API (status.podIP) when running in a Pod.
const EnvPodIP = "POD_IP"

// advertiseAddress is where the other replicas reach this one (host:port):
// --advertise-address, else $POD_IP with the listen port, else the listen
// address when it names a host, else the hostname with the listen port.
// listen is the bound address, so its port is never 0.
func advertiseAddress(flag, listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w", listen, err)
	}
	if flag != "" {
		h, p, err := net.SplitHostPort(flag)
		if err != nil || h == "" || p == "" || p == "0" {
			return "", fmt.Errorf("--advertise-address %q is not valid: give host:port where the other replicas reach this one, such as 10.0.0.5:8443", flag)
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
			return "", fmt.Errorf("--advertise-address %q is not valid: %s is not an address others can dial; give this replica's own IP or name", flag, h)
		}
		return flag, nil
	}
	if ip := os.Getenv(EnvPodIP); ip != "" {
		return net.JoinHostPort(ip, port), nil
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen, nil
	}
	name, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("finding an address other replicas can reach (listening on %s): %w (pass --advertise-address)", listen, err)
	}
	return net.JoinHostPort(name, port), nil
}
