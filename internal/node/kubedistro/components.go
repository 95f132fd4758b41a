package kubedistro

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// component is one long-running process the supervisor keeps running.
type component struct {
	Name string
	Bin  string
	Args []string
	// Ready, when set, must pass before the next components start (etcd
	// before kube-apiserver, the API before the controllers).
	Ready func(ctx context.Context) error
}

// components is what this node runs, in start order.
func components(p Paths, c *kubedistro.NodeConfig, bin, nodeIP string) []component {
	var out []component
	pk := func(f string) string { return filepath.Join(p.PKI(), f) }
	if c.Role == kubedistro.RoleServer {
		peer := "https://" + net.JoinHostPort(nodeIP, strconv.Itoa(etcdPeerPort))
		client := "https://" + net.JoinHostPort(nodeIP, strconv.Itoa(etcdClientPort))
		initial, state := c.NodeName+"="+peer, "new"
		if !c.Init {
			// joinEtcd wrote the members it joined; with etcd data on disk
			// etcd ignores both flags.
			data, _ := os.ReadFile(p.etcdInitialCluster())
			initial, state = strings.TrimSpace(string(data)), "existing"
		}
		out = append(out, component{Name: "etcd", Bin: filepath.Join(bin, "etcd"), Args: []string{
			"--name=" + c.NodeName,
			"--data-dir=" + p.Etcd(),
			"--listen-client-urls=https://127.0.0.1:2379," + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=" + initial,
			"--initial-cluster-state=" + state,
			"--listen-metrics-urls=http://127.0.0.1:2381",
			"--cert-file=" + pk("etcd-server.crt"), "--key-file=" + pk("etcd-server.key"),
			"--trusted-ca-file=" + pk(etcdCACert), "--client-cert-auth=true",
			"--peer-cert-file=" + pk("etcd-peer.crt"), "--peer-key-file=" + pk("etcd-peer.key"),
			"--peer-trusted-ca-file=" + pk(etcdCACert), "--peer-client-cert-auth=true",
			"--log-level=warn",
		}, Ready: func(ctx context.Context) error { return httpOK(ctx, "http://127.0.0.1:2381/health", nil) }})
		out = append(out, component{Name: "kube-apiserver", Bin: filepath.Join(bin, "kube-apiserver"), Args: []string{
			"--etcd-servers=https://127.0.0.1:2379",
			"--etcd-cafile=" + pk(etcdCACert), "--etcd-certfile=" + pk("apiserver-etcd-client.crt"), "--etcd-keyfile=" + pk("apiserver-etcd-client.key"),
			"--bind-address=0.0.0.0",
			"--advertise-address=" + nodeIP,
			"--secure-port=" + strconv.Itoa(apiPort(c)),
			"--tls-cert-file=" + pk("apiserver.crt"), "--tls-private-key-file=" + pk("apiserver.key"),
			"--client-ca-file=" + pk(caCert),
			"--enable-bootstrap-token-auth=true",
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--kubelet-client-certificate=" + pk("apiserver-kubelet-client.crt"), "--kubelet-client-key=" + pk("apiserver-kubelet-client.key"),
			"--kubelet-preferred-address-types=InternalIP,Hostname",
			"--requestheader-client-ca-file=" + pk(frontProxyCACert),
			"--requestheader-allowed-names=front-proxy-client",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-username-headers=X-Remote-User",
			"--proxy-client-cert-file=" + pk("front-proxy-client.crt"), "--proxy-client-key-file=" + pk("front-proxy-client.key"),
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + pk(saPub),
			"--service-account-signing-key-file=" + pk(saKey),
			"--service-cluster-ip-range=" + serviceCIDR(c),
			"--allow-privileged=true",
			"--cert-dir=" + filepath.Join(p.PKI(), "apiserver-generated"),
		}, Ready: func(ctx context.Context) error { return apiReady(ctx, p, c) }})
		kcm := filepath.Join(p.Server(), "controller-manager.kubeconfig")
		out = append(out, component{Name: "kube-controller-manager", Bin: filepath.Join(bin, "kube-controller-manager"), Args: []string{
			"--kubeconfig=" + kcm, "--authentication-kubeconfig=" + kcm, "--authorization-kubeconfig=" + kcm,
			"--bind-address=127.0.0.1", "--secure-port=10257",
			"--leader-elect=true",
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + pk(saKey),
			"--root-ca-file=" + pk(caCert),
			"--cluster-signing-cert-file=" + pk(caCert), "--cluster-signing-key-file=" + pk("ca.key"),
			"--allocate-node-cidrs=true", "--cluster-cidr=" + clusterCIDR(c), "--node-cidr-mask-size=24",
			"--service-cluster-ip-range=" + serviceCIDR(c),
			"--configure-cloud-routes=false",
			"--controllers=*,bootstrapsigner,tokencleaner",
		}})
		sch := filepath.Join(p.Server(), "scheduler.kubeconfig")
		out = append(out, component{Name: "kube-scheduler", Bin: filepath.Join(bin, "kube-scheduler"), Args: []string{
			"--kubeconfig=" + sch, "--authentication-kubeconfig=" + sch, "--authorization-kubeconfig=" + sch,
			"--bind-address=127.0.0.1", "--secure-port=10259", "--leader-elect=true",
		}})
	}
	out = append(out, component{Name: "containerd", Bin: "containerd", Args: []string{"--config", filepath.Join(p.Containerd(), "config.toml")},
		Ready: func(ctx context.Context) error {
			conn, err := net.DialTimeout("unix", p.ContainerdSocket(), time.Second)
			if err == nil {
				conn.Close()
			}
			return err
		}})
	k := p.Kubelet()
	args := []string{
		"--config=" + filepath.Join(k, "config.json"),
		"--kubeconfig=" + p.KubeletKubeconfig(),
		"--bootstrap-kubeconfig=" + filepath.Join(k, "bootstrap-kubeconfig"),
		"--cert-dir=" + filepath.Join(k, "pki"),
		"--root-dir=" + filepath.Join(k, "root"),
		"--hostname-override=" + c.NodeName,
		"--node-ip=" + nodeIP,
	}
	if l := nodeLabels(c.NodeLabels); l != "" {
		args = append(args, "--node-labels="+l)
	}
	out = append(out, component{Name: "kubelet", Bin: filepath.Join(bin, "kubelet"), Args: args,
		Ready: func(ctx context.Context) error { return httpOK(ctx, kubeletHealthz, nil) }})
	if _, err := os.Stat(filepath.Join(bin, "kube-proxy")); err == nil {
		// Services by ClusterIP, when the binaries include kube-proxy.
		out = append(out, component{Name: "kube-proxy", Bin: filepath.Join(bin, "kube-proxy"), Args: []string{
			"--config=" + filepath.Join(p.Kubelet(), "kube-proxy.json"),
		}})
	}
	return out
}

