// Package harness starts real edgefleet managers and downstream clusters for
// integration tests, end-to-end tests and benchmarks. Everything it starts is
// torn down by t.Cleanup; ports are chosen by the kernel so tests run in
// parallel.
package harness

import (
	"bufio"
	"bytes"
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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/controlplane"
	"github.com/edgefleet/edgefleet/internal/crds"
	"github.com/edgefleet/edgefleet/internal/devcluster"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/test/tmpguard"
)

// EnvEdgefleetBin points at a prebuilt edgefleet binary (the Makefile sets it).
const EnvEdgefleetBin = "EDGEFLEET_BIN"

var (
	binOnce  sync.Once
	binPath  string
	binErr   error
	kubeOnce sync.Once
	kubeDir  string
	kubeErr  error
)

// RepoRoot is the directory holding the module's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(data, []byte("module github.com/edgefleet/edgefleet\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("edgefleet go.mod not found above the working directory")
		}
		dir = parent
	}
}

// KubeBinDir returns the folder of the control-plane binaries, building them
// (once, cached in the repository's .cache) when $EDGEFLEET_KUBE_BIN_DIR is unset.
func KubeBinDir(t testing.TB) string {
	t.Helper()
	kubeOnce.Do(func() {
		if d := os.Getenv(controlplane.EnvBinDir); d != "" {
			kubeDir = d
			return
		}
		root, err := RepoRoot()
		if err != nil {
			kubeErr = err
			return
		}
		cmd := exec.Command(filepath.Join(root, "hack", "build-kube.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			kubeErr = fmt.Errorf("building Kubernetes binaries: %w", err)
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		kubeDir = lines[len(lines)-1]
	})
	if kubeErr != nil {
		t.Fatal(kubeErr)
	}
	return kubeDir
}

// EdgefleetBinary returns a built edgefleet binary: $EDGEFLEET_BIN, or one
// built once per test process.
func EdgefleetBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv(EnvEdgefleetBin); p != "" {
			binPath = p
			return
		}
		root, err := RepoRoot()
		if err != nil {
			binErr = err
			return
		}
		dir, err := os.MkdirTemp("", "edgefleet-bin-")
		if err != nil {
			binErr = err
			return
		}
		// Shared by every test of the binary: removed once they all ran.
		tmpguard.AtExit(func() { _ = os.RemoveAll(dir) })
		binPath = filepath.Join(dir, "edgefleet")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/edgefleet")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building edgefleet: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// Cluster is a running downstream (dev) cluster.
type Cluster struct {
	*devcluster.Cluster
	Client client.Client
}

// ClusterOptions shape a downstream cluster.
type ClusterOptions struct {
	// Nodes > 0 adds controller-manager, scheduler and that many kwok nodes.
	Nodes int
	// CRDs installs edgefleet's CRDs, for tests that use the cluster as a
	// manager-side API without running the manager.
	CRDs bool
	// KubeletAPI makes logs, exec, attach and port-forward work for pods on
	// the kwok nodes (needs Nodes > 0).
	KubeletAPI *devcluster.KubeletAPI
}

// StartClusters starts n dev clusters concurrently.
func StartClusters(t testing.TB, n int, o ClusterOptions) []*Cluster {
	t.Helper()
	bin := KubeBinDir(t)
	clusters := make([]*Cluster, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			c, err := devcluster.Start(ctx, devcluster.Options{
				DataDir:       filepath.Join(t.TempDir(), fmt.Sprintf("cluster-%d", i)),
				KubeBinDir:    bin,
				Nodes:         o.Nodes,
				UnsafeNoFsync: true,
				KubeletAPI:    o.KubeletAPI,
			})
			if err != nil {
				errs[i] = err
				return
			}
			t.Cleanup(c.Stop)
			cl, err := client.New(c.RESTConfig(), client.Options{Scheme: server.Scheme()})
			if err == nil && o.CRDs {
				err = crds.Install(ctx, cl, logr.Discard())
			}
			clusters[i], errs[i] = &Cluster{Cluster: c, Client: cl}, err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return clusters
}

// Manager is a running `edgefleet server` process.
type Manager struct {
	URL        string
	Kubeconfig string
	CAChecksum string
	DataDir    string
	Client     client.Client
	HTTP       *http.Client // trusts only the manager's CA
	// AdminHTTP also presents the admin kubeconfig's client certificate
	// (embedded managers): for routes that need a manager admin, e.g. /metrics.
	AdminHTTP *http.Client

	cmd  *exec.Cmd
	done chan struct{}
	// localURL replaces the banner's URL (an external one) for the test.
	localURL string
	output   *syncBuffer
}

// ManagerOptions shape a manager.
type ManagerOptions struct {
	// DataDir defaults to a new temporary directory.
	DataDir string
	// Kubeconfig runs the manager on an existing cluster instead of an embedded one.
	Kubeconfig string
	Args       []string
	// ExternalHost makes the manager announce https://<ExternalHost>:<port>
	// to agents and machines (--external-url), e.g. the address a VM
	// reaches it at through a forward; the test still talks to it on
	// 127.0.0.1:<port>.
	ExternalHost string
	// StrictFetch leaves out --fetch-allowed-networks, which every other
	// manager gets for loopback (the tests' git servers, chart repositories
	// and registries listen there): the manager then refuses tenant
	// fetches from loopback as it does in production.
	StrictFetch bool
	// Binary runs this edgefleet binary instead of EdgefleetBinary's, e.g.
	// one from BuildWithVersion.
	Binary string
}

// LoopbackNetworks is the --fetch-allowed-networks value test managers get.
const LoopbackNetworks = "127.0.0.0/8,::1/128"

// StartManager runs the edgefleet binary and waits until its endpoint is ready.
func StartManager(t testing.TB, o ManagerOptions) *Manager {
	t.Helper()
	m, err := LaunchManager(t, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	return m
}

// LaunchManager starts the process without waiting; use WaitReady or Wait.
func LaunchManager(t testing.TB, o ManagerOptions) (*Manager, error) {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = filepath.Join(t.TempDir(), "manager")
	}
	listen, localURL := "127.0.0.1:0", ""
	if o.ExternalHost != "" {
		// The external URL names the port, so it is chosen up front.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listen = l.Addr().String()
		l.Close()
		_, port, _ := net.SplitHostPort(listen)
		localURL = "https://" + listen
		o.Args = append([]string{"--external-url", "https://" + net.JoinHostPort(o.ExternalHost, port)}, o.Args...)
	}
	args := []string{"server", "--data-dir", o.DataDir, "--listen", listen, "--unsafe-no-fsync", "--log-level", "debug"}
	if o.Kubeconfig != "" {
		args = append(args, "--kubeconfig", o.Kubeconfig)
	} else {
		args = append(args, "--kube-bin-dir", KubeBinDir(t))
	}
	if !o.StrictFetch {
		args = append(args, "--fetch-allowed-networks", LoopbackNetworks)
	}
	args = append(args, o.Args...)
	bin := o.Binary
	if bin == "" {
		bin = EdgefleetBinary(t)
	}
	cmd := exec.Command(bin, args...)
	out := &syncBuffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	// Pdeathsig: a killed test run must not leave managers behind to skew the next.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &Manager{DataDir: o.DataDir, cmd: cmd, done: make(chan struct{}), output: out, localURL: localURL}
	go func() {
		_ = cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("manager output:\n%s", m.Output())
		}
	})
	return m, nil
}

// WaitReady waits for the start-up banner and a 200 from /readyz.
func (m *Manager) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			return fmt.Errorf("manager exited before it was ready (%v):\n%s", m.cmd.ProcessState, m.Output())
		default:
		}
		if m.URL == "" {
			m.parseBanner()
		}
		if m.URL != "" && m.HTTP != nil {
			if resp, err := m.HTTP.Get(m.URL + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("manager not ready after %s:\n%s", timeout, m.Output())
}

func (m *Manager) parseBanner() {
	sc := bufio.NewScanner(strings.NewReader(m.Output()))
	values := map[string]string{}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		for _, key := range []string{"URL:", "kubeconfig:", "CA sha256:"} {
			if v, ok := strings.CutPrefix(line, key); ok {
				values[key] = strings.TrimSpace(v)
			}
		}
	}
	if values["URL:"] == "" || values["CA sha256:"] == "" {
		return
	}
	if m.localURL != "" {
		values["URL:"] = m.localURL
	}
	m.Kubeconfig = values["kubeconfig:"]
	m.CAChecksum = values["CA sha256:"]
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		return
	}
	c, err := client.New(cfg, client.Options{Scheme: server.Scheme()})
	if err != nil {
		return
	}
	// Fetch the CA once without verification, then pin it by checksum, as agents do.
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := insecure.Get(values["URL:"] + "/cacerts")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	caPEM, err := io.ReadAll(resp.Body)
	if err != nil || checksum(caPEM) != m.CAChecksum {
		return
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	m.HTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	m.AdminHTTP = m.HTTP
	if pair, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData); err == nil {
		m.AdminHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	}
	m.Client = c
	m.URL = values["URL:"]
}

