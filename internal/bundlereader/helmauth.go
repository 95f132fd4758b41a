package bundlereader

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// HelmCredentials are basic-auth credentials for the chart repositories a
// bundle names (a GitRepo's helmSecretName).
type HelmCredentials struct {
	Username, Password string
	// AllowPlainHTTP sends them to http:// repositories too, readable by
	// anyone on the path. Off unless asked for.
	AllowPlainHTTP bool
}

// NewCredentialsTransport sends creds only where a bundle asked for a chart:
// to the scheme, host and port of its helm.repo (index.yaml and archives on
// that origin) or of its helm.chart URL. Never to a redirect target or an
// index.yaml's archive URL on another origin, never to OCI registries, and
// over plain http only when creds.AllowPlainHTTP.
func NewCredentialsTransport(creds HelmCredentials, next http.RoundTripper) http.RoundTripper {
	return &credentialsTransport{creds: creds, next: next}
}

type credentialsTransport struct {
	creds HelmCredentials
	next  http.RoundTripper
}

type credentialOriginKey struct{}

// withCredentialOrigin marks the requests made with ctx as requests for the
// chart source u: credentials go to u's origin, and only there.
func withCredentialOrigin(ctx context.Context, u *url.URL) context.Context {
	return context.WithValue(ctx, credentialOriginKey{}, origin(u))
}

// origin is scheme://host:port with the scheme's default port made
// explicit, so https://h and https://h:443 are one origin.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

func (t *credentialsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	want, _ := req.Context().Value(credentialOriginKey{}).(string)
	if want == "" || origin(req.URL) != want {
		return t.next.RoundTrip(req)
	}
	if req.URL.Scheme != "https" && !t.creds.AllowPlainHTTP {
		return nil, fmt.Errorf("refusing to send the helmSecretName credentials over plain http to %s: use an https:// chart repository, or set insecurePlainHTTP: \"true\" in the Secret to allow it", redactUserinfo(want))
	}
	req = req.Clone(req.Context())
	req.SetBasicAuth(t.creds.Username, t.creds.Password)
	return t.next.RoundTrip(req)
}

// redactUserinfo hides credentials a chart URL may carry, for logs.
func redactUserinfo(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = url.User("REDACTED")
	return u.String()
}
