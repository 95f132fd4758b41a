// Package managedosimage rolls OS images out to machines (ManagedOSImage)
// through each machine's plan Secret, concurrency machines at a time, and
// halts the rollout when one machine fails or rolls back.
//
// While a machine upgrades, its plan is replaced by the upgrade plan (one
// instruction: `edgefleet-node upgrade --image REF --reboot`); the plan it
// had is kept in the Secret's PreviousPlanKey and put back when the
// machine's upgrade ends, whatever the result.
//
// A machine that is a Kubernetes node of a formed cluster (a
// ProvisionedCluster claimed it; its Node is named after its inventory) is
// cordoned and drained first when spec.cordon or spec.drain ask for it,
// through the cluster's tunnel as formation does (internal/kube/drain):
// the plan Secret carries the draining phase and the cordon it owns across
// reconciles, and the node is uncordoned when the machine's upgrade ends.
package managedosimage

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

const (
	// AnnotationUpgrade on a plan Secret names the ManagedOSImage whose
	// upgrade plan it holds.
	AnnotationUpgrade = "machines.edgefleet.io/os-upgrade"
	// PreviousPlanKey holds the machine's own plan while the upgrade plan
	// replaces it.
	PreviousPlanKey = "plan-before-os-upgrade"
	// Finalizer puts the machines' plans back when a ManagedOSImage is
	// deleted (cancelled) mid-rollout.
	Finalizer = "machines.edgefleet.io/managedosimage-plans"
	// InstructionName is the upgrade plan's one instruction.
	InstructionName = "os-upgrade"
	// NodeBinary is the node agent on the machine's PATH.
	NodeBinary = "edgefleet-node"
	// MarkerDir is where the upgrade instruction records that it ran, so
	// running it again after the reboot it causes is a no-op.
	MarkerDir = "/var/lib/edgefleet/os-upgrade"
	// upgradeTimeoutSeconds bounds pulling and writing the image.
	upgradeTimeoutSeconds = 3600

	// AnnotationPhase on a plan Secret is PhaseDraining while the machine's
	// node is drained and the upgrade plan is not written yet.
	AnnotationPhase = "machines.edgefleet.io/os-upgrade-phase"
	PhaseDraining   = "draining"
	// AnnotationDrainStarted is when the drain began (RFC 3339), for
	// drain.timeout.
	AnnotationDrainStarted = "machines.edgefleet.io/os-upgrade-drain-started"
	// AnnotationCordoned is "<ProvisionedCluster>/<Node>" when this rollout
	// cordoned the node: only then is it uncordoned afterwards, so a node
	// someone else cordoned stays cordoned.
	AnnotationCordoned = "machines.edgefleet.io/os-upgrade-cordoned"
	// drainPoll is how often a drain is looked at again (pods of a formed
	// cluster are not watched).
	drainPoll = 5 * time.Second
)

// NodeAccess makes clients of formed clusters (nodeops.Tunnel), by fleet
// Cluster.
type NodeAccess interface {
	Clientset(ctx context.Context, fleetCluster types.NamespacedName) (kubernetes.Interface, error)
}

