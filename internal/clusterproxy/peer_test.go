package clusterproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/pki"
)

// seen is what a holder concluded about a request.
type seen struct {
	Peer        bool
	Err         string
	User        *authn.User
	ForwardedBy string
	Left        []string // X-Edgefleet-* headers still on the request afterwards
}

// directory is a set of replicas that trust each other's published peer
// certificates, as the peer Leases make them do.
type directory struct {
	mu      sync.Mutex
	members []*Peers
}

func (d *directory) add(t *testing.T, identity string) *Peers {
	t.Helper()
	p, err := NewPeers(identity)
	if err != nil {
		t.Fatal(err)
	}
	p.list = d.list
	d.mu.Lock()
	d.members = append(d.members, p)
	d.mu.Unlock()
	return p
}

func (d *directory) remove(p *Peers) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.members = slices.DeleteFunc(d.members, func(m *Peers) bool { return m == p })
}

func (d *directory) list(context.Context) ([]publishedPeer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []publishedPeer
	for _, m := range d.members {
		out = append(out, publishedPeer{identity: m.identity, cert: m.Certificate().Leaf})
	}
	return out, nil
}

// holderServer is a real HTTPS server that verifies client certificates as
// the manager's endpoint does (users from ca, replicas from their published
// peer certificates), serves self's peer certificate to PeerServerName, and
// reports what peerIdentity made of each request. self's identity is set to
// the server's address.
func holderServer(t *testing.T, ca *pki.CA, self *Peers) *httptest.Server {
	t.Helper()
	kp, err := ca.Issue(pki.CertSpec{CommonName: "edgefleet-manager", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usage: pki.ServerAuth})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	users := x509.NewCertPool()
	users.AddCert(ca.Cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, by, peer, err := peerIdentity(r, func(c *x509.Certificate) bool { return self.trusts(r.Context(), c) })
		out := seen{Peer: peer, User: u, ForwardedBy: by}
		if err != nil {
			out.Err = err.Error()
		}
		for k := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-edgefleet-") {
				out.Left = append(out.Left, k)
			}
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	base := &tls.Config{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if hello.ServerName == PeerServerName {
				return self.Certificate(), nil
			}
			return &cert, nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		cfg := base.Clone()
		cfg.GetConfigForClient = nil
		cfg.ClientCAs = self.ClientCAs(hello.Context(), users)
		return cfg, nil
	}
	srv.TLS = base
	srv.StartTLS()
	t.Cleanup(srv.Close)
	self.identity = ReplicaIdentity("holder", srv.Listener.Addr().String())
	return srv
}

func clientWithCert(t *testing.T, ca *pki.CA, issuer *pki.CA, spec *pki.CertSpec) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	cfg := &tls.Config{RootCAs: roots}
	if spec != nil {
		kp, err := issuer.Issue(*spec)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
}

