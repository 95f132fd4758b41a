// Package bmc reconciles BMCs: it polls each machine's BMC over Redfish
// (internal/bmc) from a bounded worker pool, reports power state and
// system facts, links the BMC to its MachineInventory, applies the desired
// power state and carries out one-time boots from virtual media or PXE
// (docs/spec/bmc.md, ADR 0013).
package bmc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bmc"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/controller/queue"
)

// Defaults.
const (
	DefaultPollInterval = 60 * time.Second
	DefaultWorkers      = 16
	// Backoff for BMCs that do not answer: 10 s doubling to 10 min.
	BackoffBase = 10 * time.Second
	BackoffMax  = 10 * time.Minute
	// defaultGracefulTimeout is spec.gracefulShutdownTimeoutSeconds unset.
	defaultGracefulTimeout = 120 * time.Second
	// pollTimeout bounds one reconcile's reads; bootTimeout a whole boot
	// request (the BMC downloads the image while inserting it).
	pollTimeout = 45 * time.Second
	bootTimeout = 10 * time.Minute
	// lastPollRefresh: status.lastPollTime is rewritten at most this
	// often, so a healthy fleet's polls write nothing.
	lastPollRefresh = 10 * time.Minute
)

// Reconciler reconciles BMCs.
type Reconciler struct {
	Client client.Client
	// Reader reads Secrets uncached (their data is not cached).
	Reader client.Reader
	Events events.EventRecorder
	// Pool keeps the sessions; one per BMC.
	Pool *bmc.Pool
	// PollInterval is how often an answering BMC is read.
	PollInterval time.Duration
	// Workers is how many BMCs are reconciled at once.
	Workers int
	// Now is the clock (tests).
	Now func() time.Time
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr manager.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder("edgefleet-bmc")
	}
	if r.Pool == nil {
		r.Pool = bmc.NewPool()
	}
	if r.PollInterval <= 0 {
		r.PollInterval = DefaultPollInterval
	}
	if r.Workers <= 0 {
		r.Workers = DefaultWorkers
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	return ctrl.ControllerManagedBy(mgr).Named("bmc").
		// Spec changes only: status writes (every failed poll counts one)
		// must not re-trigger the poll, or backoff would never apply.
		// A power-cycle request (an annotation) triggers it too.
		For(&machinesv1.BMC{}, ctrl.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool {
				return e.ObjectOld.GetAnnotations()[machinesv1.AnnotationPowerCycle] != e.ObjectNew.GetAnnotations()[machinesv1.AnnotationPowerCycle]
			},
			CreateFunc: func(event.CreateEvent) bool { return false }, DeleteFunc: func(event.DeleteEvent) bool { return false }, GenericFunc: func(event.GenericEvent) bool { return false },
		}))).
		// An inventory appearing (a machine registering) or a SeedImage
		// becoming Ready re-triggers the BMCs of its namespace at once.
		// Inventories change status all the time (plan reports): only
		// their appearance, removal or new SMBIOS annotations matter here,
		// or every report would poll a BMC.
		Watches(&machinesv1.MachineInventory{}, handler.EnqueueRequestsFromMapFunc(r.namespaceBMCs), ctrl.WithPredicates(predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool {
				a, b := e.ObjectOld.GetAnnotations(), e.ObjectNew.GetAnnotations()
				return a[machinesv1.AnnotationSystemUUID] != b[machinesv1.AnnotationSystemUUID] || a[machinesv1.AnnotationSystemSerial] != b[machinesv1.AnnotationSystemSerial]
			},
		})).
		Watches(&machinesv1.SeedImage{}, handler.EnqueueRequestsFromMapFunc(r.namespaceBMCs)).
		WithOptions(queue.Options(r.Workers)).
		Complete(r)
}