// Signal sends sig to the manager process.
func (m *Manager) Signal(sig syscall.Signal) { _ = m.cmd.Process.Signal(sig) }

// Wait waits for the process to exit and returns its exit code.
func (m *Manager) Wait(timeout time.Duration) (int, error) {
	select {
	case <-m.done:
		return m.cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("manager still running after %s", timeout)
	}
}

// Pid is the manager's process ID.
func (m *Manager) Pid() int { return m.cmd.Process.Pid }

// Stop sends SIGTERM, waits, and kills the process group if it hangs.
func (m *Manager) Stop() {
	select {
	case <-m.done:
		return
	default:
	}
	m.Signal(syscall.SIGTERM)
	if _, err := m.Wait(30 * time.Second); err != nil {
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-m.done
	}
	// The manager's children (etcd, kube-apiserver; their own process
	// groups, killed by Pdeathsig when the manager dies) may outlive it by
	// a moment: wait until none runs from the data folder, or they write
	// into it while t.TempDir removes it (left as TestXxx* folders).
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if len(tmpguard.ProcessesUsing(m.DataDir)) == 0 {
			return
		}
	}
	for _, pid := range tmpguard.ProcessesUsing(m.DataDir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Output is everything the manager printed so far.
func (m *Manager) Output() string { return m.output.String() }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
