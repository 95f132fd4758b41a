package kubedistro

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

func TestClusterDNSIP(t *testing.T) {
	for cidr, want := range map[string]string{
		"":               "10.43.0.10", // the distribution's default service CIDR
		"10.96.0.0/12":   "10.96.0.10",
		"172.20.16.0/28": "172.20.16.10",
		"fd00:43::/108":  "fd00:43::a",
		"10.0.0.248/29":  "", // 8 addresses: no 10th
	} {
		got := ClusterDNSIP(&kubedistro.NodeConfig{ServiceCIDR: cidr})
		if (want == "" && got != nil) || (want != "" && got.String() != want) {
			t.Errorf("service CIDR %q: cluster DNS %v, want %q", cidr, got, want)
		}
	}
}

// The manifest's objects decode strictly into the Kubernetes types (a
// misspelt field fails here, not on a cluster) and say what the kubelets
// rely on: kube-dns at the 10th service address, selecting CoreDNS's pods,
// the configured image, a Corefile serving cluster.local from the API, and
// RBAC for what the kubernetes plugin watches.
func TestCoreDNSManifest(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg            kubedistro.NodeConfig
		image, cluster string
	}{
		"defaults":           {image: DefaultCoreDNSImage, cluster: "10.43.0.10"},
		"own image and CIDR": {cfg: kubedistro.NodeConfig{CoreDNSImage: "mirror.example/dns/coredns:v1.15.0", ServiceCIDR: "10.96.0.0/12"}, image: "mirror.example/dns/coredns:v1.15.0", cluster: "10.96.0.10"},
	} {
		t.Run(name, func(t *testing.T) {
			var list struct {
				Items []json.RawMessage `json:"items"`
			}
			if err := json.Unmarshal(coreDNSManifest(&tc.cfg), &list); err != nil {
				t.Fatal(err)
			}
			var (
				dep  appsv1.Deployment
				svc  corev1.Service
				cm   corev1.ConfigMap
				role rbacv1.ClusterRole
				bind rbacv1.ClusterRoleBinding
				sa   corev1.ServiceAccount
			)
			kinds := map[string]any{"Deployment": &dep, "Service": &svc, "ConfigMap": &cm, "ClusterRole": &role, "ClusterRoleBinding": &bind, "ServiceAccount": &sa}
			for _, raw := range list.Items {
				var tm struct{ Kind string }
				_ = json.Unmarshal(raw, &tm)
				into, ok := kinds[tm.Kind]
				if !ok {
					t.Fatalf("unexpected kind %q", tm.Kind)
				}
				dec := json.NewDecoder(bytes.NewReader(raw))
				dec.DisallowUnknownFields()
				if err := dec.Decode(into); err != nil {
					t.Fatalf("%s does not decode strictly: %v", tm.Kind, err)
				}
				delete(kinds, tm.Kind)
			}
			if len(kinds) != 0 {
				t.Fatalf("missing objects: %v", kinds)
			}
			if svc.Name != "kube-dns" || svc.Namespace != "kube-system" || svc.Spec.ClusterIP != tc.cluster {
				t.Errorf("Service %s/%s at %s, want kube-system/kube-dns at %s", svc.Namespace, svc.Name, svc.Spec.ClusterIP, tc.cluster)
			}
			pod := dep.Spec.Template
			for k, v := range svc.Spec.Selector {
				if pod.Labels[k] != v || dep.Spec.Selector.MatchLabels[k] != v {
					t.Errorf("the Service selects %s=%s, the pods are labelled %v", k, v, pod.Labels)
				}
			}
			if len(pod.Spec.Containers) != 1 || pod.Spec.Containers[0].Image != tc.image {
				t.Fatalf("containers %+v, want image %s", pod.Spec.Containers, tc.image)
			}
			if pod.Spec.ServiceAccountName != sa.Name || bind.Subjects[0].Name != sa.Name || bind.RoleRef.Name != role.Name {
				t.Errorf("RBAC does not reach the pods: sa %q, binding %+v, role %q", pod.Spec.ServiceAccountName, bind, role.Name)
			}
			if pod.Spec.DNSPolicy != corev1.DNSDefault {
				t.Errorf("dnsPolicy %q: CoreDNS would ask itself", pod.Spec.DNSPolicy)
			}
			watched := map[string]bool{}
			for _, r := range role.Rules {
				for _, res := range r.Resources {
					watched[res] = true
				}
			}
			for _, res := range []string{"services", "endpointslices", "namespaces", "pods"} {
				if !watched[res] {
					t.Errorf("the ClusterRole does not allow watching %s", res)
				}
			}
			cf := cm.Data["Corefile"]
			for _, want := range []string{"kubernetes cluster.local in-addr.arpa ip6.arpa", "forward . /etc/resolv.conf", "ready", "health"} {
				if !strings.Contains(cf, want) {
					t.Errorf("Corefile lacks %q:\n%s", want, cf)
				}
			}
			if m := pod.Spec.Volumes[0].ConfigMap; m == nil || m.Name != cm.Name {
				t.Errorf("the pod does not mount the Corefile ConfigMap %q", cm.Name)
			}
		})
	}
}

