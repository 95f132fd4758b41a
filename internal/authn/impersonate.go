package authn

import (
	"net/http"
	"net/url"
	"strings"
)

// SetImpersonation replaces a request's credentials with Kubernetes
// impersonation headers for u: the caller's Authorization and any
// Impersonate-* headers it sent are dropped first, so a caller can never
// choose whom the forwarded request acts as.
func SetImpersonation(h http.Header, u *User) {
	h.Del("Authorization")
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
			delete(h, k)
		}
	}
	h.Set("Impersonate-User", u.Name)
	if u.UID != "" {
		h.Set("Impersonate-Uid", u.UID)
	}
	for _, g := range u.Groups {
		h.Add("Impersonate-Group", g)
	}
	for k, vs := range u.Extra {
		for _, v := range vs {
			h.Add("Impersonate-Extra-"+url.PathEscape(k), v)
		}
	}
}
