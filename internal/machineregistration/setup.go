// Package machineregistration is the manager side of machine onboarding:
// the registration endpoint, where machines prove their identity (TPM
// credential activation, or the fallbacks the registration allows), send
// their hardware data and get a MachineInventory, a plan Secret and a
// credential of their own; and the registration token and per-machine
// object builders the MachineRegistration and MachineInventory controllers
// (internal/controller) share. docs/machines.md describes the protocol and
// the security model.
package machineregistration

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/endpoint"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// Field indexes on the manager's cache.
const (
	// IdentityIndex indexes MachineInventories by "tpm/<tpmHash>" or
	// "machine/<machineHash>".
	IdentityIndex = "machines.edgefleet.io/identity"
	// tokenHashIndex indexes MachineRegistrations by status.tokenHash.
	tokenHashIndex = "machines.edgefleet.io/token-hash"
	// RegistrationIndex indexes MachineInventories by the registration they
	// came through ("<namespace>/<name>"), for the maxMachines quota.
	RegistrationIndex = "machines.edgefleet.io/registration"
)

// DefaultTokenTTL is the lifetime of a machine's credential. Machines
// re-register every 30 minutes, which renews it.
const DefaultTokenTTL = 7 * 24 * time.Hour

// Options configure Setup.
type Options struct {
	// ExternalURL is how machines reach the manager's endpoint. Their
	// kubeconfigs point at ExternalURL + clusterjoin.ManagerAPIPrefix, which the
	// endpoint forwards to the manager's kube-apiserver
	// (registration.ManagerAPIProxy).
	ExternalURL *url.URL
	// CACertPEM is the endpoint's CA, trusted by the machines' kubeconfigs.
	CACertPEM []byte
	TokenTTL  time.Duration
}

// Setup registers the indexes, the MachineRegistration controller and the
// registration route.
func Setup(ctx context.Context, mgr ctrl.Manager, router endpoint.Router, o Options) error {
	if err := AddIndexes(ctx, mgr); err != nil {
		return err
	}
	h, err := NewHandler(mgr, o)
	if err != nil {
		return err
	}
	router.Handle("GET "+RegisterPathPrefix+"{token}", h)
	return nil
}

// NewHandler builds the registration handler from the manager's clients.
func NewHandler(mgr ctrl.Manager, o Options) (*Handler, error) {
	if o.TokenTTL <= 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	if o.ExternalURL == nil || len(o.CACertPEM) == 0 {
		return nil, fmt.Errorf("the machine registration endpoint needs the manager's external URL and CA: machines' kubeconfigs point at them")
	}
	// Registrations write through their own client-side rate limit, so a
	// storm of machines neither waits behind the controllers' requests nor
	// starves them; MaxWriting bounds how many write at once.
	cfg := rest.CopyConfig(mgr.GetConfig())
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), Cache: &client.CacheOptions{Reader: mgr.GetCache()}})
	if err != nil {
		return nil, fmt.Errorf("creating the registration endpoint's client: %w", err)
	}
	return &Handler{Inventories: Inventories{
		Client:    c,
		Reader:    mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("machineregistration"),
		APIServer: ManagerAPIURL(o.ExternalURL),
		CACertPEM: o.CACertPEM,
		TokenTTL:  o.TokenTTL,
	}}, nil
}

// ManagerAPIURL is the Kubernetes API address in a machine's kubeconfig:
// the manager's endpoint, which forwards bearer-token requests to its
// kube-apiserver, so a machine needs to reach one address only.
func ManagerAPIURL(external *url.URL) string {
	return strings.TrimSuffix(external.String(), "/") + clusterjoin.ManagerAPIPrefix
}

// AddIndexes adds the field indexes the registration endpoint looks machines
// and tokens up by.
func AddIndexes(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &machinesv1.MachineInventory{}, IdentityIndex, func(o client.Object) []string {
		if k := identityKey(o.(*machinesv1.MachineInventory)); k != "" {
			return []string{k}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing MachineInventories by identity: %w", err)
	}
	if err := idx.IndexField(ctx, &machinesv1.MachineInventory{}, RegistrationIndex, func(o client.Object) []string {
		inv := o.(*machinesv1.MachineInventory)
		if ref := inv.Spec.RegistrationRef; ref != nil && ref.Name != "" {
			return []string{registrationKey(inv.Namespace, ref)}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing MachineInventories by registration: %w", err)
	}
	if err := idx.IndexField(ctx, &machinesv1.MachineRegistration{}, tokenHashIndex, func(o client.Object) []string {
		if t := o.(*machinesv1.MachineRegistration).Status.TokenHash; t != "" {
			return []string{t}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing MachineRegistrations by token hash: %w", err)
	}
	return nil
}

// registrationKey is the RegistrationIndex value of a registration reference
// made from namespace ns.
func registrationKey(ns string, ref *machinesv1.ObjectReference) string {
	if ref.Namespace != "" {
		ns = ref.Namespace
	}
	return ns + "/" + ref.Name
}
