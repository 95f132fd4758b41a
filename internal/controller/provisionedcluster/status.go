package provisionedcluster

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/provisioning/render"
)

// linkFleetCluster finds the fleet Cluster the cluster's join token
// created, labels it with the ProvisionedCluster and spec.fleet.labels, and
// records it in status.fleetClusterRef.
func (f *formation) linkFleetCluster(ctx context.Context) error {
	var list fleetv1.ClusterList
	if err := f.r.Client.List(ctx, &list, client.InNamespace(f.pc.Namespace), client.MatchingFields{registrationTokenIndex: f.pc.Name + joinTokenSuffix}); err != nil {
		return err
	}
	if len(list.Items) == 0 {
		return nil
	}
	fc := &list.Items[0]
	want := maps.Clone(fc.Labels)
	if want == nil {
		want = map[string]string{}
	}
	maps.Copy(want, f.pc.Spec.Fleet.Labels)
	want[provisioningv1.ClusterLabel] = f.pc.Name
	if !maps.Equal(want, fc.Labels) {
		before := fc.DeepCopy()
		fc.Labels = want
		if err := f.r.Client.Patch(ctx, fc, client.MergeFrom(before)); err != nil {
			return err
		}
	}
	f.pc.Status.FleetClusterRef = &provisioningv1.LocalObjectReference{Name: fc.Name}
	f.fleetCluster = fc
	return nil
}

