package machineregistration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/kubenames"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// Annotations the registration server sets on every MachineInventory.
const (
	AnnotationAuth           = "machines.edgefleet.io/auth"
	AnnotationRegistrationIP = "machines.edgefleet.io/registration-ip"
	// PlanSecretType is the type of a machine's plan Secret.
	PlanSecretType = "machines.edgefleet.io/plan"
	// reservedDomain: machines may not set labels in it themselves.
	reservedDomain = "machines.edgefleet.io/"
	// LabelInventory marks the objects the manager created for a machine
	// (plan Secret, ServiceAccount, Role, RoleBinding) with its inventory's
	// name. What proves ownership is the controller reference to the
	// inventory's UID; the label is for selecting them.
	LabelInventory = "machines.edgefleet.io/inventory"
)

// Inventories creates and updates machines' inventories, plan Secrets and
// credentials. The registration endpoint calls it once a machine proved its
// Identity; a controller can call it for a machine it already knows.
type Inventories struct {
	// Client reads from the cache (indexes) and writes.
	Client client.Client
	// Reader reads the API server directly, where the cache may be stale.
	Reader client.Reader
	// Recorder emits warning events (skipped labels).
	Recorder events.EventRecorder
	// APIServer is the Kubernetes API address the machines' kubeconfigs
	// point to (ManagerAPIURL), and CACertPEM the CA they trust for it.
	APIServer string
	CACertPEM []byte
	// TokenTTL is the lifetime of a machine's credential; re-registration
	// renews it.
	TokenTTL time.Duration
}

// DefaultMachineName is used when the registration has no machineName.
const DefaultMachineName = "m-${System Information/UUID}"

// Find finds the inventory of id through the identity index, so the
// cost does not depend on the number of machines. hint (the name the node
// was given last time) covers the moment after a create the cache has not
// seen yet.
func (m *Inventories) Find(ctx context.Context, ns string, id Identity, hint string) (*machinesv1.MachineInventory, error) {
	list := &machinesv1.MachineInventoryList{}
	if err := m.Client.List(ctx, list, client.InNamespace(ns), client.MatchingFields{IdentityIndex: id.indexKey()}); err != nil {
		return nil, fmt.Errorf("looking up the machine's inventory: %w", err)
	}
	var found []*machinesv1.MachineInventory
	for i := range list.Items {
		if list.Items[i].DeletionTimestamp.IsZero() {
			found = append(found, &list.Items[i])
		}
	}
	if len(found) > 1 {
		return nil, fmt.Errorf("MachineInventories %s and %s in %s have the same identity; delete the wrong one", found[0].Name, found[1].Name, ns)
	}
	if len(found) == 1 {
		return found[0], nil
	}
	if hint == "" || len(validation.IsDNS1123Subdomain(hint)) > 0 {
		return nil, nil
	}
	inv := &machinesv1.MachineInventory{}
	if err := m.Reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: hint}, inv); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	if inv.DeletionTimestamp.IsZero() && identityKey(inv) == id.indexKey() {
		return inv, nil
	}
	return nil, nil
}