func (r *Reconciler) namespaceBMCs(ctx context.Context, o client.Object) []reconcile.Request {
	var list machinesv1.BMCList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		b := &list.Items[i]
		switch o.(type) {
		case *machinesv1.SeedImage:
			if b.Spec.Boot == nil || b.Spec.Boot.SeedImageRef == nil || b.Spec.Boot.SeedImageRef.Name != o.GetName() {
				continue
			}
		case *machinesv1.MachineInventory:
			if b.Status.InventoryRef != nil && b.Status.InventoryRef.Name != o.GetName() && (b.Spec.InventoryRef == nil || b.Spec.InventoryRef.Name != o.GetName()) {
				continue
			}
		}
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(b)})
	}
	return out
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	b := &machinesv1.BMC{}
	if err := r.Client.Get(ctx, req.NamespacedName, b); err != nil {
		if apierrors.IsNotFound(err) {
			r.Pool.Drop(req.String()) // log the deleted BMC's session out
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	before := b.DeepCopy()
	res, err := r.reconcile(ctx, b)
	if perr := conditions.PatchStatus(ctx, r.Client, before, b, &b.Status.ObservedGeneration, err, conditions.RecordTo(r.Events)); perr != nil {
		return reconcile.Result{}, perr
	}
	return res, nil
}

// failure is a reconcile outcome that sets conditions and a retry, not a
// controller error (those would retry at the work queue's pace).
func (r *Reconciler) reconcile(ctx context.Context, b *machinesv1.BMC) (reconcile.Result, error) {
	gen := b.Generation
	st := &b.Status
	target, err := r.target(ctx, b)
	if err != nil {
		conditions.MarkStalled(&st.Conditions, machinesv1.CredentialsNotFoundReason, err.Error(), gen)
		return r.failed(b), nil
	}
	pollCtx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	started := time.Now()
	conn, sys, err := r.poll(pollCtx, b, target)
	pollSeconds.Observe(time.Since(started).Seconds())
	if err != nil {
		polls.WithLabelValues(string(bmc.KindOf(err))).Inc()
		return r.pollFailed(b, err), nil
	}
	polls.WithLabelValues("ok").Inc()
	st.ConsecutiveFailures = 0
	now := r.Now()
	if st.LastPollTime == nil || now.Sub(st.LastPollTime.Time) > lastPollRefresh {
		st.LastPollTime = &metav1.Time{Time: now}
	}
	r.observe(b, sys)

	// Link to the inventory; wrong facts stop every action.
	linkMsg, ok, ambiguous := r.link(ctx, b, sys)
	if !ok {
		return reconcile.Result{RequeueAfter: r.PollInterval}, nil
	}

	if res, done := r.powerCycle(ctx, b, conn, sys); done {
		return res, nil
	}
	if res, done := r.boot(ctx, b, conn, sys); done {
		return res, nil
	}
	if res, done := r.power(ctx, b, conn, sys); done {
		return res, nil
	}
	msg := fmt.Sprintf("power %s", st.PowerState)
	if linkMsg != "" {
		msg += "; " + linkMsg
	}
	if ambiguous {
		meta.RemoveStatusCondition(&st.Conditions, conditions.Reconciling)
		meta.RemoveStatusCondition(&st.Conditions, conditions.Stalled)
		conditions.Set(&st.Conditions, conditions.Ready, metav1.ConditionFalse, machinesv1.AmbiguousInventoryReason, msg, gen)
	} else {
		conditions.MarkReady(&st.Conditions, machinesv1.BMCReadyReason, msg, gen)
	}
	return reconcile.Result{RequeueAfter: r.PollInterval}, nil
}

// target reads the credentials Secret.
func (r *Reconciler) target(ctx context.Context, b *machinesv1.BMC) (bmc.Target, error) {
	ref := b.Spec.CredentialsSecretRef
	if ref.Namespace != "" && ref.Namespace != b.Namespace {
		return bmc.Target{}, fmt.Errorf("credentialsSecretRef must be in the BMC's namespace %s, not %s: namespaces are tenants", b.Namespace, ref.Namespace)
	}
	var s corev1.Secret
	if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: ref.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return bmc.Target{}, fmt.Errorf("Secret %s/%s (credentialsSecretRef) does not exist: create it with the keys username and password", b.Namespace, ref.Name)
		}
		return bmc.Target{}, fmt.Errorf("reading Secret %s/%s (credentialsSecretRef): %v", b.Namespace, ref.Name, err)
	}
	user, pass := string(s.Data["username"]), string(s.Data["password"])
	if user == "" || pass == "" {
		return bmc.Target{}, fmt.Errorf("Secret %s/%s (credentialsSecretRef) needs non-empty keys username and password", b.Namespace, ref.Name)
	}
	return bmc.Target{Address: b.Spec.Address, Username: user, Password: pass, CABundle: []byte(b.Spec.CABundle), CertSHA256: b.Spec.CertificateSHA256}, nil
}

