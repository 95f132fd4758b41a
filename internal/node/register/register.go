package register

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgefleet/edgefleet/internal/node/hwinfo"
	"github.com/edgefleet/edgefleet/internal/node/nodetpm"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// ErrReprovisioningNeeded: the manager deleted this machine's inventory; the
// machine must be reset (or its state removed) before it registers again.
var ErrReprovisioningNeeded = errors.New("re-provisioning needed")

// ReprovisionError is ErrReprovisioningNeeded with the registration's
// current reset settings (nil from managers that do not send them).
type ReprovisionError struct {
	Message string
	Reset   json.RawMessage
}

func (e *ReprovisionError) Error() string { return ErrReprovisioningNeeded.Error() + ": " + e.Message }
func (e *ReprovisionError) Unwrap() error { return ErrReprovisioningNeeded }

// Options adjust one registration.
type Options struct {
	// Data replaces the collected hardware data (tests, `inventory` output
	// fed back in).
	Data map[string]string
	// Warn receives non-fatal problems (unreadable hardware data).
	Warn func(string)
}

// Result is a successful registration.
type Result struct {
	InventoryName string
	Namespace     string
	Auth          string
	// ReRegistration is true when the machine was already registered.
	ReRegistration bool
	Config         *machinereg.Config
}

// Register registers the machine once and stores the result in the state
// directory.
func Register(ctx context.Context, cfg *machinereg.NodeConfig, o Options) (*Result, error) {
	reg := cfg.Registration
	state, err := loadState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if state.RegistrationURL != "" && state.RegistrationURL != reg.URL {
		// Another registration endpoint: this is a new machine there.
		state = &State{EmulatedTPMSeed: state.EmulatedTPMSeed}
	}
	state.RegistrationURL = reg.URL
	data := o.Data
	if data == nil {
		var warnings []string
		data, warnings = hwinfo.Collect(hwinfo.Options{NoSMBIOS: reg.NoSMBIOS, DMIDir: reg.DMIDir})
		for _, w := range warnings {
			if o.Warn != nil {
				o.Warn(w)
			}
		}
	}
	hello, tpm, err := prepareIdentity(cfg, state, data)
	if err != nil {
		return nil, err
	}
	if tpm != nil {
		defer tpm.Close()
	}
	// The emulated TPM's seed is saved before the first exchange, so a
	// registration the machine never hears the end of is not a new machine
	// the next time.
	if err := saveState(cfg.StateDir, state); err != nil {
		return nil, err
	}
	hello.ReRegistration = state.InventoryName != ""
	hello.InventoryName = state.InventoryName

	conn, path, err := dial(ctx, reg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	res, err := exchange(conn, path, hello, tpm, cfg, state, data)
	if err != nil {
		var pe *machinereg.Error
		if errors.As(err, &pe) && pe.Code == machinereg.CodeReprovisioningNeeded {
			return nil, &ReprovisionError{Message: pe.Message, Reset: pe.Reset}
		}
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("the manager refused the registration: %s", pe.Message)
		}
		return nil, err
	}
	return res, nil
}

// prepareIdentity picks the auth method the registration config allows and
// this machine can do, and builds the Hello for it.
func prepareIdentity(cfg *machinereg.NodeConfig, state *State, data map[string]string) (*machinereg.Hello, *nodetpm.TPM, error) {
	reg := cfg.Registration
	hello := &machinereg.Hello{Version: machinereg.Version}
	var methods []string
	switch {
	case reg.EmulateTPM:
		methods = []string{machinereg.AuthEmulatedTPM}
	case reg.Auth == "" || reg.Auth == "tpm":
		methods = []string{machinereg.AuthTPM}
	case reg.Auth == "tpm-or-fallback":
		methods = append([]string{machinereg.AuthTPM}, reg.Fallback...)
	default:
		methods = []string{reg.Auth}
	}
	var problems []error
	for _, m := range methods {
		hello.Auth = m
		switch m {
		case machinereg.AuthTPM:
			tpm, err := nodetpm.Open(reg.TPMSocket)
			if err == nil {
				hello.TPM, err = tpm.Hello()
				if err == nil {
					state.Auth = m
					return hello, tpm, nil
				}
				tpm.Close()
			}
			problems = append(problems, err)
		case machinereg.AuthEmulatedTPM:
			seed := machinereg.SeedFromInt(reg.EmulatedTPMSeed)
			if reg.EmulatedTPMSeed == -1 || reg.EmulatedTPMSeed == 0 {
				var err error
				if seed, err = state.seed(); err != nil {
					return nil, nil, err
				}
			}
			e, err := machinereg.NewEmulatedTPM(seed)
			if err != nil {
				return nil, nil, err
			}
			hello.EmulatedTPMPublicKey = e.PublicKey()
			state.Auth = m
			return hello, nil, nil
		case machinereg.AuthMAC:
			if hello.MachineID = hwinfo.PrimaryMAC(data); hello.MachineID != "" {
				state.Auth = m
				return hello, nil, nil
			}
			problems = append(problems, errors.New("no physical network interface with a MAC address"))
		case machinereg.AuthSysUUID:
			if hello.MachineID = hwinfo.SystemUUID(data); hello.MachineID != "" {
				state.Auth = m
				return hello, nil, nil
			}
			problems = append(problems, errors.New("no usable SMBIOS system UUID"))
		}
	}
	return nil, nil, fmt.Errorf("cannot prove this machine's identity with %v: %w", methods, errors.Join(problems...))
}

