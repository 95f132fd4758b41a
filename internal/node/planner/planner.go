// Package planner applies a machine's plan (internal/wire/nodeplan) on the
// machine: files written atomically below a root, one-time instructions run
// once per plan checksum, periodic instructions on their period, HTTP probes
// with thresholds. Progress is kept in a state directory, so a plan survives
// agent restarts and reboots: an instruction that completed never runs again
// for the same plan, one that was interrupted (the machine rebooted under
// it) runs again, and the plan goes on from there.
//
// An Executor is used from one goroutine (the node agent's loop); Report is
// a copy that can be handed to others.
package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// Defaults of Options.
const (
	DefaultOutputLimit  = 64 << 10
	DefaultBackoffBase  = 10 * time.Second
	DefaultBackoffMax   = 5 * time.Minute
	StatusOutputBytes   = 2 << 10
	FailureOutputBytes  = 4 << 10
	stateFile           = "plan-state.json"
	planFile            = "plan.json"
	maxReportedPeriodic = nodeplan.MaxInstructions
)

// States of the current plan on the machine.
const (
	StateApplying = "Applying"
	StateApplied  = "Applied"
	StateFailed   = "Failed"
)

// Options configure an Executor.
type Options struct {
	// Root is where plan files go: "/" on a machine, a temporary
	// directory in tests.
	Root string
	// StateDir keeps the last plan and the progress on it.
	StateDir string
	// OutputLimit bounds the output kept per instruction run (its tail).
	OutputLimit int
	// BackoffBase and BackoffMax bound the wait before a failed plan is
	// retried: base, 2×base, 4×base… up to max.
	BackoffBase, BackoffMax time.Duration
	// Images extracts instruction images; nil refuses image instructions.
	Images ImageStore
	// Now is the clock (tests).
	Now func() time.Time
}

// ImageStore makes an OCI image's filesystem available as a directory.
type ImageStore interface {
	Extract(ctx context.Context, ref string) (dir string, err error)
}

// Executor applies one machine's plan.
type Executor struct {
	o     Options
	plan  *nodeplan.Plan
	raw   []byte
	st    state
	probe *prober
}

// state is what survives restarts (StateDir/plan-state.json).
type state struct {
	Checksum        string `json:"checksum"`
	AppliedChecksum string `json:"appliedChecksum,omitempty"`
	// Invalid is why the current plan cannot be applied at all.
	Invalid string `json:"invalid,omitempty"`
	// Completed counts the one-time instructions of Checksum that
	// succeeded, in order: the plan resumes at Completed.
	Completed    int                 `json:"completed"`
	Attempts     int                 `json:"attempts,omitempty"`
	NextRetry    time.Time           `json:"nextRetry,omitzero"`
	Failure      *Failure            `json:"failure,omitempty"`
	Instructions []InstructionResult `json:"instructions,omitempty"`
	Periodic     []PeriodicResult    `json:"periodic,omitempty"`
	LastApplied  time.Time           `json:"lastApplied,omitzero"`
}

// Failure is why the current plan is not applied.
type Failure struct {
	// Instruction names the failing instruction; empty when the plan
	// itself or its files failed.
	Instruction string `json:"instruction,omitempty"`
	ExitCode    int    `json:"exitCode,omitempty"`
	Message     string `json:"message"`
	// Output is the end of the failing instruction's output.
	Output string    `json:"output,omitempty"`
	Time   time.Time `json:"time"`
}

// InstructionResult is the last run of a one-time instruction.
type InstructionResult struct {
	Name     string        `json:"name"`
	ExitCode int           `json:"exitCode"`
	Output   string        `json:"output,omitempty"`
	Finished time.Time     `json:"finished"`
	Duration time.Duration `json:"duration"`
}

