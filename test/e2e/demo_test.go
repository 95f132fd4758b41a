package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/demo"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/test/harness"
	"github.com/edgefleet/edgefleet/test/netlab"
)

// `edgefleet demo --keep` as a user runs it, with its output not on a
// terminal: plain step lines, then the summary. While it keeps running,
// its end state is checked through the kubeconfigs the summary names:
// three machines registered and upgraded to OS v2, the formed cluster
// Ready in the fleet, its Nodes and the app's pods Ready (read through the
// manager's tunnel). Ctrl-C then removes every process, network namespace
// and file the demo created.
func TestDemo(t *testing.T) {
	r := startDemo(t, "--machines", "3")
	r.checkCommon(t, 3, []string{"Build images", "Start 3 machine(s)", "Form cluster demo", "Cluster demo joins the fleet", "App pods Ready", "Roll OS upgrade v1 → v2"})

	t.Run("the formed cluster is Ready in the fleet, its Nodes Ready through the tunnel", func(t *testing.T) {
		var pc provisioningv1.ProvisionedCluster
		if err := r.client.Get(context.Background(), client.ObjectKey{Namespace: demo.Namespace, Name: demo.ClusterName}, &pc); err != nil {
			t.Fatal(err)
		}
		if !meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ReadyCondition) || pc.Status.FleetClusterRef == nil || pc.Status.WorkersReady != 2 {
			t.Errorf("ProvisionedCluster: %+v", pc.Status)
		}
		nodes, err := exec.Command(r.kubectl, "--kubeconfig", r.clusterKC, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`).CombinedOutput()
		if err != nil || strings.Count(string(nodes), "=True") != 3 || !strings.Contains(string(nodes), "server-1=True") {
			t.Errorf("nodes through the tunnel: %v %s", err, nodes)
		}
	})
	r.stopAndCheckCleanup(t, true)
}

// Without network namespaces (--no-netns, what a host without root or
// CAP_NET_ADMIN gets, with a warning): machines on loopback, a dev cluster
// with fake nodes in place of the formed one; registration, GitOps, the
// tunnel and the OS rollout still run, and everything is cleaned up.
func TestDemoWithoutNetworkNamespaces(t *testing.T) {
	r := startDemo(t, "--machines", "2", "--no-netns")
	if !strings.Contains(r.text, "WARNING: --no-netns: the machines run on loopback") {
		t.Errorf("no warning about the fallback:\n%s", r.text)
	}
	if strings.Contains(r.text, "Form cluster") || strings.Contains(r.text, "Build images") {
		t.Errorf("steps that need namespaces ran:\n%s", r.text)
	}
	r.checkCommon(t, 2, []string{"Start 2 machine(s) (edgefleet-node agent) on loopback", "Start a simulated cluster instead", "The simulated cluster joins the fleet", "App pods Ready", "Roll OS upgrade v1 → v2"})
	r.stopAndCheckCleanup(t, false)
}

// demoRun is a running `edgefleet demo --keep`.
type demoRun struct {
	cmd              *exec.Cmd
	exited           chan struct{}
	out              *syncBuf
	text             string
	dataDir          string
	kubectl          string
	adminKC          string
	clusterKC, uiURL string
	client           client.Client
	stopped          bool
	markerBefore     error
	nsBefore         map[string]bool
}

func startDemo(t *testing.T, args ...string) *demoRun {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the whole demo: a manager, machines and clusters")
	}
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	bin := harness.EdgefleetBinary(t)
	for _, b := range []string{"edgefleet-node", "edgefleet-agent"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(bin), b)); err != nil {
			t.Fatalf("%s is not next to %s: run `make build` and set EDGEFLEET_BIN=$PWD/bin/edgefleet", b, bin)
		}
	}
	kube := harness.KubeBinDir(t)
	r := &demoRun{dataDir: filepath.Join(t.TempDir(), "demo"), kubectl: filepath.Join(kube, "kubectl"), out: &syncBuf{}, exited: make(chan struct{})}
	_, r.markerBefore = os.Stat("/var/lib/edgefleet")
	r.nsBefore = demoNamespaces(t)
	r.cmd = exec.Command(bin, append([]string{"demo", "--keep", "--data-dir", r.dataDir, "--timeout", "5m"}, args...)...)
	r.cmd.Env = append(os.Environ(), "EDGEFLEET_KUBE_BIN_DIR="+kube)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT}
	start := time.Now()
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		if !r.stopped {
			_ = r.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-r.exited:
			case <-time.After(2 * time.Minute):
				_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			// On failure the demo prints its logs' tails before removing them.
			t.Logf("demo output:\n%s", r.out.String())
		}
	})
	waitFor(t, 6*time.Minute, "the demo's summary", func() bool {
		select {
		case <-r.exited:
			t.Fatalf("the demo exited before its summary: %s", r.cmd.ProcessState)
		default:
		}
		return strings.Contains(r.out.String(), "Running until Ctrl-C")
	})
	r.text = r.out.String()
	t.Logf("demo story done after %s (wall time, images and manager start included)", time.Since(start).Round(time.Second))
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^  ` + name + `: +(\S+)`).FindStringSubmatch(r.text)
		if m == nil {
			t.Fatalf("no %q in the summary:\n%s", name, r.text)
		}
		return m[1]
	}
	r.adminKC, r.clusterKC, r.uiURL = field("admin kubeconfig"), field("cluster kubeconfig"), field("web UI")
	cfg, err := clientcmd.BuildConfigFromFlags("", r.adminKC)
	if err != nil {
		t.Fatal(err)
	}
	if r.client, err = client.New(cfg, client.Options{Scheme: server.Scheme()}); err != nil {
		t.Fatal(err)
	}
	return r
}

