package demo

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/server"
)

// manager is the `edgefleet server` child.
type manager struct {
	proc *process
	log  string
	// url is its loopback address (the host's view); externalURL what
	// machines and agents are told (the lab's gateway with namespaces).
	url, externalURL string
	port             int
	kubeconfig       string
	client           client.Client
	// http trusts the manager's CA (fetched from its /cacerts once).
	http  *http.Client
	caPEM []byte
}

func (d *demo) startManager(ctx context.Context) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	listen := l.Addr().String()
	l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	m := &manager{url: "https://" + listen, externalURL: "https://" + listen, port: port, log: filepath.Join(d.dataDir, "manager.log")}
	args := []string{"server", "--data-dir", filepath.Join(d.dataDir, "manager"), "--listen", listen, "--kube-bin-dir", d.bins.kube,
		"--agent-image", AgentImage,
		// The demo's GitRepo is a repository in the data dir (file://).
		"--allow-local-git-repos",
		// Agents' tunnels are probed often: the summary's kubectl works
		// right after the cluster joined.
		"--tunnel-probe-interval", "2s",
		// A throwaway control plane: etcd need not fsync.
		"--unsafe-no-fsync"}
	if d.netns {
		// Machines and the formed cluster's pods reach the manager at the
		// lab's gateway (forwarded to the loopback listener).
		lb, err := newLab(fmt.Sprintf("10.%d.%d", 200+randByte()%50, randByte()))
		if err != nil {
			return fmt.Errorf("creating the machines' network: %w", err)
		}
		d.lab = lb
		d.onCleanup(lb.Close)
		if err := lb.ForwardGateway(port); err != nil {
			return fmt.Errorf("forwarding the manager to the lab's gateway: %w", err)
		}
		m.externalURL = "https://" + net.JoinHostPort(lb.Gateway(), strconv.Itoa(port))
		args = append(args, "--external-url", m.externalURL)
	}
	proc, err := startProcess(exec.Command(d.bins.edgefleet, args...), m.log, syscall.SIGTERM)
	if err != nil {
		return err
	}
	m.proc = proc
	d.mgr = m
	d.onCleanup(func() { proc.stop(30 * time.Second) })
	return poll(ctx, 200*time.Millisecond, "the manager to be ready", func() error {
		if proc.exited() {
			return fmt.Errorf("the manager exited: %s\n%s", proc.cmd.ProcessState, tail(m.log, 3000))
		}
		return m.ready(ctx)
	})
}

func randByte() int { b := randHex(1); n, _ := strconv.ParseUint(b, 16, 8); return int(n) }

// ready reads the banner (kubeconfig) and the CA, then waits for /readyz.
func (m *manager) ready(ctx context.Context) error {
	if m.client == nil {
		f, err := os.Open(m.log)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "kubeconfig:"); ok {
				m.kubeconfig = strings.TrimSpace(v)
			}
		}
		f.Close()
		if m.kubeconfig == "" {
			return fmt.Errorf("no banner yet")
		}
		// The CA comes from the child the demo just started on loopback,
		// so fetching it unverified once is safe; everything after is
		// verified with it.
		insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // see above
		resp, err := insecure.Get(m.url + "/cacerts")
		if err != nil {
			return err
		}
		ca, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/cacerts: %v %s", err, resp.Status)
		}
		pool, err := certPool(ca)
		if err != nil {
			return err
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", m.kubeconfig)
		if err != nil {
			return err
		}
		c, err := client.New(cfg, client.Options{Scheme: server.Scheme()})
		if err != nil {
			return err
		}
		m.caPEM, m.client = ca, c
		m.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.url+"/readyz", nil)
	resp, err := m.http.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

func certPool(pem []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the manager's /cacerts is not a PEM certificate")
	}
	return pool, nil
}
