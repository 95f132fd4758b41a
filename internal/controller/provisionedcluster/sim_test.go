package provisionedcluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/provisioning/render"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// simMachines are simulated machines (no node agent runs): the test
// creates their MachineInventories and plan Secrets as registration does,
// and a loop plays each machine's node agent, writing status.plan (applied
// or failed, the kubelet probe) and status.network as the real agent
// reports them. Applying a plan is instantaneous; a machine can be told to
// fail its next plan.
type simMachines struct {
	t  *testing.T
	c  client.Client
	ns string

	mu      sync.Mutex
	failing map[string]bool
	// dead machines apply nothing (powered off).
	dead map[string]bool
	// applied is every plan application in order: "machine@version".
	applied []string
	// ran is every instruction of every applied plan: "machine: name args".
	ran []string
}

func newSim(t *testing.T, c client.Client, ns string) *simMachines {
	t.Helper()
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	s := &simMachines{t: t, c: c, ns: ns, failing: map[string]bool{}, dead: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			s.step(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// add registers a machine: inventory with labels, Registered, its address,
// and its (empty) plan Secret owned by it.
func (s *simMachines) add(name string, labels map[string]string, addr string) {
	s.t.Helper()
	ctx := context.Background()
	inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: name, Labels: labels}}
	if err := s.c.Create(ctx, inv); err != nil {
		s.t.Fatal(err)
	}
	sec := machineregistration.PlanSecret(inv)
	if err := machineregistration.OwnFor(inv, sec, s.c.Scheme()); err != nil {
		s.t.Fatal(err)
	}
	if err := s.c.Create(ctx, sec); err != nil {
		s.t.Fatal(err)
	}
	s.report(name, func(st *machinesv1.MachineInventoryStatus) {
		st.Network = machinesv1.NetworkStatus{PrimaryAddress: addr, Addresses: []string{addr}}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: machinesv1.RegisteredCondition, Status: metav1.ConditionTrue, Reason: "Registered", Message: "simulated"})
	})
}

// report writes a machine's status as its node agent and the registration
// endpoint would, retrying conflicts with the MachineInventory controller.
func (s *simMachines) report(name string, change func(*machinesv1.MachineInventoryStatus)) {
	s.t.Helper()
	ctrltest.Eventually(s.t, 10*time.Second, func() error {
		inv := &machinesv1.MachineInventory{}
		if err := s.c.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: name}, inv); err != nil {
			return err
		}
		change(&inv.Status)
		return s.c.Status().Update(context.Background(), inv)
	})
}

// waitReady waits until the MachineInventory controller judged every
// machine of the namespace Ready (adoptable), so tests choose machines by
// name, not by timing.
func (s *simMachines) waitReady() {
	s.t.Helper()
	ctrltest.Eventually(s.t, 20*time.Second, func() error {
		var invs machinesv1.MachineInventoryList
		if err := s.c.List(context.Background(), &invs, client.InNamespace(s.ns)); err != nil {
			return err
		}
		for _, inv := range invs.Items {
			if !meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.ReadyCondition) {
				return fmt.Errorf("MachineInventory %s is not Ready yet: %+v", inv.Name, inv.Status.Conditions)
			}
		}
		return nil
	})
}

func (s *simMachines) failNext(name string, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing[name] = fail
}

// kill powers a machine off: it applies no plan any more.
func (s *simMachines) kill(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead[name] = true
}

func (s *simMachines) history() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.applied...)
}

func (s *simMachines) instructions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ran...)
}

