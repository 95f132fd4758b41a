package provisionedcluster_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
)

// testHeartbeat is the Reconciler's NodeAgentHeartbeat in TestRemediation:
// the simulated agents below refresh lastSeen more often than that.
const testHeartbeat = time.Second

// agents plays the machines' node agents' heartbeats: every live machine's
// MachineInventory status.lastSeen is refreshed every 400ms; a muted one
// goes silent.
type agents struct {
	mu    sync.Mutex
	muted map[string]bool
}

func nodeAgents(t *testing.T, c client.Client, ns string) *agents {
	a := &agents{muted: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var invs machinesv1.MachineInventoryList
			if err := c.List(ctx, &invs, client.InNamespace(ns)); err == nil {
				for i := range invs.Items {
					inv := &invs.Items[i]
					a.mu.Lock()
					muted := a.muted[inv.Name]
					a.mu.Unlock()
					if muted {
						continue
					}
					inv.Status.LastSeen = metav1.Now()
					_ = c.Status().Update(ctx, inv) // a conflict: next round
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(400 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

func (a *agents) mute(name string, muted bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.muted[name] = muted
}

// silentChecks: nodes never judged unhealthy (their conditions are not
// watched), the node agent silent for 4s is.
func silentChecks(maxUnhealthy string) *provisioningv1.HealthCheck {
	hc := fastChecks(maxUnhealthy)
	hc.UnhealthyNodeConditions = []provisioningv1.UnhealthyNodeCondition{{Type: "Ready", Status: "False", Timeout: metav1.Duration{Duration: time.Hour}}}
	hc.NodeAgentSilentTimeout = &metav1.Duration{Duration: 4 * time.Second}
	return hc
}

// testNodeAgentSilent runs in TestRemediation's manager (its reconciler's
// NodeAgentHeartbeat is testHeartbeat).
func testNodeAgentSilent(t *testing.T, c client.Client, n nodes) {
	cp := pool(1, map[string]string{"role": "server"})
	workers := func(replicas int32, hc *provisioningv1.HealthCheck) []provisioningv1.WorkerPool {
		p := pool(replicas, map[string]string{"role": "worker"})
		p.HealthCheck = hc
		return []provisioningv1.WorkerPool{{Name: "default", MachinePool: p}}
	}
	noRemediation := func(ns string, names ...string) func() error {
		return func() error {
			for _, name := range names {
				cm, err := machineOf(t, c, ns, name)
				if err != nil {
					return fmt.Errorf("ClusterMachine %s: %w", name, err)
				}
				if cm.Status.Remediation != nil {
					return fmt.Errorf("ClusterMachine %s remediation %+v", name, cm.Status.Remediation)
				}
			}
			return nil
		}
	}

	t.Run("a machine whose node agent is silent is replaced by a spare", func(t *testing.T) {
		ns := "silent-one"
		sim := newSim(t, c, ns)
		a := nodeAgents(t, c, ns)
		formed(t, c, sim, n, ns, "quiet", provisioningv1.ProvisionedClusterSpec{ControlPlane: cp, Workers: workers(1, silentChecks(""))},
			map[string]string{"h-s0": "server", "h-w0": "worker", "h-w1": "worker"})
		// Its node stays Ready: only the agent stops reporting.
		a.mute("h-w0", true)
		waitReplaced(t, c, n, ns, "quiet", "h-w0", "h-w1")
		waitEvent(t, c, ns, "h-w0", provisioningv1.NodeAgentSilentReason, "the node agent of machine h-w0 has not reported for")
	})

	t.Run("a node agent that speaks again before the timeout is left alone", func(t *testing.T) {
		ns := "silent-back"
		sim := newSim(t, c, ns)
		a := nodeAgents(t, c, ns)
		formed(t, c, sim, n, ns, "back", provisioningv1.ProvisionedClusterSpec{ControlPlane: cp, Workers: workers(1, silentChecks(""))},
			map[string]string{"i-s0": "server", "i-w0": "worker", "i-w1": "worker"})
		a.mute("i-w0", true)
		time.Sleep(2500 * time.Millisecond) // past two heartbeats, short of 4s
		a.mute("i-w0", false)
		stays(t, 6*time.Second, func() error {
			if err := noRemediation(ns, "i-w0")(); err != nil {
				return err
			}
			if _, err := machineOf(t, c, ns, "i-w1"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("spare i-w1 adopted though i-w0's agent spoke again in time (%v)", err)
			}
			return nil
		})
		if cm, _ := machineOf(t, c, ns, "i-w0"); !meta.IsStatusConditionTrue(cm.Status.Conditions, provisioningv1.HealthCheckSucceededCondition) {
			t.Fatalf("i-w0 HealthCheckSucceeded = %+v", meta.FindStatusCondition(cm.Status.Conditions, provisioningv1.HealthCheckSucceededCondition))
		}
	})

	t.Run("many silent node agents at once short-circuit", func(t *testing.T) {
		ns := "silent-many"
		sim := newSim(t, c, ns)
		a := nodeAgents(t, c, ns)
		formed(t, c, sim, n, ns, "hush", provisioningv1.ProvisionedClusterSpec{ControlPlane: cp, Workers: workers(2, silentChecks("1"))},
			map[string]string{"j-s0": "server", "j-w0": "worker", "j-w1": "worker", "j-w2": "worker"})
		a.mute("j-w0", true)
		a.mute("j-w1", true)
		pc := waitCondition(t, c, ns, "hush", provisioningv1.RemediationAllowedCondition, metav1.ConditionFalse, provisioningv1.TooManyUnhealthyReason, 30*time.Second)
		if msg := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.RemediationAllowedCondition).Message; !strings.Contains(msg, "2 of 2 machines unhealthy (j-w0 (node agent silent ") || !strings.Contains(msg, ", j-w1 (node agent silent ") {
			t.Fatalf("RemediationAllowed message %q", msg)
		}
		stays(t, 5*time.Second, func() error {
			if err := noRemediation(ns, "j-w0", "j-w1")(); err != nil {
				return fmt.Errorf("%w while short-circuited", err)
			}
			if _, err := machineOf(t, c, ns, "j-w2"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("spare j-w2 adopted while short-circuited (%v)", err)
			}
			return nil
		})
		// One agent speaks again: the other machine is replaced.
		a.mute("j-w0", false)
		waitReplaced(t, c, n, ns, "hush", "j-w1", "j-w2")
	})

	t.Run("a timeout shorter than three heartbeats is refused", func(t *testing.T) {
		ns := "silent-short"
		sim := newSim(t, c, ns)
		hc := silentChecks("")
		hc.NodeAgentSilentTimeout = &metav1.Duration{Duration: 2 * time.Second}
		formed(t, c, sim, n, ns, "hasty", provisioningv1.ProvisionedClusterSpec{ControlPlane: cp, Workers: workers(1, hc)},
			map[string]string{"k-s0": "server", "k-w0": "worker"})
		pc := waitCondition(t, c, ns, "hasty", provisioningv1.RemediationAllowedCondition, metav1.ConditionFalse, provisioningv1.InvalidSpecReason, 30*time.Second)
		if msg := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.RemediationAllowedCondition).Message; !strings.Contains(msg, "nodeAgentSilentTimeout 2s is shorter than 3s") {
			t.Fatalf("RemediationAllowed message %q", msg)
		}
	})
}
