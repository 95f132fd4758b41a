package kubedistro

import (
	"encoding/json"
	"net"
	"os"
	"strings"

	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// CoreDNSVersion is the CoreDNS release the distribution deploys; the
// tests build the same version from hack/coredns (its go.mod pins it).
const CoreDNSVersion = "v1.15.0"

// DefaultCoreDNSImage is the cluster DNS image when the config names none:
// upstream's, on registry.k8s.io like the pause image, so an air-gapped
// site mirrors the same registry for both.
const DefaultCoreDNSImage = "registry.k8s.io/coredns/coredns:" + CoreDNSVersion

// ClusterDomain is the DNS domain of Services and pods.
const ClusterDomain = "cluster.local"

func coreDNSImage(c *kubedistro.NodeConfig) string {
	if c.CoreDNSImage != "" {
		return c.CoreDNSImage
	}
	return DefaultCoreDNSImage
}

// ClusterDNSIP is the kube-dns Service's address: the service CIDR's 10th
// address, where kubeadm and k3s put it (10.43.0.10 by default). Every
// kubelet hands it to its pods as their nameserver.
// It is nil when the service CIDR is too small to have one.
func ClusterDNSIP(c *kubedistro.NodeConfig) net.IP {
	_, n, err := net.ParseCIDR(serviceCIDR(c))
	ip := firstServiceIP(c)
	if err != nil || ip == nil {
		return nil
	}
	ip[len(ip)-1] += 9
	if !n.Contains(ip) {
		return nil
	}
	return ip
}

// resolvConf is the resolv.conf the kubelet gives pods with dnsPolicy
// Default, CoreDNS among them, as their upstreams. When /etc/resolv.conf
// names only loopback servers (systemd-resolved's 127.0.0.53 stub), those
// would be the pod's own loopback and CoreDNS would ask itself; resolved's
// list of real upstreams is used instead, as kubeadm does.
func resolvConf(etcResolv, resolvedResolv []byte) string {
	const etc, resolved = "/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"
	if resolvedResolv == nil || !onlyLoopbackNameservers(etcResolv) {
		return etc
	}
	return resolved
}

func hostResolvConf() string {
	etc, _ := os.ReadFile("/etc/resolv.conf")
	resolved, err := os.ReadFile("/run/systemd/resolve/resolv.conf")
	if err != nil {
		resolved = nil
	}
	return resolvConf(etc, resolved)
}

func onlyLoopbackNameservers(conf []byte) bool {
	seen := false
	for _, line := range strings.Split(string(conf), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		seen = true
		if ip := net.ParseIP(f[1]); ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return seen
}

// corefile serves the cluster domain from the API (pods' A records too, for
// the <a-b-c-d>.<ns>.pod names some charts use), serves Prometheus metrics
// on :9153, forwards everything else
// to the node's resolvers and stops when it would forward to itself
// (loop: a node whose resolv.conf points at a local stub).
const corefile = `.:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes ` + ClusterDomain + ` in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
        max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
`

// coreDNSManifest is the cluster DNS the init server applies after the
// bootstrap RBAC, the objects kubeadm creates: a ServiceAccount allowed to
// watch what the kubernetes plugin serves, the Corefile, a Deployment and
// the kube-dns Service at ClusterDNSIP (kube-dns keeps the name charts and
// tools look for).
func coreDNSManifest(c *kubedistro.NodeConfig) []byte {
	const ns, name = "kube-system", "coredns"
	labels := map[string]string{"k8s-app": "kube-dns"}
	meta := func(n string) map[string]any {
		return map[string]any{"name": n, "namespace": ns, "labels": labels}
	}
	one := int64(1)
	objs := []any{
		map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name)},
		map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": map[string]any{"name": "system:coredns", "labels": labels},
			"rules": []any{
				map[string]any{"apiGroups": []string{""}, "resources": []string{"endpoints", "services", "pods", "namespaces"}, "verbs": []string{"list", "watch"}},
				map[string]any{"apiGroups": []string{"discovery.k8s.io"}, "resources": []string{"endpointslices"}, "verbs": []string{"list", "watch"}},
			},
		},
		map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
			"metadata": map[string]any{"name": "system:coredns", "labels": labels},
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
			"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": name, "namespace": ns}},
		},
		map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name), "data": map[string]string{"Corefile": corefile}},
		map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name),
			"spec": map[string]any{
				// One replica, as k3s runs it: edge clusters are small and
				// every node's pods keep resolving through the Service
				// while a replacement starts.
				"replicas": one,
				"selector": map[string]any{"matchLabels": labels},
				"strategy": map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxUnavailable": 0, "maxSurge": 1}},
				"template": map[string]any{
					"metadata": map[string]any{"labels": labels},
					"spec": map[string]any{
						"serviceAccountName": name,
						"priorityClassName":  "system-cluster-critical",
						// Its own upstreams are the node's: a ClusterFirst
						// CoreDNS would ask itself.
						"dnsPolicy":    "Default",
						"nodeSelector": map[string]string{"kubernetes.io/os": "linux"},
						"tolerations": []any{
							map[string]any{"key": "CriticalAddonsOnly", "operator": "Exists"},
							map[string]any{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
						},
						"containers": []any{map[string]any{
							"name":  name,
							"image": coreDNSImage(c),
							"args":  []string{"-conf", "/etc/coredns/Corefile"},
							"ports": []any{
								map[string]any{"name": "dns", "containerPort": 53, "protocol": "UDP"},
								map[string]any{"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
								map[string]any{"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
							},
							"resources": map[string]any{
								"requests": map[string]string{"cpu": "100m", "memory": "70Mi"},
								"limits":   map[string]string{"memory": "170Mi"},
							},
							"volumeMounts": []any{map[string]any{"name": "config", "mountPath": "/etc/coredns", "readOnly": true}},
							"livenessProbe": map[string]any{
								"httpGet":             map[string]any{"path": "/health", "port": 8080, "scheme": "HTTP"},
								"initialDelaySeconds": 60, "timeoutSeconds": 5, "failureThreshold": 5,
							},
							"readinessProbe": map[string]any{
								"httpGet":       map[string]any{"path": "/ready", "port": 8181, "scheme": "HTTP"},
								"periodSeconds": 2,
							},
							"securityContext": map[string]any{
								"allowPrivilegeEscalation": false,
								"readOnlyRootFilesystem":   true,
								"capabilities":             map[string]any{"add": []string{"NET_BIND_SERVICE"}, "drop": []string{"ALL"}},
							},
						}},
						"volumes": []any{map[string]any{
							"name":      "config",
							"configMap": map[string]any{"name": name, "items": []any{map[string]string{"key": "Corefile", "path": "Corefile"}}},
						}},
					},
				},
			},
		},
		map[string]any{
			"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{
				"name": "kube-dns", "namespace": ns,
				"labels": map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
			},
			"spec": map[string]any{
				"selector":  labels,
				"clusterIP": ClusterDNSIP(c).String(),
				"ports": []any{
					map[string]any{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
					map[string]any{"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
				},
			},
		},
	}
	data, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": objs})
	return data
}
