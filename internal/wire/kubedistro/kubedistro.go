// Package kubedistro is the contract between cluster formation in the manager
// (which renders a NodeConfig into each adopted machine's plan) and the
// built-in "edgefleet" Kubernetes distribution on the machine
// (internal/node/kubedistro), which runs what the NodeConfig says: etcd and
// the control-plane components on servers, containerd and a real kubelet on
// every node. It plays the part k3s's /etc/rancher/k3s/config.yaml plays for
// k3s. Both sides import it, so it imports only the standard library.
//
// The NodeConfig arrives in the machine's plan (a Secret only that machine
// may read), as the file ConfigPath. It carries the cluster's CA keys to
// servers only; agents get the CA certificate and a bootstrap token.
package kubedistro

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

const (
	APIVersion = "kubedistro.edgefleet.io/v1alpha1"
	Kind       = "NodeConfig"

	// ConfigPath is where the plan writes the NodeConfig (mode 0600).
	ConfigPath = "/etc/edgefleet/kubernetes/config.json"
	// DataDir holds everything the distribution writes on the machine.
	DataDir = "/var/lib/edgefleet/kubernetes"
	// ManifestsDir: the init server applies every *.yaml here once its API
	// is up, and again when a file changes (k3s's auto-deploy manifests
	// folder). Formation puts the fleet agent's import manifest here.
	ManifestsDir = DataDir + "/server/manifests"

	DefaultAPIServerPort = 6443
	DefaultClusterCIDR   = "10.42.0.0/16"
	DefaultServiceCIDR   = "10.43.0.0/16"

	// MaxConfigBytes bounds a NodeConfig (it travels inside a plan).
	MaxConfigBytes = 256 << 10
)

// Role is what a machine is in its cluster.
type Role string

const (
	// RoleServer runs etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler and a kubelet.
	RoleServer Role = "server"
	// RoleAgent runs only containerd and a kubelet.
	RoleAgent Role = "agent"
)

