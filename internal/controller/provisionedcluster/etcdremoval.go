package provisionedcluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/provisioning/render"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// A dead server cannot run its release plan (`down --leave-etcd`), so a
// server replaced by remediation (or scaled down) while dead leaves its
// etcd member behind: it counts against the quorum, and etcd refuses every
// new member while it cannot reach one (HTTP 503 "unhealthy cluster"), so
// without its removal a replacement could never join. The member is
// recorded on status.etcdMemberRemovals and removed by:
//   - the next joining server, through the surviving servers right before
//     it adds itself (kubedistro's removeStaleMembers): remediation
//     replaces a server only while every other server is healthy
//     (quorumRisk), so the removal is then both needed and safe;
//   - when no server is joining (a dead server scaled down), a healthy
//     running server at the cluster's version, by an instruction after its
//     `kubernetes up` that restarts nothing (its NodeConfig is unchanged:
//     restarting a survivor while the dead member counts could lose the
//     quorum). Only while every server is healthy.
//
// etcd itself refuses a removal that would leave fewer reachable members
// than its quorum. A removal entry stays, marked removed, while its
// server is in the cluster: a joining server's plan keeps the removal (it
// does not change); a running server's instruction leaves its plan.

// recordEtcdMemberRemoval: m, an edgefleet-distro server that joined etcd,
// is being replaced (or scaled down, how) while dead; action is the
// Event's action. The record is written at once, before the machine is
// released: the reconcile's status patch comes last and fails on a
// conflict (optimistic lock, a stale cache), and a record lost then is
// lost for good, since the machine is gone by the next reconcile (the
// replacement joined without removing the member). A conflict here fails
// the reconcile before anything is released.
func (f *formation) recordEtcdMemberRemoval(ctx context.Context, m *machine, how, action string) error {
	if f.pc.Spec.Distro != provisioningv1.DistroEdgefleet || !m.server() || m.inv == nil || (m.cm.Status.Version == "" && !m.bootstrapped()) {
		return nil
	}
	addr := Address(m.inv)
	if addr == "" {
		f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeWarning, provisioningv1.EtcdMemberStaleReason, action,
			"Server %s was %s while dead, but its address is unknown: remove its etcd member by hand (`etcdctl member remove` on a surviving server)", m.cm.Name, how)
		return nil
	}
	peer := etcdPeerURL(addr)
	st := &f.pc.Status
	if slices.ContainsFunc(st.EtcdMemberRemovals, func(r provisioningv1.EtcdMemberRemoval) bool { return r.PeerURL == peer && r.Removed == nil }) {
		return nil
	}
	base := f.pc.DeepCopy()
	st.EtcdMemberRemovals = slices.DeleteFunc(st.EtcdMemberRemovals, func(r provisioningv1.EtcdMemberRemoval) bool { return r.PeerURL == peer })
	st.EtcdMemberRemovals = append(st.EtcdMemberRemovals, provisioningv1.EtcdMemberRemoval{PeerURL: peer, Machine: m.inv.Name, Since: metav1.NewTime(f.now)})
	written := f.pc.DeepCopy()
	if err := f.r.Client.Status().Patch(ctx, written, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		st.EtcdMemberRemovals = base.Status.EtcdMemberRemovals
		return fmt.Errorf("recording the etcd member of server %s for removal: %w", m.cm.Name, err)
	}
	// The reconcile's own status patch comes after this one, locked on
	// the version this patch made (it was locked on the one read).
	f.pc.ResourceVersion = written.ResourceVersion
	if f.before != nil {
		f.before.ResourceVersion = written.ResourceVersion
	}
	f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeNormal, provisioningv1.EtcdMemberStaleReason, action,
		"Server %s was %s while dead: its etcd member %s is removed by the next server that joins, or by a running server when none joins", m.cm.Name, how, peer)
	return nil
}

