package render

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixedSecrets stand in for generated keys so the golden files are stable.
var fixedSecrets = &Secrets{
	ClusterCA:         kubedistro.KeyPair{Cert: "CLUSTER-CA-CERT", Key: "CLUSTER-CA-KEY"},
	EtcdCA:            kubedistro.KeyPair{Cert: "ETCD-CA-CERT", Key: "ETCD-CA-KEY"},
	FrontProxyCA:      kubedistro.KeyPair{Cert: "FRONT-PROXY-CA-CERT", Key: "FRONT-PROXY-CA-KEY"},
	ServiceAccountKey: "SA-KEY",
	Token:             "abcdef.0123456789abcdef",
}

// readable prints a plan as a reviewer reads it: each file's path, mode and
// decoded content, then instructions and probes as JSON.
func readable(p *nodeplan.Plan) string {
	var b strings.Builder
	for _, f := range p.Files {
		fmt.Fprintf(&b, "=== file %s (%s)\n%s\n", f.Path, f.Permissions, strings.TrimRight(string(f.Data()), "\n"))
	}
	rest := *p
	rest.Files = nil
	fmt.Fprintf(&b, "=== instructions and probes\n")
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rest)
	return b.String()
}

func TestPlansGolden(t *testing.T) {
	base := func(distro, version string) Cluster {
		return Cluster{
			Distro: distro, Version: version, Server: "https://10.0.0.10:6443", TLSSANs: []string{"shop.example.com"},
			ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16",
			Mirrors:  map[string][]string{"docker.io": {"https://mirror.example.com"}},
			Secrets:  fixedSecrets,
			Binaries: kubedistro.Binaries{},
		}
	}
	manifest := []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: edgefleet-system}\n")
	server := Machine{Name: "m-0", Server: true, Init: true, NodeIP: "10.0.0.10", Labels: map[string]string{"site": "shop", "tier": "edge"},
		Config: map[string]any{"disable": []string{"traefik"}, "token": "user-token-loses"}}
	joiner := Machine{Name: "m-1", Server: true, NodeIP: "10.0.0.11"}
	agent := Machine{Name: "m-2", NodeIP: "10.0.0.12", Labels: map[string]string{"site": "shop"}, Taints: []string{"dedicated=edge:NoSchedule"}}
	for name, tc := range map[string]struct {
		c Cluster
		m Machine
	}{
		"edgefleet-init-server": {func() Cluster {
			c := base(Edgefleet, "v1.37.1")
			c.Binaries.Image, c.ImportManifest = "registry.local/kube@sha256:0123", manifest
			c.DNSImage = "registry.local/dns/coredns:v1.15.0"
			return c
		}(), server},
		"edgefleet-joining-server": {func() Cluster {
			c := base(Edgefleet, "v1.37.1")
			c.Binaries.Image, c.EtcdEndpoints = "registry.local/kube@sha256:0123", []string{"https://10.0.0.10:2379"}
			return c
		}(), joiner},
		"edgefleet-agent": {func() Cluster {
			c := base(Edgefleet, "v1.37.1")
			c.Binaries.Dir = "/usr/lib/edgefleet/kubernetes"
			return c
		}(), agent},
		"k3s-init-server-script": {func() Cluster { c := base(K3s, "v1.33.5+k3s1"); c.ImportManifest = manifest; return c }(), server},
		"k3s-agent-airgap": {func() Cluster {
			c := base(K3s, "v1.33.5+k3s1")
			c.Binaries.Dir = "/usr/local/bin"
			return c
		}(), agent},
		"rke2-init-server-script": {func() Cluster { c := base(RKE2, "v1.33.5+rke2r1"); c.ImportManifest = manifest; return c }(), server},
		"rke2-joining-server-airgap": {func() Cluster {
			c := base(RKE2, "v1.33.5+rke2r1")
			c.Binaries.Dir = "/opt/rke2-artifacts"
			return c
		}(), joiner},
		"rke2-agent-script": {base(RKE2, "v1.33.5+rke2r1"), agent},
	} {
		t.Run(name, func(t *testing.T) {
			p, raw, err := Plan(tc.c, tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := nodeplan.Parse(raw); err != nil {
				t.Fatalf("the node would refuse the plan: %v", err)
			}
			_, again, _ := Plan(tc.c, tc.m)
			if string(again) != string(raw) {
				t.Fatal("rendering twice gave different bytes: the checksum would move for nothing")
			}
			got := readable(p)
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("plan differs from %s (go test -update rewrites it after review):\n%s", golden, got)
			}
		})
	}
}

// TestAgentsGetNoKeys: only servers' plans carry CA keys (the contract),
// and only the init server gets the import manifest.
func TestAgentsGetNoKeys(t *testing.T) {
	for _, distro := range []string{Edgefleet, K3s, RKE2} {
		version := map[string]string{Edgefleet: "v1.37.1", K3s: "v1.33.5+k3s1", RKE2: "v1.33.5+rke2r1"}[distro]
		c := Cluster{Distro: distro, Version: version, Server: "https://10.0.0.10:6443", Secrets: fixedSecrets,
			ImportManifest: []byte("MANIFEST"), Binaries: kubedistro.Binaries{Dir: "/opt/k"}}
		_, raw, err := Plan(c, Machine{Name: "a", NodeIP: "10.0.0.2"})
		if err != nil {
			t.Fatal(err)
		}
		p, _ := nodeplan.Parse(raw)
		for _, f := range p.Files {
			for _, secret := range []string{"CLUSTER-CA-KEY", "ETCD-CA", "FRONT-PROXY", "SA-KEY", "MANIFEST"} {
				if strings.Contains(string(f.Data()), secret) {
					t.Errorf("%s agent's file %s holds %s", distro, f.Path, secret)
				}
			}
		}
	}
}