// NodeConfig is one machine's part in one cluster.
type NodeConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`

	Role Role `json:"role"`
	// Init marks the server that creates the cluster: it starts a new etcd
	// and applies ManifestsDir. Exactly one machine per cluster has it.
	Init bool `json:"init,omitempty"`
	// Version is the Kubernetes version to run, e.g. v1.37.1; the binaries
	// must report exactly this version.
	Version string `json:"version"`
	// NodeName is the Kubernetes node name (formation uses the
	// MachineInventory's name).
	NodeName string `json:"nodeName"`
	// NodeIP is the address the node registers and servers bind; empty
	// means the address of the interface holding the default route.
	NodeIP string `json:"nodeIP,omitempty"`
	// Server is the cluster's API URL (https://host:port): what joining
	// nodes and the kubelets talk to. On the init server it also names the
	// serving certificate.
	Server string `json:"server"`
	// TLSSANs are extra names/addresses for the API serving certificate.
	TLSSANs []string `json:"tlsSANs,omitempty"`
	// Token is a Kubernetes bootstrap token (abcdef.0123456789abcdef) that
	// kubelets use for TLS bootstrapping; servers create it in the cluster.
	Token string `json:"token"`

	// ClusterCA signs the API serving and client certificates; every node
	// gets Cert, only servers get Key.
	ClusterCA KeyPair `json:"clusterCA"`
	// Servers only.
	EtcdCA            *KeyPair `json:"etcdCA,omitempty"`
	FrontProxyCA      *KeyPair `json:"frontProxyCA,omitempty"`
	ServiceAccountKey string   `json:"serviceAccountKey,omitempty"`

	// Etcd lists the cluster's etcd members a joining server adds itself to
	// (servers other than the init server).
	Etcd *EtcdJoin `json:"etcd,omitempty"`

	ClusterCIDR string `json:"clusterCIDR,omitempty"`
	ServiceCIDR string `json:"serviceCIDR,omitempty"`

	NodeLabels map[string]string `json:"nodeLabels,omitempty"`
	// NodeTaints are "key=value:Effect" or "key:Effect".
	NodeTaints []string `json:"nodeTaints,omitempty"`

	Binaries   Binaries    `json:"binaries"`
	Registries *Registries `json:"registries,omitempty"`
	// Images the distribution itself needs (the pause image); pulled
	// through Registries like any other.
	PauseImage string `json:"pauseImage,omitempty"`
	// CoreDNSImage is the cluster DNS image the init server deploys;
	// empty means the distribution's default (upstream CoreDNS on
	// registry.k8s.io).
	CoreDNSImage string `json:"coreDNSImage,omitempty"`
}

// KeyPair is PEM text.
type KeyPair struct {
	Cert string `json:"cert"`
	Key  string `json:"key,omitempty"`
}

// EtcdJoin is how a joining server reaches the existing etcd members.
type EtcdJoin struct {
	// Endpoints are existing members' client URLs (https://ip:2379).
	Endpoints []string `json:"endpoints"`
	// RemoveMembers are peer URLs (https://ip:2380) of dead servers that
	// were replaced without leaving etcd: the joining server removes them
	// before it adds itself (etcd refuses a new member while one it has
	// cannot reach; the stale one also counts against the quorum).
	RemoveMembers []string `json:"removeMembers,omitempty"`
}

// Binaries says where the Kubernetes binaries come from: an OCI image
// (extracted on the machine, pinned by digest) or a folder already on the
// machine (an air-gapped OS image that carries them).
type Binaries struct {
	Image string `json:"image,omitempty"`
	Dir   string `json:"dir,omitempty"`
}

// Registries configures containerd's registry hosts (containerd's
// hosts.toml): Mirrors maps a registry host such as "registry.k8s.io" to the
// endpoints to pull from instead, in order.
type Registries struct {
	Mirrors map[string][]string `json:"mirrors,omitempty"`
	// CAs are PEM bundles trusted per endpoint host.
	CAs map[string]string `json:"cas,omitempty"`
}

var (
	tokenRE    = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)
	nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	// A registry host (optionally with a port), or "*" for every registry:
	// it names containerd's hosts folder.
	registryHostRE = regexp.MustCompile(`^(\*|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?)$`)
	imageRefRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$`)
	labelKeyRE     = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	labelValueRE   = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
	// versionRE: the version also names a folder of binaries.
	versionRE = regexp.MustCompile(`^v1\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]*)?$`)
)

