package kubedistro

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
	"github.com/edgefleet/edgefleet/test/kubeimages"
)

func TestHostsTOML(t *testing.T) {
	for name, tc := range map[string]struct {
		host      string
		endpoints []string
		cas       map[string]string
		want      []string
		files     int
		err       string
	}{
		"mirror with a CA": {
			host: "registry.k8s.io", endpoints: []string{"https://mirror.local:5000", "http://127.0.0.1:5001"},
			cas:   map[string]string{"mirror.local:5000": "PEM"},
			want:  []string{`server = "https://registry.k8s.io"`, `[host."https://mirror.local:5000"]`, `ca = "ca-0.crt"`, `[host."http://127.0.0.1:5001"]`, `capabilities = ["pull", "resolve"]`},
			files: 1,
		},
		"every registry": {host: "*", endpoints: []string{"http://127.0.0.1:5001"}, want: []string{`[host."http://127.0.0.1:5001"]`}},
		"not a URL":      {host: "docker.io", endpoints: []string{"mirror.local"}, err: "is not an http(s) URL"},
	} {
		t.Run(name, func(t *testing.T) {
			got, files, err := hostsTOML(tc.host, tc.endpoints, tc.cas)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("hosts.toml lacks %q:\n%s", w, got)
				}
			}
			if len(files) != tc.files {
				t.Errorf("%d CA files, want %d", len(files), tc.files)
			}
			if tc.host == "*" && strings.Contains(got, "server =") {
				t.Errorf("the default mirror has no server:\n%s", got)
			}
		})
	}
}

func TestNodeSettings(t *testing.T) {
	if got := nodeLabels(map[string]string{"b": "2", "a": "1"}); got != "a=1,b=2" {
		t.Errorf("labels %q", got)
	}
	ts := taints([]string{"dedicated=edge:NoSchedule", "gpu:NoExecute"})
	if len(ts) != 2 || ts[0] != (taint{"dedicated", "edge", "NoSchedule"}) || ts[1] != (taint{"gpu", "", "NoExecute"}) {
		t.Errorf("taints %+v", ts)
	}
	c := &kubedistro.NodeConfig{Server: "https://10.0.0.1:7443"}
	if apiPort(c) != 7443 || localAPI(c) != "https://127.0.0.1:7443" {
		t.Errorf("port %d", apiPort(c))
	}
	if ip := firstServiceIP(c); ip.String() != "10.43.0.1" {
		t.Errorf("service IP %s", ip)
	}
	c.ServiceCIDR = "10.96.0.0/12"
	if ip := firstServiceIP(c); ip.String() != "10.96.0.1" {
		t.Errorf("service IP %s", ip)
	}
}

// The bootstrap objects are what TLS bootstrapping needs: the token
// Secret in kube-system with the usages, the bootstrap group bound to the
// node-bootstrapper and auto-approval roles.
func TestBootstrapManifest(t *testing.T) {
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(bootstrapManifest("abcdef.0123456789abcdef"), &list); err != nil {
		t.Fatal(err)
	}
	roles := map[string]bool{}
	var secret map[string]any
	for _, it := range list.Items {
		switch it["kind"] {
		case "Secret":
			secret = it
		case "ClusterRoleBinding":
			roles[it["roleRef"].(map[string]any)["name"].(string)] = true
		}
	}
	if secret == nil || secret["metadata"].(map[string]any)["name"] != "bootstrap-token-abcdef" || secret["type"] != "bootstrap.kubernetes.io/token" {
		t.Fatalf("token Secret %v", secret)
	}
	if sd := secret["stringData"].(map[string]any); sd["token-secret"] != "0123456789abcdef" || sd["usage-bootstrap-authentication"] != "true" {
		t.Errorf("token data %v", sd)
	}
	for _, r := range []string{"system:node-bootstrapper", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "edgefleet:node-routes"} {
		if !roles[r] {
			t.Errorf("no binding to %s", r)
		}
	}
}

