// Package pki creates and persists the certificate authorities, certificates
// and keys edgefleet needs. Each trust relationship has its own CA (see
// internal/controlplane's certs): the manager endpoint's CA, which agents pin
// by checksum, signs only the endpoint's serving certificate.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	certValidity = 365 * 24 * time.Hour
	// renewBefore is how long before expiry a persisted leaf certificate is
	// re-issued at start, so a long-running installation never serves an
	// expired certificate after a restart.
	renewBefore = 30 * 24 * time.Hour
)

// CA is a certificate authority with its private key.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

// Usage says what a leaf certificate is for.
type Usage int

const (
	ServerAuth Usage = 1 << iota
	ClientAuth
)

// CertSpec describes a leaf certificate.
type CertSpec struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Usage        Usage
}

// KeyPair is a PEM-encoded certificate and private key.
type KeyPair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// Checksum is the sha256 of PEM data in hex, the form agents are given to pin the CA.
func Checksum(pemData []byte) string {
	sum := sha256.Sum256(pemData)
	return hex.EncodeToString(sum[:])
}

// NewCA generates a self-signed CA.
func NewCA(commonName string) (*CA, KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, KeyPair{}, fmt.Errorf("generating CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"edgefleet"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, KeyPair{}, fmt.Errorf("signing CA certificate: %w", err)
	}
	kp, err := encode(der, key)
	if err != nil {
		return nil, KeyPair{}, err
	}
	ca, err := ParseCA(kp)
	return ca, kp, err
}

// ParseCA loads a CA from its PEM key pair.
func ParseCA(kp KeyPair) (*CA, error) {
	cert, err := ParseCert(kp.CertPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("certificate is not a CA")
	}
	key, err := ParseKey(kp.KeyPEM)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: kp.CertPEM}, nil
}

// Issue signs a new leaf certificate.
func (ca *CA) Issue(spec CertSpec) (KeyPair, error) {
	return issue(spec, certValidity, ca.Cert, ca.Key)
}

// SelfSigned creates a leaf certificate signed by its own key (not a CA: it
// can sign nothing else). Whoever trusts it trusts exactly this key, so the
// key never needs to leave the process that made it.
func SelfSigned(spec CertSpec, validity time.Duration) (KeyPair, error) {
	return issue(spec, validity, nil, nil)
}

// issue signs a leaf certificate with parent's key, or with its own key when
// parent is nil.
func issue(spec CertSpec, validity time.Duration, parent *x509.Certificate, parentKey crypto.Signer) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generating key for %s: %w", spec.CommonName, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: spec.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
		// An explicit CA:FALSE: no verifier may chain anything to a leaf.
		BasicConstraintsValid: true,
	}
	if spec.Usage&ServerAuth != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if spec.Usage&ClientAuth != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return KeyPair{}, fmt.Errorf("signing certificate for %s: %w", spec.CommonName, err)
	}
	return encode(der, key)
}

// Store keeps key material as PEM files in one directory, readable only by its owner.
type Store struct {
	Dir string
}

// LoadOrCreateCA returns the CA named name, creating it on first use.
func (s Store) LoadOrCreateCA(name, commonName string) (*CA, error) {
	kp, found, err := s.load(name)
	if err != nil {
		return nil, err
	}
	if found {
		ca, err := ParseCA(kp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (the file is corrupt; restore it from a backup, or remove the data dir to start a new installation)", s.path(name+".crt"), err)
		}
		return ca, nil
	}
	ca, kp, err := NewCA(commonName)
	if err != nil {
		return nil, err
	}
	return ca, s.save(name, kp)
}

// LoadOrIssue returns the leaf key pair named name, issuing it when missing, when
// it was signed by another CA, when its names changed, or when it nears expiry.
func (s Store) LoadOrIssue(ca *CA, name string, spec CertSpec) (KeyPair, error) {
	kp, found, err := s.load(name)
	if err != nil {
		return KeyPair{}, err
	}
	if found && s.stillValid(ca, kp, spec) {
		return kp, nil
	}
	kp, err = ca.Issue(spec)
	if err != nil {
		return KeyPair{}, err
	}
	return kp, s.save(name, kp)
}

// LoadOrCreateKey returns the private key named name (a service-account signing
// key, for instance), generating it on first use. The public half is written
// beside it as name.pub.
func (s Store) LoadOrCreateKey(name string) (crypto.Signer, error) {
	keyPath := s.path(name + ".key")
	data, err := os.ReadFile(keyPath)
	switch {
	case err == nil:
		key, err := ParseKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyPath, err)
		}
		return key, s.writePublic(name, key)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("reading %s: %w", keyPath, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, err
	}
	return key, s.writePublic(name, key)
}

// WriteFile writes public data (a CA bundle, for instance) into the store.
func (s Store) WriteFile(file string, data []byte) error { return writeFile(s.path(file), data) }

// Path returns where the store keeps a file, e.g. Path("ca.crt").
func (s Store) Path(file string) string { return s.path(file) }

func (s Store) writePublic(name string, key crypto.Signer) error {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	return writeFile(s.path(name+".pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func (s Store) stillValid(ca *CA, kp KeyPair, spec CertSpec) bool {
	cert, err := ParseCert(kp.CertPEM)
	if err != nil {
		return false
	}
	if _, err := ParseKey(kp.KeyPEM); err != nil {
		return false
	}
	if cert.CheckSignatureFrom(ca.Cert) != nil || time.Until(cert.NotAfter) < renewBefore {
		return false
	}
	if cert.Subject.CommonName != spec.CommonName || !sameStrings(cert.DNSNames, spec.DNSNames) {
		return false
	}
	if len(cert.IPAddresses) != len(spec.IPs) {
		return false
	}
	for i := range spec.IPs {
		if !cert.IPAddresses[i].Equal(spec.IPs[i]) {
			return false
		}
	}
	return true
}

func (s Store) load(name string) (KeyPair, bool, error) {
	certPEM, err1 := os.ReadFile(s.path(name + ".crt"))
	keyPEM, err2 := os.ReadFile(s.path(name + ".key"))
	if errors.Is(err1, os.ErrNotExist) && errors.Is(err2, os.ErrNotExist) {
		return KeyPair{}, false, nil
	}
	if err := errors.Join(err1, err2); err != nil {
		return KeyPair{}, false, fmt.Errorf("reading %s key pair: %w", name, err)
	}
	return KeyPair{CertPEM: certPEM, KeyPEM: keyPEM}, true, nil
}

func (s Store) save(name string, kp KeyPair) error {
	if err := writeFile(s.path(name+".key"), kp.KeyPEM); err != nil {
		return err
	}
	return writeFile(s.path(name+".crt"), kp.CertPEM)
}

func (s Store) path(file string) string { return filepath.Join(s.Dir, file) }

// writeFile writes atomically, so a crash never leaves a truncated key behind.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ParseCert decodes the first certificate in PEM data.
func ParseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate found")
	}
	return x509.ParseCertificate(block.Bytes)
}

// ParseKey decodes a PKCS#8, EC or PKCS#1 private key in PEM.
func ParseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("private key cannot sign")
	}
	return signer, nil
}

func encode(der []byte, key *ecdsa.PrivateKey) (KeyPair, error) {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		// crypto/rand never fails on Linux; a fixed serial keeps certs valid if it does.
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
