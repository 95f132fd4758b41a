package seedimage

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgefleet/edgefleet/internal/netguard"
)

// Sources is where base images may come from. A SeedImage is written by a
// tenant, the build runs in the manager: without these limits a tenant reads
// any file of the manager's host into media it downloads, or makes the
// manager fetch from its loopback, link-local (cloud metadata) or private
// network. The administrator relaxes them with server flags.
type Sources struct {
	// LocalDir is the only directory local base images are read from
	// (--seed-base-image-dir); empty refuses every local path.
	LocalDir string
	// AllowInsecure permits plain-HTTP URLs and registries and any
	// destination address, loopback included (--seed-allow-insecure-base-urls:
	// tests and labs).
	AllowInsecure bool
	// AllowedNetworks are otherwise refused networks (for example a mirror
	// in the site's 10.0.0.0/8) that base image URLs and registries may reach
	// (--seed-allowed-base-networks).
	AllowedNetworks []netip.Prefix
	// Own are the manager's own listen addresses, refused even when
	// allowed otherwise.
	Own []netip.AddrPort
	// FetchTimeout bounds getting a base image (default 30 minutes).
	FetchTimeout time.Duration

	// rootCAs replaces the system roots (tests).
	rootCAs *x509.CertPool
}

// DefaultFetchTimeout bounds getting a base image when Sources has none.
const DefaultFetchTimeout = 30 * time.Minute

func (s Sources) fetchTimeout() time.Duration {
	if s.FetchTimeout > 0 {
		return s.FetchTimeout
	}
	return DefaultFetchTimeout
}

// ParseNetworks parses the CIDRs of --seed-allowed-base-networks.
func ParseNetworks(cidrs []string) ([]netip.Prefix, error) {
	return netguard.ParseNetworks("--seed-allowed-base-networks", cidrs)
}

// errLocalRefused is the one answer for every local path outside policy:
// the same text whether or not the path exists, so status messages are no
// oracle for the manager's file system.
func (s Sources) errLocalRefused(base string) error {
	if s.LocalDir == "" {
		return fmt.Errorf("baseImage %q is a local path, and this manager reads no local base images (its administrator can allow a directory with --seed-base-image-dir); use an https URL with baseImageSHA256 or an OCI image", base)
	}
	return fmt.Errorf("baseImage %q is not a regular file in the manager's base image directory %s (files there, or links that stay inside it, are the only local base images); use a name in it, an https URL with baseImageSHA256 or an OCI image", base, s.LocalDir)
}

// openLocal opens a local base image beneath LocalDir: symlinks may not
// leave it (os.Root), only regular files of at most limit bytes, opened
// non-blocking so a FIFO cannot hang the controller.
func (s Sources) openLocal(base string, limit int64) (*os.File, error) {
	if s.LocalDir == "" {
		return nil, s.errLocalRefused(base)
	}
	rel := base
	if filepath.IsAbs(base) {
		r, err := filepath.Rel(s.LocalDir, base)
		if err != nil || r == ".." || strings.HasPrefix(r, "../") {
			return nil, s.errLocalRefused(base)
		}
		rel = r
	}
	if !filepath.IsLocal(rel) {
		return nil, s.errLocalRefused(base)
	}
	root, err := os.OpenRoot(s.LocalDir)
	if err != nil {
		return nil, fmt.Errorf("the manager's base image directory %s cannot be opened: ask its administrator to check --seed-base-image-dir", s.LocalDir)
	}
	defer root.Close()
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		// Only a missing file inside the directory is named as such; a link
		// out of it fails the same whether its target exists or not.
		if errors.Is(err, fs.ErrNotExist) && !isEscape(err) {
			return nil, fmt.Errorf("baseImage %q: no such file in the manager's base image directory %s", base, s.LocalDir)
		}
		return nil, s.errLocalRefused(base)
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, s.errLocalRefused(base)
	}
	if st.Size() > limit {
		f.Close()
		return nil, fmt.Errorf("baseImage %q is %d bytes, more than the %d allowed", base, st.Size(), limit)
	}
	return f, nil
}

// isEscape tells os.Root's refusal of a path leaving the root, whatever the
// error it wraps.
func isEscape(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// policy is the dial policy for base images: public addresses only unless
// the administrator allows a network or insecure sources (see netguard).
func (s Sources) policy() netguard.Policy {
	if s.AllowInsecure {
		return netguard.Policy{Own: s.Own}
	}
	return netguard.Policy{Refuse: netguard.RefuseNonPublic, Allowed: s.AllowedNetworks, Own: s.Own,
		Relax: "--seed-allowed-base-networks or --seed-allow-insecure-base-urls"}
}

// transport is the HTTP transport for base image URLs and registries: the
// dial policy, no proxy from the environment (a proxy would make the dialled
// address the proxy's and hide the target), TLS 1.2+, bounded handshakes,
// and plain HTTP only when AllowInsecure.
func (s Sources) transport() http.RoundTripper {
	t := s.policy().Transport()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: s.rootCAs}
	return schemeGuard{insecure: s.AllowInsecure, next: t}
}

// schemeGuard refuses plain HTTP (go-containerregistry falls back to it for
// private and .local registries by itself) unless insecure sources are
// allowed.
type schemeGuard struct {
	insecure bool
	next     http.RoundTripper
}

func (g schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !g.insecure {
		return nil, fmt.Errorf("refusing plain HTTP to %s: base images and registries are fetched over HTTPS only (the manager's administrator can allow plain HTTP with --seed-allow-insecure-base-urls)", req.URL.Host)
	}
	return g.next.RoundTrip(req)
}

// maxRedirects bounds a base image URL's redirects; each hop goes through
// the same transport, so its scheme and address are checked again.
const maxRedirects = 5

// HTTPClient is an HTTP client under these rules (address policy, HTTPS
// only unless AllowInsecure, bounded redirects), for other remote sources
// tenants name, such as ManagedOSVersionChannel URLs.
func (s Sources) HTTPClient() *http.Client { return s.httpClient() }

func (s Sources) httpClient() *http.Client {
	return &http.Client{
		Transport: s.transport(),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			return nil
		},
	}
}

// checksum verifies what is written through it against a hex SHA-256
// ("" = nothing to check; the sum is still computed).
type checksum struct {
	want string
	h    hash.Hash
}

func newChecksum(want string) *checksum {
	return &checksum{want: strings.ToLower(want), h: sha256.New()}
}

func (c *checksum) Write(p []byte) (int, error) { return c.h.Write(p) }

func (c *checksum) verify(what string) error {
	got := hex.EncodeToString(c.h.Sum(nil))
	if c.want != "" && got != c.want {
		return fmt.Errorf("%s has sha256 %s, but spec.baseImageSHA256 is %s: the image was discarded; check the URL or the checksum", what, got, c.want)
	}
	return nil
}

// copyBounded copies at most limit bytes from r to w, stopping when ctx
// ends, and fails when r holds more.
func copyBounded(ctx context.Context, w io.Writer, r io.Reader, limit int64, what string) error {
	n, err := io.Copy(w, ctxReader{ctx, io.LimitReader(r, limit+1)})
	if err != nil {
		return err
	}
	if n > limit {
		return fmt.Errorf("%s is larger than the %d bytes allowed", what, limit)
	}
	return nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