const kubeletHealthz = "http://127.0.0.1:10248/healthz"

func nodeLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func apiPort(c *kubedistro.NodeConfig) int {
	if i := strings.LastIndex(c.Server, ":"); i > len("https://") {
		if n, err := strconv.Atoi(strings.TrimSuffix(c.Server[i+1:], "/")); err == nil {
			return n
		}
	}
	return kubedistro.DefaultAPIServerPort
}

// localAPI is this server's own API, what its controllers talk to.
func localAPI(c *kubedistro.NodeConfig) string {
	return "https://127.0.0.1:" + strconv.Itoa(apiPort(c))
}

// apiReady asks the local kube-apiserver's /readyz (anonymous, trusting
// the cluster CA).
func apiReady(ctx context.Context, p Paths, c *kubedistro.NodeConfig) error {
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(p.PKI(), caCert))
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(ca)
	return httpOK(ctx, localAPI(c)+"/readyz", &tls.Config{RootCAs: pool})
}

// httpOK GETs url and wants a 200.
func httpOK(ctx context.Context, url string, tlsConfig *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: tlsConfig, DisableKeepAlives: true}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

// errNoAddress: the node has no address to register with.
var errNoAddress = errors.New("the node has no IPv4 address on the interface of its default route: set nodeIP in the config")

// resolveNodeIP is the config's nodeIP or the first IPv4 address of the
// interface holding the default route.
func resolveNodeIP(c *kubedistro.NodeConfig) (string, error) {
	if c.NodeIP != "" {
		return c.NodeIP, nil
	}
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		iface, err := net.InterfaceByName(f[0])
		if err != nil {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				return n.IP.String(), nil
			}
		}
	}
	return "", errNoAddress
}