// checkCommon checks what both modes end with: the steps' plain lines,
// the machines on OS v2, the app's pods Ready through the tunnel, the UI.
func (r *demoRun) checkCommon(t *testing.T, machines int, steps []string) {
	t.Run("plain progress lines when not on a terminal", func(t *testing.T) {
		if strings.ContainsAny(r.text, "\r\033") {
			t.Errorf("terminal control characters in non-TTY output:\n%q", r.text)
		}
		for _, step := range steps {
			if !regexp.MustCompile(`(?m)^\[ OK \] +\d+\. ` + regexp.QuoteMeta(step)).MatchString(r.text) {
				t.Errorf("no done line for step %q", step)
			}
		}
		if !strings.Contains(r.text, "simulated OS") {
			t.Error("the simulated OS upgrade is not said on screen")
		}
	})

	t.Run("the machines registered, all on OS v2 after the rollout", func(t *testing.T) {
		ctx := context.Background()
		var invs machinesv1.MachineInventoryList
		if err := r.client.List(ctx, &invs, client.InNamespace(demo.Namespace)); err != nil {
			t.Fatal(err)
		}
		if len(invs.Items) != machines {
			t.Fatalf("%d machines, want %d", len(invs.Items), machines)
		}
		for _, inv := range invs.Items {
			os := inv.Status.OS
			if os.Image != demo.OSImageV2 || os.LastUpgrade == nil || os.LastUpgrade.Result != "Succeeded" {
				t.Errorf("machine %s: OS %+v", inv.Name, os)
			}
		}
		var mosi machinesv1.ManagedOSImage
		if err := r.client.Get(ctx, client.ObjectKey{Namespace: demo.Namespace, Name: "os-v2"}, &mosi); err != nil {
			t.Fatal(err)
		}
		if !meta.IsStatusConditionTrue(mosi.Status.Conditions, machinesv1.ReadyCondition) || mosi.Status.Upgraded != int32(machines) {
			t.Errorf("ManagedOSImage: upgraded %d, conditions %+v", mosi.Status.Upgraded, mosi.Status.Conditions)
		}
	})

	t.Run("the GitRepo's app pods Ready, read through the tunnel", func(t *testing.T) {
		pods, err := exec.Command(r.kubectl, "--kubeconfig", r.clusterKC, "get", "pods", "-n", demo.AppNamespace, "-l", "app="+demo.AppName, "-o", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("%v %s", err, pods)
		}
		if ready := readyPods(string(pods)); len(ready) != 2 {
			t.Errorf("%d app pods Ready, want 2", len(ready))
		}
	})

	t.Run("the web UI URL answers", func(t *testing.T) {
		if !strings.HasPrefix(r.uiURL, "https://127.0.0.1:") {
			t.Errorf("web UI URL %s", r.uiURL)
		}
		if code, err := exec.Command("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", r.uiURL).Output(); err != nil || string(code) != "200" {
			t.Errorf("GET %s: %v %s", r.uiURL, err, code)
		}
	})
}

