package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
	"github.com/edgefleet/edgefleet/test/harness"
)

// Issue #20 scenario 4: machines during a manager outage.

// outageNode writes a node config for a machine with serial number serial
// (its own emulated TPM and state) and starts `edgefleet-node agent`.
func outageNode(t *testing.T, bin, regURL, caPEM, serial string) *nodeAgent {
	t.Helper()
	dmi := t.TempDir()
	if err := os.WriteFile(filepath.Join(dmi, "product_serial"), []byte(serial), 0o444); err != nil {
		t.Fatal(err)
	}
	cfg := machinereg.NodeConfig{
		Registration: machinereg.NodeRegistration{URL: regURL, CACert: caPEM, EmulateTPM: true, EmulatedTPMSeed: -1, DMIDir: dmi},
		StateDir:     filepath.Join(t.TempDir(), "state"),
	}
	data, _ := yaml.Marshal(cfg)
	cfgPath := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return startNodeAgent(t, bin, cfgPath, t.TempDir())
}

var retryWait = regexp.MustCompile(`msg="Registering failed; retrying".* in=([0-9.]+[a-zµ]+)`)

// registrationWaits are the waits the agent logged between failed attempts.
func registrationWaits(out string) []time.Duration {
	var waits []time.Duration
	for _, m := range retryWait.FindAllStringSubmatch(out, -1) {
		if d, err := time.ParseDuration(m[1]); err == nil {
			waits = append(waits, d)
		}
	}
	return waits
}

// inventories lists the namespace's MachineInventories by name.
func inventories(ctx context.Context, t *testing.T, c client.Client, ns string) map[string]machinesv1.MachineInventory {
	t.Helper()
	var list machinesv1.MachineInventoryList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	out := map[string]machinesv1.MachineInventory{}
	for _, inv := range list.Items {
		out[inv.Name] = inv
	}
	return out
}

// planApplied waits until the machine's inventory reports its (empty)
// plan applied: registered, credential working, report through.
func planApplied(t *testing.T, c client.Client, key client.ObjectKey, timeout time.Duration) {
	t.Helper()
	waitInventory(t, c, key, timeout, func(inv *machinesv1.MachineInventory) error {
		if p := inv.Status.Plan; p.State != machinesv1.PlanApplied || p.AppliedChecksum != nodeplan.Checksum([]byte("{}")) {
			return fmt.Errorf("plan %+v", p)
		}
		return nil
	})
}