// Persist creates or updates the machine's inventory, plan Secret and
// credential. When it creates the inventory and a later step fails, it
// deletes it again: no half-registered machine is left behind.
func (m *Inventories) Persist(ctx context.Context, mr *machinesv1.MachineRegistration, id Identity, existing *machinesv1.MachineInventory, in *machinereg.Inventory, remoteIP string) (*machinereg.Config, error) {
	labels, annotations, warnings := m.renderMetadata(mr, existing, in)
	annotations[AnnotationAuth] = id.method
	// The SMBIOS system UUID and serial number, which BMCs are linked by
	// (docs/spec/bmc.md).
	if v := systemFact(in.Data["System Information/UUID"]); v != "" {
		annotations[machinesv1.AnnotationSystemUUID] = strings.ToLower(v)
	}
	if v := systemFact(in.Data["System Information/Serial Number"]); v != "" {
		annotations[machinesv1.AnnotationSystemSerial] = v
	}
	if remoteIP != "" {
		annotations[AnnotationRegistrationIP] = remoteIP
	}
	inv, created, err := m.upsertInventory(ctx, mr, id, existing, in.Data, labels, annotations)
	if err != nil {
		return nil, err
	}
	cfg, err := m.finish(ctx, mr, inv, created)
	if err != nil {
		var pe *machinereg.Error
		if errors.As(err, &pe) && pe.Code == machinereg.CodeConflict {
			m.Recorder.Eventf(mr, inv, corev1.EventTypeWarning, "NameConflict", "Register", "%s", pe.Message)
		}
		if created {
			if derr := m.Client.Delete(ctx, inv); derr != nil && !apierrors.IsNotFound(derr) {
				ctrl.LoggerFrom(ctx).Error(derr, "Removing the half-registered MachineInventory", "MachineInventory", klog.KObj(inv))
			}
		}
		return nil, err
	}
	for _, w := range warnings {
		m.Recorder.Eventf(inv, mr, corev1.EventTypeWarning, "TemplateUnresolved", "Register", "%s", w)
	}
	return cfg, nil
}

func (m *Inventories) renderMetadata(mr *machinesv1.MachineRegistration, existing *machinesv1.MachineInventory, in *machinereg.Inventory) (map[string]string, map[string]string, []string) {
	labels, annotations := map[string]string{}, map[string]string{}
	var warnings []string
	for k, v := range in.Labels {
		if err := kubenames.ValidateLabelKey(k); err != nil || strings.HasPrefix(k, reservedDomain) {
			warnings = append(warnings, fmt.Sprintf("label %q sent by the machine skipped: not a valid key, or in the reserved %s domain", k, reservedDomain))
			continue
		}
		labels[k] = sanitizeLabelValue(v)
	}
	for k, v := range in.Annotations {
		if kubenames.ValidateLabelKey(k) == nil && !strings.HasPrefix(k, reservedDomain) {
			annotations[k] = v
		}
	}
	for key, from := range map[string]string{
		machinesv1.LabelManufacturer: "System Information/Manufacturer",
		machinesv1.LabelProductName:  "System Information/Product Name",
		machinesv1.LabelArchitecture: "Runtime/Arch",
	} {
		if v := sanitizeLabelValue(in.Data[from]); v != "" {
			labels[key] = v
		}
	}
	for k, tmpl := range mr.Spec.MachineInventoryLabels {
		if err := kubenames.ValidateLabelKey(k); err != nil {
			warnings = append(warnings, fmt.Sprintf("label skipped: %v (fix machineInventoryLabels of MachineRegistration %s)", err, mr.Name))
			continue
		}
		if existing != nil && hasRandom(tmpl) && existing.Labels[k] != "" {
			labels[k] = existing.Labels[k] // random values are drawn once
			continue
		}
		v, err := render(tmpl, in.Data)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("label %q skipped: %v (template %q in machineInventoryLabels of MachineRegistration %s)", k, err, tmpl, mr.Name))
			continue
		}
		if v = sanitizeLabelValue(v); v == "" {
			warnings = append(warnings, fmt.Sprintf("label %q skipped: template %q renders to no valid label value", k, tmpl))
			continue
		}
		labels[k] = v
	}
	for k, tmpl := range mr.Spec.MachineInventoryAnnotations {
		if err := kubenames.ValidateLabelKey(k); err != nil {
			warnings = append(warnings, fmt.Sprintf("annotation skipped: %v", err))
			continue
		}
		if existing != nil && hasRandom(tmpl) && existing.Annotations[k] != "" {
			annotations[k] = existing.Annotations[k]
			continue
		}
		v, err := render(tmpl, in.Data)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("annotation %q skipped: %v (template %q in machineInventoryAnnotations of MachineRegistration %s)", k, err, tmpl, mr.Name))
			continue
		}
		annotations[k] = v
	}
	return labels, annotations, warnings
}

