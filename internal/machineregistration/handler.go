package machineregistration

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// Handler serves GET /v1/machines/register/{token}: protocol v1 over a
// websocket (docs/machines.md).
type Handler struct {
	// Inventories writes what a registration creates; the handler only
	// authenticates the machine and runs the protocol.
	Inventories
	// MaxWriting bounds the registrations writing to the API server at once
	// (DefaultMaxWriting when 0).
	MaxWriting int

	upgrader  websocket.Upgrader
	slotsOnce sync.Once
	slots     chan struct{}
	quota     quota
}

// DefaultMaxWriting: a registration is about seven sequential API requests,
// so 16 at once keep the API server busy without flooding it. Machines that
// boot together (a site's power returns) would otherwise send every write at
// once; the API server then answers none of them in time, the machines give
// up after machinereg.Timeout and the manager keeps writing for machines that
// already left.
const DefaultMaxWriting = 16

// slotWait is how long a registration waits for a write slot. It leaves
// a third of machinereg.Timeout, which the machine waits for its config, for
// the writes: a machine refused with "busy" retries later, while one whose
// config comes too late has cost the writes and retries anyway.
const slotWait = machinereg.Timeout * 2 / 3

// acquire waits for a write slot; the returned function releases it.
func (h *Handler) acquire(ctx context.Context) (func(), error) {
	h.slotsOnce.Do(func() {
		n := h.MaxWriting
		if n <= 0 {
			n = DefaultMaxWriting
		}
		h.slots = make(chan struct{}, n)
	})
	t := time.NewTimer(slotWait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return func() { <-h.slots }, nil
	case <-t.C:
		return nil, &machinereg.Error{Code: machinereg.CodeInternal, Message: fmt.Sprintf("the manager is busy: %d machines are registering and more are waiting; retry in a few seconds", cap(h.slots))}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ServeHTTP authenticates the registration token before upgrading: a wrong
// token gets 401 and nothing else.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := ctrl.LoggerFrom(r.Context())
	token := r.PathValue("token")
	reg, err := h.registrationByToken(r.Context(), token)
	if err != nil {
		log.Error(err, "Looking up the registration token")
		http.Error(w, "cannot look up the registration right now; retry later", http.StatusServiceUnavailable)
		return
	}
	if reg == nil {
		http.Error(w, "unknown registration token: it is wrong, or was rotated; use the url in the registration's token Secret (kubectl get machineregistrations -A -o wide; kubectl get secret <name>-registration-token -o jsonpath={.data.url} | base64 -d)", http.StatusUnauthorized)
		return
	}
	mr := reg.mr
	h.upgrader.HandshakeTimeout = 5 * time.Second
	ws, err := h.upgrader.Upgrade(w, r, nil) // answers the client itself on error
	if err != nil {
		return
	}
	conn := machinereg.NewConn(ws)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Minute)
	defer cancel()
	log = log.WithValues("MachineRegistration", klog.KObj(mr), "remote", r.RemoteAddr)
	ctx = ctrl.LoggerInto(ctx, log)
	name, err := h.exchange(ctx, conn, reg, r)
	if err != nil {
		var pe *machinereg.Error
		if !errors.As(err, &pe) {
			var ce *websocket.CloseError
			if errors.As(err, &ce) || errors.Is(err, net.ErrClosed) {
				log.Info("Machine closed the registration connection", "err", err.Error())
				_ = ws.Close()
				return
			}
			pe = &machinereg.Error{Code: machinereg.CodeInternal, Message: err.Error()}
		}
		log.Info("Registration refused", "code", pe.Code, "reason", pe.Message)
		conn.Fail(pe)
		return
	}
	log.Info("Machine registered", "MachineInventory", klog.KRef(mr.Namespace, name))
	conn.Close()
}

// tokenRegistration is the registration a token opened, and until when the
// token admits new machines (nil: no expiry).
type tokenRegistration struct {
	mr      *machinesv1.MachineRegistration
	expires *time.Time
}

