// Package agent is `edgefleet-node agent`, the long-running node agent: it
// registers the machine if it is not registered yet, watches its own plan
// Secret (and nothing else) with the machine's own credential, applies the
// plan with internal/node/planner and reports the result on its
// MachineInventory's status.plan; on an installed OS it also does the
// OS's boot duties (os.go).
//
// It is built to outlive the manager: the plan and the progress on it are
// kept on disk, so periodic instructions and probes go on during an outage,
// a restart or a reboot; the watch and the status reports retry with
// jittered backoff and the latest report is sent when the manager is back.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/kubedistro"
	"github.com/edgefleet/edgefleet/internal/node/nodekube"
	"github.com/edgefleet/edgefleet/internal/node/planner"
	"github.com/edgefleet/edgefleet/internal/node/register"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// FieldManager owns the node's fields of status.plan and lastSeen
// (server-side apply), so it never overwrites what the manager writes, nor
// status.os (osinstall.FieldManager's).
const FieldManager = "edgefleet-node"

// Defaults of Options.
const (
	DefaultReRegisterEvery = 24 * time.Hour
	// DefaultHeartbeat is how often an idle agent refreshes its
	// MachineInventory's status.lastSeen (the manager's
	// provisionedcluster.NodeAgentHeartbeat assumes it).
	DefaultHeartbeat = time.Minute
	// The watch and the reports retry after minRetry, doubling up to
	// maxRetry (±20% jitter): a fleet finds a restarted manager within
	// about half a minute without hammering it.
	minRetry = time.Second
	maxRetry = 30 * time.Second
)

// Options configure the agent.
type Options struct {
	// Config is the node config (registration URL, state directory).
	Config *machinereg.NodeConfig
	// Root is where plan files are written: "/" on a machine.
	Root string
	// PlanStateDir keeps the plan and its progress; default
	// <state dir>/plan.
	PlanStateDir string
	// ReRegisterEvery renews the machine's credential (7 days by default
	// on the manager) and refreshes its labels.
	ReRegisterEvery time.Duration
	// Heartbeat: an idle agent reports again (status.lastSeen) at this
	// interval; default DefaultHeartbeat.
	Heartbeat time.Duration
	// BackoffBase and BackoffMax: the planner's retry of a failed plan.
	BackoffBase, BackoffMax time.Duration
	// Images extracts image instructions; nil refuses them.
	Images planner.ImageStore
	// Register registers the machine (tests replace the hardware data).
	Register func(context.Context, *machinereg.NodeConfig) error
	// OS enables the installed OS's boot duties (cloud-config, boot
	// confirm, status.os, pending reset); nil runs plans only.
	OS  *OSOptions
	Log *slog.Logger
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.PlanStateDir == "" {
		o.PlanStateDir = filepath.Join(o.Config.StateDir, "plan")
	}
	if o.ReRegisterEvery <= 0 {
		o.ReRegisterEvery = DefaultReRegisterEvery
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Register == nil {
		o.Register = func(ctx context.Context, cfg *machinereg.NodeConfig) error {
			_, err := register.Register(ctx, cfg, register.Options{Warn: func(s string) { o.Log.Warn(s) }})
			return err
		}
	}
	exec, err := planner.New(planner.Options{Root: o.Root, StateDir: o.PlanStateDir, Images: o.Images, BackoffBase: o.BackoffBase, BackoffMax: o.BackoffMax})
	if err != nil {
		return err
	}
	a := &agent{o: o, exec: exec, plans: make(chan []byte, 1), reports: make(chan planner.Report, 1), creds: make(chan struct{}, 1), fatal: make(chan error, 1)}
	go a.resumeKubernetes(ctx)
	return a.run(ctx)
}

type agent struct {
	o       Options
	exec    *planner.Executor
	plans   chan []byte
	reports chan planner.Report
	// creds signals that the credential was refused: register again.
	creds chan struct{}
	// fatal ends the agent: the manager deleted this machine.
	fatal chan error
}

// identity is who this machine is on the manager, from the state
// directory.
type identity struct {
	namespace, inventory, planSecret string
	kube                             *nodekube.Client
}

func (a *agent) run(ctx context.Context) error {
	slot := a.o.OS.bootedSlot()
	if slot != "" {
		if goOn, err := a.beforeRegistering(ctx, slot); !goOn || err != nil {
			return err
		}
	}
	id, err := a.ensureRegistered(ctx, false)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	watchIDs, reportIDs, osIDs, netIDs := make(chan *identity, 1), make(chan *identity, 1), make(chan *identity, 1), make(chan *identity, 1)
	go a.watchPlan(ctx, id, watchIDs)
	go a.report(ctx, id, reportIDs)
	go a.reportNetwork(ctx, id, netIDs)
	if slot != "" {
		go a.reportOS(ctx, slot, id, osIDs)
	}
	go a.renew(ctx, watchIDs, reportIDs, osIDs, netIDs)
	return a.loop(ctx)
}

// loop owns the executor: new plans, retries, periodic instructions and
// probes all happen here, one at a time.
func (a *agent) loop(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	if a.exec.HasPlan() {
		a.o.Log.Info("Resuming the last plan", "checksum", a.exec.Checksum())
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-a.fatal:
			return err
		case raw := <-a.plans:
			if err := a.exec.SetPlan(raw); err != nil {
				a.o.Log.Error("Saving the plan", "err", err)
			}
		case <-timer.C:
		}
		before := a.exec.Report()
		if before.State != planner.StateApplied && before.Checksum != "" {
			a.publish(before)
		}
		if err := a.exec.Apply(ctx); err != nil {
			a.o.Log.Error("Saving the plan state", "err", err)
		}
		next, _, err := a.exec.Tick(ctx)
		if err != nil {
			a.o.Log.Error("Saving the plan state", "err", err)
		}
		r := a.exec.Report()
		if r.State == planner.StateFailed && r.Failure != nil && (before.Failure == nil || !before.Failure.Time.Equal(r.Failure.Time)) {
			a.o.Log.Warn("Plan failed", "checksum", r.Checksum, "instruction", r.Failure.Instruction, "message", r.Failure.Message, "retryAt", r.NextRetry)
		}
		if r.State == planner.StateApplied && before.State != planner.StateApplied {
			a.o.Log.Info("Plan applied", "checksum", r.Checksum)
		}
		a.publish(r)
		timer.Reset(max(time.Until(next), 10*time.Millisecond))
	}
}