func (m *Inventories) upsertInventory(ctx context.Context, mr *machinesv1.MachineRegistration, id Identity, existing *machinesv1.MachineInventory, data, labels, annotations map[string]string) (*machinesv1.MachineInventory, bool, error) {
	if existing != nil {
		before := existing.DeepCopy()
		if existing.Labels == nil {
			existing.Labels = map[string]string{}
		}
		if existing.Annotations == nil {
			existing.Annotations = map[string]string{}
		}
		maps.Copy(existing.Labels, labels)
		maps.Copy(existing.Annotations, annotations)
		if err := m.Client.Patch(ctx, existing, client.MergeFrom(before)); err != nil {
			return nil, false, fmt.Errorf("updating MachineInventory %s: %w", existing.Name, err)
		}
		return existing, false, nil
	}
	name := inventoryName(mr, data)
	for attempt := 0; ; attempt++ {
		inv := &machinesv1.MachineInventory{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: mr.Namespace, Labels: labels, Annotations: annotations},
			Spec: machinesv1.MachineInventorySpec{
				TPMHash: id.tpmHash, MachineHash: id.machineHash,
				PlanRef:         &machinesv1.ObjectReference{Name: name, Namespace: mr.Namespace},
				RegistrationRef: &machinesv1.ObjectReference{Name: mr.Name, Namespace: mr.Namespace},
			},
		}
		err := m.Client.Create(ctx, inv)
		if err == nil {
			return inv, true, nil
		}
		if !apierrors.IsAlreadyExists(err) || attempt > 0 {
			return nil, false, fmt.Errorf("creating MachineInventory %s: %w", name, err)
		}
		// The name is taken: by this machine (a concurrent registration the
		// cache has not seen yet), or by another machine with the same
		// SMBIOS data (cloned firmware), which gets a suffix of its identity.
		other := &machinesv1.MachineInventory{}
		if err := m.Reader.Get(ctx, types.NamespacedName{Namespace: mr.Namespace, Name: name}, other); err != nil {
			return nil, false, fmt.Errorf("reading MachineInventory %s: %w", name, err)
		}
		if identityKey(other) == id.indexKey() && other.DeletionTimestamp.IsZero() {
			return m.upsertInventory(ctx, mr, id, other, data, labels, annotations)
		}
		hash := id.tpmHash + id.machineHash
		name = sanitizeName(fmt.Sprintf("%.49s-%s", name, hash[:8]))
	}
}

// inventoryName renders spec.machineName over the machine's data into a
// valid, bounded object name; a random one when nothing valid remains.
func inventoryName(mr *machinesv1.MachineRegistration, data map[string]string) string {
	name, err := renderName(mr, data)
	if err != nil {
		name = "m-" + string(uuid.NewUUID())
	}
	return name
}

// renderName renders spec.machineName over the machine's data into a
// valid, bounded object name, or says why it cannot.
func renderName(mr *machinesv1.MachineRegistration, data map[string]string) (string, error) {
	tmpl := mr.Spec.MachineName
	if tmpl == "" {
		tmpl = DefaultMachineName
	}
	v, err := render(tmpl, data)
	if err != nil {
		return "", err
	}
	if name := sanitizeName(v); name != "" {
		return name, nil
	}
	return "", fmt.Errorf("machineName %q renders to %q, which has nothing of a valid name", tmpl, v)
}