// Parse decodes a NodeConfig strictly (unknown fields refused) and validates it.
func Parse(data []byte) (*NodeConfig, error) {
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("node config is %d bytes, more than the %d allowed", len(data), MaxConfigBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c NodeConfig
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	if dec.More() {
		return nil, errors.New("node config: trailing data after the object")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Marshal is the inverse of Parse.
func (c *NodeConfig) Marshal() ([]byte, error) {
	c.APIVersion, c.Kind = APIVersion, Kind
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(c, "", "  ")
}

// Validate reports every problem at once, each saying what to fix.
func (c *NodeConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.APIVersion != APIVersion || c.Kind != Kind {
		bad("apiVersion/kind must be %s/%s, not %q/%q", APIVersion, Kind, c.APIVersion, c.Kind)
	}
	switch c.Role {
	case RoleServer:
		if c.ClusterCA.Key == "" || c.EtcdCA == nil || c.EtcdCA.Key == "" || c.FrontProxyCA == nil || c.FrontProxyCA.Key == "" || c.ServiceAccountKey == "" {
			bad("a server needs clusterCA.key, etcdCA, frontProxyCA and serviceAccountKey")
		}
		if !c.Init && (c.Etcd == nil || len(c.Etcd.Endpoints) == 0) {
			bad("a joining server needs etcd.endpoints of the existing members")
		}
	case RoleAgent:
		if c.Init {
			bad("init is only for a server")
		}
		if c.ClusterCA.Key != "" || c.EtcdCA != nil || c.FrontProxyCA != nil || c.ServiceAccountKey != "" {
			bad("an agent must not receive CA keys or the service-account key")
		}
	default:
		bad("role must be %q or %q, not %q", RoleServer, RoleAgent, c.Role)
	}
	if !versionRE.MatchString(c.Version) || strings.Contains(c.Version, "..") {
		bad("version %q is not a Kubernetes version such as v1.37.1", c.Version)
	}
	if len(c.NodeName) > 63 || !nodeNameRE.MatchString(c.NodeName) {
		bad("nodeName %q must be 1-63 lower-case letters, digits, '-' or '.', starting and ending with a letter or digit (a Kubernetes node name; it also names the node's folders and cgroups)", c.NodeName)
	}
	if c.NodeIP != "" && net.ParseIP(c.NodeIP) == nil {
		bad("nodeIP %q is not an IP address", c.NodeIP)
	}
	if u, err := url.Parse(c.Server); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		bad("server %q must be https://host:port", c.Server)
	}
	if !tokenRE.MatchString(c.Token) {
		bad("token must be a bootstrap token like abcdef.0123456789abcdef")
	}
	if c.ClusterCA.Cert == "" {
		bad("clusterCA.cert is required")
	}
	for _, cidr := range []string{c.ClusterCIDR, c.ServiceCIDR} {
		if _, _, err := net.ParseCIDR(cidr); cidr != "" && err != nil {
			bad("%q is not a CIDR", cidr)
		}
	}
	if (c.Binaries.Image == "") == (c.Binaries.Dir == "") {
		bad("binaries needs exactly one of image or dir")
	}
	if c.Binaries.Dir != "" && !strings.HasPrefix(c.Binaries.Dir, "/") {
		bad("binaries.dir %q must be absolute", c.Binaries.Dir)
	}
	if c.Registries != nil {
		for host, endpoints := range c.Registries.Mirrors {
			if !registryHostRE.MatchString(host) {
				bad("registries.mirrors key %q must be a registry host such as registry.k8s.io or 10.0.0.5:5000, or *", host)
			}
			for _, e := range endpoints {
				if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					bad("registries.mirrors[%q]: %q must be an http:// or https:// URL", host, e)
				}
			}
		}
		for host := range c.Registries.CAs {
			if !registryHostRE.MatchString(host) || host == "*" {
				bad("registries.cas key %q must be an endpoint's host[:port]", host)
			}
		}
	}
	if c.Etcd != nil {
		for _, e := range c.Etcd.Endpoints {
			if u, err := url.Parse(e); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
				bad("etcd.endpoints: %q must be https://host:port", e)
			}
		}
		for _, e := range c.Etcd.RemoveMembers {
			if u, err := url.Parse(e); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
				bad("etcd.removeMembers: %q must be https://host:port", e)
			}
		}
	}
	if c.PauseImage != "" && !imageRefRE.MatchString(c.PauseImage) {
		bad("pauseImage %q is not an image reference", c.PauseImage)
	}
	if c.CoreDNSImage != "" && !imageRefRE.MatchString(c.CoreDNSImage) {
		bad("coreDNSImage %q is not an image reference", c.CoreDNSImage)
	}
	for k, v := range c.NodeLabels {
		if len(k) > 316 || !labelKeyRE.MatchString(k) || len(v) > 63 || !labelValueRE.MatchString(v) {
			bad("node label %q=%q is not a valid Kubernetes label", k, v)
		}
	}
	for _, t := range c.NodeTaints {
		if !validTaint(t) {
			bad("taint %q must be key=value:Effect or key:Effect (NoSchedule, PreferNoSchedule, NoExecute)", t)
		}
	}
	return errors.Join(errs...)
}

func validTaint(t string) bool {
	kv, effect, ok := strings.Cut(t, ":")
	if !ok || kv == "" {
		return false
	}
	switch effect {
	case "NoSchedule", "PreferNoSchedule", "NoExecute":
		return true
	}
	return false
}
