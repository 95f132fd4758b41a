package clusterproxy

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/edgefleet/edgefleet/internal/authn"
)

// Replica-to-replica forwarding. A replica that forwards a proxy request
// to the replica holding the cluster's tunnel authenticates with its peer
// certificate (peers.go: self-signed, published in a Lease, its key only in
// that replica's memory), and passes the caller it already authenticated in
// the X-Edgefleet-Remote-* headers. The holder believes those headers only
// from a request whose TLS-verified client certificate is one of the
// published peer certificates; from anyone else every X-Edgefleet-* header
// is removed before anything reads it.
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

// isPeer reports whether TLS verified a client certificate that is a
// published peer certificate (trusts). The name in a certificate proves
// nothing: a CA that issues user certificates could put any name in one.
// A chain of one certificate that is not a peer's (a stale peer Lease, or a
// CA certificate presented as a client certificate) is refused outright
// rather than taken for a user.
func isPeer(r *http.Request, trusts func(*x509.Certificate) bool) (bool, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return false, nil
	}
	chain := r.TLS.VerifiedChains[0]
	if trusts != nil && trusts(chain[0]) {
		return true, nil
	}
	if len(chain) == 1 {
		return false, errUnknownPeer
	}
	return false, nil
}

var errUnknownPeer = errors.New("the client certificate is neither issued by a trusted CA nor a manager replica's published peer certificate (a replica's peer Lease went stale?)")

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
func peerIdentity(r *http.Request, trusts func(*x509.Certificate) bool) (u *authn.User, forwardedBy string, peer bool, err error) {
	defer stripPeerHeaders(r.Header)
	peer, err = isPeer(r, trusts)
	if err != nil {
		// Answered like a peer error: refused, never authenticated as a user.
		return nil, "", true, err
	}
	if !peer {
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