func dial(ctx context.Context, reg machinereg.NodeRegistration) (*machinereg.Conn, string, error) {
	u, err := url.Parse(reg.URL)
	if err != nil {
		return nil, "", err
	}
	path := u.Path
	if u.Scheme == "https" {
		u.Scheme = "wss"
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if reg.CACert != "" {
		pem := []byte(reg.CACert)
		if !machinereg.IsPEM(reg.CACert) {
			if pem, err = os.ReadFile(reg.CACert); err != nil {
				return nil, "", fmt.Errorf("reading registration.ca-cert: %w", err)
			}
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, "", errors.New("registration.ca-cert holds no PEM certificate")
		}
	}
	d := websocket.Dialer{
		HandshakeTimeout: 10 * time.Second,
		TLSClientConfig:  &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		Proxy:            http.ProxyFromEnvironment,
	}
	ws, resp, err := d.DialContext(ctx, u.String(), nil)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			return nil, "", fmt.Errorf("the manager answered %s at %s: %s", resp.Status, reg.URL, strings.TrimSpace(string(body)))
		}
		return nil, "", fmt.Errorf("connecting to %s: %w", reg.URL, err)
	}
	return machinereg.NewConn(ws), path, nil
}

func exchange(conn *machinereg.Conn, path string, hello *machinereg.Hello, tpm *nodetpm.TPM, cfg *machinereg.NodeConfig, state *State, data map[string]string) (*Result, error) {
	if err := conn.Send(&machinereg.Message{Type: machinereg.TypeHello, Hello: hello}); err != nil {
		return nil, err
	}
	m, err := conn.Receive(machinereg.TypeChallenge, machinereg.TypeReady)
	if err != nil {
		return nil, err
	}
	if m.Type == machinereg.TypeChallenge {
		proof := &machinereg.Proof{}
		switch hello.Auth {
		case machinereg.AuthTPM:
			if proof.Secret, err = tpm.Activate(m.Challenge); err != nil {
				return nil, err
			}
		case machinereg.AuthEmulatedTPM:
			seed := state.EmulatedTPMSeed
			if cfg.Registration.EmulatedTPMSeed != -1 && cfg.Registration.EmulatedTPMSeed != 0 {
				seed = machinereg.SeedFromInt(cfg.Registration.EmulatedTPMSeed)
			}
			e, err := machinereg.NewEmulatedTPM(seed)
			if err != nil {
				return nil, err
			}
			proof.Signature = e.Sign(path, m.Challenge.Nonce)
		default:
			return nil, fmt.Errorf("the manager sent a challenge for auth %s", hello.Auth)
		}
		if err := conn.Send(&machinereg.Message{Type: machinereg.TypeProof, Proof: proof}); err != nil {
			return nil, err
		}
		if m, err = conn.Receive(machinereg.TypeReady); err != nil {
			return nil, err
		}
	}
	if m.Ready.Version < machinereg.MinVersion || m.Ready.Version > machinereg.Version {
		return nil, fmt.Errorf("the manager chose protocol version %d, this node speaks %d to %d", m.Ready.Version, machinereg.MinVersion, machinereg.Version)
	}
	inv := &machinereg.Inventory{Data: data, Labels: cfg.Registration.Labels, Annotations: cfg.Registration.Annotations}
	if err := conn.Send(&machinereg.Message{Type: machinereg.TypeInventory, Inventory: inv}); err != nil {
		return nil, err
	}
	if m, err = conn.Receive(machinereg.TypeConfig); err != nil {
		return nil, err
	}
	c := m.Config
	res := &Result{InventoryName: c.InventoryName, Namespace: c.Namespace, Auth: hello.Auth, ReRegistration: hello.ReRegistration, Config: c}
	if err := writeFile(cfg.StateDir, KubeconfigFile, c.Kubeconfig); err != nil {
		return nil, err
	}
	stored := *c
	stored.Kubeconfig = nil
	cj, _ := json.MarshalIndent(&stored, "", "  ")
	if err := writeFile(cfg.StateDir, ConfigFile, cj); err != nil {
		return nil, err
	}
	state.InventoryName, state.Namespace, state.LastRegistered = c.InventoryName, c.Namespace, time.Now().UTC()
	if err := saveState(cfg.StateDir, state); err != nil {
		return nil, err
	}
	return res, nil
}
