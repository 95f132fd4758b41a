// Package netguard decides which network addresses the manager may connect
// to on behalf of a tenant. Tenants (and git committers) name URLs the
// manager fetches — GitRepo repositories, Helm chart repositories and OCI
// charts, SeedImage base images, ManagedOSVersionChannel URLs — while the
// manager sits next to things a tenant must not reach: its own embedded
// kube-apiserver and etcd on loopback, the cloud metadata service on
// link-local, the site's private network.
//
// A Policy is checked on the address actually dialled, after DNS
// resolution (net.Dialer.Control), so names resolving to a refused address,
// DNS rebinding and redirects are judged like literal addresses. A refusal
// happens before any packet is sent: the error says the destination was
// refused by policy and nothing else, so status messages are no oracle for
// what listens there.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// Class is a kind of address a policy may refuse.
type Class string

// The address classes, each with the words used in refusals.
const (
	Loopback    Class = "loopback"
	LinkLocal   Class = "link-local"
	Unspecified Class = "unspecified"
	Private     Class = "private"
	Multicast   Class = "not a unicast"
)

// describe is how a refusal names a class.
func (c Class) describe() string {
	switch c {
	case LinkLocal:
		return "a link-local address (cloud metadata services live there)"
	case Multicast:
		return "not a unicast address"
	}
	return "a " + string(c) + " address"
}

var (
	// sharedAddressSpace is RFC 6598 carrier-grade NAT space, which clouds
	// use for internal services too.
	sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")
	// thisNetwork (0.0.0.0/8) reaches the host itself on Linux.
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	// nat64 is the well-known NAT64 prefix (RFC 6052).
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
)

// Classify says which class ip belongs to ("" = a public unicast address).
// IPv4-mapped addresses are judged as IPv4, NAT64 addresses by the IPv4
// address they reach.
func Classify(ip netip.Addr) Class {
	ip = canonical(ip)
	switch {
	case ip.IsLoopback():
		return Loopback
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return LinkLocal
	case ip.IsUnspecified(), thisNetwork.Contains(ip):
		return Unspecified
	case ip.IsPrivate(), sharedAddressSpace.Contains(ip):
		return Private
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast(), !ip.IsGlobalUnicast():
		return Multicast
	}
	return ""
}

func canonical(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte(b[12:]))
	}
	return ip
}

// RefuseLocal are the classes git and Helm fetches refuse by default: the
// manager host itself, link-local metadata services and multicast. Private
// networks are allowed: enterprise git servers and chart repositories live
// there.
var RefuseLocal = []Class{Loopback, LinkLocal, Unspecified, Multicast}

// RefuseNonPublic adds private networks to RefuseLocal: the default for
// sources that are public by nature (SeedImage base images, OS channels).
var RefuseNonPublic = []Class{Loopback, LinkLocal, Unspecified, Private, Multicast}

