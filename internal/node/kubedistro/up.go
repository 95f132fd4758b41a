package kubedistro

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/planner"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// BinariesImageDir is where a "kubernetes binaries" image keeps them:
// /opt/edgefleet/kubernetes/<version>/bin/{kubelet,kubectl,kube-apiserver,…}.
func BinariesImageDir(version string) string {
	return "/opt/edgefleet/kubernetes/" + version + "/bin"
}

// Options of Up.
type Options struct {
	// Root is where every path lives ("/" on a machine; EDGEFLEET_PLAN_ROOT).
	Root string
	// ConfigPath is the NodeConfig, a machine path resolved under Root.
	ConfigPath string
	// Self is the edgefleet-node binary the supervisor runs as
	// (`kubernetes run`); default this process's executable.
	Self string
	// Wait bounds how long Up waits for the node to be healthy.
	Wait time.Duration
	Log  *slog.Logger
}

func (o *Options) defaults() {
	if o.ConfigPath == "" {
		o.ConfigPath = kubedistro.ConfigPath
	}
	if o.Wait == 0 {
		o.Wait = 5 * time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// loadConfig reads and validates the NodeConfig; hash identifies it (a
// changed config restarts the supervisor).
func loadConfig(p Paths, configPath string) (*kubedistro.NodeConfig, string, error) {
	data, err := os.ReadFile(p.Under(configPath))
	if err != nil {
		return nil, "", fmt.Errorf("reading the node config: %w", err)
	}
	c, err := kubedistro.Parse(data)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(data)
	return c, hex.EncodeToString(sum[:]), nil
}

// Up is `kubernetes up`: idempotent. It installs the binaries, writes the
// certificates and configuration, (re)starts the detached supervisor when
// the config changed (a new version is an in-place upgrade: stop, swap
// binaries, start) and returns once the kubelet answers its healthz (and,
// on a server, the API its /readyz).
func Up(ctx context.Context, o Options) error {
	o.defaults()
	p := NewPaths(o.Root)
	c, hash, err := loadConfig(p, o.ConfigPath)
	if err != nil {
		return err
	}
	if st, alive := running(p); alive && st.ConfigHash == hash {
		o.Log.Info("The node's Kubernetes already runs this config; waiting for health")
		return waitHealthy(ctx, p, c, o.Wait)
	} else if alive {
		o.Log.Info("The config changed: stopping the running components", "from", st.Version, "to", c.Version)
		if err := stopSupervisor(p); err != nil {
			return err
		}
	}
	if err := installBinaries(ctx, p, c); err != nil {
		return err
	}
	nodeIP, err := resolveNodeIP(c)
	if err != nil {
		return err
	}
	if err := prepare(p, c, nodeIP); err != nil {
		return err
	}
	if c.Role == kubedistro.RoleServer && !c.Init {
		if err := joinEtcd(ctx, p, c, nodeIP); err != nil {
			return err
		}
	}
	self := o.Self
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return err
		}
	}
	_ = os.Remove(p.stoppedMarker())
	if err := startSupervisor(p, self, o.ConfigPath); err != nil {
		return err
	}
	return waitHealthy(ctx, p, c, o.Wait)
}

// prepare writes everything the components read.
func prepare(p Paths, c *kubedistro.NodeConfig, nodeIP string) error {
	for _, d := range []string{p.Logs(), p.Run(), p.Kubelet(), p.CNI(), p.Containerd()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if err := writeCerts(p, c, nodeIP); err != nil {
		return err
	}
	if c.Role == kubedistro.RoleServer {
		pk := func(f string) string { return filepath.Join(p.PKI(), f) }
		for _, name := range []string{"controller-manager", "scheduler", "admin"} {
			path := filepath.Join(p.Server(), name+".kubeconfig")
			if err := writeKubeconfig(path, localAPI(c), pk(caCert), pk(name+".crt"), pk(name+".key"), ""); err != nil {
				return err
			}
		}
		if err := os.MkdirAll(p.Manifests(), 0o700); err != nil {
			return err
		}
	}
	if err := writeContainerdConfig(p, c); err != nil {
		return err
	}
	if err := writeCNITemplate(p); err != nil {
		return err
	}
	if err := writeKubeletConfig(p, c); err != nil {
		return err
	}
	return prepareCgroups(CgroupRoot(p, c.NodeName))
}

// installBinaries makes Paths.Bin(version) hold the binaries this role
// runs, from binaries.dir (linked) or binaries.image (extracted), and
// checks they are the config's version.
func installBinaries(ctx context.Context, p Paths, c *kubedistro.NodeConfig) error {
	src := ""
	if c.Binaries.Dir != "" {
		src = p.Under(c.Binaries.Dir)
	} else {
		dir, err := (&planner.RegistryImages{Dir: p.Images()}).Extract(ctx, c.Binaries.Image)
		if err != nil {
			return fmt.Errorf("binaries image %s: %w", c.Binaries.Image, err)
		}
		src = filepath.Join(dir, BinariesImageDir(c.Version))
	}
	dst := p.Bin(c.Version)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	names := []string{"kubelet", "kubectl"}
	if c.Role == kubedistro.RoleServer {
		names = append(names, "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
	}
	for _, n := range names {
		from := filepath.Join(src, n)
		if fi, err := os.Stat(from); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("the binaries (%s) have no executable %s: a %s node needs %s", src, n, c.Role, strings.Join(names, ", "))
		}
		to := filepath.Join(dst, n)
		_ = os.Remove(to)
		if err := os.Symlink(from, to); err != nil {
			return err
		}
	}
	// kube-proxy is optional: without it the node has no Services.
	_ = os.Remove(filepath.Join(dst, "kube-proxy"))
	if fi, err := os.Stat(filepath.Join(src, "kube-proxy")); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		if err := os.Symlink(filepath.Join(src, "kube-proxy"), filepath.Join(dst, "kube-proxy")); err != nil {
			return err
		}
	}
	// Every Kubernetes binary, not only the kubelet: a server upgraded in
	// place must restart its control plane on the new version, and a folder
	// with a new kubelet but the old kube-apiserver would silently keep it.
	// etcd has its own versions and is not checked.
	for _, n := range names {
		if n == "etcd" || n == "kubectl" {
			continue
		}
		out, err := exec.CommandContext(ctx, filepath.Join(dst, n), "--version").CombinedOutput()
		if err != nil {
			return fmt.Errorf("running %s --version: %v: %s", n, err, out)
		}
		if got := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "Kubernetes")); got != c.Version {
			return fmt.Errorf("the binaries are Kubernetes %s (%s), the config asks for %s: install %s's binaries", got, n, c.Version, c.Version)
		}
	}
	return nil
}

