// Package protocol is the machine registration protocol spoken over a
// websocket between edgefleet-node and the manager (docs/machines.md). Both
// sides use it: the node links it, so it imports only the standard library.
//
// Every websocket message is one JSON object (a text frame) with a "type".
// Decode enforces the size limits and rejects unknown fields, so a malformed
// or oversized message ends the connection before anything is written.
package machinereg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Version is the highest protocol version this build speaks. Hello carries the
// client's; the server answers with the lower of the two in Ready.
const Version = 1

// MinVersion is the oldest protocol version the server accepts.
const MinVersion = 1

// Size limits. MaxMessageBytes bounds every message (the websocket read limit
// is set to it too); the inventory bounds keep label templating cheap.
const (
	MaxMessageBytes   = 256 << 10
	MaxInventoryKeys  = 4096
	MaxKeyBytes       = 256
	MaxValueBytes     = 1024
	MaxClientLabels   = 64
	maxBlobBytes      = 16 << 10
	maxIdentifierByte = 256
)

// Message types.
const (
	TypeHello     = "hello"
	TypeChallenge = "challenge"
	TypeProof     = "proof"
	TypeReady     = "ready"
	TypeInventory = "inventory"
	TypeConfig    = "config"
	TypeError     = "error"
)

// Auth methods a node may offer in Hello.
const (
	AuthTPM         = "tpm"
	AuthEmulatedTPM = "emulated-tpm"
	AuthMAC         = "mac"
	AuthSysUUID     = "sys-uuid"
)

// Error codes in Error messages.
const (
	// CodeReprovisioningNeeded: the node re-registered but its
	// MachineInventory was deleted; it must be reset and registered afresh.
	CodeReprovisioningNeeded = "ReprovisioningNeeded"
	// CodeAuthFailed: the identity proof was wrong or not allowed.
	CodeAuthFailed = "AuthenticationFailed"
	// CodeBadMessage: a message was malformed, oversized or out of order.
	CodeBadMessage = "BadMessage"
	// CodeUnsupportedVersion: no common protocol version.
	CodeUnsupportedVersion = "UnsupportedVersion"
	// CodeInternal: the manager failed; retry later.
	CodeInternal = "InternalError"
	// CodeTokenExpired: the registration token is past its ttl and this
	// machine is not one it registered before.
	CodeTokenExpired = "TokenExpired"
	// CodeConflict: an object the machine would get (its inventory's name,
	// plan Secret, ServiceAccount, Role) exists and is not the machine's.
	CodeConflict = "Conflict"
	// CodeQuotaExceeded: the registration has as many machines as its
	// maxMachines allows.
	CodeQuotaExceeded = "QuotaExceeded"
	// CodeInvalidRegistration: the MachineRegistration cannot be acted on
	// (e.g. config.install and config.elemental.install differ).
	CodeInvalidRegistration = "InvalidRegistration"
)

// Message is the envelope of every message; exactly the field matching Type
// is set.
type Message struct {
	Type      string     `json:"type"`
	Hello     *Hello     `json:"hello,omitempty"`
	Challenge *Challenge `json:"challenge,omitempty"`
	Proof     *Proof     `json:"proof,omitempty"`
	Ready     *Ready     `json:"ready,omitempty"`
	Inventory *Inventory `json:"inventory,omitempty"`
	Config    *Config    `json:"config,omitempty"`
	Error     *Error     `json:"error,omitempty"`
}

// Hello opens a registration (node → manager).
type Hello struct {
	// Version is the highest protocol version the node speaks.
	Version int `json:"version"`
	// Auth is the identity method the node uses.
	Auth string `json:"auth"`
	// ReRegistration is set when the node registered before (it has state);
	// InventoryName is the name it was given then.
	ReRegistration bool   `json:"reRegistration,omitempty"`
	InventoryName  string `json:"inventoryName,omitempty"`
	// TPM is set for auth "tpm".
	TPM *TPMHello `json:"tpm,omitempty"`
	// EmulatedTPM is set for auth "emulated-tpm": the PKIX DER public key
	// derived from the node's seed.
	EmulatedTPMPublicKey []byte `json:"emulatedTPMPublicKey,omitempty"`
	// MachineID is the MAC address or SMBIOS UUID for auth "mac"/"sys-uuid".
	MachineID string `json:"machineID,omitempty"`
}

