package clusterproxy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
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

// holderServer is a real HTTPS server that verifies client certificates
// against ca as the manager's endpoint does, and reports what peerIdentity
// made of each request.
func holderServer(t *testing.T, ca *pki.CA) *httptest.Server {
	t.Helper()
	kp, err := ca.Issue(pki.CertSpec{CommonName: "edgefleet-manager", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usage: pki.ServerAuth})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, by, peer, err := peerIdentity(r)
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
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
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
	ca := newCA(t)
	srv := holderServer(t, ca)
	peers, err := newPeerTransport(ca)
	if err != nil {
		t.Fatal(err)
	}
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
	got := ask(t, &http.Client{Transport: peers}, srv.URL, h)
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

func TestPeerHeadersAreIgnoredFromEveryoneElse(t *testing.T) {
	ca := newCA(t)
	srv := holderServer(t, ca)
	for name, spec := range map[string]*pki.CertSpec{
		"no client certificate":              nil,
		"manager-CA user certificate":        {CommonName: "alice", Organization: []string{"system:masters"}, Usage: pki.ClientAuth},
		"peer name without the peer group":   {CommonName: PeerCommonName, Usage: pki.ClientAuth},
		"peer group without the peer name":   {CommonName: "mallory", Organization: []string{PeerGroup}, Usage: pki.ClientAuth},
		"a similar name with the peer group": {CommonName: "edgefleet-manager-peer-x", Organization: []string{PeerGroup}, Usage: pki.ClientAuth},
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

func TestPeerCertificateOfAnotherCAIsRefused(t *testing.T) {
	ca := newCA(t)
	srv := holderServer(t, ca)
	c := clientWithCert(t, ca, newCA(t), &pki.CertSpec{CommonName: PeerCommonName, Organization: []string{PeerGroup}, Usage: pki.ClientAuth})
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header = forged()
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("a peer certificate from another CA was accepted by TLS")
	}
}

func TestPeerCertificateWithoutForwardedCallerIsAnError(t *testing.T) {
	ca := newCA(t)
	srv := holderServer(t, ca)
	peers, err := newPeerTransport(ca)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(HeaderRemoteGroup, "system:masters")
	got := ask(t, &http.Client{Transport: peers}, srv.URL, h)
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