// Reconciler rolls ManagedOSImages out.
type Reconciler struct {
	Client client.Client
	// Events records condition changes; SetupWithManager uses the
	// manager\'s recorder when nil.
	Events events.EventRecorder
	// Nodes reaches formed clusters to cordon and drain machines that are
	// their nodes; nil: a rollout that asks for cordon or drain waits
	// with a message on such machines.
	Nodes NodeAccess
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// SetupWithManager registers the reconciler; inventory and version changes
// requeue the ManagedOSImages of their namespace.
func (r *Reconciler) SetupWithManager(mgr manager.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder("edgefleet-managedosimage")
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	byNamespace := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var list machinesv1.ManagedOSImageList
		if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, m := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: m.Name}})
		}
		return out
	})
	return ctrl.ControllerManagedBy(mgr).Named("managedosimage").
		For(&machinesv1.ManagedOSImage{}).
		Watches(&machinesv1.MachineInventory{}, byNamespace).
		Watches(&machinesv1.ManagedOSVersion{}, byNamespace).
		Complete(r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var mosi machinesv1.ManagedOSImage
	if err := r.Client.Get(ctx, req.NamespacedName, &mosi); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !mosi.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.cancel(ctx, &mosi)
	}
	if controllerutil.AddFinalizer(&mosi, Finalizer) {
		if err := r.Client.Update(ctx, &mosi); err != nil {
			return reconcile.Result{}, err
		}
	}
	before := mosi.DeepCopy()
	draining, err := r.rollout(ctx, &mosi)
	if perr := conditions.PatchStatus(ctx, r.Client, before, &mosi, &mosi.Status.ObservedGeneration, err, conditions.RecordTo(r.Events)); perr != nil && err == nil {
		err = perr
	}
	if draining && err == nil {
		return reconcile.Result{RequeueAfter: drainPoll}, nil
	}
	return reconcile.Result{}, err
}

// target is the image a ManagedOSImage installs.
type target struct {
	image, version string
}

// resolve finds the image: osImage, or the named version's upgradeImage.
func (r *Reconciler) resolve(ctx context.Context, mosi *machinesv1.ManagedOSImage) (target, string, error) {
	if mosi.Spec.OSImage != "" {
		return target{image: mosi.Spec.OSImage}, "", nil
	}
	if mosi.Spec.ManagedOSVersionName == "" {
		return target{}, "set spec.osImage or spec.managedOSVersionName", nil
	}
	var v machinesv1.ManagedOSVersion
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: mosi.Namespace, Name: mosi.Spec.ManagedOSVersionName}, &v)
	if apierrors.IsNotFound(err) {
		return target{}, fmt.Sprintf("ManagedOSVersion %q does not exist in namespace %s (`kubectl get managedosversions -n %s` lists them; a channel creates them)", mosi.Spec.ManagedOSVersionName, mosi.Namespace, mosi.Namespace), nil
	}
	if err != nil {
		return target{}, "", err
	}
	return target{image: v.Spec.Metadata.UpgradeImage, version: v.Spec.Version}, "", nil
}

// machine is one selected inventory and its plan Secret.
type machine struct {
	inv    machinesv1.MachineInventory
	secret *corev1.Secret
	state  machinesv1.MachineUpgradeState
	msg    string
}

