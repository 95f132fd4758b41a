package endpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/pki"
)

// TestConnectionsAreCapped: with MaxConnections 2, a third client's TLS
// handshake is not served until one of the first two leaves.
func TestConnectionsAreCapped(t *testing.T) {
	ca, _, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(pki.CertSpec{CommonName: "localhost", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usage: pki.ServerAuth})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }, Limits: Limits{MaxConnections: 2}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Serve(ctx, l) }()

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	dial := func() (*tls.Conn, error) {
		raw, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return nil, err
		}
		c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if err := c.Handshake(); err != nil {
			_ = c.Close()
			return nil, err
		}
		_ = c.SetDeadline(time.Time{})
		return c, nil
	}
	first, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	second, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if third, err := dial(); err == nil {
		third.Close()
		t.Fatal("a third connection was served with MaxConnections 2")
	}
	first.Close()
	var third *tls.Conn
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if third, err = dial(); err == nil {
			break
		}
	}
	if third == nil {
		t.Fatalf("no connection served after one of two left: %v", err)
	}
	third.Close()
}
