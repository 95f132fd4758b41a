package provisionedcluster

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/provisioning/nodeops"
)

// Health check defaults (Cluster API's MachineHealthCheck examples; ADR 0015).
const (
	defaultUnhealthyTimeout   = 5 * time.Minute
	defaultNodeStartupTimeout = 10 * time.Minute
	defaultPowerCycleTimeout  = 5 * time.Minute
	// remediationPoll is how often a remediation under way looks again.
	remediationPoll = 2 * time.Second
)

var defaultMaxUnhealthy = intstr.FromString("40%")

// healthRow is one pool's health for its status row.
type healthRow struct{ unhealthy, remediating int32 }

// verdict is one machine's health.
type verdict struct {
	unhealthy bool
	reason    string
	message   string
	// failing: a node condition of the list holds but has not lasted its
	// timeout yet. maxUnhealthy counts it, so a site going dark is caught
	// as a whole though its nodes' timers run out at different moments.
	failing bool
	// why is the short reason, per machine, in TooManyUnhealthy's message
	// and in a failing machine's HealthCheckSucceeded ("kubelet heartbeat
	// silent 34s").
	why string
}

// failingCondition is a failing (not yet unhealthy) machine's
// HealthCheckSucceeded: still True, since none of its timeouts ran out,
// but with the failing check as its reason, so a machine counted towards
// maxUnhealthy does not read "nothing wrong".
func failingCondition(v verdict) (reason, message string) {
	reason = provisioningv1.UnhealthyNodeReason
	if strings.HasPrefix(v.why, "node agent") {
		reason = provisioningv1.NodeAgentSilentReason
	}
	return reason, "failing, not unhealthy yet (its timeout has not run out): " + v.why + "; counted towards the pool's maxUnhealthy"
}

// checks is a pool's healthCheck with defaults applied.
type checks struct {
	conditions   []provisioningv1.UnhealthyNodeCondition
	startup      time.Duration
	maxUnhealthy intstr.IntOrString
	powerCycle   time.Duration
	// silent: nodeAgentSilentTimeout (0: off).
	silent time.Duration
}

func checksOf(hc *provisioningv1.HealthCheck) checks {
	c := checks{conditions: hc.UnhealthyNodeConditions, startup: defaultNodeStartupTimeout, maxUnhealthy: defaultMaxUnhealthy, powerCycle: defaultPowerCycleTimeout}
	if len(c.conditions) == 0 {
		c.conditions = []provisioningv1.UnhealthyNodeCondition{
			{Type: string(corev1.NodeReady), Status: string(corev1.ConditionFalse), Timeout: metav1.Duration{Duration: defaultUnhealthyTimeout}},
			{Type: string(corev1.NodeReady), Status: string(corev1.ConditionUnknown), Timeout: metav1.Duration{Duration: defaultUnhealthyTimeout}},
		}
	}
	if hc.NodeStartupTimeout != nil {
		c.startup = hc.NodeStartupTimeout.Duration
	}
	if hc.MaxUnhealthy != nil {
		c.maxUnhealthy = *hc.MaxUnhealthy
	}
	if hc.PowerCycleTimeout != nil && hc.PowerCycleTimeout.Duration > 0 {
		c.powerCycle = hc.PowerCycleTimeout.Duration
	}
	if hc.NodeAgentSilentTimeout != nil {
		c.silent = hc.NodeAgentSilentTimeout.Duration
	}
	return c
}

// MaxUnhealthy is how many of total machines may be unhealthy for
// remediation to go on: a count, or a percentage rounded up (so a pool of
// one machine can be remediated).
func MaxUnhealthy(v intstr.IntOrString, total int) (int, error) {
	n, err := intstr.GetScaledValueFromIntOrPercent(&v, total, true)
	if err != nil {
		return 0, fmt.Errorf("maxUnhealthy %q: %w", v.String(), err)
	}
	return n, nil
}

