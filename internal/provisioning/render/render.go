// Package render turns one machine's part in a provisioned cluster into its
// node plan (internal/wire/nodeplan), per distro:
//
//   - edgefleet: the NodeConfig file (internal/wire/kubedistro), the fleet
//     agent's import manifest on the init server, one instruction
//     `edgefleet-node kubernetes up --config …` and the kubelet probe, exactly
//     as the formation contract says;
//   - k3s and rke2: their config.yaml, registries.yaml, the import manifest
//     in their auto-deploy manifests folder on the init server, and their
//     install script (from the internet, or the copy in an air-gapped OS
//     image), with the environment their docs describe.
//
// It is pure: same input, same bytes (so the plan checksum only moves when
// something a machine must act on changed). Golden files in testdata pin
// the output.
package render

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// Distros.
const (
	Edgefleet = "edgefleet"
	K3s       = "k3s"
	RKE2      = "rke2"
)

// Names in the plans.
const (
	// InstructionKubernetes is the edgefleet distro's instruction.
	InstructionKubernetes = "kubernetes"
	// InstructionRemoveEtcdMembers follows it on a running server that
	// removes dead servers' etcd members (Machine.RemoveEtcdMembers).
	InstructionRemoveEtcdMembers = "remove-etcd-members"
	// InstructionInstall is k3s's and rke2's install instruction.
	InstructionInstall = "install"
	// ProbeKubelet is every distro's kubelet health probe.
	ProbeKubelet = "kubelet"
	// KubeletHealthz is kubelet's healthz endpoint.
	KubeletHealthz = "http://127.0.0.1:10248/healthz"
	// ImportManifestFile is the fleet agent's import manifest's file name in
	// the init server's auto-deploy folder.
	ImportManifestFile = "edgefleet-agent.yaml"
	// NodeBinary is the node agent on the machine's PATH.
	NodeBinary = "edgefleet-node"

	// K3sScriptURL and RKE2ScriptURL are the install scripts of the docs.
	K3sScriptURL  = "https://get.k3s.io"
	RKE2ScriptURL = "https://get.rke2.io"
	// RKE2SupervisorPort is where joining rke2 nodes register (not 6443).
	RKE2SupervisorPort = 9345

	installTimeoutSeconds = 1800
	// removeMembersTimeoutSeconds covers etcd's "unhealthy cluster"
	// retries (two minutes) with room.
	removeMembersTimeoutSeconds = 300
)

// Cluster is what every machine of a cluster shares.
type Cluster struct {
	Distro, Version string
	// Server is the API URL (https://host:port).
	Server string
	// TLSSANs are extra API certificate names (the control-plane
	// endpoint's host).
	TLSSANs                  []string
	ClusterCIDR, ServiceCIDR string
	// DNSImage is the edgefleet distro's CoreDNS image (empty: its default).
	DNSImage string
	// Mirrors maps a registry host to its mirror endpoints.
	Mirrors map[string][]string
	// Binaries: image or dir (air-gap); both empty for k3s/rke2 means the
	// install script from the internet.
	Binaries kubedistro.Binaries
	Secrets  *Secrets
	// EtcdEndpoints are existing etcd members' client URLs, for servers
	// joining an edgefleet cluster.
	EtcdEndpoints []string
	// EtcdRemoveMembers are peer URLs of replaced dead servers' etcd
	// members a joining server removes before it adds itself.
	EtcdRemoveMembers []string
	// ImportManifest is the fleet agent's import manifest (init server
	// only; empty leaves it out).
	ImportManifest []byte
}

// Machine is one machine's part.
type Machine struct {
	// Name is the node name (the inventory's name).
	Name   string
	Server bool
	Init   bool
	NodeIP string
	Labels map[string]string
	// Taints are key=value:Effect or key:Effect.
	Taints []string
	// Config is the pool's free-form k3s/rke2 configuration.
	Config map[string]any
	// RemoveEtcdMembers are peer URLs of dead servers' etcd members this
	// running edgefleet-distro server removes (no server joins to do it).
	// An instruction after `kubernetes up`, outside the NodeConfig: a
	// changed NodeConfig restarts the server, and restarting a survivor
	// while a dead member still counts could lose the quorum.
	RemoveEtcdMembers []string
}

