package webui

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/seedimage"
)

// DownloadPrefix serves a built SeedImage to a signed-in user:
// GET /ui/api/seedimages/{namespace}/{name}/{file}, file "image" or
// "checksum". status.downloadURL is a capability URL (its random path is
// the only credential), so it ends up in proxy access logs and browser
// history; this route instead authenticates the caller like the API proxy
// and reads the SeedImage *as them*: whoever may get the SeedImage may
// download it, nobody else, and no secret travels in a URL.
const DownloadPrefix = "/ui/api/seedimages/"

type seedDownload struct {
	p   *proxy
	dir string
}

func (d *seedDownload) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeStatus(w, http.StatusMethodNotAllowed, "seed image downloads are read-only")
		return
	}
	if !fromUI(w, r) {
		return
	}
	ns, name, file := r.PathValue("namespace"), r.PathValue("name"), r.PathValue("file")
	if file != "image" && file != "checksum" {
		writeStatus(w, http.StatusNotFound, "a seed image has two files: "+DownloadPrefix+"NAMESPACE/NAME/image and …/checksum, not "+file)
		return
	}
	user, ok := d.p.authenticate(w, r)
	if !ok {
		return
	}
	si, code, msg := d.get(r, user, ns, name)
	if si == nil {
		writeStatus(w, code, msg)
		return
	}
	if si.Status.State != machinesv1.SeedImageReady {
		writeStatus(w, http.StatusConflict, fmt.Sprintf("SeedImage %s/%s is %s, not Ready: there is nothing to download yet", ns, name, orPending(si.Status.State)))
		return
	}
	stored := seedimage.StoredFile(d.dir, si)
	if stored == "" {
		writeStatus(w, http.StatusConflict, fmt.Sprintf("SeedImage %s/%s has no download URL in its status", ns, name))
		return
	}
	if file == "checksum" {
		stored += ".sha256"
	}
	f, err := os.Open(stored)
	if err != nil {
		// Files live on the replica that built them (docs/ui.md).
		writeStatus(w, http.StatusNotFound, fmt.Sprintf("the files of SeedImage %s/%s are not on this manager replica: they expired, were deleted, or another replica built them", ns, name))
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, err.Error())
		return
	}
	download := name + path.Ext(stored)
	if file == "checksum" {
		download = name + ".sha256"
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+download+`"`)
	w.Header().Set("Cache-Control", "no-store")
	if si.Status.Checksum != "" && file == "image" {
		w.Header().Set("X-Checksum-Sha256", si.Status.Checksum)
	}
	http.ServeContent(w, r, "", st.ModTime(), f)
}

func orPending(s machinesv1.SeedImageState) machinesv1.SeedImageState {
	if s == "" {
		return machinesv1.SeedImagePending
	}
	return s
}

// get reads the SeedImage from the manager's API impersonating user, so
// the manager's RBAC decides; a refusal comes back with the API's message.
func (d *seedDownload) get(r *http.Request, user *authn.User, ns, name string) (*machinesv1.SeedImage, int, string) {
	var si machinesv1.SeedImage
	if code, msg := d.p.getAs(r.Context(), user, nil, 1<<20, "the SeedImage", &si,
		"apis", machinesv1.GroupVersion.Group, machinesv1.GroupVersion.Version, "namespaces", url.PathEscape(ns), "seedimages", url.PathEscape(name)); code != 0 {
		return nil, code, msg
	}
	return &si, 0, ""
}
