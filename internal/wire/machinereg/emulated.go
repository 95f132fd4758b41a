package machinereg

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// EmulatedTPM is the software stand-in for a TPM on machines without one
// (Elemental's emulate-tpm). Its key is derived from a seed, so it proves only
// that the machine knows the seed: the same seed on another machine is the
// same identity, and a random seed is only as safe as the machine's state
// directory. It gives continuity (a reboot registers as the same machine),
// never hardware provenance.
type EmulatedTPM struct {
	key ed25519.PrivateKey
}

// NewEmulatedTPM derives the key from seed (any length; 32 random bytes in
// practice).
func NewEmulatedTPM(seed []byte) (*EmulatedTPM, error) {
	if len(seed) == 0 {
		return nil, errors.New("emulated TPM seed is empty")
	}
	h := sha256.New()
	h.Write([]byte("edgefleet-emulated-tpm-v1\x00"))
	h.Write(seed)
	return &EmulatedTPM{key: ed25519.NewKeyFromSeed(h.Sum(nil))}, nil
}

// SeedFromInt is the seed for a fixed emulated-tpm-seed value.
func SeedFromInt(v int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(v))
}

// PublicKey is the PKIX DER public key sent in Hello.
func (e *EmulatedTPM) PublicKey() []byte {
	der, _ := x509.MarshalPKIXPublicKey(e.key.Public()) // ed25519 keys always marshal
	return der
}

// Sign answers the manager's challenge.
func (e *EmulatedTPM) Sign(registrationPath string, nonce []byte) []byte {
	return ed25519.Sign(e.key, EmulatedTPMSignedData(registrationPath, nonce))
}

// VerifyEmulatedTPM checks an emulated TPM's signature over the challenge.
func VerifyEmulatedTPM(publicKeyDER []byte, registrationPath string, nonce, signature []byte) error {
	pub, err := x509.ParsePKIXPublicKey(publicKeyDER)
	if err != nil {
		return fmt.Errorf("emulated TPM public key: %w", err)
	}
	edPub, ok := pub.(ed25519.PublicKey)
	if !ok {
		return fmt.Errorf("emulated TPM public key is a %T, not ed25519", pub)
	}
	if !ed25519.Verify(edPub, EmulatedTPMSignedData(registrationPath, nonce), signature) {
		return errors.New("emulated TPM signature does not verify")
	}
	return nil
}

// IdentityHash is the hex SHA-256 used as MachineInventory spec.tpmHash
// (of a PKIX public key) or spec.machineHash (of a MAC or UUID string).
func IdentityHash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
