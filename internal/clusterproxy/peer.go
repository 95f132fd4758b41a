package clusterproxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/pki"
)

// Replica-to-replica forwarding. A replica that forwards a proxy request
// to the replica holding the cluster's tunnel authenticates with a client
// certificate of the manager CA for the peer identity below, and passes the
// caller it already authenticated in the X-Edgefleet-Remote-* headers. The
// holder believes those headers only from a request whose TLS-verified
// client certificate is the peer identity; from anyone else every
// X-Edgefleet-* header is removed before anything reads it.
const (
	// PeerCommonName and PeerGroup name the replicas' peer certificate.
	PeerCommonName = "edgefleet-manager-peer"
	PeerGroup      = "edgefleet:managers"

	// HeaderForwardedBy names the replica that forwarded a request. A
	// replica never forwards a request that carries it: one hop at most.
	HeaderForwardedBy = "X-Edgefleet-Forwarded-By"
	HeaderRemoteUser  = "X-Edgefleet-Remote-User"
	HeaderRemoteUID   = "X-Edgefleet-Remote-Uid"
	HeaderRemoteGroup = "X-Edgefleet-Remote-Group"
	// HeaderRemoteExtraPrefix is followed by the path-escaped extra key.
	HeaderRemoteExtraPrefix = "X-Edgefleet-Remote-Extra-"

	peerHeaderPrefix = "x-edgefleet-"
)

// ReplicaIdentity is a replica's name in the tunnel Lease:
// "<hostname>/<advertise host:port>". The hostname is for people; the
// address, after the first "/", is where other replicas reach it.
func ReplicaIdentity(hostname, advertise string) string {
	return hostname + "/" + advertise
}

// HolderAddress returns the host:port of a ReplicaIdentity.
func HolderAddress(identity string) (string, bool) {
	_, addr, ok := strings.Cut(identity, "/")
	if !ok {
		return "", false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return "", false
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return "", false
	}
	return addr, true
}

// isPeer reports whether TLS verified a client certificate of the manager CA
// naming the peer identity. Only the manager CA is trusted for client
// certificates (endpoint.Options.ClientCA), and it issues this name to
// replicas only.
func isPeer(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return false
	}
	c := r.TLS.VerifiedChains[0][0]
	return c.Subject.CommonName == PeerCommonName && slices.Contains(c.Subject.Organization, PeerGroup)
}

// stripPeerHeaders removes every X-Edgefleet-* header.
func stripPeerHeaders(h http.Header) {
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), peerHeaderPrefix) {
			delete(h, k)
		}
	}
}

// errNoForwardedIdentity: a peer certificate came without a caller.
var errNoForwardedIdentity = errors.New("a manager replica's peer certificate came without " + HeaderForwardedBy + " and " + HeaderRemoteUser + ": replicas only use it to forward a caller's request")

// peerIdentity applies the trust rules to an incoming request. From a peer
// it returns the forwarded caller and the forwarding replica; from anyone
// else it returns peer=false, and the X-Edgefleet-* headers are gone so
// they can neither be read nor passed on. Either way they are removed from
// r.Header.
func peerIdentity(r *http.Request) (u *authn.User, forwardedBy string, peer bool, err error) {
	defer stripPeerHeaders(r.Header)
	if !isPeer(r) {
		return nil, "", false, nil
	}
	h := r.Header
	forwardedBy, name := h.Get(HeaderForwardedBy), h.Get(HeaderRemoteUser)
	if forwardedBy == "" || name == "" {
		return nil, "", true, errNoForwardedIdentity
	}
	u = &authn.User{Name: name, UID: h.Get(HeaderRemoteUID), Groups: h.Values(HeaderRemoteGroup)}
	for k, vs := range h {
		rawKey, ok := cutPrefixFold(k, HeaderRemoteExtraPrefix)
		if !ok {
			continue
		}
		key, err := url.PathUnescape(rawKey)
		if err != nil {
			return nil, "", true, fmt.Errorf("forwarded header %s: %w", k, err)
		}
		if u.Extra == nil {
			u.Extra = map[string][]string{}
		}
		// Extra keys are case-insensitive; HTTP changed their case.
		key = strings.ToLower(key)
		u.Extra[key] = append(u.Extra[key], vs...)
	}
	return u, forwardedBy, true, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// setForwardedIdentity replaces the caller's credentials and any
// X-Edgefleet-* headers with the caller's identity for the holder.
func setForwardedIdentity(h http.Header, u *authn.User, self string) {
	h.Del("Authorization")
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
			delete(h, k)
		}
	}
	stripPeerHeaders(h)
	h.Set(HeaderForwardedBy, self)
	h.Set(HeaderRemoteUser, u.Name)
	if u.UID != "" {
		h.Set(HeaderRemoteUID, u.UID)
	}
	for _, g := range u.Groups {
		h.Add(HeaderRemoteGroup, g)
	}
	for k, vs := range u.Extra {
		for _, v := range vs {
			h.Add(HeaderRemoteExtraPrefix+url.PathEscape(k), v)
		}
	}
}

// peerCertRenewBefore: the peer certificate is re-issued this long before
// it expires, so a long-running replica keeps forwarding.
const peerCertRenewBefore = 30 * 24 * time.Hour

// peerCert issues the replica's peer client certificate from the manager CA
// on first use and again before it expires. The key never leaves memory.
type peerCert struct {
	ca *pki.CA

	mu   sync.Mutex
	cert *tls.Certificate
}

func (p *peerCert) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cert != nil && time.Until(p.cert.Leaf.NotAfter) > peerCertRenewBefore {
		return p.cert, nil
	}
	kp, err := p.ca.Issue(pki.CertSpec{CommonName: PeerCommonName, Organization: []string{PeerGroup}, Usage: pki.ClientAuth})
	if err != nil {
		return nil, fmt.Errorf("issuing the peer certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the peer certificate: %w", err)
	}
	p.cert = &cert
	return p.cert, nil
}

// newPeerTransport dials other replicas over HTTPS, trusting only the
// manager CA and presenting the peer certificate. It speaks HTTP/1.1 so
// upgrades (exec, port-forward) pass through httputil.ReverseProxy.
func newPeerTransport(ca *pki.CA) (*http.Transport, error) {
	pc := &peerCert{ca: ca}
	if _, err := pc.get(nil); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, GetClientCertificate: pc.get, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}, nil
}