func (r *Reconciler) rollout(ctx context.Context, mosi *machinesv1.ManagedOSImage) (draining bool, err error) {
	gen := mosi.Generation
	st := &mosi.Status
	if _, err := drainOptions(mosi); err != nil {
		conditions.MarkStalled(&st.Conditions, machinesv1.InvalidSpecReason, "spec."+err.Error(), gen)
		return false, nil
	}
	tgt, invalid, err := r.resolve(ctx, mosi)
	if err != nil {
		return false, err
	}
	if invalid != "" {
		reason := machinesv1.InvalidSpecReason
		if mosi.Spec.ManagedOSVersionName != "" {
			reason = machinesv1.VersionNotFoundReason
		}
		conditions.MarkStalled(&st.Conditions, reason, invalid, gen)
		return false, nil
	}
	st.Image = tgt.image
	sel, err := metav1.LabelSelectorAsSelector(mosi.Spec.Targets.Selector)
	if err != nil || mosi.Spec.Targets.Selector == nil {
		conditions.MarkStalled(&st.Conditions, machinesv1.InvalidSpecReason, fmt.Sprintf("spec.targets.selector is not a valid label selector: %v", err), gen)
		return false, nil
	}
	machines, err := r.machines(ctx, mosi, sel)
	if err != nil {
		return false, err
	}
	// A failure halts the rollout until the spec changes: the failed
	// machine gets its own plan back, so only the status remembers it.
	halts := map[string]machinesv1.MachineUpgradeStatus{}
	if st.ObservedGeneration == gen {
		for _, m := range st.Machines {
			if m.State == machinesv1.MachineUpgradeFailed || m.State == machinesv1.MachineUpgradeRolledBack {
				halts[m.Name] = m
			}
		}
	}
	st.Total, st.Upgraded, st.Upgrading, st.Failed = int32(len(machines)), 0, 0, 0
	st.Machines = nil
	if len(machines) == 0 {
		conditions.Set(&st.Conditions, machinesv1.ReadyCondition, metav1.ConditionFalse, machinesv1.NoMachinesSelectedReason,
			fmt.Sprintf("spec.targets.selector %q matches no MachineInventory in namespace %s; the rollout starts when machines with these labels register", sel, mosi.Namespace), gen)
		conditions.Set(&st.Conditions, machinesv1.ReconcilingCondition, metav1.ConditionTrue, machinesv1.NoMachinesSelectedReason, "waiting for machines", gen)
		removeStalled(st)
		return false, nil
	}

	var halted, held, waiting, drainingNow []*machine
	for _, m := range machines {
		judge(mosi, tgt, m)
		if h, ok := halts[m.inv.Name]; ok && m.state != machinesv1.MachineUpgradeUpgraded && m.state != machinesv1.MachineUpgradeFailed && m.state != machinesv1.MachineUpgradeRolledBack {
			m.state, m.msg = h.State, h.Message
		}
		switch m.state {
		case machinesv1.MachineUpgradeUpgraded:
			st.Upgraded++
		case machinesv1.MachineUpgradeUpgrading:
			st.Upgrading++
		case machinesv1.MachineUpgradeDraining:
			// A draining machine holds its place in concurrency.
			st.Upgrading++
			drainingNow = append(drainingNow, m)
		case machinesv1.MachineUpgradeFailed, machinesv1.MachineUpgradeRolledBack:
			st.Failed++
			halted = append(halted, m)
		case machinesv1.MachineUpgradeHeld:
			held = append(held, m)
		case machinesv1.MachineUpgradeWaiting:
			// A machine without a plan Secret (not registered yet) waits
			// in status but cannot start: there is no plan to swap.
			if m.secret != nil {
				waiting = append(waiting, m)
			}
		}
	}
	// Draining machines go on towards their upgrade, or give their node
	// back when the rollout halted or paused before their upgrade began.
	for _, m := range drainingNow {
		if len(halted) > 0 || mosi.Spec.Paused {
			if err := r.restore(ctx, m.secret); err != nil {
				return false, err
			}
			m.state, m.msg = machinesv1.MachineUpgradeWaiting, ""
			st.Upgrading--
			continue
		}
		if err := r.drainStep(ctx, mosi, tgt, m); err != nil {
			return false, err
		}
		switch m.state {
		case machinesv1.MachineUpgradeFailed:
			st.Upgrading--
			st.Failed++
			halted = append(halted, m)
		case machinesv1.MachineUpgradeDraining:
			draining = true
		}
	}
	// A machine whose upgrade ended gets its own plan back. A failure is
	// restored only once the status recording it is written (this
	// reconcile's status write triggers the next): after the restore only
	// the status remembers it, and a lost status write would start the
	// failed machine again.
	for _, m := range machines {
		_, recorded := halts[m.inv.Name]
		failed := m.state == machinesv1.MachineUpgradeFailed || m.state == machinesv1.MachineUpgradeRolledBack
		if m.state != machinesv1.MachineUpgradeUpgrading && m.state != machinesv1.MachineUpgradeDraining && m.state != machinesv1.MachineUpgradeWaiting && (!failed || recorded) && ours(mosi, m.secret) {
			if err := r.restore(ctx, m.secret); err != nil {
				return false, err
			}
		}
	}
	// Start machines within concurrency, unless halted or paused.
	started := 0
	if len(halted) == 0 && !mosi.Spec.Paused {
		free := int(max(mosi.Spec.Concurrency, 1)) - int(st.Upgrading)
		for _, m := range waiting {
			if started >= free {
				break
			}
			if err := r.begin(ctx, mosi, tgt, m); err != nil {
				return false, err
			}
			if m.state == machinesv1.MachineUpgradeDraining {
				draining = true
			}
			st.Upgrading++
			started++
		}
	}
	for _, m := range machines {
		if m.state != machinesv1.MachineUpgradeUpgraded && (m.state != machinesv1.MachineUpgradeWaiting || m.msg != "") && len(st.Machines) < 1000 {
			st.Machines = append(st.Machines, machinesv1.MachineUpgradeStatus{Name: m.inv.Name, State: m.state, Message: truncate(m.msg, 1024)})
		}
	}

	progress := fmt.Sprintf("%d/%d machines run %s, %d upgrading", st.Upgraded, st.Total, tgt.image, st.Upgrading)
	switch {
	case len(halted) > 0:
		m := halted[0]
		reason := machinesv1.MachineUpgradeFailedReason
		if m.state == machinesv1.MachineUpgradeRolledBack {
			reason = machinesv1.MachineRolledBackReason
		}
		names := make([]string, 0, len(halted))
		for _, h := range halted {
			names = append(names, h.inv.Name)
		}
		msg := fmt.Sprintf("rollout halted: machine %s %s: %s; %s; no further machine is started until the ManagedOSImage is changed (fix the image and set a new one, or delete it to cancel)", strings.Join(names, ", "), strings.ToLower(string(m.state)), m.msg, progress)
		conditions.MarkStalled(&st.Conditions, reason, msg, gen)
	case st.Upgraded == st.Total:
		conditions.MarkReady(&st.Conditions, machinesv1.RolloutCompleteReason, fmt.Sprintf("all %d machines run %s", st.Total, tgt.image), gen)
	case mosi.Spec.Paused && st.Upgrading == 0:
		conditions.Set(&st.Conditions, machinesv1.ReadyCondition, metav1.ConditionFalse, machinesv1.RolloutPausedReason, "paused: "+progress, gen)
		removeReconciling(st)
		removeStalled(st)
	case len(waiting) == started && st.Upgrading == 0 && len(held) > 0:
		names := make([]string, 0, len(held))
		for _, h := range held {
			names = append(names, h.inv.Name)
		}
		msg := fmt.Sprintf("%s; held because their previous upgrade rolled back: %s (set spec.allowRetryAfterRollback to retry them)", progress, strings.Join(names, ", "))
		conditions.Set(&st.Conditions, machinesv1.ReadyCondition, metav1.ConditionFalse, machinesv1.MachinesHeldReason, msg, gen)
		removeReconciling(st)
		removeStalled(st)
	default:
		conditions.Set(&st.Conditions, machinesv1.ReadyCondition, metav1.ConditionFalse, machinesv1.RolloutProgressingReason, progress, gen)
		conditions.MarkReconciling(&st.Conditions, machinesv1.RolloutProgressingReason, progress, gen)
	}
	return draining, nil
}