// finish makes sure the machine's plan Secret and credential exist, marks the
// inventory Registered and returns the machine's config.
func (m *Inventories) finish(ctx context.Context, mr *machinesv1.MachineRegistration, inv *machinesv1.MachineInventory, created bool) (*machinereg.Config, error) {
	plan, err := m.ensurePlanSecret(ctx, mr, inv, created)
	if err != nil {
		return nil, keepProtocolError(err, "creating the plan Secret of %s", inv.Name)
	}
	if err := m.ensureRBAC(ctx, mr, inv, plan.Name, created); err != nil {
		return nil, keepProtocolError(err, "creating the credential of %s", inv.Name)
	}
	kubeconfig, err := m.issueKubeconfig(ctx, inv, plan)
	if err != nil {
		return nil, fmt.Errorf("issuing the credential of %s: %w", inv.Name, err)
	}
	before := inv.DeepCopy()
	inv.Status.LastSeen = metav1.Now()
	meta.SetStatusCondition(&inv.Status.Conditions, metav1.Condition{
		Type: machinesv1.RegisteredCondition, Status: metav1.ConditionTrue, Reason: machinesv1.RegistrationSucceededReason,
		Message: "registered through MachineRegistration " + mr.Name + " with auth " + inv.Annotations[AnnotationAuth], ObservedGeneration: inv.Generation,
	})
	if err := m.Client.Status().Patch(ctx, inv, client.MergeFrom(before)); err != nil {
		return nil, fmt.Errorf("updating the status of MachineInventory %s: %w", inv.Name, err)
	}
	cfg := &machinereg.Config{InventoryName: inv.Name, Namespace: inv.Namespace, Kubeconfig: kubeconfig, PlanSecret: plan.Name}
	// The node gets one layout whichever spelling (config.* or Elemental's
	// config.elemental.*) the registration uses; exchange refused
	// conflicting spellings before anything was written.
	norm, _ := mr.Spec.Config.Normalized()
	if cc := norm.CloudConfig; cc != nil {
		cfg.CloudConfig = cc.Raw
	}
	if in := norm.Install; in != nil {
		cfg.Install, _ = json.Marshal(in)
	}
	if rc := norm.Registration; rc != nil {
		cfg.Registration, _ = json.Marshal(rc)
	}
	if rs := norm.Reset; rs != nil {
		cfg.Reset, _ = json.Marshal(rs.Defaults())
	}
	return cfg, nil
}

// planName is the plan Secret of inv: spec.planRef, or the inventory's name
// for inventories an admin created without one.
func planName(inv *machinesv1.MachineInventory) string {
	if inv.Spec.PlanRef != nil && inv.Spec.PlanRef.Name != "" {
		return inv.Spec.PlanRef.Name
	}
	return inv.Name
}

// ensurePlanSecret returns the machine's plan Secret, creating it if needed.
func (m *Inventories) ensurePlanSecret(ctx context.Context, mr *machinesv1.MachineRegistration, inv *machinesv1.MachineInventory, created bool) (*corev1.Secret, error) {
	got, err := m.ensureOwned(ctx, mr, inv, PlanSecret(inv), created)
	if err != nil {
		return nil, err
	}
	return got.(*corev1.Secret), nil
}

// ensureRBAC gives the machine's ServiceAccount read access to its own plan
// Secret and write access to its own inventory's status, by resourceNames:
// nothing else, and nothing shared with other machines.
func (m *Inventories) ensureRBAC(ctx context.Context, mr *machinesv1.MachineRegistration, inv *machinesv1.MachineInventory, plan string, created bool) error {
	objs := RBACObjects(inv, plan)
	for _, o := range objs {
		if _, err := m.ensureOwned(ctx, mr, inv, o, created); err != nil {
			return err
		}
	}
	return nil
}

