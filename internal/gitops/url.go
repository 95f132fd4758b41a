// Package gitops fetches git repositories inside the manager with go-git:
// shallow, cached per (tenant, repository, credentials) under a work
// directory, with a bound on concurrent fetches, over https (basic auth,
// custom CA) and ssh (private key and known_hosts); local paths and file://
// URLs only when the manager allows them (Fetcher.AllowLocal, `edgefleet
// server --allow-local-git-repos`). It also normalizes repository URLs so a
// webhook's https URL matches a GitRepo's ssh URL, and redacts credentials
// from URLs before they are logged or shown.
package gitops

import (
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

// scpLike matches git's scp-like ssh syntax, "[user@]host:path".
var scpLike = regexp.MustCompile(`^(?:[^@/]+@)?([^:/]+):(.*)$`)

// NormalizeURL reduces a repository URL to "host/path" (lower case, no
// scheme, user, port or ".git" suffix), so that the https, ssh and scp-like
// forms of one repository compare equal:
//
//	https://github.com/Org/Repo.git  → github.com/org/repo
//	git@github.com:org/repo.git      → github.com/org/repo
//	ssh://git@github.com:22/org/repo → github.com/org/repo
//
// Local paths and file:// URLs become the cleaned absolute path. Ports are
// dropped on purpose: a host's ssh and https ports differ for one repository.
func NormalizeURL(raw string) string {
	s := strings.TrimSpace(raw)
	var host, p string
	switch {
	case strings.HasPrefix(s, "/"):
		p = s
	case strings.Contains(s, "://"):
		u, err := url.Parse(s)
		if err != nil {
			return strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(s, "/"), ".git"))
		}
		if u.Scheme == "file" {
			p = u.Path
		} else {
			host = u.Hostname()
			p = u.Path
		}
	default:
		m := scpLike.FindStringSubmatch(s)
		if m == nil {
			p = s
			break
		}
		host, p = m[1], m[2]
	}
	p = path.Clean("/" + p)
	p = strings.TrimSuffix(p, "/")
	p = strings.TrimSuffix(p, ".git")
	if host == "" {
		return strings.ToLower(p)
	}
	return strings.ToLower(host + p)
}

// IsSSH tells whether a repository URL uses the ssh transport.
func IsSSH(raw string) bool {
	s := strings.TrimSpace(raw)
	if strings.HasPrefix(s, "ssh://") || strings.HasPrefix(s, "git+ssh://") {
		return true
	}
	if strings.Contains(s, "://") || strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return false
	}
	return scpLike.MatchString(s)
}

// IsLocal tells whether a repository URL is read from the manager's own file
// system: a file:// URL or anything go-git treats as a path ("/srv/repo",
// "./repo", "repo", "~/repo"). It asks go-git's own endpoint parser, so what
// is refused is exactly what go-git would open locally.
func IsLocal(raw string) bool {
	s := strings.TrimSpace(raw)
	if strings.HasPrefix(strings.ToLower(s), "file:") {
		return true
	}
	ep, err := transport.NewEndpoint(s)
	return err == nil && ep.Protocol == "file"
}

// localPath is the absolute path go-git opens for a local URL.
func localPath(raw string) string {
	ep, err := transport.NewEndpoint(strings.TrimSpace(raw))
	if err != nil {
		return ""
	}
	return ep.Path
}

// RedactURL hides the credentials a repository URL may carry (user info,
// which often is a token: https://TOKEN@host/..., and query values) so it
// can be logged and written to status.
func RedactURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return RedactURLs(raw)
	}
	if u.User != nil {
		u.User = url.User(redacted)
	}
	if u.RawQuery != "" {
		u.RawQuery = redacted
	}
	return u.String()
}

const redacted = "REDACTED"

// userinfoInURL matches "scheme://userinfo@" anywhere in a text; error
// messages of net/http and go-git quote URLs, and net/http keeps the user
// name (often the token) in them.
var userinfoInURL = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#@\s"']+@`)

// RedactURLs hides the user info of every URL in s (a log line or a status
// message).
func RedactURLs(s string) string {
	return userinfoInURL.ReplaceAllString(s, "${1}"+redacted+"@")
}