// machineStatuses sets each ClusterMachine's conditions from its
// inventory's report and writes them.
func (f *formation) machineStatuses(ctx context.Context) error {
	want := f.pc.Spec.Version
	for _, m := range f.machines {
		st, gen := &m.cm.Status, m.cm.Generation
		if m.inv == nil {
			continue
		}
		conditions.Set(&st.Conditions, provisioningv1.AdoptedCondition, metav1.ConditionTrue, provisioningv1.ClaimedReason,
			fmt.Sprintf("MachineInventory %s is claimed for pool %s", m.inv.Name, m.cm.Spec.Pool), gen)
		st.NodeName, st.Address = m.inv.Name, Address(m.inv)
		plan := m.inv.Status.Plan
		switch {
		case m.held:
			// A ManagedOSImage upgrade runs its own plan: what the machine
			// reports is about that one; keep the last judgement.
		case st.PlanChecksum == "":
			reason, msg := m.wait.reason, m.wait.message
			if reason == "" {
				reason, msg = provisioningv1.BootstrappingReason, "the plan is not written yet"
			}
			conditions.Set(&st.Conditions, provisioningv1.BootstrappedCondition, metav1.ConditionFalse, reason, msg, gen)
		case plan.AppliedChecksum == st.PlanChecksum:
			st.Version = m.cm.Spec.Version
			conditions.Set(&st.Conditions, provisioningv1.BootstrappedCondition, metav1.ConditionTrue, provisioningv1.SucceededReason,
				fmt.Sprintf("the machine applied its %s plan at %s", f.pc.Spec.Distro, m.cm.Spec.Version), gen)
		case plan.FailedChecksum == st.PlanChecksum:
			msg := "the machine failed its plan"
			if plan.Failure != nil {
				msg = fmt.Sprintf("the machine failed its plan: instruction %q: %s", plan.Failure.Instruction, plan.Failure.Message)
			}
			conditions.Set(&st.Conditions, provisioningv1.BootstrappedCondition, metav1.ConditionFalse, provisioningv1.BootstrapFailedReason, msg, gen)
		default:
			conditions.Set(&st.Conditions, provisioningv1.BootstrappedCondition, metav1.ConditionFalse, provisioningv1.BootstrappingReason,
				fmt.Sprintf("waiting for the machine to apply its plan at %s (checksum %.12s)", m.cm.Spec.Version, st.PlanChecksum), gen)
		}
		healthy, probeErr, seen := false, "", false
		for _, p := range plan.Probes {
			if p.Name == render.ProbeKubelet {
				healthy, probeErr, seen = p.Healthy, p.LastError, true
			}
		}
		node, registered := f.nodes[m.inv.Name]
		switch {
		case m.held:
		case healthy && f.nodes != nil && !registered:
			conditions.Set(&st.Conditions, provisioningv1.NodeReadyCondition, metav1.ConditionFalse, provisioningv1.NodeNotReadyReason,
				"the kubelet is healthy but node "+m.inv.Name+" is not registered in the cluster", gen)
		case healthy && f.nodes != nil && !node.Ready:
			conditions.Set(&st.Conditions, provisioningv1.NodeReadyCondition, metav1.ConditionFalse, provisioningv1.NodeNotReadyReason,
				"node "+m.inv.Name+" is not Ready: "+node.Message, gen)
		case healthy && f.nodes != nil:
			conditions.Set(&st.Conditions, provisioningv1.NodeReadyCondition, metav1.ConditionTrue, provisioningv1.SucceededReason, "the kubelet is healthy (probe kubelet) and node "+m.inv.Name+" is Ready", gen)
		case healthy:
			conditions.Set(&st.Conditions, provisioningv1.NodeReadyCondition, metav1.ConditionTrue, provisioningv1.SucceededReason, "the kubelet is healthy (probe kubelet)", gen)
		case !seen:
			conditions.Set(&st.Conditions, provisioningv1.NodeReadyCondition, metav1.ConditionFalse, provisioningv1.BootstrappingReason, "the machine has not reported its kubelet probe yet", gen)
		default:
			conditions.Set(&st.Conditions, provisioningv1.NodeReadyCondition, metav1.ConditionFalse, provisioningv1.KubeletUnhealthyReason, "the kubelet probe fails: "+probeErr, gen)
		}
		switch {
		case st.Version == want && m.cm.Spec.Version == want:
			conditions.Set(&st.Conditions, provisioningv1.UpgradedCondition, metav1.ConditionTrue, provisioningv1.SucceededReason, "runs "+want, gen)
		case st.Version == "":
			conditions.Set(&st.Conditions, provisioningv1.UpgradedCondition, metav1.ConditionFalse, provisioningv1.BootstrappingReason, "not bootstrapped yet", gen)
		case f.failed(m):
			conditions.Set(&st.Conditions, provisioningv1.UpgradedCondition, metav1.ConditionFalse, provisioningv1.UpgradeFailedReason, "failed at "+m.cm.Spec.Version, gen)
		case m.cm.Spec.Version == want:
			conditions.Set(&st.Conditions, provisioningv1.UpgradedCondition, metav1.ConditionFalse, provisioningv1.UpgradingReason, "moving to "+want, gen)
		default:
			conditions.Set(&st.Conditions, provisioningv1.UpgradedCondition, metav1.ConditionFalse, provisioningv1.PendingUpgradeReason,
				fmt.Sprintf("runs %s; waits for its turn to move to %s", m.cm.Spec.Version, want), gen)
		}
		// kstatus: a failed plan is Stalled (the rollout halts on it); any
		// other not-Ready machine is Reconciling, as formation works on it.
		if c := firstFalse(st.Conditions, provisioningv1.BootstrappedCondition, provisioningv1.NodeReadyCondition, provisioningv1.UpgradedCondition); c == nil {
			conditions.MarkReady(&st.Conditions, provisioningv1.SucceededReason, "bootstrapped at "+want+", kubelet healthy", gen)
		} else if c.Reason == provisioningv1.BootstrapFailedReason || c.Reason == provisioningv1.UpgradeFailedReason {
			conditions.MarkStalled(&st.Conditions, c.Reason, c.Type+": "+c.Message, gen)
		} else {
			conditions.Set(&st.Conditions, provisioningv1.ReadyCondition, metav1.ConditionFalse, c.Reason, c.Type+": "+c.Message, gen)
			conditions.MarkReconciling(&st.Conditions, c.Reason, c.Type+": "+c.Message, gen)
		}
		if err := conditions.PatchStatus(ctx, f.r.Client, m.before, m.cm, &st.ObservedGeneration, nil, conditions.RecordTo(f.r.Events), conditions.Transient(machineTransientReasons...)); err != nil {
			return err
		}
		if err := f.uncordon(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// machineTransientReasons are the ClusterMachine reasons of work under
// way: their conditions going False are Normal Events (and Ready Reconciling),
// not Warnings. Failures (BootstrapFailed, UpgradeFailed) and an unhealthy
// or missing node (KubeletUnhealthy, NodeNotReady) stay Warnings.
var machineTransientReasons = []string{
	provisioningv1.WaitingForInitReason, provisioningv1.WaitingForAddressReason, provisioningv1.BootstrappingReason,
	provisioningv1.PendingUpgradeReason, provisioningv1.UpgradingReason, provisioningv1.DrainingReason,
	provisioningv1.ProgressingReason, provisioningv1.LeavingEtcdReason,
}

func firstFalse(conds []metav1.Condition, types ...string) *metav1.Condition {
	for _, t := range types {
		c := meta.FindStatusCondition(conds, t)
		if c == nil || c.Status != metav1.ConditionTrue {
			if c == nil {
				return &metav1.Condition{Type: t, Reason: provisioningv1.ProgressingReason, Message: "not judged yet"}
			}
			return c
		}
	}
	return nil
}

// clusterStatus sums the machines into pool rows and the cluster's
// conditions.
func (f *formation) clusterStatus(gen int64) {
	st, want := &f.pc.Status, f.pc.Spec.Version
	match := map[string]int32{}
	messages := map[string]string{}
	for _, pm := range f.matches {
		match[pm.Pool.Name] = int32(len(pm.Available))
		messages[pm.Pool.Name] = pm.Message()
	}
	rows := map[string]*provisioningv1.PoolStatus{}
	var order []string
	for _, sp := range f.specPools() {
		rows[sp.name] = &provisioningv1.PoolStatus{Name: sp.name, Replicas: sp.pool.Replicas, MatchingAvailable: match[sp.name], Message: messages[sp.name]}
		order = append(order, sp.name)
	}
	for _, m := range f.machines {
		row := rows[m.cm.Spec.Pool]
		if row == nil {
			continue
		}
		row.Current++
		if m.bootstrapped() && m.nodeReady() {
			row.Ready++
		}
		if m.bootstrapped() && m.cm.Status.Version == want {
			row.Updated++
		}
	}
	for name, h := range f.health {
		if row := rows[name]; row != nil {
			row.Unhealthy, row.Remediating = h.unhealthy, h.remediating
		}
	}
	st.ControlPlane = *rows[provisioningv1.ControlPlanePool]
	st.Workers, st.WorkersReady = nil, 0
	workersOK := true
	for _, name := range order[1:] {
		st.Workers = append(st.Workers, *rows[name])
		st.WorkersReady += rows[name].Ready
		if !poolDone(rows[name]) {
			workersOK = false
		}
	}
	cpOK := poolDone(&st.ControlPlane)
	setPool := func(typ string, ok bool, what string) {
		if ok {
			conditions.Set(&st.Conditions, typ, metav1.ConditionTrue, provisioningv1.SucceededReason, what+": every machine bootstrapped at "+want+" with a healthy kubelet", gen)
		} else {
			conditions.Set(&st.Conditions, typ, metav1.ConditionFalse, provisioningv1.ProgressingReason, what+" not ready yet", gen)
		}
	}
	setPool(provisioningv1.ControlPlaneReadyCondition, cpOK, "control plane")
	setPool(provisioningv1.WorkersReadyCondition, workersOK, "workers")

	fleetOK := false
	switch fc := f.fleetCluster; {
	case f.r.ExternalURL == nil:
		conditions.Set(&st.Conditions, provisioningv1.FleetJoinedCondition, metav1.ConditionFalse, provisioningv1.WaitingForAgentReason,
			"the manager has no external URL, so formed clusters get no import manifest and do not join the fleet", gen)
	case fc == nil:
		conditions.Set(&st.Conditions, provisioningv1.FleetJoinedCondition, metav1.ConditionFalse, provisioningv1.WaitingForAgentReason,
			"waiting for the fleet agent (started by the init server from the import manifest) to register", gen)
	case meta.IsStatusConditionTrue(fc.Status.Conditions, fleetv1.ConnectedCondition):
		fleetOK = true
		conditions.Set(&st.Conditions, provisioningv1.FleetJoinedCondition, metav1.ConditionTrue, provisioningv1.SucceededReason, "fleet Cluster "+fc.Name+" is connected", gen)
	default:
		conditions.Set(&st.Conditions, provisioningv1.FleetJoinedCondition, metav1.ConditionFalse, provisioningv1.AgentDisconnectedReason, "fleet Cluster "+fc.Name+" registered but is not connected", gen)
	}

	// Per-machine waits and failures, for Ready's message.
	upgrading := false
	for _, m := range f.machines {
		if m.cm.Spec.Version != want || m.cm.Status.Version != want {
			upgrading = upgrading || m.cm.Status.Version != ""
		}
		if m.wait.reason != "" && m.wait.reason != provisioningv1.WaitingForInitReason {
			f.wait(m.wait.reason, m.cm.Name+": "+m.wait.message)
		}
	}
	switch {
	case f.pc.Spec.Paused:
		conditions.Set(&st.Conditions, provisioningv1.ReadyCondition, metav1.ConditionFalse, provisioningv1.PausedReason, "spec.paused: no machine is adopted, changed or released", gen)
		meta.RemoveStatusCondition(&st.Conditions, provisioningv1.ReconcilingCondition)
		meta.RemoveStatusCondition(&st.Conditions, provisioningv1.StalledCondition)
	case f.halt != nil:
		reason := provisioningv1.BootstrapFailedReason
		if upgrading {
			reason = provisioningv1.UpgradeFailedReason
		}
		c := meta.FindStatusCondition(f.halt.cm.Status.Conditions, provisioningv1.BootstrappedCondition)
		msg := "machine " + f.halt.cm.Name + " failed its plan"
		if c != nil {
			msg = "machine " + f.halt.cm.Name + ": " + c.Message
		}
		conditions.MarkStalled(&st.Conditions, reason, msg+"; no further machine changes until the spec changes", gen)
	case cpOK && workersOK && fleetOK:
		conditions.MarkReady(&st.Conditions, provisioningv1.SucceededReason, fmt.Sprintf("%d server(s) and %d worker(s) ready at %s; fleet Cluster %s connected",
			st.ControlPlane.Ready, st.WorkersReady, want, f.fleetCluster.Name), gen)
	default:
		reason, msgs := f.reason, f.waiting
		if reason == "" {
			switch {
			case upgrading:
				reason = provisioningv1.UpgradingReason
			case !cpOK || !workersOK:
				reason = provisioningv1.BootstrappingReason
			default:
				reason = meta.FindStatusCondition(st.Conditions, provisioningv1.FleetJoinedCondition).Reason
			}
		}
		if len(msgs) == 0 {
			msgs = []string{fmt.Sprintf("control plane %d/%d ready, workers %d ready; %s", st.ControlPlane.Ready, st.ControlPlane.Replicas, st.WorkersReady,
				meta.FindStatusCondition(st.Conditions, provisioningv1.FleetJoinedCondition).Message)}
		}
		conditions.Set(&st.Conditions, provisioningv1.ReadyCondition, metav1.ConditionFalse, reason, strings.Join(msgs, "; "), gen)
		conditions.MarkReconciling(&st.Conditions, reason, strings.Join(msgs, "; "), gen)
	}
}

func poolDone(p *provisioningv1.PoolStatus) bool {
	return p.Current == p.Replicas && p.Ready == p.Replicas && p.Updated == p.Replicas
}