// prepareCgroups creates the node's cgroup root in every cgroup v1
// hierarchy (the kubelet refuses a missing one); cpuset needs its cpus and
// mems copied down before anything can join it.
func prepareCgroups(root string) error {
	const base = "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(base, "cgroup.controllers")); err == nil {
		return os.MkdirAll(filepath.Join(base, root), 0o755) // unified hierarchy
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "unified" {
			continue
		}
		h := filepath.Join(base, e.Name())
		dir := h
		for _, part := range strings.Split(strings.Trim(root, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("creating cgroup %s: %w", dir, err)
			}
			if e.Name() == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					if cur, _ := os.ReadFile(filepath.Join(dir, f)); strings.TrimSpace(string(cur)) != "" {
						continue
					}
					v, err := os.ReadFile(filepath.Join(parent, f))
					if err == nil {
						_ = os.WriteFile(filepath.Join(dir, f), v, 0o644)
					}
				}
			}
		}
	}
	return nil
}

// running reads the state file and reports whether its supervisor lives.
func running(p Paths) (*State, bool) {
	data, err := os.ReadFile(p.State())
	if err != nil {
		return nil, false
	}
	var st State
	if json.Unmarshal(data, &st) != nil || st.PID <= 0 {
		return nil, false
	}
	return &st, isSupervisor(st.PID)
}

// isSupervisor: pid is a live `kubernetes run` (not a recycled pid).
func isSupervisor(pid int) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	return len(args) > 2 && args[1] == "kubernetes" && args[2] == "run"
}

// startSupervisor starts `kubernetes run` detached: its own session (the
// planner kills an instruction's process group when it ends), output to
// its log.
func startSupervisor(p Paths, self, configPath string) error {
	logf, err := os.OpenFile(p.Log("supervisor"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, "kubernetes", "run", "--root", p.Root, "--config", configPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the supervisor: %w", err)
	}
	return cmd.Process.Release()
}

// stopSupervisor stops a running supervisor, which stops its components
// (etcd, the API, containerd, the kubelet) in reverse order.
func stopSupervisor(p Paths) error {
	st, alive := running(p)
	if !alive {
		return nil
	}
	_ = syscall.Kill(st.PID, syscall.SIGTERM)
	deadline := time.Now().Add(stopGrace*time.Duration(len(st.Components)) + 5*time.Second)
	for isSupervisor(st.PID) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(st.PID, syscall.SIGKILL)
			time.Sleep(500 * time.Millisecond)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// waitHealthy waits for the kubelet's healthz (and a server's /readyz),
// failing early with the supervisor log's tail when the supervisor died.
func waitHealthy(ctx context.Context, p Paths, c *kubedistro.NodeConfig, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	gone := 0
	for {
		last = httpOK(ctx, kubeletHealthz, nil)
		if last == nil && c.Role == kubedistro.RoleServer {
			last = apiReady(ctx, p, c)
		}
		if last == nil {
			return nil
		}
		if _, alive := running(p); !alive {
			// The state file appears a moment after the start.
			if gone++; gone > 20 {
				return fmt.Errorf("the Kubernetes supervisor is not running; its log ends:\n%s", tail(p.Log("supervisor"), 2048))
			}
		} else {
			gone = 0
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the node's Kubernetes is not healthy after %s (%v); see %s and `edgefleet-node kubernetes status`", timeout, last, p.Logs())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	data, _ := io.ReadAll(f)
	return string(data)
}

// stoppedMarker records a deliberate `down`: Resume leaves such a node
// alone until the next `up`.
func (p Paths) stoppedMarker() string { return p.dir("run", "stopped") }

// Resume restarts the node's Kubernetes after a reboot or a crash of the
// supervisor: when this machine has a NodeConfig, was not stopped with
// `down`, and no supervisor runs, it does what `up` does. The node agent
// calls it at start. It reports whether it started anything.
func Resume(ctx context.Context, o Options) (bool, error) {
	o.defaults()
	p := NewPaths(o.Root)
	if _, err := os.Stat(p.Under(o.ConfigPath)); err != nil {
		return false, nil
	}
	if _, err := os.Stat(p.stoppedMarker()); err == nil {
		return false, nil
	}
	if _, err := os.Stat(p.State()); err != nil {
		return false, nil // never brought up here: the plan's instruction will
	}
	if _, alive := running(p); alive {
		return false, nil
	}
	return true, Up(ctx, o)
}
