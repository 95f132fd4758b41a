package seedimage

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/netguard"
)

func TestRefusedAddresses(t *testing.T) {
	mirror := netip.MustParsePrefix("10.20.0.0/16")
	for addr, want := range map[string]string{
		"127.0.0.1":          "loopback",
		"127.8.9.10":         "loopback",
		"::1":                "loopback",
		"::ffff:127.0.0.1":   "loopback",
		"169.254.169.254":    "link-local",
		"fe80::1":            "link-local",
		"0.0.0.0":            "unspecified",
		"::":                 "unspecified",
		"10.0.0.5":           "private",
		"172.16.3.4":         "private",
		"192.168.1.10":       "private",
		"fd00::1":            "private",
		"100.64.0.1":         "private",
		"239.1.1.1":          "not a unicast",
		"0.1.2.3":            "unspecified",
		"64:ff9b::a9fe:a9fe": "link-local", // NAT64 of 169.254.169.254
		"64:ff9b::808:808":   "",
		"10.20.30.40":        "", // in the allowed network
		"93.184.215.14":      "",
		"2606:4700::1111":    "",
	} {
		ap := netip.AddrPortFrom(netip.MustParseAddr(addr), 443)
		err := Sources{AllowedNetworks: []netip.Prefix{mirror}}.policy().Check(ap)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want+" address")) {
			t.Errorf("%s: refused as %v, want %q", addr, err, want)
		}
		if err := (Sources{AllowInsecure: true}).policy().Check(ap); err != nil {
			t.Errorf("%s refused (%v) with AllowInsecure", addr, err)
		}
	}
}

// The address is checked where it is dialled: a name resolving to loopback
// and a redirect to a refused address fail, the allowed hop works.
func TestDialPolicyAppliesAfterResolutionAndToRedirects(t *testing.T) {
	refused := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("secret")) }))
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skip("no 127.0.0.2 on this host:", err)
	}
	refused.Listener = l
	refused.StartTLS()
	defer refused.Close()
	allowed := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, refused.URL+"/x", http.StatusFound)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer allowed.Close()
	roots := allowed.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	roots.AddCert(refused.Certificate())

	get := func(s Sources, u string) error {
		s.rootCAs = roots
		resp, err := s.httpClient().Get(u)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	var refusal *netguard.RefusedError
	// localhost resolves to 127.0.0.1: refused at dial time, by default.
	port := allowed.Listener.Addr().(*net.TCPAddr).Port
	if err := get(Sources{}, "https://localhost:"+strconv.Itoa(port)+"/"); !errors.As(err, &refusal) || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("https://localhost: %v, want a loopback refusal", err)
	}
	only := Sources{AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	if err := get(only, allowed.URL+"/"); err != nil {
		t.Errorf("allowed network: %v", err)
	}
	if err := get(only, allowed.URL+"/redirect"); !errors.As(err, &refusal) || !strings.Contains(err.Error(), "127.0.0.2") {
		t.Errorf("redirect to 127.0.0.2: %v, want a refusal naming it", err)
	}
	if err := get(Sources{}, "http://"+allowed.Listener.Addr().String()+"/"); err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") {
		t.Errorf("plain HTTP: %v, want it refused", err)
	}
}

// Local base images: only regular files beneath LocalDir; everything else
// fails fast with one message, whether the path exists or not.
func TestOpenLocalConfinesToTheDirectory(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	write := func(p string, n int) {
		if err := os.WriteFile(p, make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "os.iso"), 100)
	write(filepath.Join(outside, "secret"), 10)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"sub/inside":    "../os.iso",
		"to-secret":     filepath.Join(outside, "secret"),
		"to-missing":    filepath.Join(outside, "missing"),
		"up-secret":     "../" + filepath.Base(outside) + "/secret",
		"up-missing":    "../" + filepath.Base(outside) + "/missing",
		"to-zero":       "/dev/zero",
		"to-passwd":     "/etc/passwd",
		"chain":         "sub/../to-secret",
		"to-etc":        "/etc",
		"to-proc-self":  "/proc/self/root/etc/passwd",
		"sub/up-and-in": "../../" + filepath.Base(dir) + "/os.iso",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := Sources{LocalDir: dir}
	for _, ok := range []string{"os.iso", filepath.Join(dir, "os.iso"), "sub/inside", "sub/../os.iso"} {
		f, err := s.openLocal(ok, 1000)
		if err != nil {
			t.Errorf("%s: %v", ok, err)
			continue
		}
		f.Close()
	}
	for _, bad := range []string{
		"/dev/zero", "/dev/urandom", "/dev/sda", "/dev/no-such-device", "/etc/passwd", "/etc/no-such-file",
		filepath.Join(outside, "secret"), filepath.Join(outside, "missing"), "../" + filepath.Base(outside) + "/secret",
		"to-secret", "to-missing", "up-secret", "up-missing", "to-zero", "to-passwd", "chain", "to-proc-self",
		"sub/up-and-in", "to-etc/passwd", "fifo", "sub", dir + "/../" + filepath.Base(outside) + "/secret",
	} {
		t0 := time.Now()
		f, err := s.openLocal(bad, 1000)
		if err == nil {
			f.Close()
			t.Errorf("%s: opened", bad)
			continue
		}
		if err.Error() != s.errLocalRefused(bad).Error() {
			t.Errorf("%s: %q, want the one refusal message", bad, err)
		}
		if d := time.Since(t0); d > time.Second {
			t.Errorf("%s: took %s", bad, d)
		}
	}
	if _, err := s.openLocal("os.iso", 99); err == nil || !strings.Contains(err.Error(), "more than the 99 allowed") {
		t.Errorf("over the size limit: %v", err)
	}
	if _, err := (Sources{}).openLocal(filepath.Join(dir, "os.iso"), 1000); err == nil || !strings.Contains(err.Error(), "reads no local base images") {
		t.Errorf("no LocalDir: %v", err)
	}
}
