// Package controlplane runs a real Kubernetes control plane — etcd and
// kube-apiserver, and for dev clusters kube-controller-manager, kube-scheduler
// and kwok — as supervised child processes with all state in one directory.
//
// Child processes rather than in-process servers: the manager binary never
// links k8s.io/kubernetes (so its k8s.io/* libraries follow controller-runtime,
// not the apiserver), a crash in one component is reported instead of taking
// the manager down, and the same binaries serve the test harness.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"

	"github.com/edgefleet/edgefleet/internal/pki"
)

// Executor runs a control plane. Start returns once the API server answers
// /readyz. A component that exits afterwards is started again with backoff;
// Failed reports one that keeps exiting (a crash loop) or cannot be started.
type Executor interface {
	Start(ctx context.Context) error
	Stop()
	Failed() <-chan error
	RESTConfig() *rest.Config
	KubeconfigPath() string
	// CA is the manager endpoint's CA (agents pin it). It signs nothing of
	// the control plane.
	CA() *pki.CA
	// ClientCAs is the PEM bundle of the CAs kube-apiserver trusts for
	// client certificates (users and components, and CSRs approved in
	// Kubernetes).
	ClientCAs() []byte
}

// Components selects what runs beside etcd and kube-apiserver.
type Components struct {
	// ControllerManager makes Deployments, ReplicaSets, namespaces' garbage
	// collection and service-account tokens work.
	ControllerManager bool
	// Scheduler binds pods to (fake) nodes.
	Scheduler bool
	// KwokNodes, when > 0, runs kwok and registers that many fake nodes whose
	// pods become Ready without a kubelet. kwok also serves the kubelet API
	// of these nodes (logs, exec, attach, port-forward) on 127.0.0.1.
	KwokNodes int
	// KwokConfig holds extra kwok configuration documents (YAML), such as
	// the ClusterLogs, ClusterExec, ClusterAttach and ClusterPortForward
	// rules that say what that kubelet API does for pods.
	KwokConfig []byte
}

// Config describes one control plane.
type Config struct {
	// DataDir holds etcd data, PKI, logs and the admin kubeconfig.
	DataDir string
	// BinDir holds the component binaries (see FindBinDir).
	BinDir string
	// Host is the address kube-apiserver binds and advertises; default 127.0.0.1.
	Host string
	// APIServerPort is the port to serve on; 0 reuses the previous port or picks a free one.
	APIServerPort int
	Components    Components
	// UnsafeNoFsync turns off etcd's fsync. Only for tests and benchmarks: a
	// power loss can lose data.
	UnsafeNoFsync bool
	// MinFreeBytes > 0 makes etcd refuse writes while the data dir's file
	// system has less free space than this, instead of dying on a full disk
	// (see guardDisk).
	MinFreeBytes int64
	// Profiling serves kube-apiserver's /debug/pprof (to cluster admins).
	Profiling bool
	Log       logr.Logger
}

// Processes is the Executor that runs each component as a child process.
type Processes struct {
	cfg        Config
	ca         *pki.CA
	clientCAs  []byte
	restConfig *rest.Config
	kubeconfig string

	mu       sync.Mutex
	procs    []*process
	restarts map[string]int
	failed   chan error
	stopOnce sync.Once
	stopped  chan struct{}
}

var _ Executor = (*Processes)(nil)

// New validates cfg and returns an Executor that is not started yet.
func New(cfg Config) (*Processes, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("control plane needs a data dir")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Log.GetSink() == nil {
		cfg.Log = logr.Discard()
	}
	need := []string{BinEtcd, BinAPIServer}
	if cfg.Components.ControllerManager {
		need = append(need, BinControllerManager)
	}
	if cfg.Components.Scheduler {
		need = append(need, BinScheduler)
	}
	if cfg.Components.KwokNodes > 0 {
		need = append(need, BinKwok, KwokStages)
	}
	if err := requireBinaries(cfg.BinDir, need...); err != nil {
		return nil, err
	}
	return &Processes{cfg: cfg, failed: make(chan error, 1), stopped: make(chan struct{})}, nil
}

func (p *Processes) RESTConfig() *rest.Config { return rest.CopyConfig(p.restConfig) }
func (p *Processes) KubeconfigPath() string   { return p.kubeconfig }
func (p *Processes) CA() *pki.CA              { return p.ca }
func (p *Processes) ClientCAs() []byte        { return p.clientCAs }
func (p *Processes) Failed() <-chan error     { return p.failed }