// Plan renders m's plan, and its bytes as they go into the plan Secret.
func Plan(c Cluster, m Machine) (*nodeplan.Plan, []byte, error) {
	var (
		p   *nodeplan.Plan
		err error
	)
	switch c.Distro {
	case Edgefleet:
		p, err = edgefleetPlan(c, m)
	case K3s, RKE2:
		p, err = rancherPlan(c, m)
	default:
		err = fmt.Errorf("unknown distro %q (edgefleet, k3s or rke2)", c.Distro)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, nil, fmt.Errorf("rendered plan is invalid: %w", err)
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, nil, err
	}
	return p, raw, nil
}

func file(path, mode string, data []byte) nodeplan.File {
	return nodeplan.File{Path: path, Permissions: mode, Content: base64.StdEncoding.EncodeToString(data)}
}

func kubeletProbe() map[string]nodeplan.Probe {
	return map[string]nodeplan.Probe{ProbeKubelet: {
		Name: ProbeKubelet, PeriodSeconds: 10, TimeoutSeconds: 5, FailureThreshold: 3, SuccessThreshold: 1,
		HTTPGet: nodeplan.HTTPGetAction{URL: KubeletHealthz},
	}}
}

func edgefleetPlan(c Cluster, m Machine) (*nodeplan.Plan, error) {
	if c.Secrets == nil {
		return nil, fmt.Errorf("no cluster secrets")
	}
	nc := kubedistro.NodeConfig{
		Role: kubedistro.RoleAgent, Init: m.Init, Version: c.Version, NodeName: m.Name, NodeIP: m.NodeIP,
		Server: c.Server, TLSSANs: c.TLSSANs, Token: c.Secrets.Token,
		ClusterCA:   kubedistro.KeyPair{Cert: c.Secrets.ClusterCA.Cert},
		ClusterCIDR: c.ClusterCIDR, ServiceCIDR: c.ServiceCIDR,
		NodeLabels: m.Labels, NodeTaints: m.Taints, Binaries: c.Binaries,
		CoreDNSImage: c.DNSImage,
	}
	if m.Server {
		nc.Role = kubedistro.RoleServer
		nc.ClusterCA.Key = c.Secrets.ClusterCA.Key
		etcd, fp := c.Secrets.EtcdCA, c.Secrets.FrontProxyCA
		nc.EtcdCA, nc.FrontProxyCA, nc.ServiceAccountKey = &etcd, &fp, c.Secrets.ServiceAccountKey
		if !m.Init {
			nc.Etcd = &kubedistro.EtcdJoin{Endpoints: c.EtcdEndpoints, RemoveMembers: c.EtcdRemoveMembers}
		}
	}
	if len(c.Mirrors) > 0 {
		nc.Registries = &kubedistro.Registries{Mirrors: c.Mirrors}
	}
	data, err := nc.Marshal()
	if err != nil {
		return nil, fmt.Errorf("node config of %s: %w", m.Name, err)
	}
	p := &nodeplan.Plan{Files: []nodeplan.File{file(kubedistro.ConfigPath, "0600", data)}}
	if m.Init && len(c.ImportManifest) > 0 {
		p.Files = append(p.Files, file(kubedistro.ManifestsDir+"/"+ImportManifestFile, "0600", c.ImportManifest))
	}
	p.Instructions = []nodeplan.Instruction{{CommonInstruction: nodeplan.CommonInstruction{
		Name: InstructionKubernetes, Command: NodeBinary,
		Args:           []string{"kubernetes", "up", "--config", kubedistro.ConfigPath},
		TimeoutSeconds: installTimeoutSeconds,
	}, SaveOutput: true}}
	if m.Server && len(m.RemoveEtcdMembers) > 0 {
		p.Instructions = append(p.Instructions, nodeplan.Instruction{CommonInstruction: nodeplan.CommonInstruction{
			Name: InstructionRemoveEtcdMembers, Command: NodeBinary,
			Args:           append([]string{"kubernetes", "remove-etcd-members"}, m.RemoveEtcdMembers...),
			TimeoutSeconds: removeMembersTimeoutSeconds,
		}, SaveOutput: true})
	}
	p.Probes = kubeletProbe()
	return p, nil
}