// machines lists the selected inventories, by name, with their plan Secrets.
func (r *Reconciler) machines(ctx context.Context, mosi *machinesv1.ManagedOSImage, sel labels.Selector) ([]*machine, error) {
	var invs machinesv1.MachineInventoryList
	if err := r.Client.List(ctx, &invs, client.InNamespace(mosi.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, err
	}
	var secrets corev1.SecretList
	if err := r.Client.List(ctx, &secrets, client.InNamespace(mosi.Namespace)); err != nil {
		return nil, err
	}
	byName := map[string]*corev1.Secret{}
	for i := range secrets.Items {
		byName[secrets.Items[i].Name] = &secrets.Items[i]
	}
	out := make([]*machine, 0, len(invs.Items))
	for _, inv := range invs.Items {
		if !inv.DeletionTimestamp.IsZero() {
			continue
		}
		m := &machine{inv: inv}
		if s := byName[machineregistration.PlanName(&inv)]; s != nil && metav1.IsControlledBy(s, &inv) {
			m.secret = s
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *machine) int { return strings.Compare(a.inv.Name, b.inv.Name) })
	return out, nil
}

// ours reports whether s holds mosi's upgrade plan.
func ours(mosi *machinesv1.ManagedOSImage, s *corev1.Secret) bool {
	return s != nil && s.Annotations[AnnotationUpgrade] == mosi.Name
}

// judge sets m's state from what the machine reported.
func judge(mosi *machinesv1.ManagedOSImage, tgt target, m *machine) {
	os := m.inv.Status.OS
	last := os.LastUpgrade
	switch {
	case os.Image == tgt.image && (last == nil || last.Image != tgt.image || last.Result == machinesv1.OSUpgradeSucceeded):
		m.state = machinesv1.MachineUpgradeUpgraded
	case ours(mosi, m.secret) && m.secret.Annotations[AnnotationPhase] == PhaseDraining:
		m.state, m.msg = machinesv1.MachineUpgradeDraining, "draining its node"
	case ours(mosi, m.secret):
		m.state, m.msg = machinesv1.MachineUpgradeUpgrading, "upgrade plan written"
		plan := m.inv.Status.Plan
		checksum := nodeplan.Checksum(m.secret.Data[nodeplan.SecretKey])
		switch {
		case last != nil && last.Image == tgt.image && last.Result == machinesv1.OSUpgradeRolledBack:
			m.state, m.msg = machinesv1.MachineUpgradeRolledBack, last.Message
		case last != nil && last.Image == tgt.image && last.Result == machinesv1.OSUpgradeFailed:
			m.state, m.msg = machinesv1.MachineUpgradeFailed, last.Message
		case plan.FailedChecksum == checksum && plan.Failure != nil:
			m.state, m.msg = machinesv1.MachineUpgradeFailed, fmt.Sprintf("upgrade plan failed at %q (exit code %d): %s", plan.Failure.Instruction, plan.Failure.ExitCode, plan.Failure.Message)
			if out := strings.TrimSpace(plan.Failure.Output); out != "" {
				// The end of the output says why; the plan is put back
				// right after, taking the machine's report of it along.
				m.msg += "; output ends: " + tail(out, 600)
			}
		case last != nil && last.Image == tgt.image && last.Result == machinesv1.OSUpgradePending:
			m.msg = "new slot on trial"
		case plan.AppliedChecksum == checksum:
			m.msg = "upgrade plan applied, waiting for the machine to report the new OS"
		}
	case m.secret == nil:
		m.state, m.msg = machinesv1.MachineUpgradeWaiting, "the machine has no plan Secret yet"
	case m.secret.Annotations[AnnotationUpgrade] != "":
		// Another ManagedOSImage upgrades it: wait for that one.
		m.state = machinesv1.MachineUpgradeWaiting
	case last != nil && last.Result == machinesv1.OSUpgradeRolledBack && !mosi.Spec.AllowRetryAfterRollback:
		m.state, m.msg = machinesv1.MachineUpgradeHeld, fmt.Sprintf("its previous upgrade (to %s) rolled back: %s", last.Image, last.Message)
	default:
		m.state = machinesv1.MachineUpgradeWaiting
	}
}

// UpgradePlan is the plan that upgrades a machine to image. The marker
// (keyed by the ManagedOSImage's UID and the image) makes the instruction
// run once: the reboot interrupts it, and the node agent runs an
// interrupted instruction again after boot.
func UpgradePlan(uid types.UID, image string) ([]byte, error) {
	marker := MarkerDir + "/" + nodeplan.Checksum([]byte(string(uid) + "\x00" + image))[:32]
	script := fmt.Sprintf(`set -e
[ -f %[1]s ] && exit 0
mkdir -p %[2]s
touch %[1]s
sync
exec %[3]s upgrade --image "$1" --reboot`, marker, MarkerDir, NodeBinary)
	p := nodeplan.Plan{Instructions: []nodeplan.Instruction{{
		CommonInstruction: nodeplan.CommonInstruction{Name: InstructionName, Command: "/bin/sh", Args: []string{"-c", script, "os-upgrade", image}, TimeoutSeconds: upgradeTimeoutSeconds},
		SaveOutput:        true,
	}}}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

// start writes the upgrade plan, keeping the machine's own plan beside it.
func (r *Reconciler) start(ctx context.Context, mosi *machinesv1.ManagedOSImage, tgt target, m *machine) error {
	raw, err := UpgradePlan(mosi.UID, tgt.image)
	if err != nil {
		return err
	}
	s := m.secret.DeepCopy()
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[AnnotationUpgrade] = mosi.Name
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	if s.Annotations[AnnotationPhase] != PhaseDraining {
		// A draining machine's own plan is in PreviousPlanKey already,
		// maybe changed meanwhile by formation.
		s.Data[PreviousPlanKey] = s.Data[nodeplan.SecretKey]
	}
	delete(s.Annotations, AnnotationPhase)
	delete(s.Annotations, AnnotationDrainStarted)
	s.Data[nodeplan.SecretKey] = raw
	// Update with the resourceVersion read: a plan changed meanwhile is
	// never overwritten (the conflict retries the reconcile).
	if err := r.Client.Update(ctx, s); err != nil {
		return fmt.Errorf("writing the upgrade plan of machine %s: %w", m.inv.Name, err)
	}
	m.secret = s
	return nil
}

// restore puts the machine's own plan back and uncordons the node this
// rollout cordoned.
func (r *Reconciler) restore(ctx context.Context, s *corev1.Secret) error {
	s = s.DeepCopy()
	if err := r.uncordon(ctx, s); err != nil {
		return err
	}
	prev, ok := s.Data[PreviousPlanKey]
	switch {
	case ok:
		s.Data[nodeplan.SecretKey] = prev
	case s.Annotations[AnnotationPhase] != PhaseDraining:
		s.Data[nodeplan.SecretKey] = []byte("{}")
	}
	delete(s.Data, PreviousPlanKey)
	for _, a := range []string{AnnotationUpgrade, AnnotationPhase, AnnotationDrainStarted, AnnotationCordoned} {
		delete(s.Annotations, a)
	}
	if err := r.Client.Update(ctx, s); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("restoring the plan in Secret %s: %w", s.Name, err)
	}
	return nil
}

// cancel restores every plan this ManagedOSImage replaced, then lets it go.
func (r *Reconciler) cancel(ctx context.Context, mosi *machinesv1.ManagedOSImage) error {
	var secrets corev1.SecretList
	if err := r.Client.List(ctx, &secrets, client.InNamespace(mosi.Namespace)); err != nil {
		return err
	}
	for i := range secrets.Items {
		if ours(mosi, &secrets.Items[i]) {
			if err := r.restore(ctx, &secrets.Items[i]); err != nil {
				return err
			}
		}
	}
	if controllerutil.RemoveFinalizer(mosi, Finalizer) {
		return client.IgnoreNotFound(r.Client.Update(ctx, mosi))
	}
	return nil
}

func removeStalled(st *machinesv1.ManagedOSImageStatus) {
	st.Conditions = slices.DeleteFunc(st.Conditions, func(c metav1.Condition) bool { return c.Type == machinesv1.StalledCondition })
}

func removeReconciling(st *machinesv1.ManagedOSImageStatus) {
	st.Conditions = slices.DeleteFunc(st.Conditions, func(c metav1.Condition) bool { return c.Type == machinesv1.ReconcilingCondition })
}

// tail is the last n bytes of s, at a rune boundary.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + strings.ToValidUTF8(s[len(s)-n:], "")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-3], "") + "..."
}
