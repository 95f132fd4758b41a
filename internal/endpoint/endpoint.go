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
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

// Router is a route table capabilities add their routes to: the endpoint's
// Server, or a test's mux.
type Router interface {
	Handle(pattern string, h http.Handler)
}

var _ Router = (*Server)(nil)

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
	// Gatherer is exposed at /metrics to callers MetricsAuth lets in.
	Gatherer prometheus.Gatherer
	// MetricsAuth decides who may read /metrics (the server: an
	// authenticated caller allowed "get" on the non-resource URL /metrics by
	// the manager's RBAC). It returns the HTTP status and message of a
	// refusal, or 0. Without it /metrics is not served.
	MetricsAuth func(*http.Request) (status int, msg string)
	// Limits of the listener and of each connection; zero values take the
	// Default* constants.
	Limits Limits
	// StreamingPrefixes are the path prefixes of long-lived requests
	// (tunnels, watches, exec/attach/port-forward, downloads): the
	// server-wide read and write timeouts do not apply to them. Their
	// handlers authenticate before streaming.
	StreamingPrefixes []string
	// Ready reports whether the manager can do its work (nil error = ready).
	Ready func(*http.Request) error
	Log   logr.Logger
}

// Server is the HTTPS endpoint.
type Server struct {
	opts Options
	mux  *http.ServeMux
	// shutdown ends when Serve starts draining: Kubernetes watches on
	// streaming routes end then instead of holding the drain to its
	// timeout (a watch never finishes on its own; its client re-watches
	// from its last resourceVersion).
	shutdown     context.Context
	beginDrain   context.CancelFunc
	drainStarted sync.Once
}

// New builds the endpoint with its built-in routes.
func New(opts Options) *Server {
	s := &Server{opts: opts, mux: http.NewServeMux()}
	s.shutdown, s.beginDrain = context.WithCancel(context.Background())
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
	if opts.Gatherer != nil && opts.MetricsAuth != nil {
		metrics := promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{})
		s.mux.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if code, msg := opts.MetricsAuth(r); code != 0 {
				http.Error(w, msg, code)
				return
			}
			metrics.ServeHTTP(w, r)
		}))
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
	lim := s.opts.Limits.withDefaults()
	srv := &http.Server{
		Handler:           s.streaming(s.mux),
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
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
	go func() { errc <- srv.ServeTLS(netutil.LimitListener(l, lim.MaxConnections), "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.drainStarted.Do(s.beginDrain)
	err := srv.Shutdown(shutdownCtx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

// Defaults of Limits.
const (
	// DefaultReadHeaderTimeout closes a connection whose request header is
	// not complete in time (slowloris); it also bounds the TLS handshake.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout bounds reading a whole ordinary request, body
	// included.
	DefaultReadTimeout = time.Minute
	// DefaultWriteTimeout bounds answering an ordinary request.
	DefaultWriteTimeout = 2 * time.Minute
	// DefaultIdleTimeout closes a keep-alive connection with no request.
	DefaultIdleTimeout = 90 * time.Second
	// DefaultMaxHeaderBytes bounds a request's header.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxConnections caps concurrent connections: each agent holds
	// about two (tunnel, manager API), so 20000 serves 10000 clusters;
	// beyond it new connections wait in the kernel's accept queue.
	DefaultMaxConnections = 20000
)

// Limits bound what one caller can hold of the endpoint.
type Limits struct {
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes, MaxConnections                            int
}

func (l Limits) withDefaults() Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.ReadTimeout, DefaultReadTimeout)
	def(&l.WriteTimeout, DefaultWriteTimeout)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	return l
}

// streaming lifts the read and write deadlines of requests under
// StreamingPrefixes: a watch, a tunnel or an exec session lives as long as
// its caller wants. The header timeout still applied to them, and a
// hijacked connection keeps no deadline the server set.
func (s *Server) streaming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range s.opts.StreamingPrefixes {
			if strings.HasPrefix(r.URL.Path, p) {
				rc := http.NewResponseController(w)
				_ = rc.SetReadDeadline(time.Time{})
				_ = rc.SetWriteDeadline(time.Time{})
				if isWatch(r) {
					ctx, cancel := context.WithCancel(r.Context())
					defer cancel()
					defer context.AfterFunc(s.shutdown, cancel)()
					r = r.WithContext(ctx)
				}
				break
			}
		}
		next.ServeHTTP(w, r)
	})
}

// isWatch is a Kubernetes watch request (?watch=true or =1).
func isWatch(r *http.Request) bool {
	v := r.URL.Query().Get("watch")
	return v == "true" || v == "1"
}
