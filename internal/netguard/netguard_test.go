package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	for addr, want := range map[string]Class{
		"127.0.0.1":          Loopback,
		"127.8.9.10":         Loopback,
		"::1":                Loopback,
		"::ffff:127.0.0.1":   Loopback,
		"169.254.169.254":    LinkLocal,
		"fe80::1":            LinkLocal,
		"0.0.0.0":            Unspecified,
		"0.1.2.3":            Unspecified,
		"::":                 Unspecified,
		"10.0.0.5":           Private,
		"192.168.1.10":       Private,
		"fd00::1":            Private,
		"100.64.0.1":         Private,
		"239.1.1.1":          Multicast,
		"64:ff9b::a9fe:a9fe": LinkLocal, // NAT64 of 169.254.169.254
		"64:ff9b::808:808":   "",
		"93.184.215.14":      "",
		"2606:4700::1111":    "",
	} {
		if got := Classify(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
}

// The default (git and Helm) refuses the host and metadata addresses but
// not private networks; allowed prefixes win, the manager's own addresses
// never are.
func TestDefaultPolicy(t *testing.T) {
	p := Default()
	p.Allowed = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	p.Own = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6443"), netip.MustParseAddrPort("0.0.0.0:8443")}
	for addr, refused := range map[string]bool{
		"10.1.2.3:443":            false,
		"192.168.0.1:22":          false,
		"127.0.0.1:443":           false, // allowed
		"127.0.0.1:6443":          true,  // own
		"[::ffff:127.0.0.1]:6443": true,
		"127.0.0.5:8443":          true, // own, listening on every address
		"169.254.169.254:80":      true,
		"[::1]:443":               true,
		"0.0.0.0:443":             true,
		"224.0.0.1:80":            true,
		"93.184.215.14:443":       false,
	} {
		err := p.Check(netip.MustParseAddrPort(addr))
		if (err != nil) != refused {
			t.Errorf("%s: %v, want refused=%v", addr, err, refused)
		}
		if err != nil && (!IsRefused(err) || !strings.HasPrefix(err.Error(), RefusedMessage)) {
			t.Errorf("%s: %q does not start with %q", addr, err, RefusedMessage)
		}
	}
	if err := Default().Check(netip.MustParseAddrPort("169.254.169.254:80")); err == nil || !strings.Contains(err.Error(), FetchAllowedNetworksFlag) {
		t.Errorf("refusal %v does not name %s", err, FetchAllowedNetworksFlag)
	}
}

// Names are judged by what they resolve to (a resolver hook stands for a
// hostile DNS), and every redirect hop by its own address; nothing is sent
// to a refused address.
func TestDialChecksResolvedAddressesAndRedirects(t *testing.T) {
	var hits int
	secret := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits++ }))
	defer secret.Close()
	_, port, _ := net.SplitHostPort(secret.Listener.Addr().String())
	public := netip.MustParseAddr("192.0.2.10") // TEST-NET: never dialled
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "evil.example":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		case "metadata.example":
			return []netip.Addr{netip.MustParseAddr("169.254.169.254")}, nil
		}
		return []netip.Addr{public}, nil
	}
	p := Default().WithLookup(lookup)
	c := &http.Client{Transport: p.Transport()}
	for _, u := range []string{"http://evil.example:" + port + "/", "http://metadata.example/", "http://127.0.0.1:" + port + "/", "http://[::1]:" + port + "/"} {
		_, err := c.Get(u)
		var r *RefusedError
		if !errors.As(err, &r) {
			t.Errorf("%s: %v, want a refusal", u, err)
		}
	}
	// A redirect from an allowed server to loopback.
	allowedAddr := netip.MustParseAddr("127.0.0.2")
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skip("no 127.0.0.2:", err)
	}
	redirector := httptest.NewUnstartedServer(http.RedirectHandler(secret.URL+"/", http.StatusFound))
	redirector.Listener = l
	redirector.Start()
	defer redirector.Close()
	p.Allowed = []netip.Prefix{netip.PrefixFrom(allowedAddr, 32)}
	c = &http.Client{Transport: p.Transport()}
	if _, err := c.Get(redirector.URL); !IsRefused(err) || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("redirect to loopback: %v, want a refusal naming 127.0.0.1", err)
	}
	if hits != 0 {
		t.Errorf("the loopback server was reached %d times", hits)
	}
	// Allowed, the same loopback server answers.
	p.Allowed = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	resp, err := (&http.Client{Transport: p.Transport()}).Get("http://evil.example:" + port + "/")
	if err != nil {
		t.Fatalf("allowed: %v", err)
	}
	resp.Body.Close()
	if hits != 1 {
		t.Errorf("allowed: %d hits, want 1", hits)
	}
}

func TestParseNetworksNamesTheFlag(t *testing.T) {
	got, err := ParseNetworks(FetchAllowedNetworksFlag, []string{" 127.0.0.0/8", "", "10.1.2.3/16", "::1/128"})
	if err != nil || len(got) != 3 || got[1].String() != "10.1.0.0/16" {
		t.Errorf("ParseNetworks: %v, %v", got, err)
	}
	if _, err := ParseNetworks(FetchAllowedNetworksFlag, []string{"10.0.0.0"}); err == nil || !strings.Contains(err.Error(), FetchAllowedNetworksFlag) || !strings.Contains(err.Error(), "CIDR") {
		t.Errorf("a bare address: %v, want an error naming the flag and CIDR", err)
	}
}

// A context without a policy gets the safe default, never no policy.
func TestFromContextDefaultsToTheSafePolicy(t *testing.T) {
	if err := FromContext(context.Background()).Check(netip.MustParseAddrPort("127.0.0.1:80")); !IsRefused(err) {
		t.Errorf("no policy in the context: loopback %v, want refused", err)
	}
	p := Default()
	p.Allowed = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	if err := FromContext(NewContext(context.Background(), p)).Check(netip.MustParseAddrPort("127.0.0.1:80")); err != nil {
		t.Errorf("the context's policy was not used: %v", err)
	}
}
