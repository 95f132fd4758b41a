// Package demo is `edgefleet demo`: the whole story on one host in one
// command. It starts a manager on an embedded control plane, machines
// (`edgefleet-node agent` processes with emulated TPMs, each in its own
// network namespace), registers them through config-only seed media, forms
// a Kubernetes cluster of real kubelets from them by label, lets the
// cluster join the fleet, deploys an app from a local git repository with a
// GitRepo, and rolls an OS upgrade across the machines. Everything it
// creates (processes, namespaces, files) is removed when it ends.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgefleet/edgefleet/internal/netlab"
)

// Options shape a demo.
type Options struct {
	// Machines is how many machines: one server, the others workers.
	Machines int
	// DataDir holds everything the demo writes; empty makes a temporary
	// one. It must not exist or be empty (the demo removes it at the end).
	DataDir string
	// Keep leaves everything running after the story until ctx ends.
	Keep bool
	// NoNetns runs the machines on the host's loopback instead of network
	// namespaces: no cluster of real kubelets then.
	NoNetns bool
	// Timeout bounds the story (not the --keep wait).
	Timeout time.Duration
	// BinDir holds edgefleet, edgefleet-node and edgefleet-agent (default:
	// the running executable's folder).
	BinDir string
	// KubeBinDir holds the Kubernetes binaries (default: found from
	// $EDGEFLEET_KUBE_BIN_DIR, the repository's .cache/kube-bin-dir or
	// BinDir).
	KubeBinDir string
	Out        io.Writer
	// TTY draws spinners; otherwise one plain line per event.
	TTY bool
	// Width is the terminal's, in columns: the spinner's line is cut to
	// it, so redrawing in place never wraps (0: not cut).
	Width int
}

// Names the demo's objects use.
const (
	Namespace   = "demo"
	ClusterName = "demo"
	AppName     = "hello"
	// AppNamespace is where the app runs on the formed cluster.
	AppNamespace = "hello"
	OSImageV1    = "edgefleet.test/edgefleet/os:v1"
	OSImageV2    = "edgefleet.test/edgefleet/os:v2"
	// UIUser is the ServiceAccount whose token signs in to the web UI.
	UIUser = "demo-admin"
)

// demo is one run's state; undo holds what cleanup reverses, newest last.
type demo struct {
	o        Options
	p        *progress
	undo     []func()
	bins     binaries
	dataDir  string
	netns    bool
	lab      *netlab.Lab
	reg      *imageRegistry
	mgr      *manager
	machines []*machine
	// clusterKubeconfig reaches the formed cluster through the manager's
	// tunnel.
	clusterKubeconfig string
	gitDir            string
	fleetCluster      string
	// devKubeconfig is the simulated cluster's (without namespaces).
	devKubeconfig string
	// extraLogs are logs of further children, for logTails.
	extraLogs []string
}

// Run tells the story, prints the summary and cleans up (after ctx ends
// with Keep).
func Run(ctx context.Context, o Options) (err error) {
	if o.Machines < 1 {
		return fmt.Errorf("--machines %d: at least 1 (one server; the others are workers)", o.Machines)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	d := &demo{o: o, p: &progress{out: o.Out, tty: o.TTY, width: o.Width}}
	defer func() {
		d.p.end(err)
		// A failure leaves the logs' ends to read; Ctrl-C does not.
		if err != nil && ctx.Err() == nil {
			d.logTails()
		}
		d.cleanup()
	}()
	started := time.Now()
	story, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := d.run(story); err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		if story.Err() != nil {
			return fmt.Errorf("%w (after --timeout %s)", err, o.Timeout)
		}
		return err
	}
	d.p.end(nil)
	d.summary(time.Since(started))
	if o.Keep {
		fmt.Fprintln(o.Out, "Running until Ctrl-C (--keep); everything above is removed then.")
		<-ctx.Done()
	}
	return nil
}

