package bmc_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/bmc"
	"github.com/edgefleet/edgefleet/test/redfishemu"
)

func startBMC(t *testing.T, opts redfishemu.Options) *redfishemu.BMC {
	t.Helper()
	if opts.Username == "" {
		opts.Username, opts.Password = "admin", "s3cret"
	}
	b, err := redfishemu.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// Trust and login failures come back as the kind a user must fix, with a
// message that never carries the password.
func TestConnectErrors(t *testing.T) {
	b := startBMC(t, redfishemu.Options{SerialNumber: "S1", UUID: "4C4C4544-0042"})
	other, err := redfishemu.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "https://" + ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name   string
		target bmc.Target
		kind   bmc.Kind
		msg    string
	}{
		{"CA", bmc.Target{Address: b.URL, Username: "admin", Password: "s3cret", CABundle: b.CA.CertPEM}, "", ""},
		{"pin", bmc.Target{Address: b.URL + "/redfish/v1/Systems/1", Username: "admin", Password: "s3cret", CertSHA256: b.CertSHA256}, "", ""},
		{"wrong password", bmc.Target{Address: b.URL, Username: "admin", Password: "wrong-pw", CABundle: b.CA.CertPEM}, bmc.KindAuthentication, "HTTP 401"},
		{"other CA", bmc.Target{Address: b.URL, Username: "admin", Password: "s3cret", CABundle: other.CertPEM}, bmc.KindBadCertificate, "not trusted"},
		{"system roots", bmc.Target{Address: b.URL, Username: "admin", Password: "s3cret"}, bmc.KindBadCertificate, "not trusted"},
		{"pin mismatch", bmc.Target{Address: b.URL, Username: "admin", Password: "s3cret", CertSHA256: strings.Repeat("ab", 32)}, bmc.KindBadCertificate, "does not match certificateSHA256"},
		{"unreachable", bmc.Target{Address: dead, Username: "admin", Password: "s3cret", CABundle: b.CA.CertPEM}, bmc.KindUnreachable, "refused"},
		{"no such system", bmc.Target{Address: b.URL + "/redfish/v1/Systems/9", Username: "admin", Password: "s3cret", CABundle: b.CA.CertPEM}, bmc.KindSystemNotFound, "404"},
		{"http address", bmc.Target{Address: "http://" + strings.TrimPrefix(b.URL, "https://"), Username: "admin", Password: "s3cret"}, bmc.KindInvalid, "https://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := bmc.NewPool()
			defer p.Drop("x")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := p.Connect(ctx, "x", tc.target)
			if err == nil {
				_, err = c.System()
			}
			if tc.kind == "" {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("connected; want %s", tc.kind)
			}
			if got := bmc.KindOf(err); got != tc.kind {
				t.Errorf("kind %s (%v), want %s", got, err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			if strings.Contains(err.Error(), tc.target.Password) {
				t.Errorf("error %q carries the password", err)
			}
		})
	}
}

// Facts, power and a one-time virtual-media boot against the emulator;
// the session is reused across connects and logged out by Drop.
func TestOperations(t *testing.T) {
	iso := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ISO")) }))
	defer iso.Close()
	m := &redfishemu.SimulatedMachine{}
	b := startBMC(t, redfishemu.Options{Machine: m, Manufacturer: "ACME", Model: "R1", SerialNumber: "S1", UUID: "4C4C4544-0042", MediaClient: iso.Client()})
	p := bmc.NewPool()
	ctx := context.Background()
	target := bmc.Target{Address: b.URL, Username: "admin", Password: "s3cret", CABundle: b.CA.CertPEM}
	c, err := p.Connect(ctx, "x", target)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.System()
	if err != nil {
		t.Fatal(err)
	}
	if s.Manufacturer != "ACME" || s.Model != "R1" || s.SerialNumber != "S1" || s.UUID != "4c4c4544-0042" || s.PowerState != "Off" {
		t.Fatalf("system %+v", s)
	}
	if err := c.Reset(s, "On"); err != nil {
		t.Fatal(err)
	}
	if s, err = c.WaitPower(ctx, "On", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	img := iso.URL + "/seed.iso"
	if _, err := c.InsertCD(s, img); err != nil {
		t.Fatal(err)
	}
	// A second insert ejects the first image.
	ejected, err := c.InsertCD(s, img)
	if err != nil || !ejected {
		t.Fatalf("second insert: ejected %v, %v", ejected, err)
	}
	if err := c.BootOnce(s, "Cd"); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(s, "ForceOff"); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(s, "On"); err != nil {
		t.Fatal(err)
	}
	if boots := m.Boots(); len(boots) != 2 || boots[1] != "Cd" {
		t.Errorf("boots %v, want the second from Cd", boots)
	}
	if tgt, en := b.BootOverride(); en != "Disabled" {
		t.Errorf("override %s/%s after the boot, want it consumed", tgt, en)
	}
	if m.Medium() == "" || b.Image() != img {
		t.Errorf("medium %q, image %q", m.Medium(), b.Image())
	}
	c2, err := p.Connect(ctx, "x", target)
	if err != nil || !c2.Reused {
		t.Fatalf("second connect: reused %v, %v", c2 != nil && c2.Reused, err)
	}
	// A poll on the reused session is one request: the system's path
	// was remembered from the first listing.
	before := b.Requests()
	if _, err := c2.System(); err != nil {
		t.Fatal(err)
	}
	if n := b.Requests() - before; n != 1 {
		t.Errorf("a poll took %d requests, want 1", n)
	}
	if n := b.Sessions(); n != 1 {
		t.Errorf("%d sessions open, want 1", n)
	}
	p.Drop("x")
	if n := b.Sessions(); n != 0 {
		t.Errorf("%d sessions open after Drop, want 0", n)
	}
}

// A hostile BMC can neither redirect the session elsewhere nor make the
// manager read an endless answer.
func TestHostileAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		says    string
	}{
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://example.invalid/redfish/v1/", http.StatusFound)
		}, "does not follow redirects"},
		{"huge answer", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"Name":"`))
			chunk := []byte(strings.Repeat("a", 1<<20))
			for range 6 {
				_, _ = w.Write(chunk)
			}
		}, "larger than 4 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(tc.handler)
			defer srv.Close()
			sum := sha256.Sum256(srv.Certificate().Raw)
			p := bmc.NewPool()
			_, err := p.Connect(context.Background(), "x", bmc.Target{Address: srv.URL, Username: "u", Password: "p", CertSHA256: hex.EncodeToString(sum[:])})
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("connect: %v, want an error saying %q", err, tc.says)
			}
		})
	}
}
