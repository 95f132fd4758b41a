package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/netlab"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// machine is one simulated machine: an `edgefleet-node agent` with its own
// root (where the edgefleet distro puts Kubernetes), state, emulated TPM
// and, with namespaces, its own network.
type machine struct {
	name, role, serial string
	dir                string // logs, config, state (in the data dir)
	root               string // the machine's "/" for plans (short: unix sockets)
	config             string
	osState            string
	node               *netlab.Node
	agent              *process
}

func (m *machine) command(name string, args ...string) *exec.Cmd {
	if m.node != nil {
		return m.node.Command(name, args...)
	}
	return exec.Command(name, args...)
}

var roles = []string{"server", "worker"}

func (d *demo) registrations(ctx context.Context) error {
	c := d.mgr.client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return err
	}
	// A web UI user: the summary prints how to get its token. Admin of a
	// throwaway control plane.
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: UIUser, Namespace: Namespace}}); err != nil {
		return err
	}
	if err := c.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "edgefleet-demo-" + UIUser},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: UIUser, Namespace: Namespace}}}); err != nil {
		return err
	}
	for _, role := range roles {
		mr := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: role + "s", Namespace: Namespace}, Spec: machinesv1.MachineRegistrationSpec{
			MachineName:            role + "-${System Information/Serial Number}",
			MachineInventoryLabels: map[string]string{"role": role},
			// No TPM on this host to spare: each machine emulates one,
			// seeded from its serial.
			Config: machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{EmulateTPM: true, EmulatedTPMSeed: -1}},
		}}
		if err := c.Create(ctx, mr); err != nil {
			return err
		}
	}
	return nil
}

// seedMedia builds one config-only ISO per registration, downloads it
// (checksum verified) and reads the node config from it with xorriso, as
// a machine booting the media would.
func (d *demo) seedMedia(ctx context.Context) error {
	c := d.mgr.client
	for _, role := range roles {
		si := &machinesv1.SeedImage{ObjectMeta: metav1.ObjectMeta{Name: role + "s", Namespace: Namespace},
			Spec: machinesv1.SeedImageSpec{RegistrationRef: machinesv1.ObjectReference{Name: role + "s"}}}
		if err := c.Create(ctx, si); err != nil {
			return err
		}
	}
	for _, role := range roles {
		si := &machinesv1.SeedImage{}
		err := poll(ctx, 300*time.Millisecond, "SeedImage "+role+"s to be built", func() error {
			if err := c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: role + "s"}, si); err != nil {
				return err
			}
			switch si.Status.State {
			case machinesv1.SeedImageReady:
				return nil
			case machinesv1.SeedImageFailed:
				return fmt.Errorf("build failed: %s", conditionMessages(si.Status.Conditions))
			}
			return fmt.Errorf("state %q", si.Status.State)
		})
		if err != nil {
			return err
		}
		iso := filepath.Join(d.dataDir, "seed", role+"s.iso")
		if err := d.download(ctx, si.Status.DownloadURL, iso); err != nil {
			return err
		}
		cfgPath := filepath.Join(d.dataDir, "seed", role+"s-"+machinereg.SeedConfigFile)
		out, err := exec.CommandContext(ctx, "xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/"+machinereg.SeedConfigFile, cfgPath).CombinedOutput()
		if err != nil {
			return fmt.Errorf("reading %s from %s: %v: %s", machinereg.SeedConfigFile, iso, err, out)
		}
	}
	return nil
}

// download fetches a seed image by its status URL (asked on loopback:
// the URL names the external address) and checks its .sha256.
func (d *demo) download(ctx context.Context, rawURL, dst string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	local, _ := url.Parse(d.mgr.url)
	u.Scheme, u.Host = local.Scheme, local.Host
	get := func(u string) ([]byte, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := d.mgr.http.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	}
	data, err := get(u.String())
	if err != nil {
		return err
	}
	sum, err := get(u.String() + ".sha256")
	if err != nil {
		return err
	}
	h := sha256.Sum256(data)
	if want, _, _ := strings.Cut(strings.TrimSpace(string(sum)), " "); want != hex.EncodeToString(h[:]) {
		return fmt.Errorf("seed image %s: checksum %s does not match its .sha256 %s", filepath.Base(dst), hex.EncodeToString(h[:]), want)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o600)
}