// etcdRemovalsFor are the peer URLs m removes from etcd before it joins:
// pending removals go to the first joining server (a server that has not
// bootstrapped yet), and stay with it.
func (f *formation) etcdRemovalsFor(m *machine) []string {
	st := &f.pc.Status
	if len(st.EtcdMemberRemovals) == 0 || !m.server() || m.cm.Spec.Init {
		return nil
	}
	var out []string
	for i := range st.EtcdMemberRemovals {
		r := &st.EtcdMemberRemovals[i]
		if r.RemovedBy == "" && r.Removed == nil && f.joining(m) && m.inv.Name != r.Machine {
			r.RemovedBy = m.cm.Name
		}
		if r.RemovedBy == m.cm.Name && !r.ByRunningServer {
			out = append(out, r.PeerURL)
		}
	}
	return out
}

// joining: m is a server that has not bootstrapped at any version yet, so
// its `up` joins etcd.
func (f *formation) joining(m *machine) bool {
	return m.server() && !m.cm.Spec.Init && m.inv != nil && !m.leaving && !m.bootstrapped() && m.cm.Status.Version == ""
}

// runningRemovalsFor are the peer URLs the running server m removes with
// its plan's remove-etcd-members instruction, until it has: the plan runs
// again (a later change, a reboot), and the address of a removed member
// may by then belong to a live server.
func (f *formation) runningRemovalsFor(m *machine) []string {
	var out []string
	for _, r := range f.pc.Status.EtcdMemberRemovals {
		if r.ByRunningServer && r.RemovedBy == m.cm.Name && r.Removed == nil {
			out = append(out, r.PeerURL)
		}
	}
	return out
}

// settleEtcdMemberRemovals marks a joining server's removal done once it
// bootstrapped (it removed the member before it joined), hands a pending
// one whose server went away (or, for a running server, is leaving or
// unhealthy) to the next, forgets a done one once its server left the
// cluster, and gives a pending one to a running server when no server is
// joining to take it.
func (f *formation) settleEtcdMemberRemovals() {
	st := &f.pc.Status
	byName := map[string]*machine{}
	for _, m := range f.machines {
		byName[m.cm.Name] = m
	}
	pending := false
	st.EtcdMemberRemovals = slices.DeleteFunc(st.EtcdMemberRemovals, func(r provisioningv1.EtcdMemberRemoval) bool {
		_, exists := byName[r.RemovedBy]
		return r.Removed != nil && !exists
	})
	for i := range st.EtcdMemberRemovals {
		r := &st.EtcdMemberRemovals[i]
		if r.Removed != nil {
			continue
		}
		m := byName[r.RemovedBy]
		switch {
		case m == nil, r.ByRunningServer && (m.inv == nil || m.leaving || f.verdicts[m].unhealthy):
			r.RemovedBy, r.ByRunningServer, pending = "", false, true
		case r.ByRunningServer:
			pending = true // done once m applied the plan that carries it (writePlans)
		case m.bootstrapped():
			now := metav1.NewTime(f.now)
			r.Removed = &now
			f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeNormal, provisioningv1.EtcdMemberRemovedReason, "RemoveEtcdMember",
				"Server %s removed the etcd member %s of replaced server %s before it joined", m.cm.Name, r.PeerURL, r.Machine)
		default:
			pending = true
		}
	}
	if pending {
		f.requeueAfter(remediationPoll)
		f.assignRunningRemovals()
	}
}

// assignRunningRemovals gives each unassigned pending removal to a running
// server (the first healthy one by name) when no server is joining, and
// only while no server is unhealthy. While the control plane is short of
// its replicas a joining server is on its way (remediation's spare, a
// machine being matched): it gets joinerGrace to appear and take it.
func (f *formation) assignRunningRemovals() {
	var runners []*machine
	servers := 0
	for _, m := range f.machines {
		if f.joining(m) {
			return // it takes them before it joins
		}
		if m.server() && m.inv != nil && f.verdicts[m].unhealthy {
			return
		}
		if m.server() && !m.leaving {
			servers++
		}
		runners = append(runners, m)
	}
	short := servers < int(f.pc.Spec.ControlPlane.Replicas)
	slices.SortFunc(runners, func(a, b *machine) int { return strings.Compare(a.cm.Name, b.cm.Name) })
	for i := range f.pc.Status.EtcdMemberRemovals {
		r := &f.pc.Status.EtcdMemberRemovals[i]
		if r.RemovedBy != "" || r.Removed != nil || short && f.now.Sub(r.Since.Time) < joinerGrace {
			continue
		}
		for _, m := range runners {
			if f.canRemoveRunning(m, r.PeerURL) && m.inv.Name != r.Machine {
				r.RemovedBy, r.ByRunningServer = m.cm.Name, true
				f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeNormal, provisioningv1.EtcdMemberStaleReason, "RemoveEtcdMember",
					"No server is joining: running server %s removes the etcd member %s of server %s", m.cm.Name, r.PeerURL, r.Machine)
				break
			}
		}
	}
}

