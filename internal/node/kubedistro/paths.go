// Package kubedistro runs the built-in "edgefleet" Kubernetes distribution
// on a machine: what a kubedistro.NodeConfig (internal/wire/kubedistro)
// says. `edgefleet-node kubernetes up` installs the binaries, writes every
// certificate and configuration file below the data directory and starts a
// detached supervisor (`kubernetes run`) that runs etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler on servers, and containerd and
// a real kubelet on every node, restarting what crashes. Pod networking is
// the CNI bridge plugin with the node's pod CIDR plus host routes to the
// other nodes' pod CIDRs (flannel's host-gw idea, no overlay).
//
// It execs the upstream binaries and talks to them over HTTP with the
// standard library only: the node binary links no Kubernetes libraries.
package kubedistro

import (
	"path/filepath"

	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// RootEnv names the folder every path lives under (the planner sets it
// for each instruction; "/" on a real machine), so several nodes can share
// one host in tests.
const RootEnv = "EDGEFLEET_PLAN_ROOT"

// Paths are the files of one node, all below Root.
type Paths struct {
	Root string
	Data string
}

// NewPaths resolves the distribution's folders under root.
func NewPaths(root string) Paths {
	if root == "" {
		root = "/"
	}
	return Paths{Root: root, Data: filepath.Join(root, kubedistro.DataDir)}
}

// Under resolves an absolute machine path (ConfigPath, binaries.dir) under Root.
func (p Paths) Under(path string) string { return filepath.Join(p.Root, path) }

func (p Paths) dir(elem ...string) string { return filepath.Join(append([]string{p.Data}, elem...)...) }

// Manifests is the init server's auto-deploy folder.
func (p Paths) Manifests() string         { return p.Under(kubedistro.ManifestsDir) }
func (p Paths) Bin(version string) string { return p.dir("bin", version) }
func (p Paths) Images() string            { return p.dir("images") }
func (p Paths) PKI() string               { return p.dir("pki") }
func (p Paths) Etcd() string              { return p.dir("etcd") }
func (p Paths) Containerd() string        { return p.dir("containerd") }
func (p Paths) CNI() string               { return p.dir("cni") }
func (p Paths) Kubelet() string           { return p.dir("kubelet") }
func (p Paths) Logs() string              { return p.dir("logs") }
func (p Paths) Run() string               { return p.dir("run") }
func (p Paths) Server() string            { return p.dir("server") }

// ContainerdSocket is short on purpose: a unix socket path has at most
// 107 bytes.
func (p Paths) ContainerdSocket() string { return p.dir("run", "ctd.sock") }

// State is the supervisor's status file (what `status` prints).
func (p Paths) State() string { return p.dir("run", "state.json") }

// SupervisorPID holds the running supervisor's process id.
func (p Paths) SupervisorPID() string { return p.dir("run", "supervisor.pid") }

// Log is a component's log file.
func (p Paths) Log(component string) string { return p.dir("logs", component+".log") }

// Kubeconfig files written for the components.
func (p Paths) AdminKubeconfig() string   { return p.dir("server", "admin.kubeconfig") }
func (p Paths) KubeletKubeconfig() string { return p.dir("kubelet", "kubeconfig") }
