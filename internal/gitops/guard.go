package gitops

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"golang.org/x/net/proxy"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/netguard"
)

// go-git picks its http(s) transport from a process-wide table and has no
// per-call client, so one guarded client is installed for the process; the
// policy of each fetch travels in its context (netguard.NewContext), and a
// context without one gets netguard.Default. go-git's ssh transport dials
// by itself (no context, no dialer option) except through a proxy URL, so
// an ssh fetch names the policy as a proxy of the scheme sshGuardScheme,
// whose dialer applies it.
func init() {
	tr := netguard.Default().Transport()
	// Fetches with different policies share this transport: a pooled
	// connection opened under one must not serve another.
	tr.DisableKeepAlives = true
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return netguard.FromContext(ctx).DialContext(ctx, network, addr)
	}
	c := githttp.NewClient(&http.Client{Transport: tr})
	client.InstallProtocol("http", c)
	client.InstallProtocol("https", c)
	proxy.RegisterDialerType(sshGuardScheme, func(u *url.URL, _ proxy.Dialer) (proxy.Dialer, error) {
		p, err := policyFromURL(u)
		if err != nil {
			return nil, err
		}
		return guardDialer{p}, nil
	})
}

// sshGuardScheme is the proxy URL scheme carrying a policy to the ssh dialer.
const sshGuardScheme = "edgefleet-netguard"

// guardDialer dials under a policy (a proxy.Dialer and ContextDialer).
type guardDialer struct{ p netguard.Policy }

func (g guardDialer) Dial(network, addr string) (net.Conn, error) {
	return g.p.DialContext(context.Background(), network, addr)
}

func (g guardDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return g.p.DialContext(ctx, network, addr)
}

// proxyOptions makes go-git's ssh transport dial under p; other transports
// get their policy from the context.
func proxyOptions(repoURL string, p netguard.Policy) transport.ProxyOptions {
	if !IsSSH(repoURL) {
		return transport.ProxyOptions{}
	}
	return transport.ProxyOptions{URL: policyURL(p).String()}
}

func policyURL(p netguard.Policy) *url.URL {
	q := url.Values{}
	for _, c := range p.Refuse {
		q.Add("refuse", string(c))
	}
	for _, n := range p.Allowed {
		q.Add("allow", n.String())
	}
	for _, o := range p.Own {
		q.Add("own", o.String())
	}
	q.Set("relax", p.Relax)
	return &url.URL{Scheme: sshGuardScheme, Host: "policy", RawQuery: q.Encode()}
}

func policyFromURL(u *url.URL) (netguard.Policy, error) {
	q := u.Query()
	p := netguard.Policy{Relax: q.Get("relax")}
	for _, c := range q["refuse"] {
		p.Refuse = append(p.Refuse, netguard.Class(c))
	}
	for _, a := range q["allow"] {
		n, err := netip.ParsePrefix(a)
		if err != nil {
			return p, fmt.Errorf("network policy: %w", err)
		}
		p.Allowed = append(p.Allowed, n)
	}
	for _, o := range q["own"] {
		ap, err := netip.ParseAddrPort(o)
		if err != nil {
			return p, fmt.Errorf("network policy: %w", err)
		}
		p.Own = append(p.Own, ap)
	}
	return p, nil
}

// checkScheme refuses the git:// protocol: go-git dials it without any
// hook, so the network policy could not be applied.
func checkScheme(repoURL string) error {
	if strings.HasPrefix(strings.ToLower(strings.TrimSpace(repoURL)), "git://") {
		return &Error{Reason: fleetv1.NetworkNotAllowedReason, Err: fmt.Errorf("spec.repo %q uses the unauthenticated git:// protocol, which the manager does not fetch: use the repository's https:// or ssh URL", RedactURL(repoURL))}
	}
	return nil
}