// joinerGrace is how long a removal waits for a joining server while the
// control plane is short of its replicas.
const joinerGrace = 2 * time.Minute

// canRemoveRunning: m is a running edgefleet-distro server that can remove
// the member peer with its plan now: bootstrapped at the cluster's
// version (not upgrading, its plan not held by an OS upgrade), not
// leaving, healthy, and not the member itself (an address reused).
func (f *formation) canRemoveRunning(m *machine, peer string) bool {
	return m != nil && m.server() && m.inv != nil && !m.leaving && !m.held && m.bootstrapped() && !f.verdicts[m].unhealthy &&
		m.cm.Status.Version == f.pc.Spec.Version && m.cm.Spec.Version == f.pc.Spec.Version &&
		peer != etcdPeerURL(Address(m.inv))
}

// etcdPeerURL is the peer URL of the edgefleet-distro server at addr.
func etcdPeerURL(addr string) string { return "https://" + net.JoinHostPort(addr, "2380") }

// settleRunningRemovals: the running server m applied the plan (checksum
// sum) that carries its removals, so they are done.
func (f *formation) settleRunningRemovals(m *machine, sum string) {
	if m.inv == nil || m.inv.Status.Plan.AppliedChecksum != sum {
		return
	}
	for i := range f.pc.Status.EtcdMemberRemovals {
		r := &f.pc.Status.EtcdMemberRemovals[i]
		if r.ByRunningServer && r.RemovedBy == m.cm.Name && r.Removed == nil {
			now := metav1.NewTime(f.now)
			r.Removed = &now
			f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeNormal, provisioningv1.EtcdMemberRemovedReason, "RemoveEtcdMember",
				"Server %s removed the etcd member %s of server %s", m.cm.Name, r.PeerURL, r.Machine)
		}
	}
}

// keepJoinedEndpoints re-renders the plan of a server that already joined
// etcd at its version with the etcd endpoints its current plan has, when
// they are all that changed: endpoints only matter for joining (an `up`
// with etcd data skips the join), and a changed NodeConfig restarts the
// node's Kubernetes. Without this, replacing a dead server (or scaling one
// down) changed every other joined server's endpoints and restarted it,
// taking a second etcd member down while the dead one still counted: the
// quorum was lost until it came back. The current plan is read only when
// the rendered one differs from it.
func (f *formation) keepJoinedEndpoints(ctx context.Context, m *machine, c render.Cluster, mach render.Machine, raw []byte) []byte {
	if f.pc.Spec.Distro != provisioningv1.DistroEdgefleet || !m.server() || m.cm.Spec.Init || !m.bootstrapped() ||
		m.cm.Status.Version != m.cm.Spec.Version || m.cm.Status.PlanChecksum == "" || m.cm.Status.PlanChecksum == nodeplan.Checksum(raw) {
		return raw
	}
	var s corev1.Secret
	if err := f.r.Reader.Get(ctx, client.ObjectKey{Namespace: m.inv.Namespace, Name: machineregistration.PlanName(m.inv)}, &s); err != nil {
		return raw
	}
	cur, err := nodeplan.Parse(s.Data[nodeplan.SecretKey])
	if err != nil || nodeplan.Checksum(s.Data[nodeplan.SecretKey]) != m.cm.Status.PlanChecksum {
		return raw
	}
	for _, file := range cur.Files {
		if file.Path != kubedistro.ConfigPath {
			continue
		}
		nc, err := kubedistro.Parse(file.Data())
		if err != nil || nc.Etcd == nil {
			return raw
		}
		c.EtcdEndpoints = nc.Etcd.Endpoints
		if _, again, err := render.Plan(c, mach); err == nil {
			return again
		}
	}
	return raw
}
