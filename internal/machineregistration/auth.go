package machineregistration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-attestation/attest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// TPMCASecretName is the optional Secret (in the registration's namespace)
// whose "ca.crt" holds the CAs that TPM endorsement key certificates must
// chain to, as Elemental's tpm-ca Secret. Without it only known EKs are
// accepted, unless the registration sets spec.tpm.trustOnFirstUse.
const TPMCASecretName = "tpm-ca"

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// Identity is a proven (or, for mac/sys-uuid, claimed) machine identity.
// Only authentication makes one: its fields are not settable elsewhere.
type Identity struct {
	method string
	// tpmHash or machineHash, as in MachineInventory spec.
	tpmHash, machineHash string
	// ekCertified: the TPM's EK certificate chains to the namespace's tpm-ca.
	ekCertified bool
}

// proven reports whether the machine proved its identity with a key it
// holds, rather than claiming a value anyone can read (mac, sys-uuid).
func (id Identity) proven() bool {
	return id.method == machinereg.AuthTPM || id.method == machinereg.AuthEmulatedTPM
}

func (id Identity) indexKey() string {
	if id.tpmHash != "" {
		return "tpm/" + id.tpmHash
	}
	return "machine/" + id.machineHash
}

// AllowedMethods is the registration's effective auth policy: the node auth
// methods it accepts, in the order a node tries them.
func AllowedMethods(cfg *machinesv1.RegistrationConfig) []string { return allowedMethods(cfg) }

// allowedMethods is the registration's auth policy as node auth methods.
func allowedMethods(cfg *machinesv1.RegistrationConfig) []string {
	auth := machinesv1.AuthTPM
	var fallback []machinesv1.FallbackAuth
	emulate := false
	if cfg != nil {
		if cfg.Auth != "" {
			auth = cfg.Auth
		}
		fallback, emulate = cfg.Fallback, cfg.EmulateTPM
	}
	var m []string
	switch auth {
	case machinesv1.AuthTPM:
		m = []string{machinereg.AuthTPM}
	case machinesv1.AuthTPMOrFallback:
		m = []string{machinereg.AuthTPM}
		for _, f := range fallback {
			m = append(m, string(f))
		}
	case machinesv1.AuthMAC:
		m = []string{machinereg.AuthMAC}
	case machinesv1.AuthSysUUID:
		m = []string{machinereg.AuthSysUUID}
	}
	if emulate && !slices.Contains(m, machinereg.AuthEmulatedTPM) {
		m = append(m, machinereg.AuthEmulatedTPM)
	}
	return m
}

// authenticate runs the identity exchange for hello's method. TPM: a fresh
// credential-activation challenge for the EK and AK the node sent; emulated
// TPM: a fresh nonce to sign. mac and sys-uuid prove nothing and are only
// identification.
func (h *Handler) authenticate(ctx context.Context, conn *machinereg.Conn, mr *machinesv1.MachineRegistration, path string, hello *machinereg.Hello) (Identity, error) {
	norm, _ := mr.Spec.Config.Normalized()
	allowed := allowedMethods(norm.Registration)
	if !slices.Contains(allowed, hello.Auth) {
		return Identity{}, &machinereg.Error{Code: machinereg.CodeAuthFailed, Message: fmt.Sprintf("auth method %q is not allowed by MachineRegistration %s/%s (allowed: %v)", hello.Auth, mr.Namespace, mr.Name, allowed)}
	}
	switch hello.Auth {
	case machinereg.AuthTPM:
		return h.authTPM(ctx, conn, mr, hello.TPM)
	case machinereg.AuthEmulatedTPM:
		nonce := make([]byte, 32)
		if _, err := rand.Read(nonce); err != nil {
			return Identity{}, err
		}
		if err := conn.Send(&machinereg.Message{Type: machinereg.TypeChallenge, Challenge: &machinereg.Challenge{Nonce: nonce}}); err != nil {
			return Identity{}, err
		}
		m, err := conn.Receive(machinereg.TypeProof)
		if err != nil {
			return Identity{}, err
		}
		if err := machinereg.VerifyEmulatedTPM(hello.EmulatedTPMPublicKey, path, nonce, m.Proof.Signature); err != nil {
			return Identity{}, authFailed(err)
		}
		return Identity{method: hello.Auth, tpmHash: machinereg.IdentityHash(hello.EmulatedTPMPublicKey)}, nil
	default: // mac, sys-uuid
		return Identity{method: hello.Auth, machineHash: machinereg.IdentityHash([]byte(hello.MachineID))}, nil
	}
}

func authFailed(err error) *machinereg.Error {
	return &machinereg.Error{Code: machinereg.CodeAuthFailed, Message: err.Error()}
}