// Policy is which addresses may be dialled: an address in Allowed is
// allowed, else one of a Refuse class is refused. Own addresses (the
// manager's own endpoint and control plane) are refused whatever Allowed
// says.
type Policy struct {
	Refuse  []Class
	Allowed []netip.Prefix
	Own     []netip.AddrPort
	// Relax names the server flag(s) that allow a refused address, for
	// error messages.
	Relax string

	// lookup replaces DNS resolution (tests).
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// WithLookup returns p resolving host names with lookup instead of DNS, so
// tests can have a name resolve to any address.
func (p Policy) WithLookup(lookup func(ctx context.Context, host string) ([]netip.Addr, error)) Policy {
	p.lookup = lookup
	return p
}

// RefusedError is a connection the policy refused; nothing was sent.
type RefusedError struct {
	Addr  string
	Why   string
	Relax string
}

// RefusedMessage starts every refusal, so users and tests can recognise it.
const RefusedMessage = "refused by the manager's network policy"

func (e *RefusedError) Error() string {
	msg := fmt.Sprintf("%s: %s is %s", RefusedMessage, e.Addr, e.Why)
	if e.Relax != "" {
		msg += fmt.Sprintf(" (the manager's administrator can allow it with %s)", e.Relax)
	}
	return msg
}

// IsRefused tells whether err (or an error it wraps) is a policy refusal.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}

// Check judges one destination.
func (p Policy) Check(ap netip.AddrPort) error {
	ip := canonical(ap.Addr())
	for _, o := range p.Own {
		if canonical(o.Addr()) == ip && o.Port() == ap.Port() ||
			o.Addr().IsUnspecified() && o.Port() == ap.Port() && isLocalAddress(ip) {
			return &RefusedError{Addr: ap.String(), Why: "the manager's own address (its endpoint or Kubernetes API), which no flag allows"}
		}
	}
	for _, n := range p.Allowed {
		if n.Contains(ip) {
			return nil
		}
	}
	c := Classify(ip)
	for _, r := range p.Refuse {
		if c == r {
			return &RefusedError{Addr: ip.String(), Why: c.describe(), Relax: p.Relax}
		}
	}
	return nil
}

// isLocalAddress tells whether ip is one of this host's addresses (where a
// listener on 0.0.0.0 answers).
func isLocalAddress(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if x, ok := netip.AddrFromSlice(n.IP); ok && x.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

// Control is a net.Dialer Control function enforcing p on the address
// being dialled.
func (p Policy) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{Addr: address, Why: "not an IP address and port", Relax: p.Relax}
	}
	return p.Check(ap)
}

// DialContext connects to address (host:port) under p: the host is
// resolved, refused addresses are skipped, and the first allowed one that
// answers is used. When every address is refused, the first refusal is
// returned.
func (p Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else if p.lookup != nil {
		addrs, err = p.lookup(ctx, host)
		if err != nil {
			return nil, err
		}
	} else {
		addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: p.Control}
	var first, last error
	for _, ip := range addrs {
		ap := netip.AddrPortFrom(ip.Unmap(), 0)
		target := net.JoinHostPort(ap.Addr().String(), port)
		if perr := p.Control(network, target, nil); perr != nil {
			if first == nil {
				first = perr
			}
			continue
		}
		c, err := d.DialContext(ctx, network, target)
		if err == nil {
			return c, nil
		}
		last = err
	}
	if last != nil {
		return nil, last
	}
	if first != nil {
		return nil, first
	}
	return nil, fmt.Errorf("%s: no address", host)
}

// Transport is an HTTP transport dialling under p. It takes no proxy from
// the environment: through a proxy the dialled address would be the
// proxy's and the destination could not be judged.
func (p Policy) Transport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           p.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          10,
	}
}

// ParseNetworks parses CIDRs (as given to flag, named in errors).
func ParseNetworks(flag string, cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a CIDR (for example 10.20.0.0/16): %v", flag, c, err)
		}
		out = append(out, pfx.Masked())
	}
	return out, nil
}

type policyKey struct{}

// NewContext returns ctx carrying p, for transports shared by callers with
// different policies (go-git's process-wide protocol clients).
func NewContext(ctx context.Context, p Policy) context.Context {
	return context.WithValue(ctx, policyKey{}, p)
}

// FromContext is the policy NewContext put in ctx, or Default when none:
// a caller that forgot the policy gets the safe default, never no policy.
func FromContext(ctx context.Context) Policy {
	if p, ok := ctx.Value(policyKey{}).(Policy); ok {
		return p
	}
	return Default()
}

// FetchAllowedNetworksFlag is the server flag allowing refused networks to
// tenants' git, Helm and OCI fetches.
const FetchAllowedNetworksFlag = "--fetch-allowed-networks"

// Default is the policy for git and Helm fetches without flags.
func Default() Policy {
	return Policy{Refuse: RefuseLocal, Relax: FetchAllowedNetworksFlag}
}