// poll connects (reusing the session) and reads the system; a reused
// session the BMC refuses is replaced once (it may have expired).
func (r *Reconciler) poll(ctx context.Context, b *machinesv1.BMC, target bmc.Target) (*bmc.Conn, *bmc.System, error) {
	name := client.ObjectKeyFromObject(b).String()
	for attempt := 0; ; attempt++ {
		conn, err := r.Pool.Connect(ctx, name, target)
		if err != nil {
			return nil, nil, err
		}
		sys, err := conn.System()
		if err == nil {
			return conn, sys, nil
		}
		if bmc.IsAuth(err) && conn.Reused && attempt == 0 {
			r.Pool.Drop(name)
			continue
		}
		if k := bmc.KindOf(err); k == bmc.KindUnreachable || k == bmc.KindAuthentication {
			r.Pool.Drop(name)
		}
		return nil, nil, err
	}
}

// backoff is the retry delay after n consecutive failures.
func backoff(n int32) time.Duration {
	d := BackoffBase
	for i := int32(1); i < n && d < BackoffMax; i++ {
		d *= 2
	}
	return min(d, BackoffMax)
}

func (r *Reconciler) failed(b *machinesv1.BMC) reconcile.Result {
	b.Status.ConsecutiveFailures++
	return reconcile.Result{RequeueAfter: backoff(b.Status.ConsecutiveFailures)}
}

func (r *Reconciler) pollFailed(b *machinesv1.BMC, err error) reconcile.Result {
	gen, st := b.Generation, &b.Status
	msg := err.Error()
	switch bmc.KindOf(err) {
	case bmc.KindUnreachable:
		res := r.failed(b)
		msg = fmt.Sprintf("%s; retrying in %s", msg, res.RequeueAfter)
		conditions.MarkReconciling(&st.Conditions, machinesv1.UnreachableReason, msg, gen)
		conditions.Set(&st.Conditions, conditions.Ready, metav1.ConditionFalse, machinesv1.UnreachableReason, msg, gen)
		return res
	case bmc.KindBadCertificate:
		conditions.MarkStalled(&st.Conditions, machinesv1.BadCertificateReason, msg, gen)
	case bmc.KindAuthentication:
		conditions.MarkStalled(&st.Conditions, machinesv1.AuthenticationFailedReason, msg, gen)
	case bmc.KindSystemNotFound:
		conditions.MarkStalled(&st.Conditions, machinesv1.SystemNotFoundReason, msg, gen)
	case bmc.KindInvalid:
		conditions.MarkStalled(&st.Conditions, machinesv1.InvalidSpecReason, msg, gen)
	default:
		res := r.failed(b)
		conditions.MarkReconciling(&st.Conditions, machinesv1.ActionFailedReason, msg, gen)
		conditions.Set(&st.Conditions, conditions.Ready, metav1.ConditionFalse, machinesv1.ActionFailedReason, msg, gen)
		return res
	}
	// Stalled: the spec or the Secret must change; still retried slowly,
	// since Secrets are not watched.
	return r.failed(b)
}

func (r *Reconciler) observe(b *machinesv1.BMC, sys *bmc.System) {
	st := &b.Status
	st.System = &machinesv1.BMCSystem{ID: sys.ID, Manufacturer: cut(sys.Manufacturer, 256), Model: cut(sys.Model, 256), SerialNumber: cut(sys.SerialNumber, 256), UUID: cut(sys.UUID, 64)}
	switch sys.PowerState {
	case "On", "PoweringOff":
		st.PowerState = machinesv1.PowerOn
	case "Off", "PoweringOn":
		st.PowerState = machinesv1.PowerOff
	default:
		st.PowerState = ""
	}
}

