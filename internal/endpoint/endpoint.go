// Package endpoint is the manager's single HTTPS address. It serves the
// liveness, readiness, metrics and CA routes here; later capabilities
// (registration, import manifests, the agents' tunnel, downloads, UI) add
// their routes with Handle.
package endpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure the endpoint.
type Options struct {
	// CACertPEM is served at /cacerts; agents compare its sha256 with the
	// checksum they were given before trusting anything else.
	CACertPEM []byte
	// ClientCA, when set, verifies client certificates callers may present
	// (the kube-api proxy identifies users by them); none is required.
	ClientCA *x509.Certificate
	// ClientCAs, when set, replaces ClientCA and is asked at every
	// handshake, so the trusted set may change while the endpoint runs
	// (manager replicas' peer certificates come and go).
	ClientCAs func(context.Context) *x509.CertPool
	// GetCertificate supplies the serving certificate.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Gatherer is exposed at /metrics.
	Gatherer prometheus.Gatherer
	// Ready reports whether the manager can do its work (nil error = ready).
	Ready func(*http.Request) error
	Log   logr.Logger
}

// Server is the HTTPS endpoint.
type Server struct {
	opts Options
	mux  *http.ServeMux
}

// New builds the endpoint with its built-in routes.
func New(opts Options) *Server {
	s := &Server{opts: opts, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("pong"))
	})
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if opts.Ready != nil {
			if err := opts.Ready(r); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok"))
	})
	s.mux.HandleFunc("GET /cacerts", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(opts.CACertPEM)
	})
	if opts.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	return s
}

// Handle adds a route.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Serve serves HTTPS on l until ctx ends, then drains connections for up to 10 s.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	var clientCAs *x509.CertPool
	clientAuth := tls.NoClientCert
	if s.opts.ClientCA != nil {
		clientCAs = x509.NewCertPool()
		clientCAs.AddCert(s.opts.ClientCA)
		clientAuth = tls.VerifyClientCertIfGiven
	}
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			GetCertificate: s.opts.GetCertificate,
			MinVersion:     tls.VersionTLS12,
			ClientAuth:     clientAuth,
			ClientCAs:      clientCAs,
			NextProtos:     []string{"h2", "http/1.1"},
		},
		ErrorLog: nil,
	}
	if s.opts.ClientCAs != nil {
		base := srv.TLSConfig
		base.ClientAuth = tls.VerifyClientCertIfGiven
		base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := base.Clone()
			cfg.GetConfigForClient = nil
			cfg.ClientCAs = s.opts.ClientCAs(hello.Context())
			return cfg, nil
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(l, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}