// stopAndCheckCleanup sends Ctrl-C and checks that nothing is left: the
// demo's process tree and every process naming its folders (a machine's
// Kubernetes is started under its agent but may be reparented), its
// network namespaces, its data dir and the upgrade markers' folder.
func (r *demoRun) stopAndCheckCleanup(t *testing.T, wantNamespaces bool) {
	procs := demoProcesses(t, r.cmd.Process.Pid, r.dataDir)
	nsDuring := demoNamespaces(t)
	if wantNamespaces != (len(nsDuring) > len(r.nsBefore)) {
		t.Errorf("demo network namespaces while it runs: %v", nsDuring)
	}
	t.Logf("%d processes and %d network namespaces while the demo runs", len(procs), len(nsDuring)-len(r.nsBefore))

	t.Run("Ctrl-C cleans up every process, namespace and file", func(t *testing.T) {
		r.stopped = true
		sigint := time.Now()
		_ = r.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-r.exited:
		case <-time.After(2 * time.Minute):
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
			t.Fatal("the demo did not exit within 2 minutes of Ctrl-C")
		}
		t.Logf("cleanup took %s", time.Since(sigint).Round(100*time.Millisecond))
		if code := r.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code %d after Ctrl-C with --keep", code)
		}
		for pid, args := range procs {
			if data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && strings.ReplaceAll(string(data), "\x00", " ") == args {
				t.Errorf("process %d still runs: %s", pid, args)
			}
		}
		for ns := range demoNamespaces(t) {
			if !r.nsBefore[ns] {
				t.Errorf("network namespace %s left behind", ns)
			}
		}
		if _, err := os.Stat(r.dataDir); !os.IsNotExist(err) {
			t.Errorf("data dir %s left behind (%v)", r.dataDir, err)
		}
		if _, err := os.Stat("/var/lib/edgefleet"); os.IsNotExist(r.markerBefore) && !os.IsNotExist(err) {
			t.Errorf("/var/lib/edgefleet (the simulated OS upgrades' markers) left behind")
		}
	})
}

// demoNamespaces are the network namespaces named like the demo's.
func demoNamespaces(t *testing.T) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), demo.NamespacePrefix) {
			out[e.Name()] = true
		}
	}
	return out
}

// demoProcesses are the processes under root and those whose command line
// names dir or a machine root an agent was given (pid → command line).
func demoProcesses(t *testing.T, root int, dir string) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	type proc struct {
		ppid int
		args string
	}
	all := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err1 := os.ReadFile("/proc/" + e.Name() + "/stat")
		cmdline, err2 := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err1 != nil || err2 != nil {
			continue
		}
		// The fields after the command name, which is in parentheses.
		rest := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		ppid, _ := strconv.Atoi(rest[1])
		all[pid] = proc{ppid, strings.ReplaceAll(string(cmdline), "\x00", " ")}
	}
	under := func(pid int) bool {
		for q := pid; q > 1; q = all[q].ppid {
			if q == root {
				return true
			}
			if _, ok := all[q]; !ok {
				return false
			}
		}
		return false
	}
	// The demo's agents' roots: other tests' machines may run meanwhile.
	marks := []string{dir}
	for pid, p := range all {
		if f := strings.Fields(p.args); under(pid) && len(f) > 1 && strings.HasSuffix(f[0], "edgefleet-node") && f[1] == "agent" {
			for i, a := range f {
				if a == "--root" && i+1 < len(f) {
					marks = append(marks, f[i+1]+"/")
				}
			}
		}
	}
	out := map[int]string{}
	for pid, p := range all {
		ours := under(pid)
		for _, m := range marks {
			ours = ours || strings.Contains(p.args, m)
		}
		if ours && pid != root {
			out[pid] = p.args
		}
	}
	return out
}
