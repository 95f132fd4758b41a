package kubedistro

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// State is what the supervisor writes to Paths.State for `status`.
type State struct {
	PID        int              `json:"pid"`
	ConfigHash string           `json:"configHash"`
	Version    string           `json:"version"`
	Role       kubedistro.Role  `json:"role"`
	NodeName   string           `json:"nodeName"`
	NodeIP     string           `json:"nodeIP"`
	Started    time.Time        `json:"started"`
	Components []ComponentState `json:"components"`
	// Bootstrapped: the init server applied the bootstrap token and RBAC.
	Bootstrapped bool `json:"bootstrapped,omitempty"`
	// Manifests applied from ManifestsDir, by file name, their sha256.
	Manifests map[string]string `json:"manifests,omitempty"`
}

// ComponentState is one supervised process.
type ComponentState struct {
	Name     string    `json:"name"`
	PID      int       `json:"pid,omitempty"`
	Running  bool      `json:"running"`
	Restarts int       `json:"restarts"`
	Started  time.Time `json:"started,omitzero"`
	LastExit string    `json:"lastExit,omitempty"`
}

// Backoff of a crashing component: doubling from restartMin to restartMax;
// a run longer than stableAfter resets it.
const (
	restartMin  = time.Second
	restartMax  = 30 * time.Second
	stableAfter = time.Minute
	stopGrace   = 15 * time.Second
)

// supervisor keeps the node's components running.
type supervisor struct {
	p      Paths
	c      *kubedistro.NodeConfig
	log    *slog.Logger
	mu     sync.Mutex
	state  State
	hash   string
	nodeIP string
}

// Run is `kubernetes run`: the long-running supervisor. It starts the
// components in order, each gated on the one before being ready, restarts
// any that exits (with backoff, each logging to its own file), and stops
// them in reverse order when ctx ends.
func Run(ctx context.Context, root, configPath string, log *slog.Logger) error {
	p := NewPaths(root)
	c, hash, err := loadConfig(p, configPath)
	if err != nil {
		return err
	}
	nodeIP, err := resolveNodeIP(c)
	if err != nil {
		return err
	}
	if err := writeFile(p.SupervisorPID(), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	defer os.Remove(p.SupervisorPID())
	s := &supervisor{p: p, c: c, log: log, hash: hash, nodeIP: nodeIP}
	s.state = State{PID: os.Getpid(), ConfigHash: hash, Version: c.Version, Role: c.Role, NodeName: c.NodeName, NodeIP: nodeIP, Started: time.Now().UTC()}
	comps := components(p, c, p.Bin(c.Version), nodeIP)
	for _, comp := range comps {
		s.state.Components = append(s.state.Components, ComponentState{Name: comp.Name})
	}
	s.save()

	type running struct {
		stop chan struct{}
		done chan struct{}
	}
	var started []running
	stopAll := func() {
		for i := len(started) - 1; i >= 0; i-- {
			close(started[i].stop)
			<-started[i].done
		}
	}
	for i, comp := range comps {
		r := running{stop: make(chan struct{}), done: make(chan struct{})}
		started = append(started, r)
		go func() {
			defer close(r.done)
			s.keep(i, comp, r.stop)
		}()
		if comp.Ready == nil {
			continue
		}
		if err := s.waitReady(ctx, comp); err != nil {
			stopAll()
			return nil
		}
		if comp.Name == "kube-apiserver" && c.Init {
			go s.bootstrap(ctx)
		}
		if comp.Name == "kube-apiserver" {
			s.labelControlPlane(ctx, 30*time.Second)
		}
		if comp.Name == "kubelet" && c.Role == kubedistro.RoleServer {
			go s.labelControlPlane(ctx, 0)
		}
	}
	go s.routes(ctx)
	<-ctx.Done()
	log.Info("Stopping the node's Kubernetes components")
	stopAll()
	return nil
}

// waitReady polls comp.Ready until it passes or ctx ends.
func (s *supervisor) waitReady(ctx context.Context, comp component) error {
	start := time.Now()
	for {
		err := comp.Ready(ctx)
		if err == nil {
			s.log.Info("Component ready", "component", comp.Name, "after", time.Since(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// keep runs comp until stop closes, restarting it with backoff.
func (s *supervisor) keep(i int, comp component, stop <-chan struct{}) {
	wait := restartMin
	for {
		logf, err := os.OpenFile(s.p.Log(comp.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			s.log.Error("Opening the component's log", "component", comp.Name, "err", err)
			return
		}
		cmd := exec.Command(comp.Bin, comp.Args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		// The components die with the supervisor (a new one takes over
		// cleanly); pods' containerd shims are not its children and live on.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		fmt.Fprintf(logf, "--- %s starting %s\n", time.Now().UTC().Format(time.RFC3339), comp.Name)
		began := time.Now()
		if err := cmd.Start(); err != nil {
			logf.Close()
			s.update(i, func(cs *ComponentState) { cs.Running, cs.LastExit = false, err.Error() })
			s.log.Error("Starting a component failed", "component", comp.Name, "err", err)
		} else {
			s.update(i, func(cs *ComponentState) { cs.PID, cs.Running, cs.Started = cmd.Process.Pid, true, began.UTC() })
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				logf.Close()
				s.update(i, func(cs *ComponentState) { cs.Running, cs.Restarts, cs.LastExit = false, cs.Restarts+1, exitText(err) })
				s.log.Warn("Component exited; restarting", "component", comp.Name, "exit", exitText(err), "in", wait)
			case <-stop:
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(stopGrace):
					_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
					<-exited
				}
				logf.Close()
				s.update(i, func(cs *ComponentState) { cs.Running, cs.PID, cs.LastExit = false, 0, "stopped" })
				return
			}
		}
		if time.Since(began) > stableAfter {
			wait = restartMin
		}
		select {
		case <-stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, restartMax)
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

func (s *supervisor) update(i int, f func(*ComponentState)) {
	s.mu.Lock()
	f(&s.state.Components[i])
	s.mu.Unlock()
	s.save()
}

// save writes the state file (best effort: it is for `status`).
func (s *supervisor) save() {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := json.MarshalIndent(s.state, "", "  ")
	if err == nil {
		_ = writeFile(s.p.State(), data, 0o644)
	}
}
