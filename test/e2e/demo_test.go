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
// Ready in the fleet, the app's pods Ready on it (read through the
// manager's tunnel). Ctrl-C then removes every process, network namespace
// and file the demo created.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo: a manager and a cluster of real kubelets")
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
	_, markerBefore := os.Stat("/var/lib/edgefleet")
	nsBefore := demoNamespaces(t)

	dataDir := filepath.Join(t.TempDir(), "demo")
	cmd := exec.Command(bin, "demo", "--keep", "--data-dir", dataDir, "--timeout", "4m")
	cmd.Env = append(os.Environ(), "EDGEFLEET_KUBE_BIN_DIR="+kube)
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-exited:
			case <-time.After(2 * time.Minute):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			// On failure the demo prints its logs' tails before removing them.
			t.Logf("demo output:\n%s", out.String())
		}
	})
	waitFor(t, 5*time.Minute, "the demo's summary", func() bool {
		select {
		case <-exited:
			t.Fatalf("the demo exited before its summary: %s", cmd.ProcessState)
		default:
		}
		return strings.Contains(out.String(), "Running until Ctrl-C")
	})
	text := out.String()
	t.Logf("demo story done after %s (wall time, images and manager start included)", time.Since(start).Round(time.Second))
	if m := regexp.MustCompile(`edgefleet demo is done in (\S+)\.`).FindStringSubmatch(text); m != nil {
		t.Logf("the demo reports %s", m[1])
	}

	t.Run("plain progress lines when not on a terminal", func(t *testing.T) {
		if strings.ContainsAny(text, "\r\033") {
			t.Errorf("terminal control characters in non-TTY output:\n%q", text)
		}
		for _, step := range []string{"Start 3 machines", "Form cluster demo", "Cluster demo joins the fleet", "App pods Ready", "Roll OS upgrade v1 → v2"} {
			if !regexp.MustCompile(`(?m)^\[ OK \] +\d+\. ` + regexp.QuoteMeta(step)).MatchString(text) {
				t.Errorf("no done line for step %q", step)
			}
		}
		if !strings.Contains(text, "simulated OS") {
			t.Error("the simulated OS upgrade is not said on screen")
		}
	})

	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^  ` + name + `: +(\S+)`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no %q in the summary:\n%s", name, text)
		}
		return m[1]
	}
	adminKC, clusterKC, uiURL := field("admin kubeconfig"), field("cluster kubeconfig"), field("web UI")
	cfg, err := clientcmd.BuildConfigFromFlags("", adminKC)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: server.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("three machines registered, all on OS v2 after the rollout", func(t *testing.T) {
		var invs machinesv1.MachineInventoryList
		if err := c.List(ctx, &invs, client.InNamespace(demo.Namespace)); err != nil {
			t.Fatal(err)
		}
		if len(invs.Items) != 3 {
			t.Fatalf("%d machines, want 3", len(invs.Items))
		}
		for _, inv := range invs.Items {
			os := inv.Status.OS
			if os.Image != demo.OSImageV2 || os.LastUpgrade == nil || os.LastUpgrade.Result != "Succeeded" {
				t.Errorf("machine %s: OS %+v", inv.Name, os)
			}
		}
		var mosi machinesv1.ManagedOSImage
		if err := c.Get(ctx, client.ObjectKey{Namespace: demo.Namespace, Name: "os-v2"}, &mosi); err != nil {
			t.Fatal(err)
		}
		if !meta.IsStatusConditionTrue(mosi.Status.Conditions, machinesv1.ReadyCondition) || mosi.Status.Upgraded != 3 {
			t.Errorf("ManagedOSImage: upgraded %d, conditions %+v", mosi.Status.Upgraded, mosi.Status.Conditions)
		}
	})

	t.Run("the formed cluster is Ready in the fleet, its app pods Ready through the tunnel", func(t *testing.T) {
		var pc provisioningv1.ProvisionedCluster
		if err := c.Get(ctx, client.ObjectKey{Namespace: demo.Namespace, Name: demo.ClusterName}, &pc); err != nil {
			t.Fatal(err)
		}
		if !meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ReadyCondition) || pc.Status.FleetClusterRef == nil || pc.Status.WorkersReady != 2 {
			t.Errorf("ProvisionedCluster: %+v", pc.Status)
		}
		kubectl := filepath.Join(kube, "kubectl")
		nodes, err := exec.Command(kubectl, "--kubeconfig", clusterKC, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`).CombinedOutput()
		if err != nil || strings.Count(string(nodes), "=True") != 3 {
			t.Errorf("nodes through the tunnel: %v %s", err, nodes)
		}
		pods, err := exec.Command(kubectl, "--kubeconfig", clusterKC, "get", "pods", "-n", demo.AppNamespace, "-l", "app="+demo.AppName, "-o", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("%v %s", err, pods)
		}
		if ready := readyPods(string(pods)); len(ready) != 2 {
			t.Errorf("%d app pods Ready, want 2", len(ready))
		}
	})

	t.Run("the web UI URL answers", func(t *testing.T) {
		if !strings.HasPrefix(uiURL, "https://127.0.0.1:") {
			t.Errorf("web UI URL %s", uiURL)
		}
		if code, err := exec.Command("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", uiURL).Output(); err != nil || string(code) != "200" {
			t.Errorf("GET %s: %v %s", uiURL, err, code)
		}
	})

	// What must be gone after Ctrl-C: the demo's process tree and every
	// process naming its folders (a machine's Kubernetes is started under
	// its agent but may be reparented), and its network namespaces.
	procs := demoProcesses(t, cmd.Process.Pid, dataDir)
	nsDuring := demoNamespaces(t)
	if len(nsDuring) <= len(nsBefore) {
		t.Errorf("no demo network namespaces while it runs: %v", nsDuring)
	}
	t.Logf("%d processes and %d network namespaces while the demo runs", len(procs), len(nsDuring)-len(nsBefore))

	t.Run("Ctrl-C cleans up every process, namespace and file", func(t *testing.T) {
		stopped = true
		sigint := time.Now()
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(2 * time.Minute):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Fatal("the demo did not exit within 2 minutes of Ctrl-C")
		}
		t.Logf("cleanup took %s", time.Since(sigint).Round(100*time.Millisecond))
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code %d after Ctrl-C with --keep", code)
		}
		for pid, args := range procs {
			if data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && strings.ReplaceAll(string(data), "\x00", " ") == args {
				t.Errorf("process %d still runs: %s", pid, args)
			}
		}
		for ns := range demoNamespaces(t) {
			if !nsBefore[ns] {
				t.Errorf("network namespace %s left behind", ns)
			}
		}
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Errorf("data dir %s left behind (%v)", dataDir, err)
		}
		if _, err := os.Stat("/var/lib/edgefleet"); os.IsNotExist(markerBefore) && !os.IsNotExist(err) {
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
	marks := []string{dir}
	for _, p := range all {
		if f := strings.Fields(p.args); len(f) > 1 && strings.HasSuffix(f[0], "edgefleet-node") && f[1] == "agent" {
			for i, a := range f {
				if a == "--root" && i+1 < len(f) {
					marks = append(marks, f[i+1])
				}
			}
		}
	}
	out := map[int]string{}
	for pid, p := range all {
		under := false
		for q := pid; q > 1 && !under; q = all[q].ppid {
			under = q == root
			if _, ok := all[q]; !ok {
				break
			}
		}
		for _, m := range marks {
			under = under || strings.Contains(p.args, m)
		}
		if under && pid != root {
			out[pid] = p.args
		}
	}
	return out
}
