package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStoreReusesAndRenews(t *testing.T) {
	store := Store{Dir: t.TempDir()}
	ca, err := store.LoadOrCreateCA("ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	again, err := store.LoadOrCreateCA("ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	if Checksum(ca.CertPEM) != Checksum(again.CertPEM) {
		t.Fatal("second load created a new CA; restarts would break every pinned agent")
	}

	spec := CertSpec{CommonName: "server", DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usage: ServerAuth}
	first, err := store.LoadOrIssue(ca, "serving", spec)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		spec    CertSpec
		reissue bool
	}{
		{name: "same names keep the certificate", spec: spec, reissue: false},
		{name: "a new DNS name re-issues", spec: CertSpec{CommonName: "server", DNSNames: []string{"localhost", "edge.example"}, IPs: spec.IPs, Usage: ServerAuth}, reissue: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := store.LoadOrIssue(ca, "serving", tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if changed := string(got.CertPEM) != string(first.CertPEM); changed != tt.reissue {
				t.Fatalf("re-issued = %v, want %v", changed, tt.reissue)
			}
			cert, err := ParseCert(got.CertPEM)
			if err != nil {
				t.Fatal(err)
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca.Cert)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err != nil {
				t.Fatalf("certificate does not verify against its CA: %v", err)
			}
			if _, err := tls.X509KeyPair(got.CertPEM, got.KeyPEM); err != nil {
				t.Fatalf("key pair unusable for TLS: %v", err)
			}
		})
	}
}

func TestCertificateFromOtherCAIsReissued(t *testing.T) {
	dir := t.TempDir()
	store := Store{Dir: dir}
	oldCA, _, err := NewCA("old")
	if err != nil {
		t.Fatal(err)
	}
	spec := CertSpec{CommonName: "c", Usage: ClientAuth}
	if _, err := store.LoadOrIssue(oldCA, "client", spec); err != nil {
		t.Fatal(err)
	}
	ca, err := store.LoadOrCreateCA("ca", "new")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := store.LoadOrIssue(ca, "client", spec)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := ParseCert(kp.CertPEM)
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatalf("certificate still signed by the old CA: %v", err)
	}
}

func TestCorruptCAIsAClearErrorAndIsKept(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Store{Dir: dir}.LoadOrCreateCA("ca", "x")
	if err == nil {
		t.Fatal("corrupt CA accepted")
	}
	data, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if string(data) != "garbage" {
		t.Fatal("corrupt CA was overwritten: user data lost")
	}
}

func TestServiceAccountKeyPersists(t *testing.T) {
	store := Store{Dir: t.TempDir()}
	k1, err := store.LoadOrCreateKey("sa")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := store.LoadOrCreateKey("sa")
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := x509.MarshalPKIXPublicKey(k1.Public())
	b2, _ := x509.MarshalPKIXPublicKey(k2.Public())
	if string(b1) != string(b2) {
		t.Fatal("service-account key changed across loads; every issued token would become invalid")
	}
	if _, err := os.Stat(store.Path("sa.pub")); err != nil {
		t.Fatal(err)
	}
}

// A self-signed leaf (a manager replica's peer certificate) verifies only as
// itself: trusting it lets nothing else chain to it.
func TestSelfSignedLeafSignsNothing(t *testing.T) {
	kp, err := SelfSigned(CertSpec{CommonName: "peer", Usage: ClientAuth}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ParseCert(kp.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Fatalf("self-signed leaf: IsCA=%v BasicConstraintsValid=%v, want an explicit CA:FALSE", leaf.IsCA, leaf.BasicConstraintsValid)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the trusted leaf does not verify as itself: %v", err)
	}
	// A certificate signed with the leaf's key does not verify against it.
	signer, err := ParseKey(kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	child, err := issue(CertSpec{CommonName: "child", Usage: ClientAuth}, time.Hour, leaf, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCert(child.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Fatal("a certificate signed by a trusted self-signed leaf verifies")
	}
}