// TPMHello carries the TPM's endorsement key and a fresh attestation key.
type TPMHello struct {
	// EKPublic is the PKIX DER endorsement public key.
	EKPublic []byte `json:"ekPublic"`
	// EKCertificate is the DER EK certificate, when the TPM has one.
	EKCertificate []byte `json:"ekCertificate,omitempty"`
	// AK holds go-attestation's AttestationParameters of the new AK.
	AK AKParameters `json:"ak"`
}

// AKParameters mirrors attest.AttestationParameters (TPM 2.0 fields).
type AKParameters struct {
	Public            []byte `json:"public"`
	CreateData        []byte `json:"createData"`
	CreateAttestation []byte `json:"createAttestation"`
	CreateSignature   []byte `json:"createSignature"`
}

// Challenge asks the node to prove its identity (manager → node).
type Challenge struct {
	// Credential and Secret are a TPM credential-activation challenge
	// (attest.EncryptedCredential).
	Credential []byte `json:"credential,omitempty"`
	Secret     []byte `json:"secret,omitempty"`
	// Nonce is what an emulated TPM signs.
	Nonce []byte `json:"nonce,omitempty"`
}

// Proof answers a Challenge (node → manager).
type Proof struct {
	// Secret is the activated credential (TPM).
	Secret []byte `json:"secret,omitempty"`
	// Signature is the emulated TPM's signature over EmulatedTPMSignedData.
	Signature []byte `json:"signature,omitempty"`
}

// Ready tells the node its identity is accepted and which protocol version
// is used from now on (manager → node).
type Ready struct {
	Version int `json:"version"`
}

