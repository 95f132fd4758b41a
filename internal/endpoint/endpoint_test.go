package endpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
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

// TestShutdownEndsWatchesAndDrainsTheRest: when the endpoint stops, a
// Kubernetes watch on a streaming route ends at once (its client re-watches
// elsewhere or after the restart) instead of holding the drain for 10 s,
// while a streaming request that is not a watch (a download) may finish.
func TestShutdownEndsWatchesAndDrainsTheRest(t *testing.T) {
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
	s := New(Options{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }, StreamingPrefixes: []string{"/stream/"}})
	started := make(chan string, 2)
	watchEnded := make(chan struct{})
	s.Handle("GET /stream/watch", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		started <- "watch"
		<-r.Context().Done()
		close(watchEnded)
	}))
	s.Handle("GET /stream/download", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		started <- "download"
		select {
		case <-r.Context().Done():
			return
		case <-time.After(time.Second):
		}
		_, _ = w.Write([]byte("complete"))
	}))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, l) }()

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + l.Addr().String()
	download := make(chan string, 1)
	for _, path := range []string{"/stream/watch?watch=true", "/stream/download"} {
		go func() {
			resp, err := hc.Get(base + path)
			if err != nil {
				download <- err.Error()
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if path == "/stream/download" {
				download <- string(body)
			}
		}()
	}
	<-started
	<-started
	t0 := time.Now()
	cancel()
	select {
	case <-watchEnded:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch was not ended by the shutdown")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("shutdown took %s with a watch open, want the drain not to wait for it", d)
	}
	if got := <-download; got != "complete" {
		t.Errorf("the download got %q, want it to finish during the drain", got)
	}
}