// rancherPlan is k3s's and rke2's plan: their documented files and install.
func rancherPlan(c Cluster, m Machine) (*nodeplan.Plan, error) {
	if c.Secrets == nil || c.Secrets.Token == "" {
		return nil, fmt.Errorf("no cluster token")
	}
	etc, data := "/etc/rancher/"+c.Distro, "/var/lib/rancher/"+c.Distro
	cfg := map[string]any{}
	// The pool's free-form keys first: formation's own keys win.
	maps.Copy(cfg, m.Config)
	cfg["token"] = c.Secrets.Token
	cfg["node-name"] = m.Name
	if m.NodeIP != "" {
		cfg["node-ip"] = m.NodeIP
	}
	if labels := labelList(m.Labels); len(labels) > 0 {
		cfg["node-label"] = labels
	} else {
		delete(cfg, "node-label")
	}
	if len(m.Taints) > 0 {
		cfg["node-taint"] = m.Taints
	} else {
		delete(cfg, "node-taint")
	}
	if !m.Init {
		server, err := joinURL(c)
		if err != nil {
			return nil, err
		}
		cfg["server"] = server
	} else {
		delete(cfg, "server")
	}
	if m.Server {
		sans := slices.Clone(c.TLSSANs)
		if u, err := url.Parse(c.Server); err == nil && u.Hostname() != "" && !slices.Contains(sans, u.Hostname()) {
			sans = append(sans, u.Hostname())
		}
		if len(sans) > 0 {
			cfg["tls-san"] = sans
		}
		if c.ClusterCIDR != "" {
			cfg["cluster-cidr"] = c.ClusterCIDR
		}
		if c.ServiceCIDR != "" {
			cfg["service-cidr"] = c.ServiceCIDR
		}
		if c.Distro == K3s && m.Init {
			// Embedded etcd, so more servers can join (k3s's HA docs).
			cfg["cluster-init"] = true
		}
	}
	config, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	p := &nodeplan.Plan{Files: []nodeplan.File{file(etc+"/config.yaml", "0600", config)}}
	if len(c.Mirrors) > 0 {
		mirrors := map[string]any{}
		for host, eps := range c.Mirrors {
			mirrors[host] = map[string]any{"endpoint": eps}
		}
		reg, err := yaml.Marshal(map[string]any{"mirrors": mirrors})
		if err != nil {
			return nil, err
		}
		p.Files = append(p.Files, file(etc+"/registries.yaml", "0600", reg))
	}
	if m.Init && len(c.ImportManifest) > 0 {
		p.Files = append(p.Files, file(data+"/server/manifests/"+ImportManifestFile, "0600", c.ImportManifest))
	}
	p.Instructions = []nodeplan.Instruction{{CommonInstruction: install(c, m), SaveOutput: true}}
	p.Probes = kubeletProbe()
	return p, nil
}