// judge applies the pool's checks to one machine: a failed bootstrap plan
// at once (MachineHealthCheck's machine failure), a node missing after the
// startup timeout, a node condition lasting its timeout. It also asks for
// a requeue when a timeout will run out.
func (f *formation) judge(m *machine, c checks) verdict {
	st := m.cm.Status
	plan := m.inv.Status.Plan
	if st.PlanChecksum != "" && plan.FailedChecksum == st.PlanChecksum && st.Version == "" {
		msg := "the machine failed its bootstrap plan"
		if plan.Failure != nil {
			msg += fmt.Sprintf(": instruction %q: %s", plan.Failure.Instruction, plan.Failure.Message)
		}
		return verdict{unhealthy: true, reason: provisioningv1.MachineFailedReason, message: msg, why: "bootstrap plan failed"}
	}
	name := m.inv.Name
	node, ok := f.nodes[name]
	if !ok {
		if c.startup <= 0 {
			return verdict{}
		}
		since := f.now.Sub(m.cm.CreationTimestamp.Time)
		if since >= c.startup {
			return verdict{unhealthy: true, reason: provisioningv1.NodeStartupTimeoutReason, message: fmt.Sprintf("node %s is not in the cluster %s after the machine was adopted (nodeStartupTimeout %s)", name, since.Round(time.Second), c.startup),
				why: fmt.Sprintf("node missing %s", since.Round(time.Second))}
		}
		f.requeueAfter(c.startup - since + time.Second)
		return verdict{}
	}
	for _, want := range c.conditions {
		for _, nc := range node.Conditions {
			if string(nc.Type) != want.Type || string(nc.Status) != want.Status {
				continue
			}
			if nc.Type == corev1.NodeReady && nc.Status == corev1.ConditionUnknown {
				if age, silentAfter, ok := f.heartbeatAge(name); ok && age <= silentAfter {
					// Unknown is "no news", and a renewed heartbeat is news:
					// the kubelet is back (a site whose network returned)
					// and posts its status within seconds. Counted, not
					// remediated.
					f.requeueAfter(f.r.NodeReadInterval)
					return verdict{failing: true, why: "Ready Unknown, kubelet heartbeat renewed"}
				}
			}
			since := nc.LastTransitionTime.Time
			if f.resumed.After(since) {
				since = f.resumed
			}
			lasted := f.now.Sub(since)
			if lasted >= want.Timeout.Duration {
				msg := fmt.Sprintf("node %s: %s is %s for %s (timeout %s)", name, nc.Type, nc.Status, lasted.Round(time.Second), want.Timeout.Duration)
				if nc.Message != "" {
					msg += ": " + nc.Message
				}
				return verdict{unhealthy: true, reason: provisioningv1.UnhealthyNodeReason, message: msg, why: fmt.Sprintf("%s %s %s", nc.Type, nc.Status, lasted.Round(time.Second))}
			}
			f.requeueAfter(want.Timeout.Duration - lasted + time.Second)
			return verdict{failing: true, why: fmt.Sprintf("%s %s %s of %s", nc.Type, nc.Status, lasted.Round(time.Second), want.Timeout.Duration)}
		}
	}
	if age, silentAfter, ok := f.heartbeatAge(name); ok {
		if age > silentAfter {
			// Its kubelet went silent and the node will turn Unknown:
			// counted toward maxUnhealthy now, so the nodes of a dark site
			// are seen together though Kubernetes marks them seconds apart.
			return verdict{failing: true, why: fmt.Sprintf("kubelet heartbeat silent %s", age.Round(time.Second))}
		}
		f.requeueAfter(silentAfter - age + time.Second)
	}
	return verdict{}
}

