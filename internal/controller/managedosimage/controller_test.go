package managedosimage_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/internal/controller/managedosimage"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

const (
	oldImage = "registry.example.com/os:v1"
	newImage = "registry.example.com/os:v2"
	ownPlan  = `{"instructions":[{"name":"own","command":"/bin/true"}]}`
)

// fleet is a namespace of simulated machines: the test writes what their
// node agents would report (plan applied, OS status). No machine runs.
type fleet struct {
	t  *testing.T
	c  client.Client
	ns string
}

func newFleet(t *testing.T, c client.Client, ns string, n int, labels map[string]string) *fleet {
	t.Helper()
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("m-%d", i)
	}
	return newNamedFleet(t, c, ns, names, labels)
}

func newNamedFleet(t *testing.T, c client.Client, ns string, names []string, labels map[string]string) *fleet {
	t.Helper()
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, c: c, ns: ns}
	for _, name := range names {
		inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
		if err := c.Create(ctx, inv); err != nil {
			t.Fatal(err)
		}
		s := machineregistration.PlanSecret(inv)
		s.Data[nodeplan.SecretKey] = []byte(ownPlan)
		if err := machineregistration.OwnFor(inv, s, c.Scheme()); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		f.report(inv.Name, func(st *machinesv1.MachineInventoryStatus) {
			st.OS = machinesv1.OSStatus{Image: oldImage, Version: "v1", ActiveSlot: "a", BootedSlot: "a"}
		})
	}
	return f
}

// report simulates the machine's node agent writing its status.
func (f *fleet) report(name string, change func(*machinesv1.MachineInventoryStatus)) {
	f.t.Helper()
	ctx := context.Background()
	ctrltest.Eventually(f.t, 10*time.Second, func() error {
		var inv machinesv1.MachineInventory
		if err := f.c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: name}, &inv); err != nil {
			return err
		}
		change(&inv.Status)
		return f.c.Status().Update(ctx, &inv)
	})
}

// succeed simulates a machine that upgraded and confirmed the new slot.
func (f *fleet) succeed(name string) {
	f.report(name, func(st *machinesv1.MachineInventoryStatus) {
		st.OS.Image, st.OS.Version, st.OS.ActiveSlot, st.OS.BootedSlot = newImage, "v2", "b", "b"
		st.OS.LastUpgrade = &machinesv1.OSUpgradeStatus{Image: newImage, Version: "v2", Slot: "b", Result: machinesv1.OSUpgradeSucceeded, Time: metav1.Now()}
	})
}

// rollBack simulates a machine whose new slot did not confirm a boot.
func (f *fleet) rollBack(name, image string) {
	f.report(name, func(st *machinesv1.MachineInventoryStatus) {
		st.OS.LastUpgrade = &machinesv1.OSUpgradeStatus{Image: image, Slot: "b", Result: machinesv1.OSUpgradeRolledBack, Time: metav1.Now(), Message: "slot b did not confirm a boot in 3 tries"}
	})
}

// upgrading is the machines whose plan Secret holds the upgrade plan (not
// those still draining).
func (f *fleet) upgrading() []string {
	f.t.Helper()
	var list corev1.SecretList
	if err := f.c.List(context.Background(), &list, client.InNamespace(f.ns)); err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, s := range list.Items {
		if s.Annotations[managedosimage.AnnotationUpgrade] != "" && s.Annotations[managedosimage.AnnotationPhase] != managedosimage.PhaseDraining {
			if !strings.Contains(string(s.Data[nodeplan.SecretKey]), "upgrade --image") || string(s.Data[managedosimage.PreviousPlanKey]) != ownPlan {
				f.t.Errorf("Secret %s: upgrade plan %q, kept plan %q", s.Name, s.Data[nodeplan.SecretKey], s.Data[managedosimage.PreviousPlanKey])
			}
			out = append(out, strings.TrimSuffix(s.Name, "-plan"))
		}
	}
	return out
}

func (f *fleet) plan(name string) string {
	var inv machinesv1.MachineInventory
	inv.Name, inv.Namespace = name, f.ns
	var s corev1.Secret
	if err := f.c.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: machineregistration.PlanName(&inv)}, &s); err != nil {
		f.t.Fatal(err)
	}
	return string(s.Data[nodeplan.SecretKey])
}

// waitFor waits until the ManagedOSImage's status satisfies check.
func (f *fleet) waitFor(name string, check func(*machinesv1.ManagedOSImage) error) *machinesv1.ManagedOSImage {
	f.t.Helper()
	var m machinesv1.ManagedOSImage
	ctrltest.Eventually(f.t, 20*time.Second, func() error {
		if err := f.c.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, &m); err != nil {
			return err
		}
		if m.Status.ObservedGeneration != m.Generation {
			return fmt.Errorf("generation %d not observed yet", m.Generation)
		}
		return check(&m)
	})
	return &m
}