func TestNodeLabels(t *testing.T) {
	got := NodeLabels(map[string]string{
		"site": "a", "machines.edgefleet.io/arch": "amd64", "provisioning.edgefleet.io/cluster": "c",
		"node-role.kubernetes.io/master": "", "topology.kubernetes.io/zone": "z", "tier": "inv",
	}, map[string]string{"tier": "pool"})
	want := map[string]string{"site": "a", "machines.edgefleet.io/arch": "amd64", "tier": "pool"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("NodeLabels = %v, want %v", got, want)
	}
}

func TestGeneratedSecretsRoundTrip(t *testing.T) {
	s, err := GenerateSecrets("c")
	if err != nil {
		t.Fatal(err)
	}
	back, err := SecretsFrom(s.Data())
	if err != nil || back.Token != s.Token || back.ClusterCA != s.ClusterCA {
		t.Fatalf("round trip: %v", err)
	}
	c := Cluster{Distro: Edgefleet, Version: "v1.37.1", Server: "https://10.0.0.1:6443", Secrets: s, Binaries: kubedistro.Binaries{Dir: "/k"}}
	if _, _, err := Plan(c, Machine{Name: "m", Server: true, Init: true}); err != nil {
		t.Fatalf("a generated token or key is refused by the contract: %v", err)
	}
	data := s.Data()
	delete(data, KeyEtcdCAKey)
	if _, err := SecretsFrom(data); err == nil || !strings.Contains(err.Error(), KeyEtcdCAKey) {
		t.Fatalf("a PKI Secret without %s: %v", KeyEtcdCAKey, err)
	}
}

// A released edgefleet-distro machine stops its Kubernetes (a server
// scaled down leaves etcd first); k3s and rke2 machines get a cleared plan.
func TestReleasePlan(t *testing.T) {
	for _, tc := range []struct {
		distro    string
		leaveEtcd bool
		want      string // the instruction's arguments; "" = cleared plan
	}{
		{Edgefleet, false, "kubernetes down --config " + kubedistro.ConfigPath},
		{Edgefleet, true, "kubernetes down --config " + kubedistro.ConfigPath + " --leave-etcd"},
		{K3s, false, ""},
		{K3s, true, ""},
		{RKE2, false, ""},
	} {
		plan := ReleasePlan
		if tc.leaveEtcd {
			plan = LeaveEtcdPlan
		}
		raw, err := plan(tc.distro)
		if err != nil {
			t.Fatal(err)
		}
		if tc.want == "" {
			if raw != nil {
				t.Errorf("%s: release plan %s, want a cleared plan", tc.distro, raw)
			}
			continue
		}
		var p nodeplan.Plan
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Instructions) != 1 || p.Instructions[0].Command != NodeBinary || strings.Join(p.Instructions[0].Args, " ") != tc.want || len(p.Files) != 0 || len(p.Probes) != 0 {
			t.Errorf("%s: release plan %s", tc.distro, raw)
		}
	}
}

// A running server that removes dead servers' etcd members keeps its
// NodeConfig byte for byte (a changed one restarts it) and runs the
// removal after `kubernetes up`; an agent has no etcd to do it with.
func TestRunningServerRemovesEtcdMembersWithoutRestart(t *testing.T) {
	c := Cluster{Distro: Edgefleet, Version: "v1.37.1", Server: "https://10.0.0.10:6443", Secrets: fixedSecrets,
		Binaries: kubedistro.Binaries{Dir: "/usr/lib/edgefleet/kubernetes"}, EtcdEndpoints: []string{"https://10.0.0.10:2379"}}
	dead := []string{"https://10.0.0.13:2380", "https://10.0.0.14:2380"}
	for _, tc := range []struct {
		name string
		m    Machine
		want bool
	}{
		{"init server", Machine{Name: "m-0", Server: true, Init: true, NodeIP: "10.0.0.10"}, true},
		{"joined server", Machine{Name: "m-1", Server: true, NodeIP: "10.0.0.11"}, true},
		{"agent", Machine{Name: "m-2", NodeIP: "10.0.0.12"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain, _, err := Plan(c, tc.m)
			if err != nil {
				t.Fatal(err)
			}
			m := tc.m
			m.RemoveEtcdMembers = dead
			p, raw, err := Plan(c, m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := nodeplan.Parse(raw); err != nil {
				t.Fatalf("the node would refuse the plan: %v", err)
			}
			if len(p.Files) != len(plain.Files) || p.Files[0].Content != plain.Files[0].Content {
				t.Fatal("the NodeConfig changed: the server would restart its Kubernetes while a dead member counts")
			}
			var names []string
			for _, in := range p.Instructions {
				names = append(names, in.Name)
			}
			if !tc.want {
				if len(names) != 1 {
					t.Fatalf("instructions %v, want only %s", names, InstructionKubernetes)
				}
				return
			}
			if len(names) != 2 || names[0] != InstructionKubernetes || names[1] != InstructionRemoveEtcdMembers {
				t.Fatalf("instructions %v, want %s then %s", names, InstructionKubernetes, InstructionRemoveEtcdMembers)
			}
			if got, want := strings.Join(p.Instructions[1].Args, " "), "kubernetes remove-etcd-members "+strings.Join(dead, " "); got != want {
				t.Errorf("removal args %q, want %q", got, want)
			}
		})
	}
}