// remediate runs every pool's health check and moves at most one
// remediation per pool one step. It runs before scale, so a replaced
// machine's spare is adopted in the same reconcile.
func (f *formation) remediate(ctx context.Context) error {
	st, gen := &f.pc.Status, f.pc.Generation
	f.health = map[string]healthRow{}
	f.verdicts = map[*machine]verdict{}
	var blocked []string
	blockedReason := ""
	block := func(reason, msg string) {
		if blockedReason == "" {
			blockedReason = reason
		}
		blocked = append(blocked, msg)
	}
	// A short-circuit holds every timer, and when it ends each node gets its
	// full timeout again: the nodes of a site that comes back turn Ready a
	// few seconds apart, and the last one must not be replaced for having
	// been dark longer than its timeout.
	if was := meta.FindStatusCondition(st.Conditions, provisioningv1.RemediationAllowedCondition); was != nil {
		switch {
		case was.Status == metav1.ConditionTrue:
			f.resumed = was.LastTransitionTime.Time
		case was.Reason == provisioningv1.TooManyUnhealthyReason || was.Reason == provisioningv1.ClusterUnreachableReason:
			f.resumed = f.now
		}
	}
	checked := false
	for _, sp := range f.specPools() {
		var members []*machine
		for _, m := range f.machines {
			if m.cm.Spec.Pool == sp.name && m.inv != nil {
				members = append(members, m)
			}
		}
		if sp.pool.HealthCheck == nil {
			for _, m := range members {
				meta.RemoveStatusCondition(&m.cm.Status.Conditions, provisioningv1.HealthCheckSucceededCondition)
				m.cm.Status.Remediation = nil
			}
			continue
		}
		checked = true
		if err := f.remediatePool(ctx, sp, members, block); err != nil {
			return err
		}
	}
	if !checked {
		meta.RemoveStatusCondition(&st.Conditions, provisioningv1.RemediationAllowedCondition)
		return nil
	}
	was := meta.FindStatusCondition(st.Conditions, provisioningv1.RemediationAllowedCondition)
	if len(blocked) > 0 {
		if was == nil || was.Status != metav1.ConditionFalse || was.Reason != blockedReason {
			shortCircuits.WithLabelValues(blockedReason).Inc()
		}
		conditions.Set(&st.Conditions, provisioningv1.RemediationAllowedCondition, metav1.ConditionFalse, blockedReason, strings.Join(blocked, "; "), gen)
		return nil
	}
	conditions.Set(&st.Conditions, provisioningv1.RemediationAllowedCondition, metav1.ConditionTrue, provisioningv1.HealthyReason,
		"unhealthy machines are remediated (power-cycle through their BMC, then replacement by a spare)", gen)
	return nil
}