func condition(typ, reason string, contains ...string) func(*machinesv1.ManagedOSImage) error {
	return func(m *machinesv1.ManagedOSImage) error {
		c := meta.FindStatusCondition(m.Status.Conditions, typ)
		if c == nil || c.Reason != reason {
			return fmt.Errorf("%s is %+v, want reason %s", typ, c, reason)
		}
		for _, s := range contains {
			if !strings.Contains(c.Message, s) {
				return fmt.Errorf("%s message %q does not say %q", typ, c.Message, s)
			}
		}
		return nil
	}
}

func mosi(ns, name string, concurrency int32, sel map[string]string) *machinesv1.ManagedOSImage {
	return &machinesv1.ManagedOSImage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: machinesv1.ManagedOSImageSpec{
		OSImage: newImage, Concurrency: concurrency, Targets: machinesv1.ManagedOSImageTargets{Selector: &metav1.LabelSelector{MatchLabels: sel}},
	}}
}

func TestManagedOSImageRollout(t *testing.T) {
	c := ctrltest.Start(t, func(m ctrl.Manager) error {
		cs, err := kubernetes.NewForConfig(m.GetConfig())
		if err != nil {
			return err
		}
		return (&managedosimage.Reconciler{Nodes: sameCluster{cs}}).SetupWithManager(m)
	})
	ctx := context.Background()
	shop := map[string]string{"site": "shop"}

	t.Run("concurrency, then a rollback halts the rollout and names the machine", func(t *testing.T) {
		f := newFleet(t, c, "rollout", 4, shop)
		if err := c.Create(ctx, mosi(f.ns, "v2", 2, shop)); err != nil {
			t.Fatal(err)
		}
		f.waitFor("v2", condition(machinesv1.ReconcilingCondition, machinesv1.RolloutProgressingReason, "0/4"))
		if got := f.upgrading(); strings.Join(got, ",") != "m-0,m-1" {
			t.Fatalf("upgrading %v, want m-0,m-1 (concurrency 2)", got)
		}
		f.succeed("m-0")
		f.waitFor("v2", condition(machinesv1.ReconcilingCondition, machinesv1.RolloutProgressingReason, "1/4"))
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if got := strings.Join(f.upgrading(), ","); got != "m-1,m-2" {
				return fmt.Errorf("upgrading %s, want m-1,m-2", got)
			}
			if p := f.plan("m-0"); p != ownPlan {
				return fmt.Errorf("m-0's plan is %q, want its own plan back", p)
			}
			return nil
		})
		f.rollBack("m-1", newImage)
		m := f.waitFor("v2", condition(machinesv1.StalledCondition, machinesv1.MachineRolledBackReason, "m-1", "did not confirm"))
		if m.Status.Failed != 1 || m.Status.Upgraded != 1 {
			t.Errorf("counts upgraded %d failed %d, want 1 and 1", m.Status.Upgraded, m.Status.Failed)
		}
		f.succeed("m-2")
		// The machine upgrading at the halt finishes; nothing else starts.
		f.waitFor("v2", func(m *machinesv1.ManagedOSImage) error {
			if m.Status.Upgraded != 2 {
				return fmt.Errorf("upgraded %d, want 2", m.Status.Upgraded)
			}
			return condition(machinesv1.StalledCondition, machinesv1.MachineRolledBackReason, "m-1")(m)
		})
		time.Sleep(time.Second)
		if got := f.upgrading(); len(got) != 0 {
			t.Errorf("upgrading %v after the halt, want none (m-3 must not start)", got)
		}
		if p := f.plan("m-1"); p != ownPlan {
			t.Errorf("the rolled-back machine's plan is %q, want its own plan back", p)
		}
	})

	t.Run("a failed image write halts the rollout", func(t *testing.T) {
		f := newFleet(t, c, "failing", 2, shop)
		if err := c.Create(ctx, mosi(f.ns, "v2", 1, shop)); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if len(f.upgrading()) != 1 {
				return fmt.Errorf("upgrading %v", f.upgrading())
			}
			return nil
		})
		f.report("m-0", func(st *machinesv1.MachineInventoryStatus) {
			st.OS.LastUpgrade = &machinesv1.OSUpgradeStatus{Image: newImage, Result: machinesv1.OSUpgradeFailed, Message: "pulling: manifest unknown"}
		})
		f.waitFor("v2", condition(machinesv1.StalledCondition, machinesv1.MachineUpgradeFailedReason, "m-0", "manifest unknown"))
		time.Sleep(time.Second)
		if got := f.upgrading(); len(got) != 0 {
			t.Errorf("upgrading %v after the failure, want none", got)
		}
	})

	t.Run("a failed upgrade plan halts the rollout and keeps the end of its output", func(t *testing.T) {
		f := newFleet(t, c, "planfail", 1, shop)
		if err := c.Create(ctx, mosi(f.ns, "v2", 1, shop)); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if len(f.upgrading()) != 1 {
				return fmt.Errorf("upgrading %v", f.upgrading())
			}
			return nil
		})
		sum := nodeplan.Checksum([]byte(f.plan("m-0")))
		f.report("m-0", func(st *machinesv1.MachineInventoryStatus) {
			st.Plan.Checksum, st.Plan.FailedChecksum = sum, sum
			st.Plan.Failure = &machinesv1.PlanFailure{Instruction: managedosimage.InstructionName, ExitCode: 1, Message: "instruction os-upgrade exited with code 1",
				Output: strings.Repeat("progress line\n", 100) + "edgefleet-node: mounting EF_STATE: device busy\n"}
		})
		f.waitFor("v2", condition(machinesv1.StalledCondition, machinesv1.MachineUpgradeFailedReason, "m-0", "exit code 1", "output ends: ...", "mounting EF_STATE: device busy"))
	})

	t.Run("paused starts nothing; unpaused completes", func(t *testing.T) {
		f := newFleet(t, c, "paused", 2, shop)
		m := mosi(f.ns, "v2", 5, shop)
		m.Spec.Paused = true
		if err := c.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		f.waitFor("v2", condition(machinesv1.ReadyCondition, machinesv1.RolloutPausedReason, "0/2"))
		if got := f.upgrading(); len(got) != 0 {
			t.Fatalf("paused rollout started %v", got)
		}
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
				return err
			}
			m.Spec.Paused = false
			return c.Update(ctx, m)
		})
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if len(f.upgrading()) != 2 {
				return fmt.Errorf("upgrading %v, want both", f.upgrading())
			}
			return nil
		})
		f.succeed("m-0")
		f.succeed("m-1")
		got := f.waitFor("v2", condition(machinesv1.ReadyCondition, machinesv1.RolloutCompleteReason, "all 2"))
		if meta.IsStatusConditionTrue(got.Status.Conditions, machinesv1.ReconcilingCondition) || got.Status.Upgraded != 2 || got.Status.Total != 2 {
			t.Errorf("complete rollout status %+v", got.Status)
		}
	})

	t.Run("a machine whose previous upgrade rolled back is held unless allowed", func(t *testing.T) {
		f := newFleet(t, c, "held", 2, shop)
		f.rollBack("m-1", "registry.example.com/os:v1.5")
		m := mosi(f.ns, "v2", 2, shop)
		if err := c.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if got := strings.Join(f.upgrading(), ","); got != "m-0" {
				return fmt.Errorf("upgrading %s, want only m-0", got)
			}
			return nil
		})
		f.succeed("m-0")
		f.waitFor("v2", condition(machinesv1.ReadyCondition, machinesv1.MachinesHeldReason, "m-1", "allowRetryAfterRollback"))
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
				return err
			}
			m.Spec.AllowRetryAfterRollback = true
			return c.Update(ctx, m)
		})
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if got := strings.Join(f.upgrading(), ","); got != "m-1" {
				return fmt.Errorf("upgrading %s, want m-1", got)
			}
			return nil
		})
	})

	t.Run("a machine without a plan Secret waits and the others upgrade", func(t *testing.T) {
		f := newFleet(t, c, "noplan", 2, shop)
		var inv machinesv1.MachineInventory
		inv.Name, inv.Namespace = "m-0", f.ns
		if err := c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: machineregistration.PlanName(&inv)}}); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, mosi(f.ns, "v2", 2, shop)); err != nil {
			t.Fatal(err)
		}
		f.waitFor("v2", func(m *machinesv1.ManagedOSImage) error {
			if got := strings.Join(f.upgrading(), ","); got != "m-1" {
				return fmt.Errorf("upgrading %s, want m-1 only", got)
			}
			for _, ms := range m.Status.Machines {
				if ms.Name == "m-0" && ms.State == machinesv1.MachineUpgradeWaiting && strings.Contains(ms.Message, "no plan Secret") {
					return nil
				}
			}
			return fmt.Errorf("m-0 not listed as waiting for its plan Secret: %+v", m.Status.Machines)
		})
	})

	t.Run("a selector matching nothing says so", func(t *testing.T) {
		f := newFleet(t, c, "nomatch", 1, shop)
		if err := c.Create(ctx, mosi(f.ns, "v2", 1, map[string]string{"site": "moon"})); err != nil {
			t.Fatal(err)
		}
		f.waitFor("v2", condition(machinesv1.ReadyCondition, machinesv1.NoMachinesSelectedReason, "site=moon", "matches no MachineInventory"))
	})

	t.Run("an unknown version stalls until it exists", func(t *testing.T) {
		f := newFleet(t, c, "version", 1, shop)
		m := mosi(f.ns, "v2", 1, shop)
		m.Spec.OSImage, m.Spec.ManagedOSVersionName = "", "os-v2"
		if err := c.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		f.waitFor("v2", condition(machinesv1.StalledCondition, machinesv1.VersionNotFoundReason, `"os-v2" does not exist`))
		if got := f.upgrading(); len(got) != 0 {
			t.Fatalf("started %v without a version", got)
		}
		v := &machinesv1.ManagedOSVersion{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "os-v2"}, Spec: machinesv1.ManagedOSVersionSpec{Version: "v2", Metadata: machinesv1.ManagedOSVersionMetadata{UpgradeImage: newImage}}}
		if err := c.Create(ctx, v); err != nil {
			t.Fatal(err)
		}
		got := f.waitFor("v2", condition(machinesv1.ReconcilingCondition, machinesv1.RolloutProgressingReason))
		if got.Status.Image != newImage || len(f.upgrading()) != 1 {
			t.Errorf("image %q, upgrading %v", got.Status.Image, f.upgrading())
		}
	})

	t.Run("deleting a rollout gives the machines their plans back", func(t *testing.T) {
		f := newFleet(t, c, "cancel", 1, shop)
		m := mosi(f.ns, "v2", 1, shop)
		if err := c.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if len(f.upgrading()) != 1 {
				return fmt.Errorf("upgrading %v", f.upgrading())
			}
			return nil
		})
		if err := c.Delete(ctx, m); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if p := f.plan("m-0"); p != ownPlan {
				return fmt.Errorf("plan %q, want the machine's own", p)
			}
			return nil
		})
	})

	// Machines that are Kubernetes nodes of a formed cluster (drain_test.go).
	t.Run("cordon and drain", func(t *testing.T) { testCordonDrain(t, c) })
}

