// Package webui serves edgefleet's web UI on the manager's endpoint: the
// built assets (embedded from dist/, built by `make ui` from web/ui) at
// /ui/, and /ui/api/k8s/…, a proxy to the manager's Kubernetes API that
// authenticates the caller like every other endpoint route (bearer token by
// TokenReview, or a client certificate of a trusted CA; internal/authn) and
// forwards the request impersonating them. The UI has no backend of its
// own: the manager's RBAC decides what each person sees and can do.
package webui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/endpoint"
)

// Path is where the UI is served; APIPrefix is its Kubernetes API proxy
// (a streaming route: watches stay open).
const (
	Path      = "/ui/"
	APIPrefix = "/ui/api/k8s"
)

//go:embed all:dist
var dist embed.FS

// ContentSecurityPolicy allows nothing but the manager's own origin: no
// inline script or style, no framing, no form posts elsewhere.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Options configure the UI routes.
type Options struct {
	// Config reaches the manager's Kubernetes API with the manager's own
	// credentials, which must allow impersonation (verb impersonate on
	// users, groups, serviceaccounts, uids and userextras). Requests are
	// only ever sent impersonating an authenticated caller.
	Config *rest.Config
	Log    logr.Logger
	// SeedImageDir is where the SeedImage controller keeps built images
	// (seedimage.Options.Dir); empty serves no downloads.
	SeedImageDir string
	// KubernetesVersions are the versions cluster formation may install per
	// distro (nil: the manager has no list, any version goes), offered by
	// the Create cluster page.
	KubernetesVersions map[string][]string
}

// Setup adds the UI's routes: the assets, the API proxy and a redirect from
// the endpoint's root to the UI.
func Setup(r endpoint.Router, o Options) error {
	cs, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return fmt.Errorf("web UI: %w", err)
	}
	p, err := newProxy(o.Config, &authn.Authenticator{Client: cs}, o.Log)
	if err != nil {
		return err
	}
	assets, err := loadAssets()
	if err != nil {
		return err
	}
	// Method-less patterns: "GET /ui/" would conflict with the API's
	// subtree in net/http's mux; the asset server checks the method.
	r.Handle(Path, secure(assets))
	r.Handle(APIPrefix+"/", secure(p))
	if o.SeedImageDir != "" {
		r.Handle(DownloadPrefix+"{namespace}/{name}/{file}", secure(&seedDownload{p: p, dir: o.SeedImageDir}))
	}
	pr := newProvisioningRoutes(p, o.KubernetesVersions)
	r.Handle(PreviewPath, secure(http.HandlerFunc(pr.servePreview)))
	r.Handle(ReleasesPath, secure(http.HandlerFunc(pr.serveReleases)))
	r.Handle("GET /{$}", http.RedirectHandler(Path, http.StatusFound))
	return nil
}

// secure adds the headers every UI response carries.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

type asset struct {
	body, gz    []byte
	contentType string
	etag        string
	immutable   bool
}

type assetServer struct {
	files map[string]*asset
}

var (
	loadOnce   sync.Once
	loaded     *assetServer
	loadErr    error
	emptyBuild = "the web UI was not built into this binary: run `make ui` and rebuild"
)

// loadAssets reads the embedded build once and gzips it in memory, so
// browsers get compressed assets without committing compressed copies.
func loadAssets() (*assetServer, error) {
	loadOnce.Do(func() {
		s := &assetServer{files: map[string]*asset{}}
		loadErr = fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			body, err := dist.ReadFile(p)
			if err != nil {
				return err
			}
			name := strings.TrimPrefix(p, "dist/")
			var gz bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
			_, _ = zw.Write(body)
			_ = zw.Close()
			sum := sha256.Sum256(body)
			ct := mime.TypeByExtension(path.Ext(name))
			if ct == "" {
				ct = "application/octet-stream"
			}
			s.files[name] = &asset{body: body, gz: gz.Bytes(), contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, immutable: name != "index.html"}
			return nil
		})
		loaded = s
	})
	return loaded, loadErr
}

func (s *assetServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the UI's assets are read-only", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, Path)
	if name == "" {
		name = "index.html"
	}
	a, ok := s.files[name]
	if !ok {
		if name == "index.html" {
			http.Error(w, emptyBuild, http.StatusNotFound)
			return
		}
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", a.etag)
	h.Set("Vary", "Accept-Encoding")
	if a.immutable {
		// Asset names carry a content hash: a new build has new names.
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if match := r.Header.Get("If-None-Match"); match != "" && match == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if acceptsGzip(r) {
		h.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