// Start brings the components up in order and waits for each to be ready. On
// error everything it started is stopped again.
func (p *Processes) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()
	for _, d := range []string{"", "logs", "etcd", "pki"} {
		if err := os.MkdirAll(filepath.Join(p.cfg.DataDir, d), 0o700); err != nil {
			return fmt.Errorf("preparing data dir: %w", err)
		}
	}
	portsFile := filepath.Join(p.cfg.DataDir, "ports.json")
	prev, err := loadPorts(portsFile)
	if err != nil {
		return err
	}
	certs, err := p.ensurePKI()
	if err != nil {
		return err
	}
	pt, err := p.startCore(ctx, portsFile, prev, certs)
	if err != nil {
		return err
	}
	if err := p.startExtras(ctx, certs); err != nil {
		return err
	}
	if p.cfg.MinFreeBytes > 0 {
		go p.guardDisk(pt, certs)
	}
	p.superviseAll()
	return nil
}

// portAttempts bounds how often startCore chooses new ports after losing one.
const portAttempts = 4

// afterChoosePorts lets a test take a chosen port before the component binds it.
var afterChoosePorts = func(ports) {}

// startCore starts etcd and kube-apiserver. A port is tested free when chosen
// but bound only when the component starts; anything else on the machine (other
// control planes, outgoing connections) can take it in between. When a
// component dies of that, it is stopped and new ports are chosen.
func (p *Processes) startCore(ctx context.Context, portsFile string, prev ports, c *certs) (ports, error) {
	for attempt := 1; ; attempt++ {
		pt, err := p.choosePorts(prev)
		if err != nil {
			return pt, err
		}
		if err := pt.save(portsFile); err != nil {
			return pt, fmt.Errorf("saving ports: %w", err)
		}
		afterChoosePorts(pt)
		started := p.started()
		err = p.startEtcd(ctx, pt, c)
		if err == nil {
			if err = p.startAPIServer(ctx, pt, c); err == nil {
				return pt, nil
			}
			if p.cfg.APIServerPort == 0 {
				prev.APIServer = 0
			}
		}
		if attempt == portAttempts || !addressInUse(err) || ctx.Err() != nil {
			return pt, err
		}
		p.cfg.Log.Info("A port was taken between choosing and binding it; choosing new ports", "attempt", attempt, "ports", pt)
		p.stopSince(started)
		prev.EtcdClient, prev.EtcdPeer = 0, 0
	}
}

// addressInUse reports a component that failed to bind: the error quotes the
// tail of its log.
func addressInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "address already in use")
}

func (p *Processes) started() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.procs)
}

// stopSince stops and forgets the processes launched after the first n.
func (p *Processes) stopSince(n int) {
	p.mu.Lock()
	procs := p.procs[n:]
	p.procs = p.procs[:n:n]
	p.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(15 * time.Second)
	}
}

// choosePorts holds every chosen port bound until all three are chosen, so no
// two of them can be the same port (the kernel reuses a just-released one).
func (p *Processes) choosePorts(prev ports) (ports, error) {
	var pt ports
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	reserve := func(host string, previous int) (int, error) {
		l, err := reservePort(host, previous)
		if err != nil {
			return 0, err
		}
		held = append(held, l)
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	var err error
	if p.cfg.APIServerPort != 0 {
		l, err := net.Listen("tcp", net.JoinHostPort(p.cfg.Host, strconv.Itoa(p.cfg.APIServerPort)))
		if err != nil {
			return pt, fmt.Errorf("port %d on %s is in use: stop what uses it or choose another API server port", p.cfg.APIServerPort, p.cfg.Host)
		}
		held = append(held, l)
		pt.APIServer = p.cfg.APIServerPort
	} else if pt.APIServer, err = reserve(p.cfg.Host, prev.APIServer); err != nil {
		return pt, err
	}
	if prev.APIServer != 0 && pt.APIServer != prev.APIServer {
		p.cfg.Log.Info("Previous API server port is taken; serving on a new one and rewriting the kubeconfig", "previous", prev.APIServer, "port", pt.APIServer)
	}
	if pt.EtcdClient, err = reserve("127.0.0.1", prev.EtcdClient); err != nil {
		return pt, err
	}
	if pt.EtcdPeer, err = reserve("127.0.0.1", prev.EtcdPeer); err != nil {
		return pt, err
	}
	return pt, nil
}

func (p *Processes) launch(name string, args []string, env ...string) (*process, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stopped:
		return nil, errStopped
	default:
	}
	proc, err := startProcess(name, filepath.Join(p.cfg.BinDir, name), args, filepath.Join(p.cfg.DataDir, "logs", name+".log"), env)
	if err != nil {
		return nil, err
	}
	p.procs = append(p.procs, proc)
	return proc, nil
}

// waitReady polls check until it succeeds, the process exits, or ctx ends.
func waitReady(ctx context.Context, proc *process, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-proc.done:
			return proc.exitError()
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (last check: %v); see %s", proc.name, timeout, last, proc.logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop terminates components in reverse start order and waits for each.
func (p *Processes) Stop() {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		close(p.stopped)
		procs := p.procs
		p.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(15 * time.Second)
		}
	})
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
