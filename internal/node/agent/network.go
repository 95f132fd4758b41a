package agent

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/nodekube"
	"github.com/edgefleet/edgefleet/internal/wire/nodestatus"
)

// NetFieldManager owns status.network (server-side apply), apart from the
// plan reporter's fields so neither removes the other's.
const NetFieldManager = "edgefleet-node-net"

// networkPollEvery is how often the agent looks for address changes
// (DHCP renewals, a cable moved); a report goes out only on a change.
const networkPollEvery = 30 * time.Second

// maxAddresses is the API's limit on status.network.addresses.
const maxAddresses = 64

// nic is one interface as the address choice sees it.
type nic struct {
	Name     string
	Up       bool
	Loopback bool
	Addrs    []net.IP
}

// reportNetwork reports status.network at start and whenever the
// machine's addresses change, retrying with jittered backoff while the
// manager is unreachable.
func (a *agent) reportNetwork(ctx context.Context, id *identity, ids <-chan *identity) {
	var sent *nodestatus.Network
	wait := minRetry
	for {
		select {
		case id = <-ids:
		default:
		}
		n, err := localNetwork()
		switch {
		case err != nil:
			a.o.Log.Warn("Reading the machine's addresses failed", "err", err)
		case sent != nil && reflect.DeepEqual(*sent, n):
		default:
			err = id.kube.ApplyStatus(ctx, id.namespace, id.inventory, NetFieldManager, map[string]any{"network": n})
			if err == nil {
				sent, wait = &n, minRetry
				break
			}
			if nodekube.IsUnauthorized(err) {
				a.credentialRefused()
			}
			a.o.Log.Warn("Reporting the network status failed; retrying", "err", err, "in", wait.Round(time.Millisecond))
			if !sleep(ctx, jitter(wait)) {
				return
			}
			wait = nextWait(wait)
			continue
		}
		if !sleep(ctx, networkPollEvery) {
			return
		}
	}
}

// localNetwork is this machine's (this network namespace's) status.network.
func localNetwork() (nodestatus.Network, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nodestatus.Network{}, err
	}
	var nics []nic
	for _, i := range ifaces {
		n := nic{Name: i.Name, Up: i.Flags&net.FlagUp != 0, Loopback: i.Flags&net.FlagLoopback != 0}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				n.Addrs = append(n.Addrs, ipn.IP)
			}
		}
		nics = append(nics, n)
	}
	def := ""
	if f, err := os.Open("/proc/net/route"); err == nil {
		def = defaultRouteInterface(f)
		f.Close()
	}
	return networkStatus(nics, def), nil
}

// defaultRouteInterface reads /proc/net/route (IPv4) and names the
// interface of the default route with the lowest metric, "" without one.
func defaultRouteInterface(r io.Reader) string {
	sc := bufio.NewScanner(r)
	best, bestMetric := "", -1
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		metric := 0
		for _, c := range f[6] {
			if c < '0' || c > '9' {
				metric = -1
				break
			}
			metric = metric*10 + int(c-'0')
		}
		if metric >= 0 && (bestMetric < 0 || metric < bestMetric) {
			best, bestMetric = f[0], metric
		}
	}
	return best
}

// networkStatus chooses the addresses: every global address of the up,
// non-loopback interfaces except those of pod networks (CNI bridges and
// veths a Kubernetes node creates), the default-route interface's first;
// the primary is that interface's first IPv4 address (or first address),
// else the first address found.
func networkStatus(nics []nic, defaultIface string) nodestatus.Network {
	var out nodestatus.Network
	ordered := slices.Clone(nics)
	slices.SortStableFunc(ordered, func(a, b nic) int {
		switch {
		case a.Name == defaultIface && b.Name != defaultIface:
			return -1
		case b.Name == defaultIface && a.Name != defaultIface:
			return 1
		}
		return 0
	})
	for _, n := range ordered {
		if !n.Up || n.Loopback || podNetworkInterface(n.Name) {
			continue
		}
		var v4, any string
		for _, ip := range n.Addrs {
			if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() {
				continue
			}
			s := ip.String()
			if any == "" {
				any = s
			}
			if v4 == "" && ip.To4() != nil {
				v4 = s
			}
			if len(out.Addresses) < maxAddresses {
				out.Addresses = append(out.Addresses, s)
			}
		}
		if out.PrimaryAddress == "" {
			if v4 != "" {
				out.PrimaryAddress = v4
			} else {
				out.PrimaryAddress = any
			}
		}
	}
	return out
}

// podNetworkInterface: interfaces a Kubernetes node's CNI creates, whose
// addresses are not the machine's.
func podNetworkInterface(name string) bool {
	for _, p := range []string{"cni", "veth", "flannel", "cali", "kube-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
