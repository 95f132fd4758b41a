package provisionedcluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/provisioning/render"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// leavesEtcd: m is an edgefleet-distro server that is an etcd member and
// another bootstrapped server stays, so scaling it down must remove its
// member first; otherwise the stale member counts against the quorum of
// the servers that remain (3 members with one gone tolerate no further
// loss).
func (f *formation) leavesEtcd(m *machine) bool {
	if f.pc.Spec.Distro != provisioningv1.DistroEdgefleet || !m.server() || m.inv == nil || (m.cm.Status.Version == "" && !m.bootstrapped()) {
		return false
	}
	for _, o := range f.machines {
		// A server re-applying a changed plan is not Bootstrapped for a
		// while but still an etcd member: its version says it joined.
		if o != m && o.server() && !o.leaving && o.inv != nil && (o.bootstrapped() || o.cm.Status.Version != "") {
			return true
		}
	}
	return false
}

// leaveEtcdStep runs a scaled-down server's LeaveEtcdPlan (`kubernetes
// down --leave-etcd`) before the machine is released, across reconciles:
// true once the machine applied it (or has nothing to leave). A reset
// alone would not do: the machine reboots without telling etcd. A failed
// leave keeps the machine (its Kubernetes keeps running, still a member)
// and says why; the machine's planner retries the plan with backoff.
func (f *formation) leaveEtcdStep(ctx context.Context, m *machine) (bool, error) {
	if !m.leaving && !f.leavesEtcd(m) {
		return true, nil
	}
	raw, err := render.LeaveEtcdPlan(string(f.pc.Spec.Distro))
	if err != nil {
		return false, err
	}
	m.leaving = true
	sum, plan := nodeplan.Checksum(raw), m.inv.Status.Plan
	if plan.AppliedChecksum == sum {
		return true, nil
	}
	if plan.FailedChecksum == sum {
		msg := fmt.Sprintf("server %s failed to leave etcd; it keeps running as a member", m.inv.Name)
		if plan.Failure != nil {
			msg += fmt.Sprintf(": %s", plan.Failure.Message)
			if why := lastLine(plan.Failure.Output); why != "" {
				msg += fmt.Sprintf(" (%s)", why)
			}
		}
		msg += "; the machine retries it (backing off up to 5 minutes): see `edgefleet-node kubernetes status` on it"
		m.wait = waitState{provisioningv1.LeaveEtcdFailedReason, msg}
		f.wait(provisioningv1.LeaveEtcdFailedReason, msg)
		return false, nil
	}
	if dead, err := f.leavesDead(ctx, m); dead || err != nil {
		return dead, err
	}
	_, held, err := f.putPlan(ctx, m.inv, raw)
	if apierrors.IsNotFound(err) {
		return true, nil // no plan Secret: nothing runs there to leave
	}
	if err != nil {
		return false, err
	}
	msg := fmt.Sprintf("server %s leaves etcd: waiting for it to apply its release plan (kubernetes down --leave-etcd)", m.inv.Name)
	if held {
		msg = fmt.Sprintf("server %s leaves etcd once the OS upgrade holding its plan is done", m.inv.Name)
	}
	m.wait = waitState{provisioningv1.LeavingEtcdReason, msg}
	f.wait(provisioningv1.LeavingEtcdReason, msg)
	f.requeueAfter(2 * time.Second)
	return false, nil
}

// leavesDead: a leaving server that the health check finds unhealthy (a
// node condition lasted its timeout, its node went missing past
// nodeStartupTimeout, or its node agent is silent past
// nodeAgentSilentTimeout) is not waited for: a dead machine never applies
// its leave plan, and scale-down would wait forever. Those timeouts are
// the bound. Its etcd member is recorded for removal as remediation's
// replace does, and the machine is released. Not while the other servers
// are not all healthy (quorumRisk): removing a member then could break
// etcd's quorum; the leave keeps waiting and says why.
func (f *formation) leavesDead(ctx context.Context, m *machine) (bool, error) {
	v, ok := f.verdicts[m]
	if !ok || !v.unhealthy {
		return false, nil
	}
	var servers []*machine
	for _, o := range f.machines {
		if o.server() && o.inv != nil {
			servers = append(servers, o)
		}
	}
	if risk := f.quorumRisk(m, servers, f.verdicts); risk != "" {
		msg := fmt.Sprintf("server %s is unhealthy (%s) and has not applied its leave plan; it is not released without leaving etcd: %s", m.inv.Name, v.message, risk)
		m.wait = waitState{provisioningv1.LeavingEtcdReason, msg}
		f.wait(provisioningv1.LeavingEtcdReason, msg)
		f.requeueAfter(remediationPoll)
		return false, nil
	}
	if err := f.recordEtcdMemberRemoval(ctx, m, "scaled down", "ScaleDown"); err != nil {
		return false, err
	}
	f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeWarning, provisioningv1.LeavingEtcdReason, "ScaleDown",
		"Server %s is scaled down but unhealthy (%s): it cannot apply its leave plan (kubernetes down --leave-etcd), so it is released without leaving and its etcd member is recorded in status.etcdMemberRemovals", m.cm.Name, v.message)
	return true, nil
}

// lastLine is the last non-empty line of an instruction's output (where
// edgefleet-node prints why it failed), at most 400 bytes.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	line := strings.TrimSpace(lines[len(lines)-1])
	if len(line) > 400 {
		line = line[:400] + "…"
	}
	return line
}
