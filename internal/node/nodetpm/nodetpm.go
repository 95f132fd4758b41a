// Package nodetpm is the node side of TPM registration: it opens the TPM (the
// kernel's /dev/tpmrm0, or a TPM simulator's socket), reads the endorsement
// key, creates a fresh attestation key and answers the manager's
// credential-activation challenge with go-attestation.
package nodetpm

import (
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/google/go-attestation/attest"

	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// TPM is an open TPM with the attestation key created for one registration.
type TPM struct {
	tpm *attest.TPM
	ak  *attest.AK
}

// Open opens the TPM. socket is the unix socket of a TPM simulator such as
// swtpm ("" uses the platform TPM).
func Open(socket string) (*TPM, error) {
	cfg := &attest.OpenConfig{}
	if socket != "" {
		conn, err := net.Dial("unix", socket)
		if err != nil {
			return nil, fmt.Errorf("connecting to the TPM simulator at %s: %w", socket, err)
		}
		cfg.CommandChannel = &socketChannel{conn: conn}
	}
	t, err := attest.OpenTPM(cfg)
	if err != nil {
		if socket == "" {
			return nil, fmt.Errorf("opening the TPM: %w (no TPM 2.0 at /dev/tpmrm0? use a registration that allows a fallback, or emulate-tpm for tests)", err)
		}
		return nil, fmt.Errorf("opening the TPM simulator at %s: %w", socket, err)
	}
	return &TPM{tpm: t}, nil
}

// Close releases the attestation key and the TPM.
func (t *TPM) Close() error {
	if t.ak != nil {
		_ = t.ak.Close(t.tpm)
	}
	return t.tpm.Close()
}

// Hello reads the endorsement key and creates a new attestation key. A new AK
// per registration means nothing from an earlier exchange can be reused.
func (t *TPM) Hello() (*machinereg.TPMHello, error) {
	eks, err := t.tpm.EKs()
	if err != nil {
		return nil, fmt.Errorf("reading the TPM's endorsement key: %w", err)
	}
	if len(eks) == 0 {
		return nil, errors.New("the TPM has no endorsement key")
	}
	ek := eks[0]
	pub, err := x509.MarshalPKIXPublicKey(ek.Public)
	if err != nil {
		return nil, fmt.Errorf("encoding the endorsement key: %w", err)
	}
	h := &machinereg.TPMHello{EKPublic: pub}
	if ek.Certificate != nil {
		h.EKCertificate = ek.Certificate.Raw
	}
	if t.ak != nil {
		_ = t.ak.Close(t.tpm)
	}
	t.ak, err = t.tpm.NewAK(nil)
	if err != nil {
		return nil, fmt.Errorf("creating an attestation key: %w", err)
	}
	p := t.ak.AttestationParameters()
	h.AK = machinereg.AKParameters{Public: p.Public, CreateData: p.CreateData, CreateAttestation: p.CreateAttestation, CreateSignature: p.CreateSignature}
	return h, nil
}

// Activate decrypts the manager's challenge; only the TPM holding both the EK
// and the AK can.
func (t *TPM) Activate(c *machinereg.Challenge) ([]byte, error) {
	if t.ak == nil {
		return nil, errors.New("no attestation key: call Hello first")
	}
	secret, err := t.ak.ActivateCredential(t.tpm, attest.EncryptedCredential{Credential: c.Credential, Secret: c.Secret})
	if err != nil {
		return nil, fmt.Errorf("activating the manager's credential challenge: %w", err)
	}
	return secret, nil
}

// socketChannel is a TPM command channel over a simulator's socket. Read
// returns exactly one TPM response, as go-attestation expects.
type socketChannel struct {
	conn    net.Conn
	pending []byte
}

func (s *socketChannel) Write(p []byte) (int, error) { return s.conn.Write(p) }
func (s *socketChannel) Close() error                { return s.conn.Close() }

// MeasurementLog: a simulator has no firmware event log.
func (s *socketChannel) MeasurementLog() ([]byte, error) {
	return nil, errors.New("no measurement log")
}

func (s *socketChannel) Read(p []byte) (int, error) {
	if len(s.pending) == 0 {
		header := make([]byte, 10) // tag(2) size(4) code(4)
		if _, err := io.ReadFull(s.conn, header); err != nil {
			return 0, err
		}
		size := binary.BigEndian.Uint32(header[2:6])
		if size < 10 || size > 1<<20 {
			return 0, fmt.Errorf("TPM response announces %d bytes", size)
		}
		resp := make([]byte, size)
		copy(resp, header)
		if _, err := io.ReadFull(s.conn, resp[10:]); err != nil {
			return 0, err
		}
		s.pending = resp
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}