func cut(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > n {
		return s[:n]
	}
	return s
}

// link finds the BMC's inventory and cross-checks facts. It returns a
// message for Ready and false when no action may be taken.
func (r *Reconciler) link(ctx context.Context, b *machinesv1.BMC, sys *bmc.System) (msg string, proceed, ambiguous bool) {
	gen, st := b.Generation, &b.Status
	if ref := b.Spec.InventoryRef; ref != nil {
		if ref.Namespace != "" && ref.Namespace != b.Namespace {
			conditions.MarkStalled(&st.Conditions, machinesv1.InvalidSpecReason, fmt.Sprintf("inventoryRef must be in the BMC's namespace %s", b.Namespace), gen)
			return "", false, false
		}
		var inv machinesv1.MachineInventory
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: ref.Name}, &inv); err != nil {
			st.InventoryRef, st.FactsAgree = nil, nil
			return fmt.Sprintf("MachineInventory %s (inventoryRef) does not exist yet", ref.Name), true, false
		}
		st.InventoryRef = &machinesv1.ObjectReference{Name: inv.Name}
		if diff := factsDiffer(&inv, sys); diff != "" {
			f := false
			st.FactsAgree = &f
			conditions.MarkStalled(&st.Conditions, machinesv1.FactsMismatchReason, fmt.Sprintf("the BMC's system is not MachineInventory %s: %s; no power or boot action is taken: fix inventoryRef or the address", inv.Name, diff), gen)
			return "", false, false
		}
		t := true
		st.FactsAgree = &t
		return "linked to MachineInventory " + inv.Name, true, false
	}
	var list machinesv1.MachineInventoryList
	if err := r.Client.List(ctx, &list, client.InNamespace(b.Namespace)); err != nil {
		return "listing MachineInventories failed: " + err.Error(), true, false
	}
	var byUUID, bySerial []string
	for i := range list.Items {
		a := list.Items[i].Annotations
		if sys.UUID != "" && strings.EqualFold(a[machinesv1.AnnotationSystemUUID], sys.UUID) {
			byUUID = append(byUUID, list.Items[i].Name)
		} else if sys.SerialNumber != "" && a[machinesv1.AnnotationSystemSerial] == sys.SerialNumber {
			bySerial = append(bySerial, list.Items[i].Name)
		}
	}
	match := byUUID
	if len(match) == 0 {
		match = bySerial
	}
	switch len(match) {
	case 0:
		st.InventoryRef, st.FactsAgree = nil, nil
		return fmt.Sprintf("no MachineInventory has UUID %q or serial number %q yet (linked when the machine registers)", sys.UUID, sys.SerialNumber), true, false
	case 1:
		t := true
		st.InventoryRef, st.FactsAgree = &machinesv1.ObjectReference{Name: match[0]}, &t
		return "linked to MachineInventory " + match[0], true, false
	}
	// The cache lists in no stable order; a sorted list keeps the message
	// (and so the status) from changing on every reconcile.
	slices.Sort(match)
	st.InventoryRef, st.FactsAgree = nil, nil
	return fmt.Sprintf("MachineInventories %s all match the BMC's UUID %q or serial number %q: set spec.inventoryRef", strings.Join(match, ", "), sys.UUID, sys.SerialNumber), true, true
}

// factsDiffer says how the inventory's SMBIOS facts differ from the BMC's
// ("" when they agree or the inventory has none).
func factsDiffer(inv *machinesv1.MachineInventory, sys *bmc.System) string {
	var diffs []string
	if u := inv.Annotations[machinesv1.AnnotationSystemUUID]; u != "" && sys.UUID != "" && !strings.EqualFold(u, sys.UUID) {
		diffs = append(diffs, fmt.Sprintf("UUID %q on the BMC, %q on the inventory", sys.UUID, u))
	}
	if s := inv.Annotations[machinesv1.AnnotationSystemSerial]; s != "" && sys.SerialNumber != "" && s != sys.SerialNumber {
		diffs = append(diffs, fmt.Sprintf("serial number %q on the BMC, %q on the inventory", sys.SerialNumber, s))
	}
	return strings.Join(diffs, ", ")
}