func (f *formation) remediatePool(ctx context.Context, sp specPool, members []*machine, block func(reason, msg string)) error {
	c := checksOf(sp.pool.HealthCheck)
	row := healthRow{}
	// Node conditions change without waking this controller (they live in
	// the formed cluster): look again at the node read interval.
	f.requeueAfter(f.r.NodeReadInterval)
	// Nodes unknown: the cluster is not reachable (a site gone dark, or not
	// joined yet). Nothing is judged or remediated; a remediation under way
	// waits.
	if f.nodes == nil {
		why := "the cluster has not joined the fleet yet"
		switch fc := f.fleetCluster; {
		case f.r.Nodes == nil:
			why = "the manager has no access to formed clusters' nodes"
		case fc != nil && !meta.IsStatusConditionTrue(fc.Status.Conditions, fleetv1.ConnectedCondition):
			why = "fleet Cluster " + fc.Name + " is not connected (a site that went dark is not fixed by replacing its machines)"
		case fc != nil:
			why = "the cluster's nodes cannot be read through its tunnel"
		}
		for _, m := range members {
			conditions.Set(&m.cm.Status.Conditions, provisioningv1.HealthCheckSucceededCondition, metav1.ConditionUnknown, provisioningv1.ClusterUnreachableReason,
				"node conditions are unknown: "+why, m.cm.Generation)
			if m.cm.Status.Remediation != nil {
				row.remediating++
			}
		}
		f.health[sp.name] = row
		block(provisioningv1.ClusterUnreachableReason, fmt.Sprintf("pool %s: node conditions are unknown, no machine is remediated: %s", sp.name, why))
		return nil
	}
	verdicts := map[*machine]verdict{}
	var unhealthy, failing []string
	if msg := validSilentTimeout(sp.pool.HealthCheck, 3*f.r.NodeAgentHeartbeat); msg != "" {
		block(provisioningv1.InvalidSpecReason, fmt.Sprintf("pool %s: %s", sp.name, msg))
		return nil
	}
	for _, m := range members {
		v := f.judgeWithAgent(m, c)
		if !v.unhealthy && m.cm.Status.Remediation != nil && m.cm.Status.Remediation.Phase == provisioningv1.PhaseReplacing && replacing(m) {
			v = verdict{unhealthy: true, reason: provisioningv1.RemediatingReason, message: "being replaced: " + m.cm.Status.Remediation.Reason, why: "being replaced"}
		}
		verdicts[m] = v
		f.verdicts[m] = v
		gen := m.cm.Generation
		if v.unhealthy || v.failing {
			name := m.cm.Name
			if v.why != "" {
				name += " (" + v.why + ")"
			}
			failing = append(failing, name)
		}
		if v.unhealthy {
			unhealthy = append(unhealthy, m.cm.Name)
			conditions.Set(&m.cm.Status.Conditions, provisioningv1.HealthCheckSucceededCondition, metav1.ConditionFalse, v.reason, v.message, gen)
		} else if v.failing && v.why != "" {
			reason, msg := failingCondition(v)
			conditions.Set(&m.cm.Status.Conditions, provisioningv1.HealthCheckSucceededCondition, metav1.ConditionTrue, reason, msg, gen)
		} else {
			conditions.Set(&m.cm.Status.Conditions, provisioningv1.HealthCheckSucceededCondition, metav1.ConditionTrue, provisioningv1.HealthyReason, "the pool's health check finds nothing wrong", gen)
		}
	}
	row.unhealthy = int32(len(unhealthy))
	defer func() { f.health[sp.name] = row }()

	// A machine that healed by itself (or by its power cycle) ends its
	// remediation.
	var current *machine
	for _, m := range members {
		if m.cm.Status.Remediation == nil {
			continue
		}
		if !verdicts[m].unhealthy {
			if err := f.healed(ctx, m); err != nil {
				return err
			}
			continue
		}
		if current == nil {
			current = m
		}
	}
	if len(failing) == 0 {
		return nil
	}
	allowed, err := MaxUnhealthy(c.maxUnhealthy, len(members))
	if err != nil {
		block(provisioningv1.InvalidSpecReason, fmt.Sprintf("pool %s: %v: use a count or a percentage like 40%%", sp.name, err))
		return nil
	}
	if len(failing) > allowed {
		// Timers are held while short-circuited: count what fails.
		row.unhealthy = int32(len(failing))
		// A remediation that started before the others' nodes failed (their
		// timers run seconds apart) is held back unless its replacement has
		// begun: a dark site is not fixed by replacing machines.
		for _, m := range members {
			if m.cm.Status.Remediation == nil {
				continue
			}
			if replacing(m) {
				row.remediating++
				continue
			}
			if err := f.hold(ctx, m); err != nil {
				return err
			}
		}
		block(provisioningv1.TooManyUnhealthyReason, fmt.Sprintf(
			"pool %s: %d of %d machines unhealthy (%s), more than maxUnhealthy %s (%d): no machine is remediated until at most %d is unhealthy (a site that lost its network or power is not fixed by replacing machines)",
			sp.name, len(failing), len(members), strings.Join(failing, ", "), c.maxUnhealthy.String(), allowed, allowed))
		return nil
	}
	if len(unhealthy) == 0 {
		return nil
	}
	if current == nil {
		for _, m := range members {
			if verdicts[m].unhealthy {
				current = m
				break
			}
		}
	}
	if sp.role == provisioningv1.RoleServer {
		if msg := f.quorumRisk(current, members, verdicts); msg != "" {
			block(provisioningv1.ControlPlaneProtectedReason, msg)
			return nil
		}
	}
	row.remediating++
	return f.step(ctx, current, verdicts[current], c)
}