func ask(t *testing.T, c *http.Client, url string, h http.Header) seen {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header = h
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s seen
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, _, err := pki.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// forged is what a caller trying to pass as someone else would send.
func forged() http.Header {
	h := http.Header{}
	h.Set(HeaderForwardedBy, "host/10.0.0.1:8443")
	h.Set(HeaderRemoteUser, "admin")
	h.Add(HeaderRemoteGroup, "system:masters")
	h.Set(HeaderRemoteExtraPrefix+"scopes", "all")
	h.Set("X-Edgefleet-Something-Else", "x")
	return h
}

func TestPeerForwardsTheCallersIdentity(t *testing.T) {
	var d directory
	holder, forwarder := d.add(t, "holder"), d.add(t, "replica-b/127.0.0.1:9443")
	srv := holderServer(t, newCA(t), holder)
	caller := &authn.User{Name: "system:serviceaccount:team:bob", UID: "1234", Groups: []string{"system:serviceaccounts", "system:authenticated"},
		Extra: map[string][]string{"authentication.kubernetes.io/pod-name": {"web-0"}, "scopes": {"a", "b"}}}
	// What the caller sent: its token, impersonation and forged peer
	// headers. None of it may survive forwarding.
	h := forged()
	h.Set("Authorization", "Bearer secret")
	h.Set("Impersonate-User", "root")
	setForwardedIdentity(h, caller, "replica-b/127.0.0.1:9443")
	if h.Get("Authorization") != "" || h.Get("Impersonate-User") != "" || h.Get("X-Edgefleet-Something-Else") != "" {
		t.Fatalf("forwarded request keeps caller-supplied headers: %v", h)
	}
	got := ask(t, &http.Client{Transport: forwarder.transport()}, srv.URL, h)
	if !got.Peer || got.Err != "" {
		t.Fatalf("peer request not trusted: %+v", got)
	}
	if got.ForwardedBy != "replica-b/127.0.0.1:9443" {
		t.Fatalf("forwarded by %q", got.ForwardedBy)
	}
	if !reflect.DeepEqual(got.User, caller) {
		t.Fatalf("holder sees %+v, want the caller %+v", got.User, caller)
	}
	if len(got.Left) != 0 {
		t.Fatalf("X-Edgefleet-* headers left on the request for the agent: %v", got.Left)
	}
}

// A CA that issues user certificates (the endpoint CA, kube-controller-
// manager's CSR signer) cannot make a peer, whatever name it writes.
func TestPeerHeadersAreIgnoredFromEveryoneElse(t *testing.T) {
	var d directory
	ca := newCA(t)
	srv := holderServer(t, ca, d.add(t, "holder"))
	for name, spec := range map[string]*pki.CertSpec{
		"no client certificate":                            nil,
		"user certificate":                                 {CommonName: "alice", Organization: []string{"system:masters"}, Usage: pki.ClientAuth},
		"user certificate with the peer name and group":    {CommonName: PeerCommonName, Organization: []string{PeerGroup}, Usage: pki.ClientAuth},
		"user certificate with the peer name":              {CommonName: PeerCommonName, Usage: pki.ClientAuth},
		"user certificate with a similar name, peer group": {CommonName: "edgefleet-manager-peer-x", Organization: []string{PeerGroup}, Usage: pki.ClientAuth},
	} {
		t.Run(name, func(t *testing.T) {
			got := ask(t, clientWithCert(t, ca, ca, spec), srv.URL, forged())
			if got.Peer || got.User != nil || got.ForwardedBy != "" {
				t.Fatalf("forged identity headers were trusted: %+v", got)
			}
			if len(got.Left) != 0 {
				t.Fatalf("forged headers not removed: %v", got.Left)
			}
		})
	}
}

func TestUnpublishedPeerCertificateIsRefused(t *testing.T) {
	var d directory
	srv := holderServer(t, newCA(t), d.add(t, "holder"))
	// A replica-like key pair whose certificate no Lease publishes.
	outsider, err := NewPeers("outsider/127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	outsider.list = d.list
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header = forged()
	resp, err := (&http.Client{Transport: outsider.transport()}).Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("an unpublished peer certificate was accepted by TLS")
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unpublished peer: %v, want the holder's TLS refusing its certificate", err)
	}
}

// A replica whose Lease goes stale stops being a peer on the connection it
// already has, and is not taken for a user either.
func TestPeerWithdrawnMidConnectionIsRefused(t *testing.T) {
	var d directory
	holder, forwarder := d.add(t, "holder"), d.add(t, "replica-b/127.0.0.1:9443")
	srv := holderServer(t, newCA(t), holder)
	c := &http.Client{Transport: forwarder.transport()}
	h := http.Header{}
	setForwardedIdentity(h, &authn.User{Name: "bob"}, "replica-b/127.0.0.1:9443")
	if got := ask(t, c, srv.URL, h.Clone()); !got.Peer || got.Err != "" {
		t.Fatalf("published peer not trusted: %+v", got)
	}
	d.remove(forwarder)
	got := ask(t, c, srv.URL, h.Clone())
	if got.User != nil || got.Err == "" {
		t.Fatalf("withdrawn peer on a kept-alive connection: %+v, want refused", got)
	}
}

// The forwarding replica accepts only the holder's published certificate:
// a server with a certificate of the endpoint CA (whose key external mode
// keeps in a Secret) is not the holder.
func TestForwarderRefusesAHolderWithoutItsPublishedCertificate(t *testing.T) {
	var d directory
	ca := newCA(t)
	holder, forwarder := d.add(t, "holder"), d.add(t, "replica-b/127.0.0.1:9443")
	srv := holderServer(t, ca, holder)
	impostor, err := NewPeers("impostor")
	if err != nil {
		t.Fatal(err)
	}
	holder.mu.Lock()
	holder.cert = impostor.Certificate() // serves a certificate nobody published
	holder.mu.Unlock()
	d.mu.Lock()
	d.members[0] = &Peers{identity: holder.identity, cert: mustPeers(t).Certificate()}
	d.mu.Unlock()
	_, err = (&http.Client{Transport: forwarder.transport()}).Get(srv.URL)
	if err == nil || !strings.Contains(err.Error(), "not the peer certificate its replica published") {
		t.Fatalf("holder with another certificate: %v, want refused", err)
	}
}

func mustPeers(t *testing.T) *Peers {
	t.Helper()
	p, err := NewPeers("x")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPeerCertificateWithoutForwardedCallerIsAnError(t *testing.T) {
	var d directory
	holder, forwarder := d.add(t, "holder"), d.add(t, "replica-b/127.0.0.1:9443")
	srv := holderServer(t, newCA(t), holder)
	h := http.Header{}
	h.Set(HeaderRemoteGroup, "system:masters")
	got := ask(t, &http.Client{Transport: forwarder.transport()}, srv.URL, h)
	if !got.Peer || got.User != nil || !strings.Contains(got.Err, HeaderRemoteUser) {
		t.Fatalf("peer request without a caller: %+v, want an error naming %s", got, HeaderRemoteUser)
	}
}

func TestHolderAddress(t *testing.T) {
	for id, want := range map[string]string{
		ReplicaIdentity("manager-0", "10.1.2.3:8443"): "10.1.2.3:8443",
		ReplicaIdentity("m", "[fd00::5]:8443"):        "[fd00::5]:8443",
		ReplicaIdentity("m", "manager-0.svc:8443"):    "manager-0.svc:8443",
		"m/0.0.0.0:8443": "", // the old identity: listen address, not dialable
		"m/[::]:8443":    "",
		"m/8443":         "",
		"no-address":     "",
	} {
		got, ok := HolderAddress(id)
		if got != want || ok != (want != "") {
			t.Errorf("HolderAddress(%q) = %q, %v; want %q", id, got, ok, want)
		}
	}
}