// act records one action: an Event, a metric and status.lastAction.
func (r *Reconciler) act(b *machinesv1.BMC, action string, err error, note string) {
	now := metav1.NewTime(r.Now())
	if err != nil {
		actions.WithLabelValues(action, "failed").Inc()
		r.Events.Eventf(b, nil, corev1.EventTypeWarning, action+"Failed", action, "%s", conditions.Message(err.Error()))
		b.Status.LastAction = &machinesv1.BMCAction{Action: action, Result: machinesv1.ActionFailed, Message: cut(err.Error(), 4096), Time: &now}
		return
	}
	actions.WithLabelValues(action, "ok").Inc()
	r.Events.Eventf(b, nil, corev1.EventTypeNormal, action, action, "%s", note)
	b.Status.LastAction = &machinesv1.BMCAction{Action: action, Result: machinesv1.ActionPending, Message: note, Time: &now}
}

func (r *Reconciler) actionFailed(b *machinesv1.BMC, err error) reconcile.Result {
	gen, st := b.Generation, &b.Status
	res := r.failed(b)
	msg := fmt.Sprintf("%v; retrying in %s", err, res.RequeueAfter)
	conditions.MarkReconciling(&st.Conditions, machinesv1.ActionFailedReason, msg, gen)
	conditions.Set(&st.Conditions, conditions.Ready, metav1.ConditionFalse, machinesv1.ActionFailedReason, msg, gen)
	return res
}

// progressing marks work under way and polls again soon.
func progressing(b *machinesv1.BMC, reason, msg string) reconcile.Result {
	gen, st := b.Generation, &b.Status
	conditions.MarkReconciling(&st.Conditions, reason, msg, gen)
	conditions.Set(&st.Conditions, conditions.Ready, metav1.ConditionFalse, reason, msg, gen)
	return reconcile.Result{RequeueAfter: 3 * time.Second}
}