// Inventory is the machine's hardware data and its own labels (node →
// manager). Data keys are template paths such as
// "System Information/Manufacturer".
type Inventory struct {
	Data        map[string]string `json:"data"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Config is the registration result (manager → node).
type Config struct {
	InventoryName string `json:"inventoryName"`
	Namespace     string `json:"namespace"`
	// CloudConfig, Install and Registration are the MachineRegistration's
	// config, as JSON.
	CloudConfig  json.RawMessage `json:"cloudConfig,omitempty"`
	Install      json.RawMessage `json:"install,omitempty"`
	Registration json.RawMessage `json:"registration,omitempty"`
	// Reset is the registration's reset config (defaults filled in): what
	// the node does when its inventory is deleted (docs/os/install.md).
	Reset json.RawMessage `json:"reset,omitempty"`
	// Kubeconfig is the machine's own credential: it can read only its plan
	// Secret and write only its MachineInventory's status.
	Kubeconfig []byte `json:"kubeconfig"`
	// PlanSecret names the Secret holding the machine's plan.
	PlanSecret string `json:"planSecret"`
}

// Error ends a registration (manager → node).
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Reset is, with CodeReprovisioningNeeded, the registration's current
	// reset config (defaults filled in; enabled false when it allows none):
	// the node resets itself when it is enabled.
	Reset json.RawMessage `json:"reset,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// EmulatedTPMSignedData is what an emulated TPM signs: a domain separator,
// the registration URL path and the manager's nonce, so a signature is good
// for one challenge on one registration only.
func EmulatedTPMSignedData(registrationPath string, nonce []byte) []byte {
	var b bytes.Buffer
	b.WriteString("edgefleet-registration-v1\x00")
	b.WriteString(registrationPath)
	b.WriteByte(0)
	b.Write(nonce)
	return b.Bytes()
}

// Encode marshals a message.
func Encode(m *Message) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// Decode parses and validates one message of at most MaxMessageBytes.
func Decode(data []byte) (*Message, error) {
	if len(data) > MaxMessageBytes {
		return nil, fmt.Errorf("message is %d bytes, more than the limit of %d", len(data), MaxMessageBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	m := &Message{}
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("message is not valid JSON of the registration protocol: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("message has data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Validate checks that exactly the body matching Type is set and that it is
// within limits.
func (m *Message) Validate() error {
	bodies := map[string]bool{
		TypeHello: m.Hello != nil, TypeChallenge: m.Challenge != nil, TypeProof: m.Proof != nil,
		TypeReady: m.Ready != nil, TypeInventory: m.Inventory != nil, TypeConfig: m.Config != nil, TypeError: m.Error != nil,
	}
	set, known := bodies[m.Type]
	if !known {
		return fmt.Errorf("unknown message type %q", m.Type)
	}
	if !set {
		return fmt.Errorf("%s message has no %s body", m.Type, m.Type)
	}
	for t, present := range bodies {
		if present && t != m.Type {
			return fmt.Errorf("%s message also has a %s body", m.Type, t)
		}
	}
	switch m.Type {
	case TypeHello:
		return m.Hello.validate()
	case TypeChallenge:
		return blobs(m.Challenge.Credential, m.Challenge.Secret, m.Challenge.Nonce)
	case TypeProof:
		return blobs(m.Proof.Secret, m.Proof.Signature)
	case TypeInventory:
		return m.Inventory.validate()
	case TypeError:
		return text("error code", m.Error.Code, maxIdentifierByte)
	}
	return nil
}

func (h *Hello) validate() error {
	if h.Version < 1 {
		return fmt.Errorf("hello.version %d is not a protocol version", h.Version)
	}
	if err := text("hello.inventoryName", h.InventoryName, 253); err != nil {
		return err
	}
	if err := text("hello.machineID", h.MachineID, maxIdentifierByte); err != nil {
		return err
	}
	switch h.Auth {
	case AuthTPM:
		if h.TPM == nil {
			return errors.New("hello with auth tpm has no tpm data")
		}
		t := h.TPM
		if len(t.EKPublic) == 0 || len(t.AK.Public) == 0 {
			return errors.New("hello.tpm needs ekPublic and ak.public")
		}
		return blobs(t.EKPublic, t.EKCertificate, t.AK.Public, t.AK.CreateData, t.AK.CreateAttestation, t.AK.CreateSignature)
	case AuthEmulatedTPM:
		if len(h.EmulatedTPMPublicKey) == 0 {
			return errors.New("hello with auth emulated-tpm has no emulatedTPMPublicKey")
		}
		return blobs(h.EmulatedTPMPublicKey)
	case AuthMAC, AuthSysUUID:
		if strings.TrimSpace(h.MachineID) == "" {
			return fmt.Errorf("hello with auth %s has no machineID", h.Auth)
		}
		return nil
	default:
		return fmt.Errorf("hello.auth %q is not one of tpm, emulated-tpm, mac, sys-uuid", h.Auth)
	}
}

func (inv *Inventory) validate() error {
	if len(inv.Data) > MaxInventoryKeys {
		return fmt.Errorf("inventory has %d data keys, more than the limit of %d", len(inv.Data), MaxInventoryKeys)
	}
	if len(inv.Labels) > MaxClientLabels || len(inv.Annotations) > MaxClientLabels {
		return fmt.Errorf("inventory has more than %d labels or annotations", MaxClientLabels)
	}
	for _, m := range []map[string]string{inv.Data, inv.Labels, inv.Annotations} {
		for k, v := range m {
			if k == "" {
				return errors.New("inventory has an empty key")
			}
			if err := text("inventory key", k, MaxKeyBytes); err != nil {
				return err
			}
			if err := text("inventory value of "+k, v, MaxValueBytes); err != nil {
				return err
			}
		}
	}
	return nil
}

func text(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes, more than the limit of %d", what, len(s), max)
	}
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%s is not valid UTF-8 text", what)
	}
	return nil
}

func blobs(bs ...[]byte) error {
	for _, b := range bs {
		if len(b) > maxBlobBytes {
			return fmt.Errorf("a binary field is %d bytes, more than the limit of %d", len(b), maxBlobBytes)
		}
	}
	return nil
}