// PeriodicResult is the last run of a periodic instruction.
type PeriodicResult struct {
	Name        string    `json:"name"`
	ExitCode    int       `json:"exitCode"`
	Output      string    `json:"output,omitempty"`
	LastRun     time.Time `json:"lastRun"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	Failures    int       `json:"failures,omitempty"`
}

// ProbeResult is a probe's state.
type ProbeResult struct {
	Name         string `json:"name"`
	Healthy      bool   `json:"healthy"`
	SuccessCount int    `json:"successCount"`
	FailureCount int    `json:"failureCount"`
	LastError    string `json:"lastError,omitempty"`
}

// Report is the plan's state for status.
type Report struct {
	Checksum        string
	AppliedChecksum string
	State           string
	Attempts        int
	NextRetry       time.Time
	LastApplied     time.Time
	Failure         *Failure
	Instructions    []InstructionResult
	Periodic        []PeriodicResult
	Probes          []ProbeResult
}

// New loads the last plan and the progress on it from StateDir.
func New(o Options) (*Executor, error) {
	if o.Root == "" || o.StateDir == "" {
		return nil, errors.New("planner: Root and StateDir are required")
	}
	if o.OutputLimit <= 0 {
		o.OutputLimit = DefaultOutputLimit
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the plan state directory: %w", err)
	}
	e := &Executor{o: o, probe: newProber(o.Now)}
	data, err := os.ReadFile(filepath.Join(o.StateDir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading the plan state: %w", err)
	default:
		if err := json.Unmarshal(data, &e.st); err != nil {
			// Losing progress re-runs instructions: say so rather than
			// guess.
			return nil, fmt.Errorf("%s is corrupt (%v): move it away to apply the plan again from the start", filepath.Join(o.StateDir, stateFile), err)
		}
	}
	raw, err := os.ReadFile(filepath.Join(o.StateDir, planFile))
	if err == nil && nodeplan.Checksum(raw) == e.st.Checksum {
		if p, perr := nodeplan.Parse(raw); perr == nil {
			e.plan, e.raw = p, raw
			e.probe.set(p.Probes)
		}
	}
	return e, nil
}

// HasPlan is true once a plan was set (now or before a restart).
func (e *Executor) HasPlan() bool { return e.plan != nil || e.st.Invalid != "" }

// Checksum is the current plan's checksum.
func (e *Executor) Checksum() string { return e.st.Checksum }

// SetPlan makes raw the current plan. The same plan again changes nothing;
// a new one starts from its first instruction. An invalid plan is kept as
// the current one, reported Failed with the validation errors, and nothing
// of it is applied.
func (e *Executor) SetPlan(raw []byte) error {
	sum := nodeplan.Checksum(raw)
	if sum == e.st.Checksum && (e.plan != nil || e.st.Invalid != "") {
		return nil
	}
	p, perr := nodeplan.Parse(raw)
	e.st = state{Checksum: sum, AppliedChecksum: e.st.AppliedChecksum, Periodic: e.st.Periodic, LastApplied: e.st.LastApplied}
	e.plan, e.raw = nil, nil
	if perr != nil {
		e.st.Invalid = perr.Error()
		e.st.Failure = &Failure{Message: "invalid plan: " + perr.Error(), Time: e.o.Now()}
		e.probe.set(nil)
		return e.save()
	}
	e.plan, e.raw = p, raw
	e.probe.set(p.Probes)
	if err := writeAtomic(filepath.Join(e.o.StateDir, planFile), raw); err != nil {
		return err
	}
	return e.save()
}

// Apply writes the files and runs the one-time instructions not yet done
// for the current plan, stopping at the first failure, which is recorded and
// retried no earlier than its backoff. It does nothing when the plan is
// applied, invalid or waiting out its backoff. The returned error is only
// for state that could not be saved.
func (e *Executor) Apply(ctx context.Context) error {
	if e.plan == nil || e.st.AppliedChecksum == e.st.Checksum || e.o.Now().Before(e.st.NextRetry) {
		return nil
	}
	fail := func(f Failure) error {
		f.Time = e.o.Now()
		e.st.Failure = &f
		e.st.Attempts++
		e.st.NextRetry = e.o.Now().Add(e.backoff(e.st.Attempts))
		return e.save()
	}
	if err := writeFiles(e.o.Root, e.plan.Files); err != nil {
		return fail(Failure{Message: "writing files: " + err.Error()})
	}
	for i := e.st.Completed; i < len(e.plan.Instructions); i++ {
		in := e.plan.Instructions[i]
		name := e.plan.InstructionName(i)
		env := e.env(i, e.st.Attempts+1)
		if in.Image != "" {
			dir, err := e.image(ctx, in.Image)
			if err != nil {
				return fail(Failure{Instruction: name, ExitCode: -1, Message: err.Error()})
			}
			env.imageDir = dir
		}
		res := run(ctx, in.CommonInstruction, env)
		if ctx.Err() != nil {
			// Stopped (shutdown, reboot): the instruction runs again from
			// the start next time; this is no failure of the plan.
			return nil
		}
		r := InstructionResult{Name: name, ExitCode: res.ExitCode, Finished: e.o.Now(), Duration: res.Duration}
		if in.SaveOutput || res.Err != nil {
			r.Output = lastBytes(res.Output, StatusOutputBytes)
		}
		e.recordInstruction(r)
		if res.Err != nil {
			return fail(Failure{Instruction: name, ExitCode: res.ExitCode, Message: fmt.Sprintf("instruction %s %v", name, res.Err), Output: lastBytes(res.Output, FailureOutputBytes)})
		}
		e.st.Completed = i + 1
		if err := e.save(); err != nil {
			return err
		}
	}
	e.st.AppliedChecksum = e.st.Checksum
	e.st.Failure, e.st.Attempts, e.st.NextRetry = nil, 0, time.Time{}
	e.st.LastApplied = e.o.Now()
	return e.save()
}

// Tick runs the periodic instructions that are due (only once the plan is
// applied) and the probes that are due. It returns when something is next
// due, for the caller's timer, and whether the report changed.
func (e *Executor) Tick(ctx context.Context) (next time.Time, changed bool, err error) {
	now := e.o.Now()
	next = now.Add(time.Hour)
	if !e.st.NextRetry.IsZero() && e.st.AppliedChecksum != e.st.Checksum {
		next = e.st.NextRetry
	}
	if e.plan == nil {
		return next, false, nil
	}
	if e.st.AppliedChecksum == e.st.Checksum {
		for _, in := range e.plan.PeriodicInstructions {
			pr := e.periodic(in.Name)
			due := pr.LastRun.Add(in.Period())
			if pr.Failures > 0 {
				// A failing periodic instruction backs off as a plan does.
				due = pr.LastRun.Add(min(in.Period(), e.backoff(pr.Failures)))
			}
			if !pr.LastRun.IsZero() && now.Before(due) {
				next = earliest(next, due)
				continue
			}
			env := e.env(-1, pr.Failures+1)
			var res runResult
			if in.Image != "" {
				env.imageDir, err = e.image(ctx, in.Image)
			}
			if err != nil {
				res, err = runResult{ExitCode: -1, Output: err.Error(), Err: err}, nil
			} else {
				res = run(ctx, in.CommonInstruction, env)
			}
			if ctx.Err() != nil {
				return next, changed, nil
			}
			pr.LastRun, pr.ExitCode = e.o.Now(), res.ExitCode
			pr.Output = ""
			if in.SaveStderrOutput || res.Err != nil {
				pr.Output = lastBytes(res.Output, StatusOutputBytes)
			}
			if res.Err == nil {
				pr.LastSuccess, pr.Failures = pr.LastRun, 0
			} else {
				pr.Failures++
			}
			changed = true
			next = earliest(next, pr.LastRun.Add(in.Period()))
		}
		if changed {
			if err := e.save(); err != nil {
				return next, changed, err
			}
		}
	}
	pnext, pchanged := e.probe.run(ctx)
	return earliest(next, pnext), changed || pchanged, nil
}

// Report is the plan's state now.
func (e *Executor) Report() Report {
	r := Report{Checksum: e.st.Checksum, AppliedChecksum: e.st.AppliedChecksum, Attempts: e.st.Attempts,
		NextRetry: e.st.NextRetry, LastApplied: e.st.LastApplied, Probes: e.probe.results()}
	switch {
	case e.st.Checksum != "" && e.st.AppliedChecksum == e.st.Checksum:
		r.State = StateApplied
	case e.st.Failure != nil:
		r.State = StateFailed
	default:
		r.State = StateApplying
	}
	if e.st.Failure != nil {
		f := *e.st.Failure
		r.Failure = &f
	}
	r.Instructions = append(r.Instructions, e.st.Instructions...)
	r.Periodic = append(r.Periodic, e.st.Periodic...)
	return r
}

// backoff is the wait after the n-th consecutive failure.
func (e *Executor) backoff(n int) time.Duration {
	d := e.o.BackoffBase
	for i := 1; i < n && d < e.o.BackoffMax; i++ {
		d *= 2
	}
	return min(d, e.o.BackoffMax)
}

func (e *Executor) env(i, attempt int) runEnv {
	return runEnv{root: e.o.Root, workDir: filepath.Join(e.o.StateDir, "work"), checksum: e.st.Checksum, attempt: attempt, outputLimit: e.o.OutputLimit}
}

func (e *Executor) image(ctx context.Context, ref string) (string, error) {
	if e.o.Images == nil {
		return "", fmt.Errorf("image %s: this node agent runs no image instructions (no image store configured)", ref)
	}
	dir, err := e.o.Images.Extract(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("extracting image %s: %w", ref, err)
	}
	return dir, nil
}

func (e *Executor) recordInstruction(r InstructionResult) {
	for i := range e.st.Instructions {
		if e.st.Instructions[i].Name == r.Name {
			e.st.Instructions[i] = r
			return
		}
	}
	e.st.Instructions = append(e.st.Instructions, r)
}

// periodic returns the record of the named periodic instruction of the
// current plan, dropping records of instructions the plan no longer has.
func (e *Executor) periodic(name string) *PeriodicResult {
	keep := e.st.Periodic[:0]
	for _, p := range e.st.Periodic {
		for _, in := range e.plan.PeriodicInstructions {
			if in.Name == p.Name {
				keep = append(keep, p)
				break
			}
		}
	}
	e.st.Periodic = keep
	for i := range e.st.Periodic {
		if e.st.Periodic[i].Name == name {
			return &e.st.Periodic[i]
		}
	}
	if len(e.st.Periodic) >= maxReportedPeriodic {
		return &PeriodicResult{Name: name}
	}
	e.st.Periodic = append(e.st.Periodic, PeriodicResult{Name: name})
	return &e.st.Periodic[len(e.st.Periodic)-1]
}

func (e *Executor) save() error {
	data, err := json.Marshal(&e.st)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(e.o.StateDir, stateFile), data)
}

// writeAtomic writes a state file so a crash leaves the old or the new one.
func writeAtomic(p string, data []byte) error {
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("saving the plan state: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		return fmt.Errorf("saving the plan state: %w", err)
	}
	return nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
