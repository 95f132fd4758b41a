package gitops

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// Auth is how to reach one repository. The zero value is anonymous access
// with the system's CAs.
type Auth struct {
	// Username and Password are https basic auth (a token usually goes in
	// Password). For ssh, Username overrides the URL's user.
	Username string
	Password string
	// SSHPrivateKey is a PEM private key for ssh URLs.
	SSHPrivateKey []byte
	// KnownHosts lists the accepted ssh host keys (known_hosts format).
	// Without it the manager's own known_hosts files are used
	// ($SSH_KNOWN_HOSTS, ~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts).
	KnownHosts []byte
	// CABundle is extra PEM CAs trusted for https.
	CABundle []byte
	// InsecureSkipTLSVerify turns off certificate checks for https.
	InsecureSkipTLSVerify bool
	// Tenant (the GitRepo's namespace) scopes the fetch cache: tenants
	// never share a cached repository.
	Tenant string
}

// identity stands for the credentials in the cache key: a hash of their
// content, so a GitRepo without them (or with others) never gets a cache
// entry fetched with them, and the key cannot be guessed without them.
func (a Auth) identity() string {
	h := sha256.New()
	insecure := "0"
	if a.InsecureSkipTLSVerify {
		insecure = "1"
	}
	for _, part := range [][]byte{[]byte(a.Username), []byte(a.Password), a.SSHPrivateKey, a.KnownHosts, a.CABundle, []byte(insecure)} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// method returns go-git's auth for repoURL; nil means anonymous.
func (a Auth) method(repoURL string) (transport.AuthMethod, error) {
	if IsSSH(repoURL) {
		if len(a.SSHPrivateKey) == 0 {
			return nil, &Error{Reason: fleetv1.AuthenticationFailedReason, Err: fmt.Errorf("%s is an ssh URL but no ssh private key was given: put ssh-privatekey (and known_hosts) in the clientSecretName Secret", repoURL)}
		}
		user := a.Username
		if user == "" {
			user = sshUser(repoURL)
		}
		keys, err := gitssh.NewPublicKeys(user, a.SSHPrivateKey, "")
		if err != nil {
			return nil, &Error{Reason: fleetv1.AuthenticationFailedReason, Err: fmt.Errorf("reading the ssh private key: %w (ssh-privatekey must be an unencrypted PEM or OpenSSH key)", err)}
		}
		cb, err := hostKeyCallback(a.KnownHosts)
		if err != nil {
			return nil, &Error{Reason: fleetv1.AuthenticationFailedReason, Err: err}
		}
		keys.HostKeyCallback = cb
		return keys, nil
	}
	if a.Username != "" || a.Password != "" {
		user := a.Username
		if user == "" {
			// Token-only secrets: hosts accept any non-empty user name.
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: a.Password}, nil
	}
	return nil, nil
}

func sshUser(repoURL string) string {
	if !strings.Contains(repoURL, "://") {
		if at := strings.Index(repoURL, "@"); at > 0 && at < strings.Index(repoURL, ":") {
			return repoURL[:at]
		}
		return "git"
	}
	if u, err := url.Parse(repoURL); err == nil && u.User != nil && u.User.Username() != "" {
		return u.User.Username()
	}
	return "git"
}

// hostKeyCallback checks ssh host keys against knownHosts, or the manager's
// known_hosts files when knownHosts is empty.
func hostKeyCallback(knownHosts []byte) (ssh.HostKeyCallback, error) {
	if len(knownHosts) == 0 {
		cb, err := gitssh.NewKnownHostsCallback()
		if err != nil {
			return nil, fmt.Errorf("no known_hosts in the clientSecretName Secret and none on the manager (%v): add a known_hosts key with the host's key (ssh-keyscan HOST)", err)
		}
		return wrapHostKeyError(cb), nil
	}
	// knownhosts only parses files; the copy lives only while parsing.
	f, err := os.CreateTemp("", "edgefleet-known-hosts-")
	if err != nil {
		return nil, fmt.Errorf("writing known_hosts: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(knownHosts); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing known_hosts: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("writing known_hosts: %w", err)
	}
	cb, err := knownhosts.New(filepath.Clean(f.Name()))
	if err != nil {
		return nil, fmt.Errorf("known_hosts in the clientSecretName Secret is invalid: %w", err)
	}
	return wrapHostKeyError(cb), nil
}

// wrapHostKeyError explains an unknown or changed host key.
func wrapHostKeyError(cb ssh.HostKeyCallback) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if err := cb(hostname, remote, key); err != nil {
			return fmt.Errorf("host key of %s (%s %s) is not in known_hosts: %w; add the host's key (ssh-keyscan) to known_hosts",
				hostname, key.Type(), ssh.FingerprintSHA256(key), err)
		}
		return nil
	}
}
