package managedosimage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/kube/drain"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// cordonDrain reports what the spec asks of machines that are nodes:
// cordon, and drain with options (drain implies cordon).
func cordonDrain(mosi *machinesv1.ManagedOSImage) (cordon, drains bool) {
	legacy := mosi.Spec.CordonDrain != nil && *mosi.Spec.CordonDrain
	drains = mosi.Spec.Drain != nil || legacy
	cordon = drains || mosi.Spec.Cordon != nil && *mosi.Spec.Cordon
	return cordon, drains
}

// drainOptions reads spec.drain; an error names the field to fix.
func drainOptions(mosi *machinesv1.ManagedOSImage) (drain.Options, error) {
	return drain.FromSpec(mosi.Spec.Drain)
}

// begin starts a machine's upgrade: straight to the upgrade plan, or first
// the draining phase when the machine is a node of a formed cluster and
// the spec cordons.
func (r *Reconciler) begin(ctx context.Context, mosi *machinesv1.ManagedOSImage, tgt target, m *machine) error {
	if cordon, _ := cordonDrain(mosi); !cordon || m.inv.Labels[provisioningv1.ClusterLabel] == "" {
		if err := r.start(ctx, mosi, tgt, m); err != nil {
			return err
		}
		m.state, m.msg = machinesv1.MachineUpgradeUpgrading, "upgrade plan written"
		return nil
	}
	s := m.secret.DeepCopy()
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[AnnotationUpgrade] = mosi.Name
	s.Annotations[AnnotationPhase] = PhaseDraining
	s.Annotations[AnnotationDrainStarted] = r.now().UTC().Format(time.RFC3339)
	// The machine's plan is held from now on (it keeps running it):
	// formation writes its plans beside an upgrade's, into PreviousPlanKey,
	// and restore or start take them from there.
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[PreviousPlanKey] = s.Data[nodeplan.SecretKey]
	if err := r.Client.Update(ctx, s); err != nil {
		return fmt.Errorf("marking machine %s draining: %w", m.inv.Name, err)
	}
	m.secret = s
	m.state, m.msg = machinesv1.MachineUpgradeDraining, "cordoning its node"
	return r.drainStep(ctx, mosi, tgt, m)
}

// drainStep moves a draining machine on: cordon its node (recording the
// cordon as ours), evict what is left, and once drained write the upgrade
// plan. It leaves m Draining with what it waits for, Failed when the drain
// is refused or timed out, or Upgrading.
func (r *Reconciler) drainStep(ctx context.Context, mosi *machinesv1.ManagedOSImage, tgt target, m *machine) error {
	cluster, node := m.inv.Labels[provisioningv1.ClusterLabel], m.inv.Name
	started, err := time.Parse(time.RFC3339, m.secret.Annotations[AnnotationDrainStarted])
	if err != nil {
		started = r.now()
	}
	since := r.now().Sub(started).Truncate(time.Second)
	proceed := func(why string) error {
		if err := r.start(ctx, mosi, tgt, m); err != nil {
			return err
		}
		m.state, m.msg = machinesv1.MachineUpgradeUpgrading, "upgrade plan written"+why
		return nil
	}
	if cluster == "" {
		// It left its cluster while waiting: no node to drain.
		return proceed(" (no longer a node of a formed cluster: nothing to drain)")
	}
	cs, unreachable, err := r.downstream(ctx, mosi.Namespace, cluster)
	if err != nil {
		return err
	}
	if unreachable != "" {
		m.msg = fmt.Sprintf("waiting to drain node %s for %s: %s", node, since, unreachable)
		return nil
	}
	var n corev1.Node
	got, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return proceed(fmt.Sprintf(" (cluster %s has no Node %s: nothing to drain)", cluster, node))
	case err != nil:
		m.msg = fmt.Sprintf("waiting to drain node %s: reading it through cluster %s's tunnel: %v", node, cluster, err)
		return nil
	}
	n = *got
	if !n.Spec.Unschedulable {
		// Own the cordon before making it, so a crash in between never
		// leaves a node cordoned that nobody uncordons.
		if err := r.annotate(ctx, m, AnnotationCordoned, cluster+"/"+node); err != nil {
			return err
		}
		if err := drain.SetUnschedulable(ctx, cs, node, true); err != nil {
			m.msg = fmt.Sprintf("cordoning node %s through cluster %s's tunnel: %v", node, cluster, err)
			return nil
		}
	}
	o, err := drainOptions(mosi)
	if _, drains := cordonDrain(mosi); !drains || err != nil {
		return proceed(fmt.Sprintf(" (node %s cordoned)", node))
	}
	res, err := drain.Step(ctx, drain.Clientset(cs), node, o, r.now())
	var refused *drain.RefusedError
	switch {
	case errors.As(err, &refused):
		m.state, m.msg = machinesv1.MachineUpgradeFailed, refused.Error()
		return nil
	case err != nil:
		m.msg = fmt.Sprintf("draining node %s through cluster %s's tunnel: %v", node, cluster, err)
		return nil
	case res.Done:
		return proceed(fmt.Sprintf(" (node %s drained in %s)", node, since))
	}
	if d := mosi.Spec.Drain; d != nil && d.Timeout != nil && d.Timeout.Duration > 0 && since >= d.Timeout.Duration {
		m.state, m.msg = machinesv1.MachineUpgradeFailed, fmt.Sprintf("drain of node %s timed out after %s: %s", node, d.Timeout.Duration, res)
		return nil
	}
	stuck := ""
	if res.Blocked() {
		stuck = " (a PodDisruptionBudget allows no disruption now; the drain waits for it"
		if d := mosi.Spec.Drain; d == nil || d.Timeout == nil {
			stuck += ", without a timeout: set spec.drain.timeout to give up"
		}
		stuck += ")"
	}
	m.msg = fmt.Sprintf("draining node %s for %s: %s%s", node, since, res, stuck)
	return nil
}