// step applies every machine's new plan once.
func (s *simMachines) step(ctx context.Context) {
	var invs machinesv1.MachineInventoryList
	if err := s.c.List(ctx, &invs, client.InNamespace(s.ns)); err != nil {
		return
	}
	for i := range invs.Items {
		inv := &invs.Items[i]
		var sec corev1.Secret
		if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: machineregistration.PlanName(inv)}, &sec); err != nil {
			continue
		}
		raw := sec.Data[nodeplan.SecretKey]
		sum := nodeplan.Checksum(raw)
		st := &inv.Status.Plan
		if st.AppliedChecksum == sum {
			continue
		}
		p, err := nodeplan.Parse(raw)
		if err != nil {
			continue
		}
		s.mu.Lock()
		// Only a formation plan fails: the empty plan of a fresh machine applies.
		fail := s.failing[inv.Name] && len(p.Instructions) > 0
		dead := s.dead[inv.Name]
		s.mu.Unlock()
		if dead {
			continue
		}
		// A failed plan is retried (the real planner backs off) once the
		// machine no longer fails.
		if fail && st.FailedChecksum == sum {
			continue
		}
		now := metav1.Now()
		if fail {
			st.FailedChecksum = sum
			st.Failure = &machinesv1.PlanFailure{Instruction: "kubernetes", ExitCode: 1, Message: "simulated: kubelet did not become healthy", Time: &now}
		} else {
			st.AppliedChecksum, st.FailedChecksum, st.Failure = sum, "", nil
			st.LastAppliedTime = &now
			st.Probes = nil
			if len(p.Probes) > 0 {
				st.Probes = []machinesv1.PlanProbeStatus{{Name: render.ProbeKubelet, Healthy: true, SuccessCount: 1}}
			}
		}
		if err := s.c.Status().Update(ctx, inv); err != nil {
			continue // a conflict: next round
		}
		if !fail && len(p.Files)+len(p.Instructions) > 0 {
			s.mu.Lock()
			s.applied = append(s.applied, inv.Name+"@"+planVersion(p))
			for _, in := range p.Instructions {
				s.ran = append(s.ran, inv.Name+": "+in.Name+" "+strings.Join(in.Args, " "))
			}
			s.mu.Unlock()
		}
	}
}

// planVersion is the Kubernetes version a plan installs.
func planVersion(p *nodeplan.Plan) string {
	for _, f := range p.Files {
		if f.Path == kubedistro.ConfigPath {
			var nc kubedistro.NodeConfig
			if json.Unmarshal(f.Data(), &nc) == nil {
				return nc.Version
			}
		}
	}
	for _, in := range p.Instructions {
		for _, e := range in.Env {
			if v, ok := strings.CutPrefix(e, "INSTALL_K3S_VERSION="); ok {
				return v
			}
			if v, ok := strings.CutPrefix(e, "INSTALL_RKE2_VERSION="); ok {
				return v
			}
		}
	}
	return fmt.Sprintf("(%d files)", len(p.Files))
}

// nodeConfig is the NodeConfig in a machine's current plan (nil when none).
func nodeConfig(t *testing.T, c client.Client, ns, machine string) *kubedistro.NodeConfig {
	t.Helper()
	for _, f := range planOf(t, c, ns, machine).Files {
		if f.Path == kubedistro.ConfigPath {
			nc, err := kubedistro.Parse(f.Data())
			if err != nil {
				t.Fatalf("machine %s's NodeConfig: %v", machine, err)
			}
			return nc
		}
	}
	return nil
}

// planOf is a machine's current plan.
func planOf(t *testing.T, c client.Client, ns, machine string) *nodeplan.Plan {
	t.Helper()
	var sec corev1.Secret
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: machineregistration.PlanName(&machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Name: machine}})}, &sec); err != nil {
		t.Fatal(err)
	}
	p, err := nodeplan.Parse(sec.Data[nodeplan.SecretKey])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// planFile is the content of the file at path in a machine's current plan.
func planFile(t *testing.T, c client.Client, ns, machine, path string) []byte {
	t.Helper()
	for _, f := range planOf(t, c, ns, machine).Files {
		if f.Path == path {
			return f.Data()
		}
	}
	t.Fatalf("machine %s's plan has no %s", machine, path)
	return nil
}
