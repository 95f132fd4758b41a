package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
	"github.com/edgefleet/edgefleet/test/harness"
)

// nodeAgent is a running `edgefleet-node agent` process.
type nodeAgent struct {
	cmd  *exec.Cmd
	out  *syncBuf
	done chan struct{}
}

func startNodeAgent(t *testing.T, bin, cfgPath, root string) *nodeAgent {
	t.Helper()
	a := &nodeAgent{out: &syncBuf{}, done: make(chan struct{})}
	a.cmd = exec.Command(bin, "agent", "--config", cfgPath, "--root", root, "--retry-base", "1s", "--retry-max", "4s", "--no-images")
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("edgefleet-node agent output:\n%s", a.out.String())
		}
	})
	return a
}

func (a *nodeAgent) stop() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-a.done
	}
}

// rssKiB reads the agent's resident set now and at its peak.
func (a *nodeAgent) rssKiB(t *testing.T) (now, peak string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "VmRSS:" {
			now = f[1]
		}
		if len(f) >= 2 && f[0] == "VmHWM:" {
			peak = f[1]
		}
	}
	return now, peak
}

// A machine runs `edgefleet-node agent` against a real manager: it
// registers, applies the plans written with `edgefleet machine plan apply`
// and reports them on its MachineInventory; a failing plan names its
// instruction; the agent catches up after a manager restart and never
// re-runs a plan after its own restart.
func TestMachinePlans(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager")
	}
	node := nodeBinary(t)
	edgefleet := harness.EdgefleetBinary(t)
	port := freePort(t)
	args := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", port)}
	m := harness.StartManager(t, harness.ManagerOptions{Args: args})
	ctx := context.Background()
	l := &machineLab{m: m, ns: "plans"}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.ns}}); err != nil {
		t.Fatal(err)
	}
	_, l.caPEM = get(t, m, "/cacerts")
	_, regURL := l.registration(t, "plans", machinesv1.MachineRegistrationSpec{
		MachineName: "box-${System Information/Serial Number}",
		Config:      machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{EmulateTPM: true, EmulatedTPMSeed: -1}},
	})
	dmi := t.TempDir()
	if err := os.WriteFile(filepath.Join(dmi, "product_serial"), []byte("P1"), 0o444); err != nil {
		t.Fatal(err)
	}
	cfg := machinereg.NodeConfig{
		Registration: machinereg.NodeRegistration{URL: regURL, CACert: l.caPEM, EmulateTPM: true, EmulatedTPMSeed: -1, DMIDir: dmi},
		StateDir:     filepath.Join(t.TempDir(), "state"),
	}
	cfgPath := filepath.Join(t.TempDir(), "node.yaml")
	data, _ := yaml.Marshal(cfg)
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	agent := startNodeAgent(t, node, cfgPath, root)
	key := client.ObjectKey{Namespace: l.ns, Name: "box-p1"}

	// The agent registered by itself and applied the empty plan: Ready.
	waitInventory(t, m.Client, key, 60*time.Second, func(inv *machinesv1.MachineInventory) error {
		if p := inv.Status.Plan; p.State != machinesv1.PlanApplied || p.AppliedChecksum != nodeplan.Checksum([]byte("{}")) {
			return fmt.Errorf("plan %+v", p)
		}
		if !meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.ReadyCondition) {
			return fmt.Errorf("not Ready: %+v", inv.Status.Conditions)
		}
		return nil
	})
	// status.network: the agent reports the machine's addresses (what
	// cluster formation takes node and API addresses from); the primary is
	// one of them and an address of this host.
	waitInventory(t, m.Client, key, 30*time.Second, func(inv *machinesv1.MachineInventory) error {
		n := inv.Status.Network
		if n.PrimaryAddress == "" || !slices.Contains(n.Addresses, n.PrimaryAddress) || !hostHasAddress(n.PrimaryAddress) {
			return fmt.Errorf("status.network %+v", n)
		}
		return nil
	})

	writePlan := func(t *testing.T, name, plan string) string {
		t.Helper()
		f := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(f, []byte(plan), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	applyPlan := func(t *testing.T, plan string) (string, time.Duration) {
		t.Helper()
		f := writePlan(t, "plan", plan)
		raw, err := yaml.YAMLToJSON([]byte(plan))
		if err != nil {
			t.Fatal(err)
		}
		sum := nodeplan.Checksum(raw)
		t0 := time.Now()
		out, err := exec.Command(edgefleet, "machine", "plan", "apply", key.Name, "-n", key.Namespace, "-f", f, "--kubeconfig", m.Kubeconfig).CombinedOutput()
		if err != nil {
			t.Fatalf("edgefleet machine plan apply: %v\n%s", err, out)
		}
		waitPlanState(t, m.Client, key, sum, machinesv1.PlanApplied, 60*time.Second)
		return sum, time.Since(t0)
	}
	marker := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(root, name))
		return string(b)
	}

	t.Run("plan applied, then changed and applied again", func(t *testing.T) {
		var latencies []time.Duration
		for i := range 5 {
			plan := fmt.Sprintf(`files:
- path: /etc/box/config.yaml
  content: %s
  permissions: "0640"
instructions:
- name: configure
  command: /bin/sh
  args: ["-c", "echo configuring round %d; printf x >> \"$EDGEFLEET_PLAN_ROOT/configured\""]
  saveOutput: true
`, b64(fmt.Sprintf("round: %d\n", i)), i)
			_, d := applyPlan(t, plan)
			latencies = append(latencies, d)
			if got := marker("etc/box/config.yaml"); got != fmt.Sprintf("round: %d\n", i) {
				t.Fatalf("config.yaml %q", got)
			}
			if n := strings.Count(marker("configured"), "x"); n != i+1 {
				t.Fatalf("configure ran %d times after %d plans", n, i+1)
			}
		}
		fi, err := os.Stat(filepath.Join(root, "etc/box/config.yaml"))
		if err != nil || fi.Mode().Perm() != 0o640 {
			t.Fatalf("config.yaml mode %v (%v)", fi.Mode(), err)
		}
		inv := getInventory(t, m.Client, key)
		if len(inv.Status.Plan.Instructions) != 1 || !strings.Contains(inv.Status.Plan.Instructions[0].Output, "configuring round 4") {
			t.Errorf("instruction results %+v", inv.Status.Plan.Instructions)
		}
		slices.Sort(latencies)
		t.Logf("plan apply latency (CLI write → status Applied), 5 plans: median %s, max %s", latencies[2].Round(time.Millisecond), latencies[4].Round(time.Millisecond))
		out, err := exec.Command(edgefleet, "machine", "plan", "status", key.Name, "-n", key.Namespace, "--kubeconfig", m.Kubeconfig).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "configure") || !strings.Contains(string(out), "Applied") {
			t.Errorf("machine plan status: %v\n%s", err, out)
		}
		out, err = exec.Command("kubectl", "--kubeconfig", m.Kubeconfig, "get", "machineinventories", "-n", key.Namespace).CombinedOutput()
		if err == nil && !strings.Contains(string(out), "PLAN") {
			t.Errorf("kubectl get machineinventories shows no plan column:\n%s", out)
		}
	})

	t.Run("failing plan names the instruction and is retried", func(t *testing.T) {
		plan := `instructions:
- name: prepare
  command: /bin/true
- name: install-k3s
  command: /bin/sh
  args: ["-c", "echo downloading; echo 'no space left on device' >&2; [ -f \"$EDGEFLEET_PLAN_ROOT/space\" ] || exit 28"]
- name: after
  command: /bin/sh
  args: ["-c", "touch \"$EDGEFLEET_PLAN_ROOT/after\""]
`
		f := writePlan(t, "failing", plan)
		raw, _ := yaml.YAMLToJSON([]byte(plan))
		sum := nodeplan.Checksum(raw)
		out, err := exec.Command(edgefleet, "machine", "plan", "apply", key.Name, "-n", key.Namespace, "-f", f, "--kubeconfig", m.Kubeconfig, "--wait", "60s").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "failed on the machine") || !strings.Contains(string(out), "install-k3s") {
			t.Fatalf("apply --wait of a failing plan: %v\n%s", err, out)
		}
		inv := waitPlanState(t, m.Client, key, sum, machinesv1.PlanFailed, 60*time.Second)
		ready := meta.FindStatusCondition(inv.Status.Conditions, machinesv1.ReadyCondition)
		if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != machinesv1.PlanFailedReason || !strings.Contains(ready.Message, `instruction "install-k3s" (exit code 28)`) {
			t.Fatalf("Ready %+v", ready)
		}
		if f := inv.Status.Plan.Failure; f == nil || !strings.Contains(f.Output, "no space left on device") {
			t.Fatalf("failure %+v", f)
		}
		if _, err := os.Stat(filepath.Join(root, "after")); err == nil {
			t.Fatal("the instruction after the failing one ran")
		}
		// Retried with backoff (1s, 2s, 4s in this test).
		waitInventory(t, m.Client, key, 30*time.Second, func(inv *machinesv1.MachineInventory) error {
			if inv.Status.Plan.Attempts < 3 {
				return fmt.Errorf("%d attempts", inv.Status.Plan.Attempts)
			}
			return nil
		})
		// The cause is fixed on the machine: the next retry applies it.
		if err := os.WriteFile(filepath.Join(root, "space"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		inv = waitPlanState(t, m.Client, key, sum, machinesv1.PlanApplied, 30*time.Second)
		if inv.Status.Plan.Failure != nil || inv.Status.Plan.FailedChecksum != "" {
			t.Errorf("failure kept after the plan applied: %+v", inv.Status.Plan)
		}
		if _, err := os.Stat(filepath.Join(root, "after")); err != nil {
			t.Fatal("the rest of the plan did not run after the retry")
		}
	})

	t.Run("invalid plans: refused by the CLI, reported when written by hand", func(t *testing.T) {
		bad := writePlan(t, "bad", "files:\n- path: ../../etc/shadow\n  content: eA==\n")
		out, err := exec.Command(edgefleet, "machine", "plan", "apply", key.Name, "-n", key.Namespace, "-f", bad, "--kubeconfig", m.Kubeconfig).CombinedOutput()
		if err == nil || !strings.Contains(string(out), `files[0].path: "../../etc/shadow" is not absolute`) {
			t.Fatalf("CLI accepted an invalid plan: %v\n%s", err, out)
		}
		before := getInventory(t, m.Client, key).Status.Plan.Checksum
		if after := getInventory(t, m.Client, key).Status.Plan.Checksum; after != before {
			t.Fatal("the refused plan was written")
		}
		raw := []byte(`{"instructions":[{"name":"x","command":"/bin/true","timeoutSeconds":-3}]}`)
		var s corev1.Secret
		if err := m.Client.Get(ctx, key, &s); err != nil {
			t.Fatal(err)
		}
		s.Data[nodeplan.SecretKey] = raw
		if err := m.Client.Update(ctx, &s); err != nil {
			t.Fatal(err)
		}
		waitInventory(t, m.Client, key, 30*time.Second, func(inv *machinesv1.MachineInventory) error {
			if !meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.StalledCondition) || inv.Status.Plan.FailedChecksum != nodeplan.Checksum(raw) {
				return fmt.Errorf("conditions %+v plan %+v", inv.Status.Conditions, inv.Status.Plan)
			}
			if f := inv.Status.Plan.Failure; f == nil || !strings.Contains(f.Message, "invalid plan") {
				return fmt.Errorf("the machine did not report the invalid plan: %+v", f)
			}
			return nil
		})
	})

	t.Run("the machine's credential reads only its own plan and cannot forge the verdict", func(t *testing.T) {
		nodeCfg := restConfig(t, filepath.Join(cfg.StateDir, "kubeconfig"))
		as, err := client.New(nodeCfg, client.Options{Scheme: server.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		if err := as.Get(ctx, key, &corev1.Secret{}); err != nil {
			t.Fatalf("reading its own plan: %v", err)
		}
		for _, err := range []error{
			as.Get(ctx, client.ObjectKey{Namespace: l.ns, Name: "plans-registration-token"}, &corev1.Secret{}),
			as.List(ctx, &corev1.SecretList{}, client.InNamespace(l.ns)),
			as.Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: l.ns, Name: key.Name}}),
		} {
			if !apierrors.IsForbidden(err) {
				t.Errorf("the machine's credential was not refused: %v", err)
			}
		}
		// It can write its inventory's status, but not the manager's
		// verdict: a forged Ready and plan state are recomputed.
		before := getInventory(t, m.Client, key)
		forged := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": machinesv1.GroupVersion.String(), "kind": "MachineInventory",
			"metadata": map[string]any{"name": key.Name, "namespace": key.Namespace},
			"status": map[string]any{
				"conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "Forged", "message": "trust me", "lastTransitionTime": "2026-01-01T00:00:00Z"}},
				"plan":       map[string]any{"state": "Applied", "checksum": strings.Repeat("0", 64)},
			},
		}}
		if err := as.Status().Patch(ctx, forged, client.Apply, client.FieldOwner("forger"), client.ForceOwnership); err != nil {
			t.Fatalf("the machine could not write its own status: %v", err)
		}
		waitInventory(t, m.Client, key, 20*time.Second, func(inv *machinesv1.MachineInventory) error {
			r := meta.FindStatusCondition(inv.Status.Conditions, machinesv1.ReadyCondition)
			if r == nil || r.Reason == "Forged" || inv.Status.Plan.State != before.Status.Plan.State || inv.Status.Plan.Checksum != before.Status.Plan.Checksum {
				return fmt.Errorf("forged status kept: Ready %+v, plan %s/%s", r, inv.Status.Plan.Checksum, inv.Status.Plan.State)
			}
			return nil
		})
	})

	outer := t // the restarted manager must outlive its subtest
	t.Run("manager restarted mid-way: the agent catches up", func(t *testing.T) {
		plan := `instructions:
- name: slow
  command: /bin/sh
  args: ["-c", "touch \"$EDGEFLEET_PLAN_ROOT/slow-started\"; sleep 3; printf x >> \"$EDGEFLEET_PLAN_ROOT/slow\""]
periodicInstructions:
- name: heartbeat
  command: /bin/sh
  args: ["-c", "printf x >> \"$EDGEFLEET_PLAN_ROOT/heartbeat\""]
  periodSeconds: 1
`
		f := writePlan(t, "slow", plan)
		raw, _ := yaml.YAMLToJSON([]byte(plan))
		sum := nodeplan.Checksum(raw)
		out, err := exec.Command(edgefleet, "machine", "plan", "apply", key.Name, "-n", key.Namespace, "-f", f, "--kubeconfig", m.Kubeconfig).CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		waitFor(t, 30*time.Second, "the slow instruction to start", func() bool { _, err := os.Stat(filepath.Join(root, "slow-started")); return err == nil })
		m.Stop() // the plan finishes while the manager is down
		waitFor(t, 30*time.Second, "the slow instruction to finish with the manager down", func() bool { return strings.Count(marker("slow"), "x") == 1 })
		beats := strings.Count(marker("heartbeat"), "x")
		waitFor(t, 30*time.Second, "periodic instructions during the outage", func() bool { return strings.Count(marker("heartbeat"), "x") >= beats+2 })
		t0 := time.Now()
		m2 := harness.StartManager(outer, harness.ManagerOptions{DataDir: m.DataDir, Args: args})
		waitPlanState(t, m2.Client, key, sum, machinesv1.PlanApplied, 90*time.Second)
		t.Logf("status Applied %s after the manager restart began", time.Since(t0).Round(time.Millisecond))
		inv := getInventory(t, m2.Client, key)
		if len(inv.Status.Plan.PeriodicInstructions) != 1 || inv.Status.Plan.PeriodicInstructions[0].LastSuccessTime == nil {
			t.Errorf("periodic results %+v", inv.Status.Plan.PeriodicInstructions)
		}
		// The watch is back: a new plan still reaches the machine.
		m = m2
		applyPlan(t, "instructions:\n- name: after-restart\n  command: /bin/true\n")
	})

	t.Run("agent restarted: the applied plan is not run again", func(t *testing.T) {
		sum, _ := applyPlan(t, "instructions:\n- name: once\n  command: /bin/sh\n  args: [\"-c\", \"printf x >> \\\"$EDGEFLEET_PLAN_ROOT/once\\\"\"]\n")
		now, peak := agent.rssKiB(t)
		t.Logf("edgefleet-node agent RSS %s KiB now, %s KiB peak (after a dozen plans, a manager restart)", now, peak)
		agent.stop()
		agent = startNodeAgent(outer, node, cfgPath, root)
		waitFor(t, 30*time.Second, "the new agent to resume", func() bool { return strings.Contains(agent.out.String(), "Resuming the last plan") })
		time.Sleep(2 * time.Second)
		if n := strings.Count(marker("once"), "x"); n != 1 {
			t.Fatalf("the plan ran %d times across an agent restart", n)
		}
		waitPlanState(t, m.Client, key, sum, machinesv1.PlanApplied, 10*time.Second)
	})

	// A plan that reboots the machine: everything dies mid-instruction
	// (SIGKILL to the agent and the instruction); the agent started after
	// "boot" goes on with that instruction, never re-running finished ones.
	t.Run("machine rebooted mid-plan: the next agent resumes", func(t *testing.T) {
		plan := `instructions:
- name: before
  command: /bin/sh
  args: ["-c", "printf x >> \"$EDGEFLEET_PLAN_ROOT/r-before\""]
- name: reboot
  command: /bin/sh
  args: ["-c", "[ -f \"$EDGEFLEET_PLAN_ROOT/r-booted\" ] && exit 0; echo $$ > \"$EDGEFLEET_PLAN_ROOT/r-rebooting\"; sleep 60"]
- name: after
  command: /bin/sh
  args: ["-c", "printf x >> \"$EDGEFLEET_PLAN_ROOT/r-after\""]
`
		f := writePlan(t, "reboot", plan)
		raw, _ := yaml.YAMLToJSON([]byte(plan))
		sum := nodeplan.Checksum(raw)
		if out, err := exec.Command(edgefleet, "machine", "plan", "apply", key.Name, "-n", key.Namespace, "-f", f, "--kubeconfig", m.Kubeconfig).CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var pid int
		waitFor(t, 30*time.Second, "the reboot instruction", func() bool {
			_, err := fmt.Sscan(marker("r-rebooting"), &pid)
			return err == nil && pid > 0
		})
		_ = syscall.Kill(-agent.cmd.Process.Pid, syscall.SIGKILL) // power off
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-agent.done
		if err := os.WriteFile(filepath.Join(root, "r-booted"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		agent = startNodeAgent(outer, node, cfgPath, root)
		waitPlanState(t, m.Client, key, sum, machinesv1.PlanApplied, 60*time.Second)
		if b, a := strings.Count(marker("r-before"), "x"), strings.Count(marker("r-after"), "x"); b != 1 || a != 1 {
			t.Fatalf("before ran %d times, after %d: want once each", b, a)
		}
	})

	t.Run("inventory deleted: the agent stops with exit code 3", func(t *testing.T) {
		if err := m.Client.Delete(ctx, &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-agent.done:
		case <-time.After(90 * time.Second):
			t.Fatal("the agent of a deleted machine is still running")
		}
		if code := agent.cmd.ProcessState.ExitCode(); code != 3 || !strings.Contains(agent.out.String(), "re-provisioned") {
			t.Fatalf("exit code %d, output:\n%s", code, agent.out.String())
		}
	})
}

func getInventory(t *testing.T, c client.Client, key client.ObjectKey) *machinesv1.MachineInventory {
	t.Helper()
	var inv machinesv1.MachineInventory
	if err := c.Get(context.Background(), key, &inv); err != nil {
		t.Fatal(err)
	}
	return &inv
}

func waitInventory(t *testing.T, c client.Client, key client.ObjectKey, timeout time.Duration, check func(*machinesv1.MachineInventory) error) *machinesv1.MachineInventory {
	t.Helper()
	var inv machinesv1.MachineInventory
	waitUntil(t, timeout, func() error {
		if err := c.Get(context.Background(), key, &inv); err != nil {
			return err
		}
		return check(&inv)
	})
	return &inv
}

func waitPlanState(t *testing.T, c client.Client, key client.ObjectKey, sum string, state machinesv1.PlanState, timeout time.Duration) *machinesv1.MachineInventory {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var inv machinesv1.MachineInventory
		err := c.Get(context.Background(), key, &inv)
		if err == nil && inv.Status.Plan.Checksum == sum && inv.Status.Plan.State == state {
			return &inv
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: plan %s not %s: %v %+v %+v", timeout, sum[:12], state, err, inv.Status.Plan, inv.Status.Conditions)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// hostHasAddress reports whether ip is an address of one of this host's
// non-loopback interfaces.
func hostHasAddress(ip string) bool {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.String() == ip {
			return true
		}
	}
	return false
}
