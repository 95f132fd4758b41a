package kubedistro

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// DefaultPauseImage is the sandbox image when the config names none; an
// air-gapped site mirrors registry.k8s.io (registries.mirrors) to a
// registry that holds it.
const DefaultPauseImage = "registry.k8s.io/pause:3.10"

// Ports on the node (each node has its own network namespace, so the
// well-known ones).
const (
	KubeletHealthzPort = 10248
	etcdClientPort     = 2379
	etcdPeerPort       = 2380
)

func pauseImage(c *kubedistro.NodeConfig) string {
	if c.PauseImage != "" {
		return c.PauseImage
	}
	return DefaultPauseImage
}

// writeContainerdConfig writes containerd's config (own root, state and
// socket under the data dir, cgroupfs, the CNI template with the pod CIDR
// the kubelet hands over) and one hosts.toml per mirrored registry.
func writeContainerdConfig(p Paths, c *kubedistro.NodeConfig) error {
	d := p.Containerd()
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    conf_template = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), p.ContainerdSocket(), filepath.Join(d, "opt"),
		pauseImage(c), cniBinDir, filepath.Join(p.CNI(), "net.d"), filepath.Join(p.CNI(), "template.json"), filepath.Join(d, "certs.d"))
	if err := writeFile(filepath.Join(d, "config.toml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(d, "certs.d")); err != nil {
		return err
	}
	if c.Registries == nil {
		return nil
	}
	hosts := make([]string, 0, len(c.Registries.Mirrors))
	for h := range c.Registries.Mirrors {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		toml, files, err := hostsTOML(h, c.Registries.Mirrors[h], c.Registries.CAs)
		if err != nil {
			return err
		}
		dir := filepath.Join(d, "certs.d", hostDir(h))
		for name, data := range files {
			if err := writeFile(filepath.Join(dir, name), data, 0o644); err != nil {
				return err
			}
		}
		if err := writeFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// hostDir is containerd's folder name for a registry host ("_default"
// mirrors every registry).
func hostDir(h string) string {
	if h == "*" {
		return "_default"
	}
	return h
}

// hostsTOML is containerd's hosts.toml for one registry: its mirrors in
// order (pull and resolve only), each with its CA when the config has one.
func hostsTOML(host string, endpoints []string, cas map[string]string) (string, map[string][]byte, error) {
	var b strings.Builder
	files := map[string][]byte{}
	if host != "*" {
		fmt.Fprintf(&b, "server = %q\n", "https://"+host)
	}
	for i, e := range endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", nil, fmt.Errorf("registries.mirrors[%q]: %q is not an http(s) URL", host, e)
		}
		fmt.Fprintf(&b, "\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", e)
		if ca, ok := cas[u.Host]; ok {
			name := fmt.Sprintf("ca-%d.crt", i)
			files[name] = []byte(ca)
			fmt.Fprintf(&b, "  ca = %q\n", name)
		}
	}
	return b.String(), files, nil
}

// cniBinDir is where Debian's containernetworking-plugins installs them.
const cniBinDir = "/usr/lib/cni"

// writeCNITemplate writes the pod network containerd renders once the
// kubelet tells it the node's pod CIDR: a bridge with the node as gateway
// and host-local addresses kept in this node's own folder.
func writeCNITemplate(p Paths) error {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "edgefleet",
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"dataDir": filepath.Join(p.CNI(), "ipam"),
				"ranges":  [][]map[string]string{{{"subnet": "{{.PodCIDR}}"}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			},
		}},
	}
	data, _ := json.MarshalIndent(conf, "", "  ")
	if err := os.MkdirAll(filepath.Join(p.CNI(), "net.d"), 0o755); err != nil {
		return err
	}
	return writeFile(filepath.Join(p.CNI(), "template.json"), data, 0o644)
}

