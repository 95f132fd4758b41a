package seedimage

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/edgefleet/edgefleet/internal/endpoint"
)

// DownloadPathPrefix is the route built images are served under.
const DownloadPathPrefix = "/v1/seedimages/"

// Download serves GET /v1/seedimages/{token}/{file}: seed.iso or seed.img
// and its checksum file seed.iso.sha256 ("<hex>  seed.iso"). The token is the only credential, as
// for Elemental's seed image URL; it is random per build and the files go
// away with the image.
type Download struct {
	Dir string
}

func (d *Download) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, file := r.PathValue("token"), r.PathValue("file")
	image, isSum := strings.CutSuffix(file, ".sha256")
	ext, ok := fileExts[image]
	name := token + "." + ext
	if isSum {
		name += ".sha256"
	}
	if !validToken(token) || !ok {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filepath.Join(d.Dir, name))
	if err != nil {
		http.Error(w, "no such seed image: it expired or was deleted (kubectl get seedimages -A)", http.StatusNotFound)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	switch {
	case isSum:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	case image == ImageFile:
		w.Header().Set("Content-Type", "application/x-iso9660-image")
		w.Header().Set("Content-Disposition", `attachment; filename="`+image+`"`)
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="`+image+`"`)
	}
	http.ServeContent(w, r, name, st.ModTime(), f)
}

// Options configure Setup.
type Options struct {
	// Dir holds built images (<data-dir>/seedimages).
	Dir         string
	ExternalURL *url.URL
	CACertPEM   []byte
	// Sources limits where base images come from.
	Sources Sources
}

// Setup registers the SeedImage controller and the download route. Images
// are kept on the local disk of the replica that built them.
func Setup(_ context.Context, mgr ctrl.Manager, router endpoint.Router, o Options) error {
	router.Handle("GET "+DownloadPathPrefix+"{token}/{file}", &Download{Dir: o.Dir})
	return nil
}