// binaries.image: a "kubernetes binaries" image from a registry is
// extracted and its binaries linked; a version other than the config's is
// refused with what to do; binaries.dir missing a server binary says which.
func TestInstallBinaries(t *testing.T) {
	fake := func(version string) string {
		dir := t.TempDir()
		for _, n := range []string{"kubelet", "kubectl", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\necho Kubernetes "+version+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	src := fake("v1.37.9")
	files := map[string]string{}
	for _, n := range []string{"kubelet", "kubectl"} {
		files[BinariesImageDir("v1.37.9")+"/"+n] = filepath.Join(src, n)
	}
	img, err := kubeimages.FilesImage(files)
	if err != nil {
		t.Fatal(err)
	}
	reg := kubeimages.StartRegistry(t)
	ref := reg.Push(t, "kubernetes-binaries", "v1.37.9", img)

	agent := &kubedistro.NodeConfig{Role: kubedistro.RoleAgent, Version: "v1.37.9", Binaries: kubedistro.Binaries{Image: ref}}
	p := NewPaths(t.TempDir())
	if err := installBinaries(context.Background(), p, agent); err != nil {
		t.Fatalf("from the image: %v", err)
	}
	if out, err := os.ReadFile(filepath.Join(p.Bin("v1.37.9"), "kubelet")); err != nil || !strings.Contains(string(out), "v1.37.9") {
		t.Errorf("installed kubelet: %v %q", err, out)
	}

	agent.Version = "v1.37.8"
	ref2 := reg.Push(t, "kubernetes-binaries", "wrong", img)
	agent.Binaries.Image = ref2
	if err := installBinaries(context.Background(), p, agent); err == nil || !strings.Contains(err.Error(), "have no executable kubelet") {
		t.Errorf("image without this version's folder: %v", err)
	}

	root := t.TempDir()
	p = NewPaths(root)
	if err := os.MkdirAll(filepath.Join(root, "opt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fake("v1.37.1"), filepath.Join(root, "opt", "kube")); err != nil {
		t.Fatal(err)
	}
	server := &kubedistro.NodeConfig{Role: kubedistro.RoleServer, Version: "v1.37.2", Binaries: kubedistro.Binaries{Dir: "/opt/kube"}}
	if err := installBinaries(context.Background(), p, server); err == nil || !strings.Contains(err.Error(), "are Kubernetes v1.37.1 (kubelet), the config asks for v1.37.2") {
		t.Errorf("version mismatch: %v", err)
	}
	// A new kubelet beside the old control plane: the server would keep
	// running the old API server, so it is refused, naming the binary.
	mixed := fake("v1.37.1")
	if err := os.WriteFile(filepath.Join(mixed, "kubelet"), []byte("#!/bin/sh\necho Kubernetes v1.37.2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "opt", "kube")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(mixed, filepath.Join(root, "opt", "kube")); err != nil {
		t.Fatal(err)
	}
	if err := installBinaries(context.Background(), p, server); err == nil || !strings.Contains(err.Error(), "are Kubernetes v1.37.1 (kube-apiserver), the config asks for v1.37.2") {
		t.Errorf("old control plane beside a new kubelet: %v", err)
	}
	agentOnly := &kubedistro.NodeConfig{Role: kubedistro.RoleAgent, Version: "v1.37.2", Binaries: kubedistro.Binaries{Dir: "/opt/kube"}}
	if err := installBinaries(context.Background(), p, agentOnly); err != nil {
		t.Errorf("an agent needs only the kubelet at the version: %v", err)
	}
	server.Version = "v1.37.1"
	_ = os.Remove(filepath.Join(root, "opt", "kube", "kube-scheduler"))
	if err := installBinaries(context.Background(), p, server); err == nil || !strings.Contains(err.Error(), "no executable kube-scheduler") {
		t.Errorf("missing server binary: %v", err)
	}
}

// Resume starts nothing on a machine without a config, one never brought
// up, or one stopped with down (a reset or scale-down must stay down).
func TestResumeLeavesAlone(t *testing.T) {
	root := t.TempDir()
	p := NewPaths(root)
	o := Options{Root: root}
	if started, err := Resume(context.Background(), o); started || err != nil {
		t.Fatalf("no config: started=%t err=%v", started, err)
	}
	if err := writeFile(p.Under(kubedistro.ConfigPath), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if started, err := Resume(context.Background(), o); started || err != nil {
		t.Fatalf("never up: started=%t err=%v", started, err)
	}
	if err := writeFile(p.State(), []byte(`{"pid": 999999999}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Down(root); err != nil {
		t.Fatal(err)
	}
	if started, err := Resume(context.Background(), o); started || err != nil {
		t.Fatalf("after down: started=%t err=%v", started, err)
	}
	// Once the stop marker is gone (up ran), a dead supervisor is resumed:
	// here that fails on the invalid config, which proves it tried.
	if err := os.Remove(p.stoppedMarker()); err != nil {
		t.Fatal(err)
	}
	if started, err := Resume(context.Background(), o); !started || err == nil {
		t.Fatalf("dead supervisor: started=%t err=%v", started, err)
	}
}