// quorumRisk says why remediating m (a server) is not allowed: it is the
// last control-plane machine, or the other servers are not all healthy, so
// losing m's etcd member (powered off or removed) could break the quorum.
func (f *formation) quorumRisk(m *machine, servers []*machine, verdicts map[*machine]verdict) string {
	if len(servers) <= 1 {
		return fmt.Sprintf("control plane: %s is the last control-plane machine; it is never remediated (a cluster without its API cannot take a replacement): repair it by hand", m.cm.Name)
	}
	var sick []string
	for _, s := range servers {
		if s != m && (verdicts[s].unhealthy || !s.bootstrapped()) {
			sick = append(sick, s.cm.Name)
		}
	}
	if len(sick) > 0 {
		majority := len(servers)/2 + 1
		return fmt.Sprintf("control plane: %s is unhealthy but %s also is not healthy: taking %s down could leave fewer than %d of %d etcd members and break quorum; remediation waits",
			m.cm.Name, strings.Join(sick, ", "), m.cm.Name, majority, len(servers))
	}
	return ""
}

// step moves m's remediation one step: start (cordon), power-cycle
// through the linked BMC, wait for the node to heal, replace.
func (f *formation) step(ctx context.Context, m *machine, v verdict, c checks) error {
	rem := m.cm.Status.Remediation
	f.requeueAfter(remediationPoll)
	if rem == nil {
		now := metav1.NewTime(f.now)
		rem = &provisioningv1.Remediation{Phase: provisioningv1.PhasePowerCycling, Reason: v.message, Started: &now}
		m.cm.Status.Remediation = rem
		log.FromContext(ctx).Info("Machine unhealthy: remediation starts", "ClusterMachine", klog.KObj(m.cm), "reason", v.message)
		f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeWarning, v.reason, "Remediate", "Machine %s is unhealthy (%s): remediation starts", m.cm.Name, v.message)
		if f.downstream != nil {
			if err := nodeops.SetUnschedulable(ctx, f.downstream, m.inv.Name, true); err != nil {
				log.FromContext(ctx).Error(err, "Cordoning an unhealthy node failed; remediation goes on", "node", m.inv.Name)
			}
			f.r.nodeCache.Delete(client.ObjectKeyFromObject(f.fleetCluster))
		}
		if v.reason == provisioningv1.MachineFailedReason {
			rem.Phase = provisioningv1.PhaseReplacing // a power cycle does not fix a plan
		}
	}
	f.wait(provisioningv1.RemediatingReason, fmt.Sprintf("machine %s is being remediated (%s): %s", m.cm.Name, rem.Phase, rem.Reason))
	switch rem.Phase {
	case provisioningv1.PhasePowerCycling:
		return f.powerCycle(ctx, m, c)
	case provisioningv1.PhaseWaitingForHealthy:
		if rem.PowerCycled != nil && f.now.Sub(rem.PowerCycled.Time) < c.powerCycle {
			return nil
		}
		remediations.WithLabelValues("powercycle", "not-healed").Inc()
		f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeWarning, provisioningv1.RemediatingReason, "Replace",
			"Machine %s is still unhealthy %s after its power cycle (%s): replacing it", m.cm.Name, c.powerCycle, v.message)
		rem.Phase = provisioningv1.PhaseReplacing
		return nil
	default:
		return f.replace(ctx, m)
	}
}