// writeKubeletConfig writes the kubelet's bootstrap kubeconfig (the token)
// and its KubeletConfiguration: cgroupfs under the node's own cgroup root
// (several kubelets share one host in tests; the host has cgroup v1),
// healthz on 127.0.0.1:10248, webhook authn/z.
func writeKubeletConfig(p Paths, c *kubedistro.NodeConfig) error {
	k := p.Kubelet()
	if err := writeKubeconfig(filepath.Join(k, "bootstrap-kubeconfig"), c.Server, filepath.Join(p.PKI(), caCert), "", "", c.Token); err != nil {
		return err
	}
	cfg := map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": filepath.Join(p.PKI(), caCert)},
		},
		"authorization":            map[string]any{"mode": "Webhook"},
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               CgroupRoot(p, c.NodeName),
		"cgroupsPerQOS":            true,
		"failCgroupV1":             false,
		"failSwapOn":               false,
		"containerRuntimeEndpoint": "unix://" + p.ContainerdSocket(),
		"healthzBindAddress":       "127.0.0.1",
		"healthzPort":              KubeletHealthzPort,
		"readOnlyPort":             0,
		"rotateCertificates":       true,
		"clusterDomain":            ClusterDomain,
		"registerWithTaints":       taints(c.NodeTaints),
		"resolvConf":               hostResolvConf(),
		// Absolute disk thresholds, not percentages: on thin-provisioned
		// and shared disks (cloud volumes, CI hosts, several kubelets on one
		// host in tests) a percentage of the reported size says little —
		// a 252 GiB volume with 5 GiB really free reads as 2% and evicted
		// every pod in CI — while 512 MiB free is what a node needs to keep
		// pulling images and writing logs. Edge disks of 16–64 GiB get about
		// the 1–3% reserve k3s and MicroShift keep.
		"evictionHard":                map[string]string{"memory.available": "100Mi", "nodefs.available": "512Mi", "imagefs.available": "512Mi", "nodefs.inodesFree": "2%"},
		"imageGCHighThresholdPercent": 98,
		"imageGCLowThresholdPercent":  95,
		"serializeImagePulls":         false,
	}
	if ip := c.NodeIP; ip != "" {
		cfg["address"] = ip
	}
	// Pods ask the cluster DNS (coredns.go), which the init server deploys.
	if ip := ClusterDNSIP(c); ip != nil {
		cfg["clusterDNS"] = []string{ip.String()}
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := writeFile(filepath.Join(k, "config.json"), data, 0o644); err != nil {
		return err
	}
	// kube-proxy runs with the node's own credential (the kubelet's
	// rotated client certificate; system:node-proxier is bound to
	// system:nodes).
	proxy := map[string]any{
		"apiVersion":         "kubeproxy.config.k8s.io/v1alpha1",
		"kind":               "KubeProxyConfiguration",
		"clientConnection":   map[string]any{"kubeconfig": p.KubeletKubeconfig()},
		"hostnameOverride":   c.NodeName,
		"clusterCIDR":        clusterCIDR(c),
		"mode":               "iptables",
		"healthzBindAddress": "127.0.0.1:10256",
		"metricsBindAddress": "127.0.0.1:10249",
		// A node in a network namespace cannot set the host-wide
		// conntrack table size; leave it to the host.
		"conntrack": map[string]any{"maxPerCore": 0, "min": 0},
	}
	data, _ = json.MarshalIndent(proxy, "", "  ")
	return writeFile(filepath.Join(k, "kube-proxy.json"), data, 0o644)
}

// CgroupRoot is the node's own cgroup subtree (cgroupfs), named after the
// node and its data folder: pods of several nodes on one host — even of
// two test clusters with the same node names — never share a parent.
func CgroupRoot(p Paths, nodeName string) string {
	sum := sha256.Sum256([]byte(p.Data))
	return "/edgefleet/" + nodeName + "-" + hex.EncodeToString(sum[:4])
}

type taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

func taints(ts []string) []taint {
	out := []taint{}
	for _, t := range ts {
		kv, effect, _ := strings.Cut(t, ":")
		k, v, _ := strings.Cut(kv, "=")
		out = append(out, taint{Key: k, Value: v, Effect: effect})
	}
	return out
}

// writeKubeconfig writes a kubeconfig with a client certificate (files) or
// a bearer token.
func writeKubeconfig(path, server, caFile, certFile, keyFile, token string) error {
	user := map[string]any{}
	if token != "" {
		user["token"] = token
	} else {
		user["client-certificate"], user["client-key"] = certFile, keyFile
	}
	kc := map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"clusters":        []any{map[string]any{"name": "edgefleet", "cluster": map[string]any{"server": server, "certificate-authority": caFile}}},
		"users":           []any{map[string]any{"name": "user", "user": user}},
		"contexts":        []any{map[string]any{"name": "edgefleet", "context": map[string]any{"cluster": "edgefleet", "user": "user"}}},
		"current-context": "edgefleet",
	}
	data, _ := json.MarshalIndent(kc, "", "  ")
	return writeFile(path, data, 0o600)
}

// bootstrapManifest is what kubeadm creates for TLS bootstrapping: the
// bootstrap token Secret and the bindings that let token holders ask for a
// node client certificate, have it approved, and let nodes renew theirs.
func bootstrapManifest(token string) []byte {
	id, secret, _ := strings.Cut(token, ".")
	const group = "system:bootstrappers:kubeadm:default-node-token"
	binding := func(name, role, kind, subject string) map[string]any {
		return map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
			"metadata": map[string]any{"name": name},
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
			"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}},
		}
	}
	objs := []any{
		map[string]any{
			"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
			"metadata": map[string]any{"name": "bootstrap-token-" + id, "namespace": "kube-system"},
			"stringData": map[string]string{
				"token-id": id, "token-secret": secret, "description": "edgefleet node join token",
				"usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
				"auth-extra-groups": group,
			},
		},
		binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", "Group", group),
		binding("kubeadm:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", "Group", group),
		binding("kubeadm:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "Group", "system:nodes"),
		binding("edgefleet:kube-apiserver-kubelet-client", "system:kubelet-api-admin", "User", "kube-apiserver-kubelet-client"),
		// Each node routes to the others' pod CIDRs (routes.go): it reads
		// every Node, which the Node authorizer alone refuses.
		map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": map[string]any{"name": "edgefleet:node-routes"},
			"rules":    []any{map[string]any{"apiGroups": []string{""}, "resources": []string{"nodes"}, "verbs": []string{"get", "list", "watch"}}},
		},
		binding("edgefleet:node-routes", "edgefleet:node-routes", "Group", "system:nodes"),
		binding("edgefleet:node-proxier", "system:node-proxier", "Group", "system:nodes"),
	}
	data, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": objs})
	return data
}