// ensureOwned creates want, controlled by inv, or returns the object of that
// name if inv controls it. Anything else of that name (an admin's Secret, the
// namespace's default ServiceAccount, another machine's objects, leftovers
// of a deleted inventory) is a Conflict: the machine chose the name through
// its SMBIOS data, so reusing the object would hand it to the machine.
// For a new inventory (created) the create comes first, as the name is
// expected to be free; for a known machine the read.
func (m *Inventories) ensureOwned(ctx context.Context, mr *machinesv1.MachineRegistration, inv *machinesv1.MachineInventory, want client.Object, created bool) (client.Object, error) {
	key := client.ObjectKeyFromObject(want)
	got := emptyLike(want)
	if !created {
		err := m.Reader.Get(ctx, key, got)
		if err == nil {
			return got, ownedBy(mr, inv, got)
		}
		if !apierrors.IsNotFound(err) {
			return nil, err
		}
	}
	if err := OwnFor(inv, want, m.Client.Scheme()); err != nil {
		return nil, err
	}
	err := m.Client.Create(ctx, want)
	if err == nil {
		return want, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	got = emptyLike(want)
	if err := m.Reader.Get(ctx, key, got); err != nil {
		return nil, err
	}
	return got, ownedBy(mr, inv, got)
}

// emptyLike is a new, empty object of o's type to read into.
func emptyLike(o client.Object) client.Object {
	return reflect.New(reflect.TypeOf(o).Elem()).Interface().(client.Object)
}

// ownedBy is nil when inv controls o (by UID: a deleted inventory's
// leftovers are not the new one's), else the Conflict the machine gets.
func ownedBy(mr *machinesv1.MachineRegistration, inv *machinesv1.MachineInventory, o client.Object) error {
	if metav1.IsControlledBy(o, inv) {
		return nil
	}
	kind := strings.TrimPrefix(fmt.Sprintf("%T", o), "*v1.")
	why := "it was not created by the manager for this machine"
	if c := metav1.GetControllerOf(o); c != nil && c.Kind == "MachineInventory" && c.Name == inv.Name {
		why = "it belongs to a deleted MachineInventory of the same name and is being removed; retry in a minute"
	}
	return &machinereg.Error{Code: machinereg.CodeConflict, Message: fmt.Sprintf(
		"%s %s/%s already exists and %s. The manager never takes over objects it did not create for a machine: rename or delete it, or change spec.machineName of MachineRegistration %s so machines get other names",
		kind, o.GetNamespace(), o.GetName(), why, mr.Name)}
}

// keepProtocolError wraps err with context unless it is an answer for the
// machine, which must keep its code.
func keepProtocolError(err error, format string, args ...any) error {
	var pe *machinereg.Error
	if errors.As(err, &pe) {
		return pe
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

// issueKubeconfig requests a token for the machine's ServiceAccount, bound to
// its plan Secret: deleting the inventory (and so the Secret) revokes it.
func (m *Inventories) issueKubeconfig(ctx context.Context, inv *machinesv1.MachineInventory, plan *corev1.Secret) ([]byte, error) {
	ttl := int64(m.TokenTTL / time.Second)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &ttl,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: plan.Name, UID: plan.UID},
	}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: inv.Name, Namespace: inv.Namespace}}
	if err := m.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
		return nil, err
	}
	name := "edgefleet"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: m.APIServer, CertificateAuthorityData: m.CACertPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: inv.Namespace}
	cfg.CurrentContext = name
	return clientcmd.Write(*cfg)
}

// identityKey is the identity index value of an inventory.
func identityKey(inv *machinesv1.MachineInventory) string {
	if inv.Spec.TPMHash != "" {
		return "tpm/" + inv.Spec.TPMHash
	}
	if inv.Spec.MachineHash != "" {
		return "machine/" + inv.Spec.MachineHash
	}
	return ""
}

// systemFact is an SMBIOS value fit to compare with a BMC's: trimmed,
// bounded, and empty for the placeholders firmware leaves unset.
func systemFact(v string) string {
	v = strings.TrimSpace(v)
	if len(v) > 256 || !utf8.ValidString(v) {
		return ""
	}
	switch strings.ToLower(v) {
	case "", "none", "not specified", "to be filled by o.e.m.", "default string", "0", "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff":
		return ""
	}
	return v
}