// TestMachinesDuringManagerOutage: real `edgefleet-node agent` processes
// start while the manager is down; they retry registration with jittered,
// doubling waits and register exactly once each when it is back. Then a
// machine's registration succeeds on the manager but the answer is lost
// (a proxy swallows the config message) while the manager restarts: the
// machine retries and ends with exactly one MachineInventory, the one
// written the first time.
func TestMachinesDuringManagerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager")
	}
	ctx := context.Background()
	bin := nodeBinary(t)
	args := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	m := harness.StartManager(t, harness.ManagerOptions{Args: args})
	l := &machineLab{m: m, ns: "outage"}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.ns}}); err != nil {
		t.Fatal(err)
	}
	_, l.caPEM = get(t, m, "/cacerts")
	_, regURL := l.registration(t, "outage", machinesv1.MachineRegistrationSpec{
		MachineName: "box-${System Information/Serial Number}",
		Config:      machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{EmulateTPM: true, EmulatedTPMSeed: -1}},
	})

	m.Stop()
	const machines = 3
	nodes := make([]*nodeAgent, machines)
	for i := range nodes {
		nodes[i] = outageNode(t, bin, regURL, l.caPEM, fmt.Sprintf("O%d", i))
	}
	// 1 s, 2 s, 4 s (±20%): three failed attempts each within ~9 s.
	waitFor(t, 30*time.Second, "every machine to retry registration three times", func() bool {
		for _, n := range nodes {
			if len(registrationWaits(n.out.String())) < 3 {
				return false
			}
		}
		return true
	})
	first := map[time.Duration]bool{}
	for i, n := range nodes {
		w := registrationWaits(n.out.String())
		t.Logf("machine %d waited %v between attempts", i, w)
		if w[1] < w[0] || w[2] < w[1] || w[0] < 800*time.Millisecond || w[2] > 4800*time.Millisecond {
			t.Errorf("machine %d: waits %v, want doubling from 1 s with ±20%% jitter", i, w)
		}
		first[w[0]] = true
	}
	if len(first) == 1 {
		t.Errorf("every machine waited exactly the same %v: no jitter", first)
	}

	t0 := time.Now()
	m = harness.StartManager(t, harness.ManagerOptions{DataDir: m.DataDir, Args: args})
	l.m = m
	for i := range machines {
		planApplied(t, m.Client, client.ObjectKey{Namespace: l.ns, Name: fmt.Sprintf("box-o%d", i)}, 90*time.Second)
	}
	t.Logf("%d machines registered and reported their plan %s after the manager was back", machines, time.Since(t0).Round(time.Millisecond))
	if invs := inventories(ctx, t, m.Client, l.ns); len(invs) != machines {
		t.Errorf("%d MachineInventories for %d machines: %v", len(invs), machines, keys(invs))
	}
	for i, n := range nodes {
		if c := strings.Count(n.out.String(), `msg=Registered`); c != 1 {
			t.Errorf("machine %d registered %d times", i, c)
		}
	}

	// The lost answer. The machine talks to the manager through a proxy
	// that ends TLS (the machine trusts the proxy's certificate), passes
	// the registration on and swallows the first config message: the
	// manager wrote the inventory, plan Secret and credential, the machine
	// never heard. The manager restarts while the machine waits.
	p := newRegProxy(t, strings.TrimPrefix(m.URL, "https://"), l.caPEM)
	u, _ := url.Parse(regURL)
	lost := outageNode(t, bin, p.url+u.Path, p.caPEM, "LOST")
	key := client.ObjectKey{Namespace: l.ns, Name: "box-lost"}
	waitChan(t, p.swallowed, 60*time.Second, "the proxy to swallow the config")
	first1 := getInventory(t, m.Client, key)
	m.Stop()
	m = harness.StartManager(t, harness.ManagerOptions{DataDir: m.DataDir, Args: args})
	close(p.release) // the machine's connection ends now, with no config
	planApplied(t, m.Client, key, 90*time.Second)

	invs := inventories(ctx, t, m.Client, l.ns)
	if len(invs) != machines+1 {
		t.Errorf("%d MachineInventories after the lost answer, want %d: %v", len(invs), machines+1, keys(invs))
	}
	if inv := invs[key.Name]; inv.UID != first1.UID {
		t.Errorf("the machine's inventory was replaced (uid %s, first %s)", inv.UID, first1.UID)
	}
	if n := p.registrations(); n != 2 {
		t.Errorf("the proxy passed %d registration exchanges, want 2 (the lost one and the retry)", n)
	}
	out := lost.out.String()
	t.Logf("the machine whose answer was lost retried after %v", registrationWaits(out))
	if !strings.Contains(out, "Registering failed; retrying") || strings.Count(out, "msg=Registered") != 1 {
		t.Errorf("the machine did not retry once and register once:\n%s", out)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// regProxy stands between a machine and the manager's registration
// websocket, reading the protocol in clear: it ends the machine's TLS with
// its own certificate and opens its own to the manager.
type regProxy struct {
	url, caPEM string
	upstream   string
	upTLS      *tls.Config

	mu        sync.Mutex
	conns     int
	swallowed chan struct{} // closed once a config message was swallowed
	release   chan struct{} // closing it ends the swallowed connection
	once      sync.Once
}

func newRegProxy(t *testing.T, upstream, upstreamCA string) *regProxy {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(upstreamCA))
	p := &regProxy{upstream: upstream, upTLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
		swallowed: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewUnstartedServer(p)
	srv.StartTLS()
	t.Cleanup(func() {
		p.once.Do(func() {})
		select {
		case <-p.release:
		default:
			close(p.release)
		}
		srv.CloseClientConnections()
		srv.Close()
	})
	p.url = srv.URL
	p.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	return p
}

func (p *regProxy) registrations() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

func (p *regProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	up, err := tls.Dial("tcp", p.upstream, p.upTLS)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer up.Close()
	out := r.Clone(context.Background())
	out.RequestURI = ""
	if err := out.Write(up); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	cc, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer cc.Close()
	upR := bufio.NewReader(up)
	// The response head passes as is; a 101 is a registration exchange.
	for first := true; ; first = false {
		line, err := upR.ReadString('\n')
		if err != nil {
			return
		}
		if first && strings.Contains(line, " 101 ") {
			p.mu.Lock()
			p.conns++
			p.mu.Unlock()
		}
		if _, err := io.WriteString(cc, line); err != nil || line == "\r\n" {
			break
		}
	}
	go func() { _, _ = io.Copy(up, cc) }() // machine → manager, untouched
	for {
		frame, payload, err := readFrame(upR)
		if err != nil {
			return
		}
		if strings.Contains(string(payload), `"type":"config"`) {
			swallow := false
			p.once.Do(func() { swallow = true })
			if swallow {
				close(p.swallowed)
				<-p.release
				return
			}
		}
		if _, err := cc.Write(frame); err != nil {
			return
		}
	}
}

// readFrame reads one websocket frame from the server (unmasked, RFC 6455
// §5.2) and returns it whole and its payload.
func readFrame(r *bufio.Reader) (frame, payload []byte, err error) {
	head := make([]byte, 2, 14)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, nil, err
	}
	n := uint64(head[1] & 0x7f)
	switch n {
	case 126:
		ext := make([]byte, 2)
		if _, err := io.ReadFull(r, ext); err != nil {
			return nil, nil, err
		}
		head, n = append(head, ext...), uint64(binary.BigEndian.Uint16(ext))
	case 127:
		ext := make([]byte, 8)
		if _, err := io.ReadFull(r, ext); err != nil {
			return nil, nil, err
		}
		head, n = append(head, ext...), binary.BigEndian.Uint64(ext)
	}
	if head[1]&0x80 != 0 {
		return nil, nil, fmt.Errorf("masked frame from the server")
	}
	if n > 16<<20 {
		return nil, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, nil, err
	}
	return append(head, payload...), payload, nil
}
