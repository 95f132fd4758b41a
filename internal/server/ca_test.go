package server

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgefleet/edgefleet/internal/pki"
)

func TestUserClientCAs(t *testing.T) {
	endpointCA, _, err := pki.NewCA("edgefleet-ca")
	if err != nil {
		t.Fatal(err)
	}
	kubeCA, _, err := pki.NewCA("kube-ca")
	if err != nil {
		t.Fatal(err)
	}
	usersCA, _, err := pki.NewCA("users")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	usersFile := filepath.Join(dir, "users.crt")
	if err := os.WriteFile(usersFile, usersCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "key.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	external := &cluster{external: true}
	embedded := &cluster{clientCAs: kubeCA.CertPEM}
	trusts := func(t *testing.T, c *cluster, file string, ca *pki.CA) bool {
		t.Helper()
		extra, err := readClientCAFile(file)
		if err != nil {
			t.Fatal(err)
		}
		pool, err := userClientCAs(c, extra)
		if err != nil {
			t.Fatal(err)
		}
		kp, err := ca.Issue(pki.CertSpec{CommonName: "alice", Usage: pki.ClientAuth})
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := pki.ParseCert(kp.CertPEM)
		_, err = cert.Verify(verifyClient(pool))
		return err == nil
	}
	for _, tc := range []struct {
		name    string
		c       *cluster
		file    string
		ca      *pki.CA
		trusted bool
	}{
		{"external: not the endpoint CA", external, "", endpointCA, false},
		{"external: --client-ca-file", external, usersFile, usersCA, true},
		{"embedded: the control plane's client CA", embedded, "", kubeCA, true},
		{"embedded: not the endpoint CA", embedded, usersFile, endpointCA, false},
		{"embedded: --client-ca-file too", embedded, usersFile, usersCA, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := trusts(t, tc.c, tc.file, tc.ca); got != tc.trusted {
				t.Fatalf("trusted = %v, want %v", got, tc.trusted)
			}
		})
	}
	for _, file := range []string{filepath.Join(dir, "missing.crt"), notPEM} {
		if _, err := readClientCAFile(file); err == nil || !strings.Contains(err.Error(), "--client-ca-file") {
			t.Errorf("%s: %v, want an error naming --client-ca-file", file, err)
		}
	}
}

func verifyClient(pool *x509.CertPool) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}
