// Package gitops fetches git repositories inside the manager with go-git:
// shallow, cached per repository under a work directory, with a bound on
// concurrent fetches, over https (basic auth, custom CA), ssh (private key
// and known_hosts) and local paths or file:// URLs. It also normalizes
// repository URLs so a webhook's https URL matches a GitRepo's ssh URL.
package gitops

import (
	"net/url"
	"path"
	"regexp"
	"strings"
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

// IsLocal tells whether a repository URL is a local path or file:// URL.
func IsLocal(raw string) bool {
	s := strings.TrimSpace(raw)
	return strings.HasPrefix(s, "file://") || strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".")
}