// powerCycle asks the machine's BMC (the one linked to its inventory) for
// a power cycle and follows its status.powerCycle; without a BMC, or when
// the BMC fails or does not answer within powerCycleTimeout, the machine is
// replaced.
func (f *formation) powerCycle(ctx context.Context, m *machine, c checks) error {
	rem := m.cm.Status.Remediation
	b, err := f.bmcOf(ctx, m.inv.Name, rem.BMCName)
	if err != nil {
		return err
	}
	if b == nil {
		f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeNormal, provisioningv1.RemediatingReason, "Replace", "Machine %s has no BMC linked to its inventory: replacing it", m.cm.Name)
		rem.Phase = provisioningv1.PhaseReplacing
		return nil
	}
	if rem.PowerCycleID == "" {
		rem.BMCName = b.Name
		rem.PowerCycleID = m.cm.Name + "-" + strconv.FormatInt(rem.Started.Unix(), 10)
		before := b.DeepCopy()
		if b.Annotations == nil {
			b.Annotations = map[string]string{}
		}
		b.Annotations[machinesv1.AnnotationPowerCycle] = rem.PowerCycleID
		if err := f.r.Client.Patch(ctx, b, client.MergeFrom(before)); err != nil {
			return fmt.Errorf("asking BMC %s for a power cycle: %w", b.Name, err)
		}
		f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeNormal, provisioningv1.RemediatingReason, "PowerCycle", "Power-cycling machine %s through BMC %s (request %s)", m.cm.Name, b.Name, rem.PowerCycleID)
		return nil
	}
	pcs := b.Status.PowerCycle
	switch {
	case pcs != nil && pcs.ID == rem.PowerCycleID && pcs.Result == machinesv1.ActionSucceeded:
		now := metav1.NewTime(f.now)
		rem.Phase, rem.PowerCycled = provisioningv1.PhaseWaitingForHealthy, &now
		f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeNormal, provisioningv1.PowerCycledReason, "PowerCycle", "BMC %s power-cycled machine %s; its node has %s to become healthy", b.Name, m.cm.Name, c.powerCycle)
	case pcs != nil && pcs.ID == rem.PowerCycleID && pcs.Result == machinesv1.ActionFailed:
		remediations.WithLabelValues("powercycle", "failed").Inc()
		f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeWarning, provisioningv1.RemediatingReason, "Replace", "BMC %s could not power-cycle machine %s (%s): replacing it", b.Name, m.cm.Name, pcs.Message)
		rem.Phase = provisioningv1.PhaseReplacing
	case f.now.Sub(rem.Started.Time) >= c.powerCycle:
		remediations.WithLabelValues("powercycle", "failed").Inc()
		f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeWarning, provisioningv1.RemediatingReason, "Replace", "BMC %s did not power-cycle machine %s within %s (see the BMC's status): replacing it", b.Name, m.cm.Name, c.powerCycle)
		rem.Phase = provisioningv1.PhaseReplacing
	}
	return nil
}

// bmcOf is the BMC linked to the inventory (status.inventoryRef), the
// named one first; nil when none.
func (f *formation) bmcOf(ctx context.Context, inventory, name string) (*machinesv1.BMC, error) {
	var list machinesv1.BMCList
	if err := f.r.Client.List(ctx, &list, client.InNamespace(f.pc.Namespace)); err != nil {
		return nil, err
	}
	slices.SortFunc(list.Items, func(a, b machinesv1.BMC) int { return strings.Compare(a.Name, b.Name) })
	var found *machinesv1.BMC
	for i := range list.Items {
		b := &list.Items[i]
		if ref := b.Status.InventoryRef; ref == nil || ref.Name != inventory || !b.DeletionTimestamp.IsZero() {
			continue
		}
		if b.Name == name {
			return b, nil
		}
		if found == nil {
			found = b
		}
	}
	return found, nil
}