// boot carries out spec.boot once per id: power off, media, override,
// power on. It reports whether it handled the reconcile.
func (r *Reconciler) boot(ctx context.Context, b *machinesv1.BMC, conn *bmc.Conn, sys *bmc.System) (reconcile.Result, bool) {
	req, st := b.Spec.Boot, &b.Status
	if req == nil || (st.Boot != nil && st.Boot.ID == req.ID && st.Boot.Result == machinesv1.ActionSucceeded) {
		return reconcile.Result{}, false
	}
	log := logf.FromContext(ctx)
	image := ""
	target := "Pxe"
	if req.Source != machinesv1.BootPXE {
		target = "Cd"
		image = req.Image
		if ref := req.SeedImageRef; ref != nil {
			if ref.Namespace != "" && ref.Namespace != b.Namespace {
				conditions.MarkStalled(&st.Conditions, machinesv1.InvalidSpecReason, "boot.seedImageRef must be in the BMC's namespace "+b.Namespace, b.Generation)
				return reconcile.Result{}, true
			}
			var si machinesv1.SeedImage
			if err := r.Client.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: ref.Name}, &si); err != nil {
				return progressing(b, machinesv1.WaitingForSeedImageReason, fmt.Sprintf("SeedImage %s (boot.seedImageRef) does not exist yet", ref.Name)), true
			}
			if si.Spec.Type == machinesv1.SeedImageRaw {
				conditions.MarkStalled(&st.Conditions, machinesv1.InvalidSpecReason, fmt.Sprintf("SeedImage %s is a raw disk image; virtual media boots an ISO: use a SeedImage of type iso", si.Name), b.Generation)
				return reconcile.Result{}, true
			}
			if si.Status.State != machinesv1.SeedImageReady || si.Status.DownloadURL == "" {
				return progressing(b, machinesv1.WaitingForSeedImageReason, fmt.Sprintf("SeedImage %s is %s, not Ready", si.Name, si.Status.State)), true
			}
			image = si.Status.DownloadURL
		}
	}
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	now := metav1.NewTime(r.Now())
	// The image URL may carry a download token: status shows it redacted.
	st.Boot = &machinesv1.BMCBootStatus{ID: req.ID, Image: redact(image), Result: machinesv1.ActionPending, Time: &now}
	fail := func(action string, err error) (reconcile.Result, bool) {
		r.act(b, action, err, "")
		st.Boot.Result = machinesv1.ActionFailed
		return r.actionFailed(b, err), true
	}
	// 1. A known power state: off.
	if sys.PowerState != "Off" {
		if err := conn.Reset(sys, "ForceOff"); err != nil {
			return fail("ForceOff", err)
		}
		r.act(b, "ForceOff", nil, "forced the power off to boot "+describe(target, image))
		var werr error
		if sys, werr = conn.WaitPower(ctx, "Off", 60*time.Second); werr != nil {
			return fail("ForceOff", werr)
		}
	}
	// 2. The media.
	if target == "Cd" {
		ejected, err := conn.InsertCD(sys, image)
		if ejected {
			r.act(b, "EjectMedia", nil, "ejected the virtual CD's previous image")
		}
		if err != nil {
			return fail("InsertMedia", err)
		}
		r.act(b, "InsertMedia", nil, "inserted "+redact(image)+" into the virtual CD")
	}
	// 3. The override, for one boot.
	if err := conn.BootOnce(sys, target); err != nil {
		return fail("SetBootOnce", err)
	}
	r.act(b, "SetBootOnce", nil, "boot override "+target+", once")
	// 4. Power on, verified.
	if err := conn.Reset(sys, "On"); err != nil {
		return fail("PowerOn", err)
	}
	r.act(b, "PowerOn", nil, "powered on to boot "+describe(target, image))
	sys, err := conn.WaitPower(ctx, "On", 60*time.Second)
	if err != nil {
		return fail("PowerOn", err)
	}
	r.observe(b, sys)
	log.Info("Booted the machine once through its BMC", "target", target)
	st.Boot.Result = machinesv1.ActionSucceeded
	done := metav1.NewTime(r.Now())
	st.Boot.Time = &done
	st.LastAction = &machinesv1.BMCAction{Action: "Boot", Result: machinesv1.ActionSucceeded, Message: "powered on to boot " + describe(target, image) + " once", Time: &done}
	return reconcile.Result{}, false
}