func (h *Handler) authTPM(ctx context.Context, conn *machinereg.Conn, mr *machinesv1.MachineRegistration, t *machinereg.TPMHello) (Identity, error) {
	ekPub, err := x509.ParsePKIXPublicKey(t.EKPublic)
	if err != nil {
		return Identity{}, authFailed(fmt.Errorf("endorsement key: %w", err))
	}
	certified, err := h.checkEKCertificate(ctx, mr.Namespace, t)
	if err != nil {
		return Identity{}, authFailed(err)
	}
	secret, ec, err := tpmChallenge(ekPub, t)
	if err != nil {
		return Identity{}, authFailed(err)
	}
	if err := conn.Send(&machinereg.Message{Type: machinereg.TypeChallenge, Challenge: &machinereg.Challenge{Credential: ec.Credential, Secret: ec.Secret}}); err != nil {
		return Identity{}, err
	}
	m, err := conn.Receive(machinereg.TypeProof)
	if err != nil {
		return Identity{}, err
	}
	if subtle.ConstantTimeCompare(secret, m.Proof.Secret) != 1 {
		return Identity{}, authFailed(errors.New("the TPM did not activate the credential: the EK and AK are not from the same TPM, or the answer is from another exchange"))
	}
	return Identity{method: machinereg.AuthTPM, tpmHash: machinereg.IdentityHash(t.EKPublic), ekCertified: certified}, nil
}

// tpmChallenge makes the credential-activation challenge for the machine's
// EK and AK. It only parses what the machine sent (FuzzTPMHello feeds it
// hostile input).
func tpmChallenge(ekPub any, t *machinereg.TPMHello) ([]byte, *attest.EncryptedCredential, error) {
	params := attest.ActivationParameters{EK: ekPub, AK: attest.AttestationParameters{
		Public: t.AK.Public, CreateData: t.AK.CreateData, CreateAttestation: t.AK.CreateAttestation, CreateSignature: t.AK.CreateSignature,
	}}
	// Generate checks that the AK is a restricted, TPM-generated signing key
	// and encrypts a fresh random secret to the EK, bound to the AK's name:
	// only the TPM holding both can decrypt it, and only for this exchange.
	secret, ec, err := params.Generate()
	if err != nil {
		return nil, nil, fmt.Errorf("attestation key rejected: %w", err)
	}
	return secret, ec, nil
}

// checkEKCertificate rejects an EK certificate that is not for the EK sent,
// and, when the namespace has a tpm-ca Secret, an EK without a certificate
// chaining to it. certified reports that the EK chains to tpm-ca.
func (h *Handler) checkEKCertificate(ctx context.Context, namespace string, t *machinereg.TPMHello) (certified bool, err error) {
	err = h.verifyEKCertificate(ctx, namespace, t)
	if errors.Is(err, errNoTPMCA) {
		return false, nil
	}
	return err == nil, err
}

var errNoTPMCA = errors.New("no tpm-ca Secret")

// ekCertificate parses the EK certificate the machine sent, if any, and
// checks it is for the EK sent.
func ekCertificate(t *machinereg.TPMHello) (*x509.Certificate, error) {
	if len(t.EKCertificate) == 0 {
		return nil, nil
	}
	c, err := attest.ParseEKCertificate(t.EKCertificate)
	if err != nil {
		return nil, fmt.Errorf("EK certificate: %w", err)
	}
	certPub, err := x509.MarshalPKIXPublicKey(c.PublicKey)
	if err != nil || !bytes.Equal(certPub, t.EKPublic) {
		return nil, errors.New("the EK certificate is for another key than the endorsement key sent")
	}
	return c, nil
}

func (h *Handler) verifyEKCertificate(ctx context.Context, namespace string, t *machinereg.TPMHello) error {
	cert, err := ekCertificate(t)
	if err != nil {
		return err
	}
	s := &corev1.Secret{}
	err = h.Reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: TPMCASecretName}, s)
	if apierrors.IsNotFound(err) {
		return errNoTPMCA
	}
	if err != nil {
		return fmt.Errorf("reading Secret %s/%s: %w", namespace, TPMCASecretName, err)
	}
	if cert == nil {
		return fmt.Errorf("Secret %s/%s requires an EK certificate and the TPM has none", namespace, TPMCASecretName)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.Data["ca.crt"]) {
		return fmt.Errorf("Secret %s/%s has no PEM certificates under ca.crt", namespace, TPMCASecretName)
	}
	// EK certificates carry TPM-specific extended key usages and a critical
	// subject alternative name holding TPM manufacturer attributes, which Go
	// does not parse; the signature chain is what is checked here.
	c := *cert
	c.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(c.UnhandledCriticalExtensions), func(oid asn1.ObjectIdentifier) bool {
		return oid.Equal(oidSubjectAltName)
	})
	cert = &c
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("the EK certificate does not chain to the CAs in Secret %s/%s: %w", namespace, TPMCASecretName, err)
	}
	return nil
}
