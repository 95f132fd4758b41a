package provisionedcluster

import (
	"fmt"
	"time"

	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
)

// NodeAgentHeartbeat is how often an idle node agent refreshes its
// MachineInventory's status.lastSeen (internal/node/agent's default).
// nodeAgentSilentTimeout must be at least three of them (a shorter one
// would find healthy idle agents silent between two heartbeats); a machine
// that missed two counts towards maxUnhealthy before its timeout runs out,
// like a node condition that has not lasted its timeout yet.
const NodeAgentHeartbeat = time.Minute

// judgeWithAgent is judge plus the node agent's silence: the machine's
// own failures (plan, node) come first.
func (f *formation) judgeWithAgent(m *machine, c checks) verdict {
	v := f.judge(m, c)
	if v.unhealthy {
		return v
	}
	s, ok := f.silentCheck(m, c.silent)
	if !ok {
		return v
	}
	if s.unhealthy {
		return s
	}
	v.failing = true
	if v.why != "" {
		s.why = v.why + ", " + s.why
	}
	v.why = s.why
	return v
}

// silentCheck judges the node agent's last report: unhealthy once it is
// older than the pool's nodeAgentSilentTimeout, failing after two missed
// heartbeats (or half the timeout, when shorter). Like node conditions,
// the timer starts again when a short-circuit ends (f.resumed). ok is
// false when the check is off or the agent has never reported (the
// startup timeout covers a machine that never came up).
func (f *formation) silentCheck(m *machine, timeout time.Duration) (v verdict, ok bool) {
	seen := m.inv.Status.LastSeen.Time
	if timeout <= 0 || seen.IsZero() {
		return verdict{}, false
	}
	since := seen
	if f.resumed.After(since) {
		since = f.resumed
	}
	silent := f.now.Sub(since)
	if silent >= timeout {
		return verdict{unhealthy: true, reason: provisioningv1.NodeAgentSilentReason, message: fmt.Sprintf(
			"the node agent of machine %s has not reported for %s (last seen %s, nodeAgentSilentTimeout %s): the machine is down, cut off from the manager, or edgefleet-node is not running",
			m.inv.Name, silent.Round(time.Second), seen.UTC().Format(time.RFC3339), timeout),
			why: fmt.Sprintf("node agent silent %s", silent.Round(time.Second))}, true
	}
	f.requeueAfter(timeout - silent + time.Second)
	if silent >= min(2*f.r.NodeAgentHeartbeat, timeout/2) {
		return verdict{failing: true, why: fmt.Sprintf("node agent silent %s of %s", silent.Round(time.Second), timeout)}, true
	}
	return verdict{}, false
}

// validSilentTimeout says what is wrong with a pool's
// nodeAgentSilentTimeout ("" when fine).
func validSilentTimeout(hc *provisioningv1.HealthCheck, minimum time.Duration) string {
	heartbeat := minimum / 3
	if hc == nil || hc.NodeAgentSilentTimeout == nil || hc.NodeAgentSilentTimeout.Duration <= 0 {
		return ""
	}
	if d := hc.NodeAgentSilentTimeout.Duration; d < minimum {
		return fmt.Sprintf("nodeAgentSilentTimeout %s is shorter than %s (node agents report at least every %s when idle): use %s or more, or 0s to turn the check off", d, minimum, heartbeat, minimum)
	}
	return ""
}