func TestUpgradePlanIsAValidPlanRunningTheNodeUpgrade(t *testing.T) {
	raw, err := managedosimage.UpgradePlan("uid-1", newImage)
	if err != nil {
		t.Fatal(err)
	}
	p, err := nodeplan.Parse(raw)
	if err != nil {
		t.Fatalf("the upgrade plan does not parse: %v", err)
	}
	in := p.Instructions[0]
	if in.Args[len(in.Args)-1] != newImage || !strings.Contains(in.Args[1], "upgrade --image") || !strings.Contains(in.Args[1], "--reboot") {
		t.Errorf("instruction %+v does not run edgefleet-node upgrade of %s", in, newImage)
	}
	other, _ := managedosimage.UpgradePlan("uid-2", newImage)
	if string(other) == string(raw) {
		t.Error("two rollouts of one image share a marker: the second would be a no-op")
	}
}

// TestUpgradeInstructionRunsTheUpgradeOnce runs the upgrade plan's
// instruction with /bin/sh, as the node agent does, against a stand-in
// edgefleet-node on PATH (named as such: it records its arguments and
// "reboots" by dying). The node agent runs an interrupted instruction again
// after the reboot: that second run must not upgrade again.
func TestUpgradeInstructionRunsTheUpgradeOnce(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	fake := "#!/bin/sh\necho \"$@\" >> " + calls + "\nkill -TERM $$\n"
	if err := os.WriteFile(filepath.Join(dir, managedosimage.NodeBinary), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	raw, err := managedosimage.UpgradePlan("uid-1", newImage)
	if err != nil {
		t.Fatal(err)
	}
	p, err := nodeplan.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	in := p.Instructions[0]
	args := slices.Clone(in.Args)
	// The marker directory is /var/lib/edgefleet/os-upgrade on a machine.
	args[1] = strings.ReplaceAll(args[1], managedosimage.MarkerDir, filepath.Join(dir, "markers"))
	run := func() error {
		cmd := exec.Command(in.Command, args...)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		return cmd.Run()
	}
	if err := run(); err == nil {
		t.Fatal("first run: want it killed by the (stand-in) reboot")
	}
	if err := run(); err != nil {
		t.Fatalf("second run after the reboot: %v, want a no-op success", err)
	}
	got, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	if want := "upgrade --image " + newImage + " --reboot\n"; string(got) != want {
		t.Errorf("edgefleet-node called with %q, want once %q", got, want)
	}
}
