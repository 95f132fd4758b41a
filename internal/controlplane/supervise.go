package controlplane

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgefleet/edgefleet/internal/metrics"
)

// Restart policy of a component that exits after Start: the manager's
// clients (informers, the endpoint's proxies) retry on their own, so a
// component killed by the OOM killer, an operator or a crash is started
// again in place — same arguments, ports, certificates and data — instead of
// taking the whole manager down. Only a crash loop is fatal: more than
// restartLimit exits within restartWindow reports Failed, and the server
// exits with the component's last log lines for a supervisor (systemd,
// Kubernetes) and a human to act on.
const (
	restartMinBackoff = 500 * time.Millisecond
	restartMaxBackoff = 30 * time.Second
	restartLimit      = 5
	restartWindow     = 5 * time.Minute
)

var componentRestarts = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "edgefleet_controlplane_restarts_total",
	Help: "Embedded control-plane components (etcd, kube-apiserver, ...) that exited unexpectedly and were started again, by component.",
}, []string{"component"})

func init() {
	metrics.Registry.MustRegister(componentRestarts)
}

// superviseAll watches every component started so far.
func (p *Processes) superviseAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, proc := range p.procs {
		go p.supervise(i, proc)
	}
}

// Restarts is how often each component was started again since Start.
func (p *Processes) Restarts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.restarts))
	for k, v := range p.restarts {
		out[k] = v
	}
	return out
}

// supervise restarts the i-th component each time it exits while the
// control plane is not stopping, with a jittered doubling backoff that
// resets once a run lasted restartWindow.
func (p *Processes) supervise(i int, proc *process) {
	var exits []time.Time
	backoff := restartMinBackoff
	for {
		select {
		case <-proc.done:
		case <-p.stopped:
			return
		}
		if p.isStopped() {
			return
		}
		now := time.Now()
		exitErr := proc.exitError()
		if now.Sub(proc.started) > restartWindow {
			backoff = restartMinBackoff
		}
		exits = append(recentSince(exits, now.Add(-restartWindow)), now)
		if len(exits) > restartLimit {
			p.fail(fmt.Errorf("%w\n%s exited %d times within %s; not restarting it again", exitErr, proc.name, len(exits), restartWindow))
			return
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		p.cfg.Log.Error(exitErr, "Control plane component exited; restarting it", "component", proc.name,
			"in", wait.Round(time.Millisecond).String(), "exitsInWindow", len(exits))
		select {
		case <-time.After(wait):
		case <-p.stopped:
			return
		}
		next, err := p.relaunch(i, proc)
		if errors.Is(err, errStopped) {
			return
		}
		if err != nil {
			p.fail(fmt.Errorf("restarting %s after it exited: %w", proc.name, err))
			return
		}
		componentRestarts.WithLabelValues(proc.name).Inc()
		p.cfg.Log.Info("Control plane component restarted", "component", proc.name, "pid", next.cmd.Process.Pid)
		proc = next
		backoff = min(backoff*2, restartMaxBackoff)
	}
}

// relaunch starts old's command again in its slot, unless Stop began.
func (p *Processes) relaunch(i int, old *process) (*process, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isStopped() {
		return nil, errStopped
	}
	proc, err := startProcess(old.name, old.bin, old.args, old.logPath, old.env)
	if err != nil {
		return nil, err
	}
	p.procs[i] = proc
	if p.restarts == nil {
		p.restarts = map[string]int{}
	}
	p.restarts[old.name]++
	return proc, nil
}

func (p *Processes) isStopped() bool {
	select {
	case <-p.stopped:
		return true
	default:
		return false
	}
}

// fail reports the first fatal error; later ones add nothing.
func (p *Processes) fail(err error) {
	select {
	case p.failed <- err:
	default:
	}
}

func recentSince(ts []time.Time, since time.Time) []time.Time {
	out := ts[:0]
	for _, t := range ts {
		if t.After(since) {
			out = append(out, t)
		}
	}
	return out
}