// install is the distro's install as its docs give it: the script from
// the internet with the version and role in the environment, or (air-gap)
// the script the OS image carries next to the binaries, downloads off.
func install(c Cluster, m Machine) nodeplan.CommonInstruction {
	in := nodeplan.CommonInstruction{Name: InstructionInstall, Command: "/bin/sh", TimeoutSeconds: installTimeoutSeconds}
	role := "agent"
	if m.Server {
		role = "server"
	}
	switch c.Distro {
	case K3s:
		in.Env = []string{"INSTALL_K3S_VERSION=" + c.Version, "INSTALL_K3S_EXEC=" + role}
		if c.Binaries.Dir != "" {
			in.Env = append(in.Env, "INSTALL_K3S_SKIP_DOWNLOAD=true", "INSTALL_K3S_BIN_DIR="+c.Binaries.Dir)
			in.Args = []string{path.Join(c.Binaries.Dir, "install.sh")}
		} else {
			in.Args = []string{"-c", "curl -sfL " + K3sScriptURL + " | sh -"}
		}
	case RKE2:
		in.Env = []string{"INSTALL_RKE2_VERSION=" + c.Version, "INSTALL_RKE2_TYPE=" + role}
		script := "curl -sfL " + RKE2ScriptURL + " | sh -"
		if c.Binaries.Dir != "" {
			in.Env = append(in.Env, "INSTALL_RKE2_ARTIFACT_PATH="+c.Binaries.Dir)
			script = "sh " + path.Join(c.Binaries.Dir, "install.sh")
		}
		// The rke2 script installs but does not start (nor restart after an
		// upgrade) the service.
		in.Args = []string{"-c", script + " && systemctl enable rke2-" + role + ".service && systemctl restart rke2-" + role + ".service"}
	}
	return in
}

// joinURL is where joining nodes register: the API for k3s, the
// supervisor port for rke2.
func joinURL(c Cluster) (string, error) {
	u, err := url.Parse(c.Server)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("server %q is not a URL", c.Server)
	}
	if c.Distro == RKE2 {
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(RKE2SupervisorPort))
	}
	return u.String(), nil
}

func labelList(l map[string]string) []string {
	out := make([]string, 0, len(l))
	for _, k := range slices.Sorted(maps.Keys(l)) {
		out = append(out, k+"="+l[k])
	}
	return out
}

// NodeLabels are the labels a machine's node gets: its inventory's labels
// (except formation's claim labels and the kubernetes.io/k8s.io domains a
// kubelet may not set on itself), then the pool's nodeLabels.
func NodeLabels(inventory, pool map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range inventory {
		if strings.HasPrefix(k, "provisioning.edgefleet.io/") || restrictedDomain(k) {
			continue
		}
		out[k] = v
	}
	maps.Copy(out, pool)
	return out
}

func restrictedDomain(key string) bool {
	prefix, _, ok := strings.Cut(key, "/")
	if !ok {
		return false
	}
	for _, d := range []string{"kubernetes.io", "k8s.io"} {
		if prefix == d || strings.HasSuffix(prefix, "."+d) {
			return true
		}
	}
	return false
}

// InstructionKubernetesDown is the instruction of an edgefleet-distro
// machine's release plan.
const InstructionKubernetesDown = "kubernetes-down"

// ReleasePlan is what a released machine (scale-down without a reset)
// gets instead of its cluster plan, as plan Secret bytes; nil clears the
// plan. An edgefleet-distro machine stops its Kubernetes: a cleared plan
// alone would leave its kubelet running with the cluster's credentials.
// k3s and rke2 machines get a cleared plan (their uninstall scripts are
// the admin's).
func ReleasePlan(distro string) ([]byte, error) { return releasePlan(distro, false) }

// LeaveEtcdPlan is the release plan of an edgefleet-distro server scaled
// down while other servers remain: it first removes itself from the
// cluster's etcd (`down --leave-etcd`), so no stale member is left to
// count against the quorum. Not for the last server (etcd refuses to lose
// its only member) nor a deleted cluster (every server goes). Other
// distros: ReleasePlan's.
func LeaveEtcdPlan(distro string) ([]byte, error) { return releasePlan(distro, true) }

func releasePlan(distro string, leaveEtcd bool) ([]byte, error) {
	if distro != Edgefleet {
		return nil, nil
	}
	args := []string{"kubernetes", "down", "--config", kubedistro.ConfigPath}
	if leaveEtcd {
		args = append(args, "--leave-etcd")
	}
	p := &nodeplan.Plan{Instructions: []nodeplan.Instruction{{CommonInstruction: nodeplan.CommonInstruction{
		Name: InstructionKubernetesDown, Command: NodeBinary, Args: args, TimeoutSeconds: installTimeoutSeconds,
	}, SaveOutput: true}}}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("rendered release plan is invalid: %w", err)
	}
	return json.Marshal(p)
}
