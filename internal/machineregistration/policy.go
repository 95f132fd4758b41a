package machineregistration

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// admit applies the registration's policy to a machine whose identity is
// proven (or, for mac/sys-uuid, claimed), before anything is written:
// token expiry and TPM trust. existing is the machine's inventory, if any.
func (h *Handler) admit(mr *machinesv1.MachineRegistration, expires *time.Time, id Identity, existing *machinesv1.MachineInventory) error {
	known := existing != nil
	if expires != nil && time.Now().After(*expires) {
		// An expired token still lets the machines it registered renew their
		// credential, when they prove who they are: expiry bounds enrolment,
		// it does not strand a fleet.
		ours := known && existing.Spec.RegistrationRef != nil && registrationKey(existing.Namespace, existing.Spec.RegistrationRef) == mr.Namespace+"/"+mr.Name
		if !ours || !id.proven() {
			return &machinereg.Error{Code: machinereg.CodeTokenExpired, Message: fmt.Sprintf(
				"the registration token of MachineRegistration %s/%s expired at %s (spec.token.ttl): it admits no new machines. An admin sets spec.token.rotation to a new value to issue a new token; then boot this machine with the new registration URL",
				mr.Namespace, mr.Name, expires.UTC().Format(time.RFC3339))}
		}
	}
	if id.method == machinereg.AuthTPM && !id.ekCertified && !known && !mr.Spec.TPM.TrustOnFirstUse {
		return &machinereg.Error{Code: machinereg.CodeAuthFailed, Message: fmt.Sprintf(
			"this TPM is not trusted by MachineRegistration %s/%s: its endorsement key is not known (no MachineInventory has tpmHash %s) and no Secret %s/%s holds a CA its EK certificate chains to. An admin adds the TPM vendor's CA to Secret %s (key ca.crt), pre-creates a MachineInventory with this tpmHash, or sets spec.tpm.trustOnFirstUse: true to accept any TPM",
			mr.Namespace, mr.Name, id.tpmHash, mr.Namespace, TPMCASecretName, TPMCASecretName)}
	}
	return nil
}

// pendingTTL is how long a reservation of a machine slot counts while the
// inventory it was made for is not in the cache yet.
const pendingTTL = time.Minute

// quota counts, per registration, the inventories being created that the
// cache has not seen yet, so machines registering at the same moment cannot
// all pass the same count.
type quota struct {
	mu      sync.Mutex
	pending map[string]map[string]time.Time // registration → identity key → reserved at
}

// reserve takes one of the registration's maxMachines slots for a new
// machine. The returned function gives it back when the registration
// failed (done(false)); a slot of a created inventory stays reserved until
// the cache counts the inventory.
func (h *Handler) reserve(ctx context.Context, mr *machinesv1.MachineRegistration, id Identity) (func(ok bool), error) {
	limit := int(mr.Spec.MaxMachines)
	if limit <= 0 {
		limit = machinesv1.DefaultMaxMachines
	}
	key := mr.Namespace + "/" + mr.Name
	q := &h.quota
	q.mu.Lock()
	defer q.mu.Unlock()
	// Listed under the lock: a later reservation never sees an older cache
	// than an earlier one, so a dropped reservation is always counted.
	list := &machinesv1.MachineInventoryList{}
	if err := h.Client.List(ctx, list, client.InNamespace(mr.Namespace), client.MatchingFields{RegistrationIndex: key}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("counting the machines of MachineRegistration %s: %w", key, err)
	}
	if q.pending == nil {
		q.pending = map[string]map[string]time.Time{}
	}
	p := q.pending[key]
	if p == nil {
		p = map[string]time.Time{}
		q.pending[key] = p
	}
	seen := make(map[string]bool, len(list.Items))
	for i := range list.Items {
		seen[identityKey(&list.Items[i])] = true
	}
	for k, at := range p {
		if seen[k] || time.Since(at) > pendingTTL {
			delete(p, k)
		}
	}
	n := len(list.Items) + len(p)
	if _, retry := p[id.indexKey()]; retry {
		n-- // the same machine again, while its first attempt is in flight
	}
	if n >= limit {
		msg := fmt.Sprintf("MachineRegistration %s has registered %d machines, its limit (spec.maxMachines %d): this machine is refused. An admin raises spec.maxMachines or deletes MachineInventories that are gone", key, n, limit)
		h.Recorder.Eventf(mr, nil, corev1.EventTypeWarning, "QuotaExceeded", "Register", "%s", msg)
		return nil, &machinereg.Error{Code: machinereg.CodeQuotaExceeded, Message: msg}
	}
	idKey := id.indexKey()
	p[idKey] = time.Now()
	return func(ok bool) {
		if ok {
			return
		}
		q.mu.Lock()
		defer q.mu.Unlock()
		delete(q.pending[key], idKey)
	}, nil
}