// replace drains what can be drained (evictions are asked once: pods of a
// dead node never finish, and deleting its Node lets the cluster delete
// them and reschedule), deletes the Node, releases the machine quarantined
// from re-adoption, and drops its ClusterMachine: the pool adopts a spare.
func (f *formation) replace(ctx context.Context, m *machine) error {
	inv := m.inv
	if f.downstream != nil {
		if _, err := nodeops.Step(ctx, f.downstream, inv.Name, f.now, 0, f.now); err != nil {
			log.FromContext(ctx).Error(err, "Draining an unhealthy node failed; it is removed anyway", "node", inv.Name)
		}
	}
	if inv.Annotations == nil {
		inv.Annotations = map[string]string{}
	}
	inv.Annotations[provisioningv1.RemediatedAnnotation] = f.pc.Name + " " + f.now.UTC().Format(time.RFC3339)
	if err := f.recordEtcdMemberRemoval(ctx, m, "replaced", "Replace"); err != nil {
		return err
	}
	if err := f.r.Client.Update(ctx, inv); err != nil {
		return err
	}
	if err := f.release(ctx, m); err != nil {
		return err
	}
	if err := f.r.Client.Delete(ctx, m.cm); client.IgnoreNotFound(err) != nil {
		return err
	}
	f.machines = slices.DeleteFunc(f.machines, func(x *machine) bool { return x == m })
	remediations.WithLabelValues("replace", "replaced").Inc()
	rem := m.cm.Status.Remediation
	took := ""
	if rem != nil && rem.Started != nil {
		took = " " + f.now.Sub(rem.Started.Time).Round(time.Second).String() + " after it was found unhealthy"
	}
	log.FromContext(ctx).Info("Replaced an unhealthy machine", "ClusterMachine", klog.KObj(m.cm))
	f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeNormal, provisioningv1.RemediatedReason, "Replace",
		"Replaced machine %s%s: its Node is deleted, the machine released and quarantined (annotation %s), and pool %s adopts a spare", m.cm.Name, took, provisioningv1.RemediatedAnnotation, m.cm.Spec.Pool)
	return nil
}

// healed ends a remediation whose machine is healthy again: the node is
// uncordoned.
func (f *formation) healed(ctx context.Context, m *machine) error {
	rem := m.cm.Status.Remediation
	if f.downstream != nil {
		if err := nodeops.SetUnschedulable(ctx, f.downstream, m.inv.Name, false); err != nil {
			return fmt.Errorf("uncordoning node %s: %w", m.inv.Name, err)
		}
		f.r.nodeCache.Delete(client.ObjectKeyFromObject(f.fleetCluster))
	}
	strategy, how := "none", "by itself"
	if rem.PowerCycled != nil {
		strategy, how = "powercycle", "after its power cycle through BMC "+rem.BMCName
	}
	remediations.WithLabelValues(strategy, "healed").Inc()
	f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeNormal, provisioningv1.RemediatedReason, "Heal", "Machine %s is healthy again %s", m.cm.Name, how)
	m.cm.Status.Remediation = nil
	return nil
}

// replacing: m's replacement has begun (its inventory is marked
// remediated), so it cannot be called back.
func replacing(m *machine) bool {
	_, ok := m.inv.Annotations[provisioningv1.RemediatedAnnotation]
	return ok
}

// hold calls back a remediation that a short-circuit stopped before its
// replacement began: the node is uncordoned and the machine judged afresh
// once the short-circuit ends.
func (f *formation) hold(ctx context.Context, m *machine) error {
	if f.downstream != nil {
		if err := nodeops.SetUnschedulable(ctx, f.downstream, m.inv.Name, false); err != nil {
			return fmt.Errorf("uncordoning node %s: %w", m.inv.Name, err)
		}
		f.r.nodeCache.Delete(client.ObjectKeyFromObject(f.fleetCluster))
	}
	remediations.WithLabelValues("none", "held").Inc()
	f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeNormal, provisioningv1.RemediatingReason, "Hold",
		"Remediation of machine %s is called back: more machines of its pool are unhealthy than maxUnhealthy allows", m.cm.Name)
	m.cm.Status.Remediation = nil
	return nil
}