func (d *demo) startMachines(ctx context.Context) error {
	short, err := os.MkdirTemp("", "efd")
	if err != nil {
		return err
	}
	d.onCleanup(func() { _ = os.RemoveAll(short) })
	d.onCleanup(d.stopMachines)
	for i := 0; i < d.o.Machines; i++ {
		role, serial := "worker", fmt.Sprint(i)
		if i == 0 {
			role, serial = "server", "1"
		}
		m := &machine{name: role + "-" + serial, role: role, serial: serial}
		m.dir = filepath.Join(d.dataDir, "machines", m.name)
		m.root = filepath.Join(short, fmt.Sprint(i))
		if err := d.startMachine(ctx, m); err != nil {
			return fmt.Errorf("machine %s: %w", m.name, err)
		}
	}
	return nil
}

func (d *demo) startMachine(ctx context.Context, m *machine) error {
	for _, dir := range []string{m.dir, m.root, filepath.Join(m.dir, "dmi"), filepath.Join(m.dir, "simos")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	// The firmware's serial number names the machine (MachineName).
	if err := os.WriteFile(filepath.Join(m.dir, "dmi", "product_serial"), []byte(m.serial), 0o444); err != nil {
		return err
	}
	seed, err := os.ReadFile(filepath.Join(d.dataDir, "seed", m.role+"s-"+machinereg.SeedConfigFile))
	if err != nil {
		return err
	}
	cfg, err := machinereg.ParseNodeConfig(seed)
	if err != nil {
		return fmt.Errorf("the seed media's config: %w", err)
	}
	cfg.StateDir = filepath.Join(m.dir, "state")
	cfg.Registration.DMIDir = filepath.Join(m.dir, "dmi")
	if !d.netns {
		// On loopback the machines reach the manager where it listens.
		cfg.Registration.URL = strings.Replace(cfg.Registration.URL, strings.TrimPrefix(d.mgr.externalURL, "https://"), strings.TrimPrefix(d.mgr.url, "https://"), 1)
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	m.config = filepath.Join(m.dir, "node.yaml")
	if err := os.WriteFile(m.config, data, 0o600); err != nil {
		return err
	}
	m.osState = filepath.Join(m.dir, "simos", "os.json")
	if err := d.writeSimulatedOS(m); err != nil {
		return err
	}
	if d.netns {
		if m.node, err = d.lab.AddNode(m.name); err != nil {
			return err
		}
		// The registry on the machine's loopback (containerd pulls from
		// there); pods reach the gateway masqueraded as their node.
		if err := m.node.Forward(d.reg.port); err != nil {
			return err
		}
		if out, err := m.command("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.42.0.0/16", "-d", d.lab.Gateway()+"/32", "-j", "MASQUERADE").CombinedOutput(); err != nil {
			return fmt.Errorf("iptables: %v: %s", err, out)
		}
		// The Kubernetes binaries where the ProvisionedCluster's
		// spec.binaries.dir names them.
		if err := os.MkdirAll(filepath.Join(m.root, "opt/kubernetes", d.bins.version), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(d.bins.kube, filepath.Join(m.root, binDir(d.bins.version))); err != nil {
			return err
		}
	}
	cmd := m.command(d.bins.node, "agent", "--config", m.config, "--root", m.root, "--retry-base", "1s", "--retry-max", "4s", "--no-images")
	// Plans find edgefleet-node on PATH: the simulated OS's first.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Join(m.dir, "simos")+":"+filepath.Dir(d.bins.node)+":"+os.Getenv("PATH"))
	agent, err := startProcess(cmd, filepath.Join(m.dir, "agent.log"), syscall.SIGKILL)
	if err != nil {
		return err
	}
	m.agent = agent
	d.machines = append(d.machines, m)
	return nil
}

// stopMachines stops every machine at once: its agent first, then its
// Kubernetes, which nothing restarts once the agent is stopped.
func (d *demo) stopMachines() {
	var wg sync.WaitGroup
	for _, m := range d.machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.agent.stop(20 * time.Second)
			if m.node == nil {
				return
			}
			if out, err := m.command(d.bins.node, "kubernetes", "down", "--root", m.root).CombinedOutput(); err != nil {
				d.p.note("%s: kubernetes down: %v: %s", m.name, err, out)
			}
		}()
	}
	wg.Wait()
}

func binDir(version string) string { return "/opt/kubernetes/" + version + "/bin" }

// writeSimulatedOS puts the machine's simulated OS first on its agent's
// PATH: `edgefleet-node upgrade` (what a ManagedOSImage's upgrade plan
// runs) records the image with `edgefleet-node simulated-os` and reports
// it with the machine's own credential, instead of writing a disk and
// rebooting the host. Every other command is the real edgefleet-node.
func (d *demo) writeSimulatedOS(m *machine) error {
	script := fmt.Sprintf(`#!/bin/sh
# edgefleet demo: simulated OS of machine %[1]s (no disk, no reboot).
if [ "$1" = upgrade ]; then
	image=
	while [ $# -gt 0 ]; do
		case "$1" in --image) image="$2"; shift ;; esac
		shift
	done
	# The upgrade plan's run-once marker is shared by the demo's machines
	# (one host): a real machine reboots past it, the simulated one clears it.
	rm -f %[2]s/*
	exec %[3]q simulated-os upgrade --config %[4]q --state-file %[5]q --image "$image"
fi
exec %[3]q "$@"
`, m.name, markerDir, d.bins.node, m.config, m.osState)
	return os.WriteFile(filepath.Join(m.dir, "simos", "edgefleet-node"), []byte(script), 0o755)
}

// waitRegistered waits for every machine's MachineInventory to be Ready
// (with an address when namespaced), then has each report OS v1.
func (d *demo) waitRegistered(ctx context.Context) error {
	c := d.mgr.client
	err := poll(ctx, 500*time.Millisecond, fmt.Sprintf("%d machines registered and Ready", len(d.machines)), func() error {
		for _, m := range d.machines {
			if m.agent.exited() {
				return fmt.Errorf("machine %s's agent exited: %s\n%s", m.name, m.agent.cmd.ProcessState, tail(filepath.Join(m.dir, "agent.log"), 2000))
			}
		}
		var invs machinesv1.MachineInventoryList
		if err := c.List(ctx, &invs, client.InNamespace(Namespace)); err != nil {
			return err
		}
		n := 0
		for _, inv := range invs.Items {
			if meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.ReadyCondition) && (!d.netns || inv.Status.Network.PrimaryAddress != "") {
				n++
			}
		}
		if n < len(d.machines) {
			return fmt.Errorf("%d of %d", n, len(d.machines))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range d.machines {
		if out, err := m.command(d.bins.node, "simulated-os", "report", "--config", m.config, "--state-file", m.osState, "--image", OSImageV1).CombinedOutput(); err != nil {
			return fmt.Errorf("machine %s: simulated OS: %v: %s", m.name, err, out)
		}
	}
	d.p.note("simulated OS: the machines run no edgefleet OS image; their OS status is kept by `edgefleet-node simulated-os` (no disk written, no reboot)")
	return nil
}

func conditionMessages(conds []metav1.Condition) string {
	var parts []string
	for _, c := range conds {
		if c.Status != metav1.ConditionTrue || c.Type == "Stalled" {
			parts = append(parts, fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
		}
	}
	return strings.Join(parts, "; ")
}