// Every kubelet points pods at the cluster DNS in the cluster domain.
func TestKubeletClusterDNS(t *testing.T) {
	p := NewPaths(t.TempDir())
	c := &kubedistro.NodeConfig{NodeName: "n1", Server: "https://10.0.0.1:6443", ServiceCIDR: "10.96.0.0/12"}
	if err := writeKubeletConfig(p, c); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(p.Kubelet(), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ClusterDNS    []string `json:"clusterDNS"`
		ClusterDomain string   `json:"clusterDomain"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.ClusterDNS) != 1 || cfg.ClusterDNS[0] != "10.96.0.10" || cfg.ClusterDomain != "cluster.local" {
		t.Errorf("kubelet clusterDNS %v clusterDomain %q", cfg.ClusterDNS, cfg.ClusterDomain)
	}
}

func TestResolvConf(t *testing.T) {
	for name, tc := range map[string]struct {
		etc, resolved string
		noResolved    bool
		want          string
	}{
		"real nameserver":                      {etc: "search lan\nnameserver 10.255.255.53\n", resolved: "nameserver 10.0.0.1\n", want: "/etc/resolv.conf"},
		"systemd-resolved stub":                {etc: "nameserver 127.0.0.53\noptions edns0\n", resolved: "nameserver 10.0.0.1\n", want: "/run/systemd/resolve/resolv.conf"},
		"loopback but no resolved":             {etc: "nameserver 127.0.0.53\n", noResolved: true, want: "/etc/resolv.conf"},
		"loopback and a real one":              {etc: "nameserver 127.0.0.1\nnameserver 192.168.1.1\n", resolved: "nameserver 10.0.0.1\n", want: "/etc/resolv.conf"},
		"IPv6 loopback only":                   {etc: "nameserver ::1\n", resolved: "nameserver 10.0.0.1\n", want: "/run/systemd/resolve/resolv.conf"},
		"no nameserver (glibc: ask localhost)": {etc: "search lan\n", resolved: "nameserver 10.0.0.1\n", want: "/etc/resolv.conf"},
	} {
		var resolved []byte
		if !tc.noResolved {
			resolved = []byte(tc.resolved)
		}
		if got := resolvConf([]byte(tc.etc), resolved); got != tc.want {
			t.Errorf("%s: %s, want %s", name, got, tc.want)
		}
	}
}

// The default image's tag is the version hack/coredns builds, so the tests
// (which mirror registry.k8s.io to an image of that build) run what a
// production cluster pulls from upstream.
func TestCoreDNSVersionMatchesBuild(t *testing.T) {
	data, err := os.ReadFile("../../../hack/coredns/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "github.com/coredns/coredns "+CoreDNSVersion+"\n") {
		t.Errorf("hack/coredns/go.mod does not pin github.com/coredns/coredns %s (CoreDNSVersion):\n%s", CoreDNSVersion, data)
	}
}