// registrationByToken finds the registration through the hash of token
// (status.tokenHash, indexed in the cache: no API request for a wrong
// token), then checks the token against the registration's own Secret read
// from the API server, so a rotated token stops working before status
// catches up, and a status edited by hand opens nothing.
func (h *Handler) registrationByToken(ctx context.Context, token string) (*tokenRegistration, error) {
	if len(token) < 32 || len(token) > 128 {
		return nil, nil
	}
	list := &machinesv1.MachineRegistrationList{}
	if err := h.Client.List(ctx, list, client.MatchingFields{tokenHashIndex: TokenHash(token)}); err != nil {
		return nil, err
	}
	for i := range list.Items {
		mr := &list.Items[i]
		if !mr.DeletionTimestamp.IsZero() {
			continue
		}
		s := &corev1.Secret{}
		err := h.Reader.Get(ctx, types.NamespacedName{Namespace: mr.Namespace, Name: TokenSecretName(mr.Name)}, s)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if metav1.IsControlledBy(s, mr) && subtle.ConstantTimeCompare(s.Data[TokenSecretKey], []byte(token)) == 1 {
			return &tokenRegistration{mr: mr, expires: TokenExpiresAt(mr, s)}, nil
		}
	}
	return nil, nil
}

// exchange runs the machinereg. Nothing is written to Kubernetes before the
// identity is proven and the inventory message is valid.
func (h *Handler) exchange(ctx context.Context, conn *machinereg.Conn, reg *tokenRegistration, r *http.Request) (string, error) {
	mr := reg.mr
	m, err := conn.Receive(machinereg.TypeHello)
	if err != nil {
		return "", err
	}
	hello := m.Hello
	if _, err := mr.Spec.Config.Normalized(); err != nil {
		return "", &machinereg.Error{Code: machinereg.CodeInvalidRegistration, Message: fmt.Sprintf("MachineRegistration %s/%s: %v", mr.Namespace, mr.Name, err)}
	}
	if hello.Version < machinereg.MinVersion {
		return "", &machinereg.Error{Code: machinereg.CodeUnsupportedVersion, Message: fmt.Sprintf("protocol version %d is too old; this manager speaks %d to %d: update edgefleet-node", hello.Version, machinereg.MinVersion, machinereg.Version)}
	}
	id, err := h.authenticate(ctx, conn, mr, r.URL.Path, hello)
	if err != nil {
		return "", err
	}
	existing, err := h.Find(ctx, mr.Namespace, id, hello.InventoryName)
	if err != nil {
		return "", err
	}
	if existing == nil && hello.ReRegistration {
		pe := &machinereg.Error{Code: machinereg.CodeReprovisioningNeeded, Message: fmt.Sprintf("MachineInventory %s/%s no longer exists: this machine was removed and must be re-provisioned (reset it, or delete its edgefleet-node state to register it as a new machine)", mr.Namespace, hello.InventoryName)}
		// The registration's reset settings as they are now: an installed
		// node resets itself when they allow it (docs/os/install.md).
		norm, _ := mr.Spec.Config.Normalized()
		reset := machinesv1.ResetConfig{}
		if norm.Reset != nil {
			reset = *norm.Reset
		}
		pe.Reset, _ = json.Marshal(reset.Defaults())
		return "", pe
	}
	if err := h.admit(mr, reg.expires, id, existing); err != nil {
		return "", err
	}
	done := func(bool) {}
	if existing == nil {
		if done, err = h.reserve(ctx, mr, id); err != nil {
			return "", err
		}
	}
	name, err := h.register(ctx, conn, mr, id, existing, hello, r)
	done(name != "")
	return name, err
}

// register completes an admitted registration: the inventory message, the
// writes, the config.
func (h *Handler) register(ctx context.Context, conn *machinereg.Conn, mr *machinesv1.MachineRegistration, id Identity, existing *machinesv1.MachineInventory, hello *machinereg.Hello, r *http.Request) (string, error) {
	if err := conn.Send(&machinereg.Message{Type: machinereg.TypeReady, Ready: &machinereg.Ready{Version: min(hello.Version, machinereg.Version)}}); err != nil {
		return "", err
	}
	m, err := conn.Receive(machinereg.TypeInventory)
	if err != nil {
		return "", err
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	release, err := h.acquire(ctx)
	if err != nil {
		return "", err
	}
	cfg, err := h.Persist(ctx, mr, id, existing, m.Inventory, host)
	release()
	if err != nil {
		return "", err
	}
	if err := conn.Send(&machinereg.Message{Type: machinereg.TypeConfig, Config: cfg}); err != nil {
		return cfg.InventoryName, err // written: the machine counts
	}
	return cfg.InventoryName, nil
}