func (d *demo) run(ctx context.Context) error {
	const (
		always = iota
		netnsOnly
		loopbackOnly
	)
	steps := []struct {
		title string
		run   func(context.Context) error
		// when: netnsOnly steps need machines in network namespaces (real
		// kubelets); loopbackOnly steps stand in for them.
		when int
	}{
		{"Check binaries and tools", d.prepare, always},
		{"Build images (pause, hello, edgefleet-agent) into a loopback registry", d.images, netnsOnly},
		{"Start the manager (embedded etcd + kube-apiserver)", d.startManager, always},
		{"Create namespace " + Namespace + ", a web UI user and MachineRegistrations (servers, workers)", d.registrations, always},
		{"Build seed media (config-only ISOs) and read the machines' config from them", d.seedMedia, always},
		{"", d.startMachines, always},
		{"Machines registered with emulated TPMs, simulated OS v1 reported", d.waitRegistered, always},
		{"Form cluster " + ClusterName + " from the machines by label (edgefleet distro, real kubelets)", d.formCluster, netnsOnly},
		{"Cluster " + ClusterName + " joins the fleet (agent image from the loopback registry)", d.waitJoined, netnsOnly},
		{"Start a simulated cluster instead (dev-cluster: real API server, kwok fake nodes)", d.startSimulatedCluster, loopbackOnly},
		{"The simulated cluster joins the fleet (edgefleet agent with a registration token)", d.joinSimulatedCluster, loopbackOnly},
		{"Create a git repository and a GitRepo for the app " + AppName, d.gitRepo, always},
		{"App pods Ready on the cluster (read through the manager's tunnel)", d.waitApp, always},
		{"Roll OS upgrade v1 → v2 across the machines (ManagedOSImage, one at a time)", d.osUpgrade, always},
	}
	for _, s := range steps {
		// prepare decides d.netns: the titles and skips after it read it.
		if s.title == "" {
			s.title = fmt.Sprintf("Start %d machine(s) (edgefleet-node agent)", d.o.Machines)
			if d.netns {
				s.title += ", each in its own network namespace"
			} else {
				s.title += " on loopback"
			}
		}
		if (s.when == netnsOnly && !d.netns) || (s.when == loopbackOnly && d.netns) {
			continue
		}
		d.p.begin(s.title)
		if err := s.run(ctx); err != nil {
			return err
		}
	}
	return nil
}

// onCleanup registers f to run at the end, before what was registered
// earlier.
func (d *demo) onCleanup(f func()) { d.undo = append(d.undo, f) }

func (d *demo) cleanup() {
	if len(d.undo) == 0 {
		return
	}
	d.p.begin("Clean up: stop machines and the manager, remove namespaces and files")
	for i := len(d.undo) - 1; i >= 0; i-- {
		d.undo[i]()
	}
	d.undo = nil
	d.p.end(nil)
}

// binaries are the programs the demo runs.
type binaries struct {
	edgefleet, node, agent string
	kube                   string
	repo                   string
	version                string
}

func (d *demo) prepare(ctx context.Context) error {
	bin := d.o.BinDir
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		bin = filepath.Dir(exe)
	}
	d.bins = binaries{edgefleet: filepath.Join(bin, "edgefleet"), node: filepath.Join(bin, "edgefleet-node"), agent: filepath.Join(bin, "edgefleet-agent")}
	for _, b := range []string{d.bins.edgefleet, d.bins.node, d.bins.agent} {
		if !executable(b) {
			return fmt.Errorf("%s is missing: run `make build kube-binaries` in the edgefleet checkout (the demo runs the binaries next to it)", b)
		}
	}
	// The sources of the pause and hello images: the checkout bin/ is in.
	d.bins.repo = filepath.Dir(bin)
	if _, err := os.Stat(filepath.Join(d.bins.repo, "test/kubeimages/hello")); err != nil {
		return fmt.Errorf("no edgefleet checkout around %s (test/kubeimages/hello): run the demo as bin/edgefleet from a checkout after `make build kube-binaries`", bin)
	}
	if _, err := exec.LookPath("go"); err != nil {
		return errors.New("go is missing: the demo builds its workload images from the checkout (README: a Debian machine with Go)")
	}
	kube, err := findKubeBinDir(d.o.KubeBinDir, bin, d.bins.repo)
	if err != nil {
		return err
	}
	d.bins.kube = kube
	d.netns = !d.o.NoNetns
	why := "--no-netns"
	if d.netns {
		if why = netnsUnsupported(); why != "" {
			d.netns = false
		}
	}
	if !d.netns {
		d.p.note("WARNING: %s: the machines run on loopback, so no cluster of real kubelets can be formed from them; a dev cluster with fake nodes (kwok) stands in for it", why)
	}
	if d.netns {
		for _, c := range []string{"containerd", "runc", "iptables", "xorriso"} {
			if _, err := exec.LookPath(c); err != nil {
				return fmt.Errorf("%s is missing: run hack/install-deps.sh (or use --no-netns)", c)
			}
		}
		if !executable(filepath.Join(kube, "kubelet")) {
			return fmt.Errorf("no kubelet in %s: run `make kube-binaries`", kube)
		}
		out, err := exec.Command(filepath.Join(kube, "kubelet"), "--version").Output()
		if err != nil {
			return fmt.Errorf("kubelet --version: %w", err)
		}
		d.bins.version = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "Kubernetes"))
	} else if _, err := exec.LookPath("xorriso"); err != nil {
		return errors.New("xorriso is missing: run hack/install-deps.sh")
	}
	if err := d.makeDataDir(); err != nil {
		return err
	}
	if err := d.claimMarkerDir(); err != nil {
		return err
	}
	return nil
}

