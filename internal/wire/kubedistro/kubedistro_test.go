package kubedistro

import (
	"strings"
	"testing"
)

func agent() NodeConfig {
	return NodeConfig{
		Role: RoleAgent, Version: "v1.37.1", NodeName: "m-1", Server: "https://10.0.0.1:6443",
		Token: "abcdef.0123456789abcdef", ClusterCA: KeyPair{Cert: "PEM"}, Binaries: Binaries{Dir: "/opt/kube"},
	}
}

func TestRoundTripAndRefusals(t *testing.T) {
	c := agent()
	c.Registries = &Registries{Mirrors: map[string][]string{"registry.k8s.io": {"https://m.local:5000"}, "127.0.0.1:5001": {"http://127.0.0.1:5001"}, "*": {"http://m"}},
		CAs: map[string]string{"m.local:5000": "PEM"}}
	c.NodeLabels = map[string]string{"edgefleet.io/pool": "workers", "zone": ""}
	c.PauseImage = "registry.k8s.io/pause:3.10"
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(data); err != nil {
		t.Fatalf("parse of marshalled config: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func(*NodeConfig)
		want string
	}{
		"agent with CA key":  {func(c *NodeConfig) { c.ClusterCA.Key = "KEY" }, "must not receive CA keys"},
		"server without CAs": {func(c *NodeConfig) { c.Role, c.Init = RoleServer, true }, "a server needs"},
		"joining server":     {func(c *NodeConfig) { c.Role = RoleServer }, "etcd.endpoints"},
		"http server":        {func(c *NodeConfig) { c.Server = "http://10.0.0.1:6443" }, "must be https"},
		"bad token":          {func(c *NodeConfig) { c.Token = "secret" }, "bootstrap token"},
		"two binary sources": {func(c *NodeConfig) { c.Binaries.Image = "r/k@sha256:00" }, "exactly one"},
		"bad taint":          {func(c *NodeConfig) { c.NodeTaints = []string{"a=b:Sometimes"} }, "taint"},
		"path as mirror host": {func(c *NodeConfig) {
			c.Registries = &Registries{Mirrors: map[string][]string{"../../etc": {"http://m"}}}
		}, "registries.mirrors key"},
		"mirror not a URL": {func(c *NodeConfig) { c.Registries = &Registries{Mirrors: map[string][]string{"docker.io": {"m:5000"}}} }, "must be an http"},
		"label injection": {func(c *NodeConfig) {
			c.NodeLabels = map[string]string{"a": "b,node-role.kubernetes.io/control-plane=x"}
		}, "node label"},
		"quoted pause image":   {func(c *NodeConfig) { c.PauseImage = "p\"\nx" }, "pauseImage"},
		"quoted coredns image": {func(c *NodeConfig) { c.CoreDNSImage = "c\"\nx" }, "coreDNSImage"},
		"http etcd endpoint":   {func(c *NodeConfig) { c.Etcd = &EtcdJoin{Endpoints: []string{"http://10.0.0.1:2379"}} }, "etcd.endpoints"},
		"path in version":      {func(c *NodeConfig) { c.Version = "v1.37.1/../../etc" }, "not a Kubernetes version"},
		"path in node name":    {func(c *NodeConfig) { c.NodeName = "../.." }, "nodeName"},
		"upper-case name":      {func(c *NodeConfig) { c.NodeName = "Node-1" }, "nodeName"},
	} {
		t.Run(name, func(t *testing.T) {
			c := agent()
			tc.edit(&c)
			if _, err := c.Marshal(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if _, err := Parse([]byte(`{"apiVersion":"` + APIVersion + `","kind":"NodeConfig","surprise":1}`)); err == nil {
		t.Fatal("unknown field accepted")
	}
}