// uncordon makes the node in s's AnnotationCordoned schedulable again. A
// cluster that is gone has no node left to uncordon; one that is not
// reachable now is an error (retried), so the cordon is never forgotten.
func (r *Reconciler) uncordon(ctx context.Context, s *corev1.Secret) error {
	owned := s.Annotations[AnnotationCordoned]
	if owned == "" {
		return nil
	}
	cluster, node, ok := strings.Cut(owned, "/")
	if !ok {
		return nil
	}
	cs, unreachable, err := r.downstream(ctx, s.Namespace, cluster)
	if err != nil {
		return err
	}
	if cs == nil {
		if strings.Contains(unreachable, "does not exist") {
			return nil
		}
		return fmt.Errorf("uncordoning node %s: %s", node, unreachable)
	}
	if err := drain.SetUnschedulable(ctx, cs, node, false); err != nil {
		return fmt.Errorf("uncordoning node %s through cluster %s's tunnel: %w", node, cluster, err)
	}
	return nil
}

// downstream reaches the formed cluster of ProvisionedCluster name
// through its tunnel; unreachable says why not (nothing to retry sooner).
func (r *Reconciler) downstream(ctx context.Context, ns, name string) (cs kubernetes.Interface, unreachable string, err error) {
	if r.Nodes == nil {
		return nil, "this manager has no access to formed clusters", nil
	}
	var pc provisioningv1.ProvisionedCluster
	err = r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pc)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Sprintf("ProvisionedCluster %s/%s does not exist", ns, name), nil
	}
	if err != nil {
		return nil, "", err
	}
	if pc.Status.FleetClusterRef == nil {
		return nil, fmt.Sprintf("ProvisionedCluster %s has no fleet Cluster yet (its agent has not registered)", name), nil
	}
	var fc fleetv1.Cluster
	key := client.ObjectKey{Namespace: ns, Name: pc.Status.FleetClusterRef.Name}
	if err := r.Client.Get(ctx, key, &fc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Sprintf("fleet Cluster %s of ProvisionedCluster %s does not exist", key.Name, name), nil
		}
		return nil, "", err
	}
	if !meta.IsStatusConditionTrue(fc.Status.Conditions, fleetv1.ConnectedCondition) {
		return nil, fmt.Sprintf("cluster %s is not connected (its agent does not reach the manager), so its nodes cannot be drained", name), nil
	}
	cs, err = r.Nodes.Clientset(ctx, key)
	if err != nil {
		return nil, fmt.Sprintf("reaching cluster %s through its tunnel: %v", name, err), nil
	}
	return cs, "", nil
}

// annotate sets one annotation on m's plan Secret.
func (r *Reconciler) annotate(ctx context.Context, m *machine, key, value string) error {
	if m.secret.Annotations[key] == value {
		return nil
	}
	s := m.secret.DeepCopy()
	s.Annotations[key] = value
	if err := r.Client.Update(ctx, s); err != nil {
		return fmt.Errorf("recording %s on machine %s: %w", key, m.inv.Name, err)
	}
	m.secret = s
	return nil
}

func (r *Reconciler) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}
