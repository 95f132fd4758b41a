package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"

	"github.com/edgefleet/edgefleet/internal/imagebuild"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/node/kubedistro"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
	"github.com/edgefleet/edgefleet/test/harness"
	"github.com/edgefleet/edgefleet/test/kubeimages"
	"github.com/edgefleet/edgefleet/test/netlab"
)

// distroLab is what the tests that form edgefleet-distro clusters of real
// kubelets share: a loopback registry with the images the nodes pull (pause
// and hello as in TestKubeDistro, the fleet agent built from
// bin/edgefleet-agent, single-arch), a network lab whose gateway is the
// manager's external URL, and a namespace for the machines.
type distroLab struct {
	lab        *netlab.Lab
	reg        *kubeimages.Registry
	m          *harness.Manager
	l          *machineLab
	agentImage string
	// node is the edgefleet-node binary the machines run.
	node string
}

func startDistroLab(t *testing.T, subnet3, ns string) *distroLab {
	t.Helper()
	ctx := context.Background()
	reg := startNodeImageRegistry(t)
	agentBin := filepath.Join(filepath.Dir(harness.EdgefleetBinary(t)), "edgefleet-agent")
	caBundle, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := imagebuild.Build(imagebuild.Spec{Name: "edgefleet-agent", Binaries: map[string]string{"amd64": agentBin}, CABundle: caBundle, Created: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imagebuild.Push(ctx, reg.Host+"/edgefleet/edgefleet-agent:e2e", idx); err != nil {
		t.Fatal(err)
	}
	agentImage := "edgefleet.test/edgefleet/edgefleet-agent:e2e"

	lab := netlab.New(t, subnet3)
	m := harness.StartManager(t, harness.ManagerOptions{ExternalHost: lab.Gateway(), Args: []string{"--agent-image", agentImage, "--tunnel-probe-interval", "2s"}})
	u, err := url.Parse(m.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	if err := lab.ForwardGateway(port); err != nil {
		t.Fatal(err)
	}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	l := &machineLab{m: m, ns: ns}
	_, l.caPEM = get(t, m, "/cacerts")
	return &distroLab{lab: lab, reg: reg, m: m, l: l, agentImage: agentImage, node: nodeBinary(t)}
}

// distroBinDir is where a machine finds the Kubernetes binaries of version
// (a ProvisionedCluster's spec.binaries.dir).
func distroBinDir(version string) string { return "/opt/kubernetes/" + version + "/bin" }

// addMachine starts a machine in its own network namespace: the registry
// forwarded to its loopback, the Kubernetes binaries (version → folder on
// this host) at distroBinDir, and an `edgefleet-node agent` that registers
// at regURL with serial as its SMBIOS serial number.
func (d *distroLab) addMachine(t *testing.T, name, serial, regURL string, binaries map[string]string) *formationMachine {
	t.Helper()
	fm := &formationMachine{Node: d.lab.AddNode(name), root: shortTempDir(t)}
	for v, dir := range binaries {
		if err := os.MkdirAll(filepath.Join(fm.root, "opt/kubernetes", v), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(dir, filepath.Join(fm.root, distroBinDir(v))); err != nil {
			t.Fatal(err)
		}
	}
	// The registry on the machine's loopback (containerd pulls from
	// there); pods reach the gateway masqueraded as their node, like
	// behind any home router.
	if err := fm.Forward(d.reg.Port); err != nil {
		t.Fatal(err)
	}
	if out, err := fm.Command("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.42.0.0/16", "-d", d.lab.Gateway()+"/32", "-j", "MASQUERADE").CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v %s", err, out)
	}
	dmi := t.TempDir()
	if err := os.WriteFile(filepath.Join(dmi, "product_serial"), []byte(serial), 0o444); err != nil {
		t.Fatal(err)
	}
	cfg := machinereg.NodeConfig{
		Registration: machinereg.NodeRegistration{URL: regURL, CACert: d.l.caPEM, EmulateTPM: true, EmulatedTPMSeed: -1, DMIDir: dmi},
		StateDir:     filepath.Join(t.TempDir(), "state"),
	}
	data, _ := yaml.Marshal(cfg)
	cfgPath := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	node := d.node
	// Registered before the agent's own cleanup, so it runs after the
	// agent stopped: nothing restarts the node's Kubernetes.
	t.Cleanup(func() {
		if t.Failed() {
			for _, comp := range []string{"supervisor", "kube-apiserver", "containerd", "kubelet"} {
				if b, err := os.ReadFile(filepath.Join(kubedistro.NewPaths(fm.root).Logs(), comp+".log")); err == nil {
					t.Logf("%s %s log (tail):\n%s", name, comp, tailString(string(b), 2000))
				}
			}
		}
		if out, err := fm.Command(node, "kubernetes", "down", "--root", fm.root).CombinedOutput(); err != nil {
			t.Logf("%s: kubernetes down: %v: %s", name, err, out)
		}
	})
	fm.cfgPath, fm.stateDir = cfgPath, cfg.StateDir
	d.startAgent(t, fm)
	return fm
}

// startAgent (re)starts a machine's `edgefleet-node agent`.
func (d *distroLab) startAgent(t *testing.T, fm *formationMachine) {
	t.Helper()
	node := d.node
	a := &nodeAgent{out: &syncBuf{}, done: make(chan struct{})}
	a.cmd = fm.Command(node, "agent", "--config", fm.cfgPath, "--root", fm.root, "--retry-base", "1s", "--retry-max", "4s", "--no-images")
	a.cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(node)+":"+os.Getenv("PATH"))
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("%s: edgefleet-node agent output (tail):\n%s", fm.Name, tailString(a.out.String(), 4000))
		}
	})
	fm.agent = a
}

// registration creates a MachineRegistration whose machines are named
// kind-<serial> and labelled role=kind (emulated TPMs; change adjusts the
// spec) and returns its registration URL once the manager serves it. The
// URL names the gateway, which only the lab's namespaces reach; the test
// asks the same endpoint on its loopback.
func (d *distroLab) registration(t *testing.T, name, kind string, change func(*machinesv1.MachineRegistration)) string {
	t.Helper()
	ctx, c := context.Background(), d.m.Client
	mr := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.l.ns}, Spec: machinesv1.MachineRegistrationSpec{
		MachineName:            kind + "-${System Information/Serial Number}",
		MachineInventoryLabels: map[string]string{"role": kind},
		Config:                 machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{EmulateTPM: true, EmulatedTPMSeed: -1}},
	}}
	if change != nil {
		change(mr)
	}
	if err := c.Create(ctx, mr); err != nil {
		t.Fatal(err)
	}
	var regURL string
	waitUntil(t, 30*time.Second, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(mr), mr); err != nil {
			return err
		}
		var err error
		if regURL, err = machineregistration.RegistrationURLFromSecret(ctx, c, mr); err != nil {
			return err
		}
		if code := d.l.status(t, strings.Replace(regURL, d.lab.Gateway(), "127.0.0.1", 1)); code == http.StatusUnauthorized {
			return fmt.Errorf("URL not served yet")
		}
		return nil
	})
	if !strings.Contains(regURL, d.lab.Gateway()) {
		t.Fatalf("registration URL %s does not use the external URL", regURL)
	}
	return regURL
}

// waitDescribed polls ok every second until it passes; after timeout it
// fails the test with what, the last error and describe()'s picture.
func waitDescribed(t *testing.T, timeout time.Duration, what string, ok func() error, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := ok()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %s: %v\n%s", timeout, what, err, describe())
		}
		time.Sleep(time.Second)
	}
}