// powerCycle carries out a power-cycle request (annotation
// machines.edgefleet.io/power-cycle, set by health remediation) once per
// value: the power forced off and seen off, then on and seen on. A failed
// request is not retried under the same value; the requester decides.
func (r *Reconciler) powerCycle(ctx context.Context, b *machinesv1.BMC, conn *bmc.Conn, sys *bmc.System) (reconcile.Result, bool) {
	id, st := b.Annotations[machinesv1.AnnotationPowerCycle], &b.Status
	if id == "" || (st.PowerCycle != nil && st.PowerCycle.ID == id) {
		return reconcile.Result{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	now := metav1.NewTime(r.Now())
	st.PowerCycle = &machinesv1.BMCPowerCycleStatus{ID: cut(id, 128), Result: machinesv1.ActionPending, Time: &now}
	fail := func(action string, err error) (reconcile.Result, bool) {
		r.act(b, action, err, "")
		st.PowerCycle.Result, st.PowerCycle.Message = machinesv1.ActionFailed, cut(action+": "+err.Error(), 4096)
		return r.actionFailed(b, err), true
	}
	if sys.PowerState != "Off" {
		if err := conn.Reset(sys, "ForceOff"); err != nil {
			return fail("ForceOff", err)
		}
		r.act(b, "ForceOff", nil, "forced the power off to power-cycle the machine (request "+id+")")
		var err error
		if sys, err = conn.WaitPower(ctx, "Off", 60*time.Second); err != nil {
			return fail("ForceOff", err)
		}
	}
	if err := conn.Reset(sys, "On"); err != nil {
		return fail("PowerOn", err)
	}
	r.act(b, "PowerOn", nil, "powered on to finish the power cycle (request "+id+")")
	sys, err := conn.WaitPower(ctx, "On", 60*time.Second)
	if err != nil {
		return fail("PowerOn", err)
	}
	r.observe(b, sys)
	done := metav1.NewTime(r.Now())
	st.PowerCycle.Result, st.PowerCycle.Time = machinesv1.ActionSucceeded, &done
	st.LastAction = &machinesv1.BMCAction{Action: "PowerCycle", Result: machinesv1.ActionSucceeded, Message: "power cycled (request " + id + ")", Time: &done}
	return reconcile.Result{}, false
}

func describe(target, image string) string {
	if target == "Pxe" {
		return "from the network (PXE)"
	}
	return "from the virtual CD (" + redact(image) + ")"
}

// redact drops a URL's query and path tail: seed download URLs carry a
// token, which is a credential.
func redact(u string) string {
	if i := strings.Index(u, "/v1/seedimages/"); i >= 0 {
		return u[:i] + "/v1/seedimages/…"
	}
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// power applies spec.power: On at once; Off gracefully, then forced after
// the timeout. It reports whether it handled the reconcile.
func (r *Reconciler) power(ctx context.Context, b *machinesv1.BMC, conn *bmc.Conn, sys *bmc.System) (reconcile.Result, bool) {
	st := &b.Status
	want := b.Spec.Power
	la := st.LastAction
	if want == "" || st.PowerState == want {
		if la != nil && la.Result == machinesv1.ActionPending && la.Action != "Boot" {
			la.Result = machinesv1.ActionSucceeded
			now := metav1.NewTime(r.Now())
			la.Time = &now
		}
		return reconcile.Result{}, false
	}
	if sys.PowerState == "PoweringOn" || sys.PowerState == "PoweringOff" {
		return progressing(b, machinesv1.PowerChangingReason, "the BMC reports "+sys.PowerState), true
	}
	switch want {
	case machinesv1.PowerOn:
		if la != nil && la.Action == "PowerOn" && la.Result == machinesv1.ActionPending && r.Now().Sub(la.Time.Time) < 60*time.Second {
			return progressing(b, machinesv1.PowerChangingReason, "powering on"), true
		}
		err := conn.Reset(sys, "On")
		r.act(b, "PowerOn", err, "powered on (spec.power On)")
		if err != nil {
			return r.actionFailed(b, err), true
		}
		return progressing(b, machinesv1.PowerChangingReason, "powering on"), true
	default:
		timeout := defaultGracefulTimeout
		if t := b.Spec.GracefulShutdownTimeoutSeconds; t != nil {
			timeout = time.Duration(*t) * time.Second
		}
		pending := la != nil && la.Result == machinesv1.ActionPending
		switch {
		case pending && la.Action == "ForceOff" && r.Now().Sub(la.Time.Time) < 60*time.Second:
			return progressing(b, machinesv1.PowerChangingReason, "forcing the power off"), true
		case pending && la.Action == "GracefulShutdown" && r.Now().Sub(la.Time.Time) < timeout:
			return progressing(b, machinesv1.PowerChangingReason, fmt.Sprintf("shutting down gracefully; the power is forced off after %s", timeout)), true
		case timeout == 0 || (pending && (la.Action == "GracefulShutdown" || la.Action == "ForceOff")):
			note := "forced the power off (spec.power Off)"
			if timeout > 0 {
				note = fmt.Sprintf("forced the power off: the graceful shutdown did not finish in %s", timeout)
			}
			err := conn.Reset(sys, "ForceOff")
			r.act(b, "ForceOff", err, note)
			if err != nil {
				return r.actionFailed(b, err), true
			}
			return progressing(b, machinesv1.PowerChangingReason, "forcing the power off"), true
		}
		err := conn.Reset(sys, "GracefulShutdown")
		r.act(b, "GracefulShutdown", err, "asked the OS to shut down (spec.power Off)")
		if err != nil {
			return r.actionFailed(b, err), true
		}
		return progressing(b, machinesv1.PowerChangingReason, fmt.Sprintf("shutting down gracefully; the power is forced off after %s", timeout)), true
	}
}