// findKubeBinDir finds the Kubernetes binaries: the flag, the environment,
// the folder `make kube-binaries` recorded, next to the binaries.
func findKubeBinDir(explicit, bin, repo string) (string, error) {
	candidates := []string{explicit, os.Getenv("EDGEFLEET_KUBE_BIN_DIR")}
	if b, err := os.ReadFile(filepath.Join(repo, ".cache/kube-bin-dir")); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(b)))
	}
	candidates = append(candidates, bin)
	for _, c := range candidates {
		if c != "" && executable(filepath.Join(c, "kube-apiserver")) && executable(filepath.Join(c, "etcd")) {
			return c, nil
		}
		if c != "" && c == explicit {
			return "", fmt.Errorf("--kube-bin-dir %s has no kube-apiserver and etcd: run `make kube-binaries` (it prints the folder)", c)
		}
	}
	return "", errors.New("the Kubernetes binaries (kube-apiserver, etcd, kubelet) were not found: run `make build kube-binaries` in the checkout, or pass --kube-bin-dir")
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func (d *demo) makeDataDir() error {
	if d.o.DataDir == "" {
		dir, err := os.MkdirTemp("", "edgefleet-demo-")
		if err != nil {
			return err
		}
		d.dataDir = dir
	} else {
		abs, err := filepath.Abs(d.o.DataDir)
		if err != nil {
			return err
		}
		if entries, err := os.ReadDir(abs); err == nil && len(entries) > 0 {
			return fmt.Errorf("--data-dir %s is not empty: the demo removes its data dir at the end, so give it a new or empty folder", abs)
		}
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return err
		}
		d.dataDir = abs
	}
	dir := d.dataDir
	d.onCleanup(func() { _ = os.RemoveAll(dir) })
	return nil
}

// markerDir is where the ManagedOSImage's upgrade plan records that it ran
// (on a real machine: persistent /var/lib). The demo's machines share the
// host's, so the simulated OS clears the marker after each upgrade; the
// demo only does that in a folder it created itself.
const markerDir = "/var/lib/edgefleet/os-upgrade"

func (d *demo) claimMarkerDir() error {
	if _, err := os.Stat(markerDir); err == nil {
		return fmt.Errorf("%s exists: this host looks like an edgefleet machine; the demo's simulated OS upgrades would share it, so run the demo elsewhere (or remove the folder if it is a leftover)", markerDir)
	}
	// Remove only the folders the demo creates.
	var created []string
	for p := markerDir; p != "/"; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		created = append(created, p)
	}
	if err := os.MkdirAll(markerDir, 0o755); err != nil {
		return fmt.Errorf("creating %s for the simulated OS upgrades: %w", markerDir, err)
	}
	d.onCleanup(func() {
		// The marker folder is the demo's; its parents only if empty (a
		// process of the host may have put something there meanwhile).
		_ = os.RemoveAll(markerDir)
		for _, p := range created {
			_ = os.Remove(p)
		}
	})
	return nil
}

// process is a child the demo started; stop ends it (its process group on
// timeout).
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func startProcess(cmd *exec.Cmd, logPath string, deathSig syscall.Signal) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group (stopped as a whole); killed with the demo even
	// when the demo itself is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: f}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// tail is the end of a log file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// logTails prints the end of every log before cleanup removes them: what
// a failed run leaves to read.
func (d *demo) logTails() {
	var logs []string
	if d.mgr != nil {
		logs = append(logs, d.mgr.log)
	}
	for _, m := range d.machines {
		logs = append(logs, filepath.Join(m.dir, "agent.log"))
		// What `edgefleet-node kubernetes up` runs logs there (the node
		// package's kubedistro.Paths.Logs, which the manager's binary does
		// not link).
		for _, c := range []string{"supervisor", "containerd", "kubelet"} {
			logs = append(logs, filepath.Join(m.root, "var/lib/edgefleet/kubernetes/logs", c+".log"))
		}
	}
	logs = append(logs, d.extraLogs...)
	for _, l := range logs {
		if t := tail(l, 2000); t != "" {
			fmt.Fprintf(d.o.Out, "--- %s (tail) ---\n%s\n", l, t)
		}
	}
}

// poll calls ok every interval until it returns nil or ctx ends; the
// error names what was awaited and the last reason.
func poll(ctx context.Context, interval time.Duration, what string, ok func() error) error {
	var last error
	for {
		if last = ok(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %v", what, last)
		case <-time.After(interval):
		}
	}
}