// publish hands the latest report to the reporter, replacing one it has
// not sent yet.
func (a *agent) publish(r planner.Report) {
	for {
		select {
		case a.reports <- r:
			return
		default:
			select {
			case <-a.reports:
			default:
			}
		}
	}
}

// ensureRegistered returns the machine's identity, registering first when
// the state directory has no credential (or force). It retries with
// jittered backoff until it succeeds or ctx ends, except when the manager
// deleted this machine (register.ErrReprovisioningNeeded): retrying cannot
// help, the machine must be re-provisioned.
func (a *agent) ensureRegistered(ctx context.Context, force bool) (*identity, error) {
	wait := minRetry
	for {
		if !force {
			id, err := loadIdentity(a.o.Config.StateDir)
			if err == nil {
				return id, nil
			}
			if !errors.Is(err, os.ErrNotExist) {
				a.o.Log.Warn("The stored credential is unusable; registering again", "err", err)
			}
		}
		err := a.o.Register(ctx, a.o.Config)
		if errors.Is(err, register.ErrReprovisioningNeeded) {
			return nil, err
		}
		if err == nil {
			force = false
			a.o.Log.Info("Registered", "url", a.o.Config.Registration.URL)
			continue
		}
		// Jittered like the watch and the reports: machines that lost the
		// manager together must not all come back in the same instant.
		d := jitter(wait)
		a.o.Log.Warn("Registering failed; retrying", "err", err, "in", d.Round(time.Millisecond))
		if !sleep(ctx, d) {
			return nil, ctx.Err()
		}
		wait = nextWait(wait)
	}
}

// renew registers again every ReRegisterEvery, or at once when a request
// was refused for its credential, and hands the new identity on.
func (a *agent) renew(ctx context.Context, ids ...chan *identity) {
	for {
		t := time.NewTimer(jitter(a.o.ReRegisterEvery))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-a.creds:
			t.Stop()
		}
		id, err := a.ensureRegistered(ctx, true)
		if err != nil {
			if ctx.Err() == nil {
				a.fatal <- err
			}
			return
		}
		// The watcher and the reporter each take it; an identity they
		// have not taken yet is replaced.
		for _, ch := range ids {
			select {
			case <-ch:
			default:
			}
			ch <- id
		}
	}
}

// credentialRefused asks for a new registration, once.
func (a *agent) credentialRefused() {
	select {
	case a.creds <- struct{}{}:
	default:
	}
}

func loadIdentity(stateDir string) (*identity, error) {
	c, err := register.Registered(stateDir)
	if err != nil {
		return nil, err
	}
	if c.Namespace == "" || c.InventoryName == "" || c.PlanSecret == "" {
		return nil, fmt.Errorf("%s names no inventory or plan Secret", register.ConfigFile)
	}
	if len(c.Kubeconfig) == 0 {
		return nil, fmt.Errorf("%s: %w", register.KubeconfigFile, os.ErrNotExist)
	}
	kube, err := nodekube.New(c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", register.KubeconfigFile, err)
	}
	return &identity{namespace: c.Namespace, inventory: c.InventoryName, planSecret: c.PlanSecret, kube: kube}, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// nextWait doubles the wait up to maxRetry.
func nextWait(d time.Duration) time.Duration { return min(2*d, maxRetry) }

// jitter spreads a fleet that lost the manager together: d ± 20%.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + time.Duration(rand.Int64N(int64(2*d/5)+1))
}

// resumeKubernetes brings the machine's edgefleet-distribution Kubernetes
// back after a reboot (its plan instruction ran once, before it): without
// the manager, from the NodeConfig on disk, unless it was stopped with
// `kubernetes down`.
func (a *agent) resumeKubernetes(ctx context.Context) {
	started, err := kubedistro.Resume(ctx, kubedistro.Options{Root: a.o.Root, Log: a.o.Log})
	switch {
	case err != nil:
		a.o.Log.Error("Resuming the machine's Kubernetes failed", "err", err)
	case started:
		a.o.Log.Info("Resumed the machine's Kubernetes")
	}
}
