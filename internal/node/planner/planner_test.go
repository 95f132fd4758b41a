package planner

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// clock is a settable time for backoff and periods.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock() *clock {
	c := &clock{}
	c.set(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	return c
}
func (c *clock) now() time.Time          { return *c.t.Load() }
func (c *clock) set(t time.Time)         { c.t.Store(&t) }
func (c *clock) advance(d time.Duration) { c.set(c.now().Add(d)) }

// lab is a temp root and state dir with an executor over them.
type lab struct {
	root, state string
	clk         *clock
	e           *Executor
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{root: t.TempDir(), state: t.TempDir(), clk: newClock()}
	l.restart(t)
	return l
}

// restart is a new executor over the same state: an agent restart or a
// reboot.
func (l *lab) restart(t *testing.T) {
	t.Helper()
	e, err := New(Options{Root: l.root, StateDir: l.state, BackoffBase: time.Minute, BackoffMax: 4 * time.Minute, OutputLimit: 4096, Now: l.clk.now})
	if err != nil {
		t.Fatal(err)
	}
	l.e = e
}

func (l *lab) set(t *testing.T, p any) string {
	t.Helper()
	raw, ok := p.(string)
	if !ok {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		raw = string(b)
	}
	if err := l.e.SetPlan([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	return nodeplan.Checksum([]byte(raw))
}

func (l *lab) apply(t *testing.T) Report {
	t.Helper()
	if err := l.e.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l.e.Report()
}

// count reads a counter file instructions append to.
func (l *lab) count(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.root, name))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "x")
}

func sh(name, script string) nodeplan.Instruction {
	return nodeplan.Instruction{CommonInstruction: nodeplan.CommonInstruction{Name: name, Command: "/bin/sh", Args: []string{"-c", script}}}
}

// inc appends an x to $EDGEFLEET_PLAN_ROOT/name: how tests count runs.
func inc(name string) nodeplan.Instruction {
	return sh("inc-"+name, `printf x >> "$EDGEFLEET_PLAN_ROOT/`+name+`"`)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestFilesAreWrittenWithModesAndOwners(t *testing.T) {
	l := newLab(t)
	sum := l.set(t, nodeplan.Plan{Files: []nodeplan.File{
		{Path: "/etc/app/config.yaml", Content: b64("a: 1\n"), Permissions: "0640", UID: 1234, GID: 5678},
		{Path: "/etc/app/secret", Content: b64("s3cret")},
		{Path: "/var/lib/app", Directory: true, Permissions: "0750"},
		{Path: "/usr/local/bin/tool", Content: b64("#!/bin/sh\n"), Permissions: "4755"},
	}})
	r := l.apply(t)
	if r.State != StateApplied || r.AppliedChecksum != sum {
		t.Fatalf("report %+v", r)
	}
	for _, tc := range []struct {
		path    string
		mode    os.FileMode
		content string
		uid     int
	}{
		{"/etc/app/config.yaml", 0o640, "a: 1\n", 1234},
		{"/etc/app/secret", 0o600, "s3cret", 0},
		{"/var/lib/app", os.ModeDir | 0o750, "", 0},
		{"/usr/local/bin/tool", os.ModeSetuid | 0o755, "#!/bin/sh\n", 0},
	} {
		fi, err := os.Lstat(filepath.Join(l.root, tc.path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s: mode %v, want %v", tc.path, fi.Mode(), tc.mode)
		}
		if uid := int(fileUID(fi)); uid != tc.uid {
			t.Errorf("%s: uid %d, want %d", tc.path, uid, tc.uid)
		}
		if !fi.IsDir() {
			if b, _ := os.ReadFile(filepath.Join(l.root, tc.path)); string(b) != tc.content {
				t.Errorf("%s: content %q", tc.path, b)
			}
		}
	}
	// No temporary files are left next to them.
	if m, _ := filepath.Glob(filepath.Join(l.root, "etc/app/.*")); len(m) > 0 {
		t.Errorf("leftovers %v", m)
	}
}

// The plan comes over the network and the agent is root: nothing may be
// written outside the root, nor through a symlink, whoever planted it.
func TestFilesRefuseSymlinksAndEscapes(t *testing.T) {
	outside := t.TempDir()
	for _, tc := range []struct {
		name  string
		setup func(root string) error
		path  string
		want  string
	}{
		{"parent symlink out of the root", func(root string) error { return os.Symlink(outside, filepath.Join(root, "etc")) }, "/etc/passwd", "/etc is a symlink"},
		{"parent symlink inside the root", func(root string) error {
			if err := os.Mkdir(filepath.Join(root, "real"), 0o755); err != nil {
				return err
			}
			return os.Symlink("real", filepath.Join(root, "etc"))
		}, "/etc/x", "/etc is a symlink"},
		{"relative link climbing out", func(root string) error { return os.Symlink("../../../../../../"+outside, filepath.Join(root, "up")) }, "/up/x", "/up is a symlink"},
		{"file where a directory is needed", func(root string) error { return os.WriteFile(filepath.Join(root, "etc"), nil, 0o644) }, "/etc/x", "/etc is not a directory"},
		{"directory where the file goes", func(root string) error { return os.MkdirAll(filepath.Join(root, "etc/x"), 0o755) }, "/etc/x", "a directory exists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			if err := tc.setup(l.root); err != nil {
				t.Fatal(err)
			}
			l.set(t, nodeplan.Plan{Files: []nodeplan.File{{Path: tc.path, Content: b64("owned")}}, Instructions: []nodeplan.Instruction{inc("ran")}})
			r := l.apply(t)
			if r.State != StateFailed || r.Failure == nil || !strings.Contains(r.Failure.Message, tc.want) {
				t.Fatalf("report %+v, want Failed saying %q", r, tc.want)
			}
			if l.count(t, "ran") != 0 {
				t.Error("instructions ran after the files failed")
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("written outside the root: %v", entries)
			}
		})
	}

	t.Run("symlink at the path is replaced, not followed", func(t *testing.T) {
		l := newLab(t)
		target := filepath.Join(outside, "target")
		if err := os.WriteFile(target, []byte("original"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(l.root, "link")); err != nil {
			t.Fatal(err)
		}
		l.set(t, nodeplan.Plan{Files: []nodeplan.File{{Path: "/link", Content: b64("new")}}})
		if r := l.apply(t); r.State != StateApplied {
			t.Fatalf("report %+v", r)
		}
		if b, _ := os.ReadFile(target); string(b) != "original" {
			t.Errorf("the link's target was written: %q", b)
		}
		if fi, _ := os.Lstat(filepath.Join(l.root, "link")); !fi.Mode().IsRegular() {
			t.Errorf("/link is %v, want a regular file", fi.Mode())
		}
	})
}

func TestOneTimeInstructionsRunOncePerPlan(t *testing.T) {
	l := newLab(t)
	p := nodeplan.Plan{Instructions: []nodeplan.Instruction{inc("a"), inc("b")}}
	sum := l.set(t, p)
	for i := 0; i < 3; i++ {
		if r := l.apply(t); r.State != StateApplied || r.AppliedChecksum != sum {
			t.Fatalf("apply %d: %+v", i, r)
		}
		l.set(t, p) // the same plan again (a watch event, a resync)
	}
	l.restart(t)
	l.set(t, p)
	l.apply(t)
	if a, b := l.count(t, "a"), l.count(t, "b"); a != 1 || b != 1 {
		t.Fatalf("ran a %d and b %d times, want once each", a, b)
	}
	// A changed plan runs again, from its first instruction.
	p.Instructions = append(p.Instructions, inc("c"))
	sum2 := l.set(t, p)
	if r := l.apply(t); r.AppliedChecksum != sum2 || l.count(t, "a") != 2 || l.count(t, "c") != 1 {
		t.Fatalf("new plan: %+v, a=%d c=%d", r, l.count(t, "a"), l.count(t, "c"))
	}
}

// A plan that reboots the machine: the agent dies in the middle of an
// instruction. The next agent (after boot) goes on with that instruction
// and never re-runs the ones that completed.
func TestRestartResumesThePlan(t *testing.T) {
	l := newLab(t)
	reboot := sh("reboot", `if [ -f "$EDGEFLEET_PLAN_ROOT/booted-again" ]; then exit 0; fi; touch "$EDGEFLEET_PLAN_ROOT/rebooting"; sleep 60`)
	sum := l.set(t, nodeplan.Plan{Instructions: []nodeplan.Instruction{inc("before"), reboot, inc("after")}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.e.Apply(ctx) }()
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(l.root, "rebooting")); return err == nil })
	t0 := time.Now()
	cancel() // the machine goes down
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("stopping took %s: the instruction's process group was not killed", d)
	}
	if r := l.e.Report(); r.State != StateApplying || r.Failure != nil {
		t.Fatalf("an interrupted plan is no failure: %+v", r)
	}
	if err := os.WriteFile(filepath.Join(l.root, "booted-again"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l.restart(t) // boot: the agent starts with the last plan from its state
	if !l.e.HasPlan() || l.e.Checksum() != sum {
		t.Fatalf("the plan was not kept across the restart")
	}
	if r := l.apply(t); r.State != StateApplied {
		t.Fatalf("after restart: %+v", r)
	}
	if b, a := l.count(t, "before"), l.count(t, "after"); b != 1 || a != 1 {
		t.Fatalf("before ran %d times, after %d, want 1 and 1", b, a)
	}
}

func TestFailureStopsThePlanAndBacksOff(t *testing.T) {
	l := newLab(t)
	flaky := sh("needs-flag", `echo "checking flag"; [ -f "$EDGEFLEET_PLAN_ROOT/flag" ] || { echo "flag missing" >&2; exit 3; }`)
	sum := l.set(t, nodeplan.Plan{Instructions: []nodeplan.Instruction{inc("first"), flaky, inc("last")}})
	r := l.apply(t)
	if r.State != StateFailed || r.Failure == nil || r.Failure.Instruction != "needs-flag" || r.Failure.ExitCode != 3 || r.Attempts != 1 {
		t.Fatalf("report %+v", r)
	}
	if !strings.Contains(r.Failure.Output, "flag missing") || !strings.Contains(r.Failure.Message, "needs-flag exited with code 3") {
		t.Errorf("failure %+v", r.Failure)
	}
	if l.count(t, "last") != 0 {
		t.Fatal("the plan went on after a failed instruction")
	}
	if !r.NextRetry.Equal(l.clk.now().Add(time.Minute)) {
		t.Errorf("first retry at %v, want in 1m", r.NextRetry)
	}
	// Within the backoff nothing runs.
	l.apply(t)
	if n := strings.Count(string(mustRead(t, filepath.Join(l.root, "first"))), "x"); n != 1 {
		t.Fatalf("first ran %d times during the backoff", n)
	}
	// After it the failing instruction is retried, not the completed ones,
	// and the next wait doubles.
	l.clk.advance(time.Minute)
	r = l.apply(t)
	if r.Attempts != 2 || !r.NextRetry.Equal(l.clk.now().Add(2*time.Minute)) || l.count(t, "first") != 1 {
		t.Fatalf("second attempt: %+v, first ran %d times", r, l.count(t, "first"))
	}
	for i := 0; i < 4; i++ {
		l.clk.advance(10 * time.Minute)
		r = l.apply(t)
	}
	if got := r.NextRetry.Sub(l.clk.now()); got != 4*time.Minute {
		t.Errorf("backoff %s after %d attempts, want the 4m cap", got, r.Attempts)
	}
	// Fixed on the machine: the next retry applies the plan.
	if err := os.WriteFile(filepath.Join(l.root, "flag"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l.clk.advance(10 * time.Minute)
	r = l.apply(t)
	if r.State != StateApplied || r.AppliedChecksum != sum || r.Failure != nil || r.Attempts != 0 || l.count(t, "last") != 1 {
		t.Fatalf("after the fix: %+v", r)
	}
}

func TestInstructionLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   nodeplan.Instruction
		// state and fragments of the failure message and output.
		state       string
		message     string
		output      string
		maxDuration time.Duration
	}{
		{"hanging instruction times out", withTimeout(sh("hang", `echo started; sleep 300`), 1), StateFailed, "timed out after 1s", "started", 15 * time.Second},
		{"hanging grandchildren are killed too", withTimeout(sh("hang-bg", `sleep 300 & sleep 300 & wait`), 1), StateFailed, "timed out", "", 15 * time.Second},
		{"missing command", nodeplan.Instruction{CommonInstruction: nodeplan.CommonInstruction{Name: "nope", Command: "/nonexistent/tool"}}, StateFailed, "could not start", "", 5 * time.Second},
		{"killed by a signal", sh("sig", `kill -9 $$`), StateFailed, "killed", "", 5 * time.Second},
		{"output is bounded to its tail", sh("chatty", `i=0; while [ $i -lt 3000 ]; do echo "line $i of noise"; i=$((i+1)); done; exit 1`), StateFailed, "exited with code 1", "line 2999 of noise", 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.set(t, nodeplan.Plan{Instructions: []nodeplan.Instruction{tc.in}})
			t0 := time.Now()
			r := l.apply(t)
			if d := time.Since(t0); d > tc.maxDuration {
				t.Errorf("took %s", d)
			}
			if r.State != tc.state || r.Failure == nil || !strings.Contains(r.Failure.Message, tc.message) || !strings.Contains(r.Failure.Output, tc.output) {
				t.Fatalf("report %+v", r.Failure)
			}
			if len(r.Failure.Output) > FailureOutputBytes+8 {
				t.Errorf("failure output %d bytes, limit %d", len(r.Failure.Output), FailureOutputBytes)
			}
			if len(r.Instructions) != 1 || len(r.Instructions[0].Output) > StatusOutputBytes+8 {
				t.Errorf("instruction results %+v", r.Instructions)
			}
		})
	}
}

func TestRunKeepsTheOutputTail(t *testing.T) {
	in := sh("big", `head -c 200000 /dev/zero | tr '\0' 'a'; echo; echo THE-END`)
	res := run(context.Background(), in.CommonInstruction, runEnv{root: t.TempDir(), workDir: t.TempDir(), outputLimit: 64 << 10})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if len(res.Output) > 64<<10+64 || !strings.HasSuffix(res.Output, "THE-END\n") || !strings.HasPrefix(res.Output, "[134473 earlier bytes dropped]") {
		t.Fatalf("output %d bytes, starts %q", len(res.Output), res.Output[:40])
	}
}

func TestInvalidPlanIsReportedAndNotApplied(t *testing.T) {
	l := newLab(t)
	l.set(t, `{"files":[{"path":"../../etc/shadow","content":"eA=="}],"instructions":[{"command":"touch","args":["/tmp/pwned"]}]}`)
	r := l.apply(t)
	if r.State != StateFailed || r.Failure == nil || !strings.Contains(r.Failure.Message, "invalid plan") || !strings.Contains(r.Failure.Message, "is not absolute") {
		t.Fatalf("report %+v", r)
	}
	if entries, _ := os.ReadDir(l.root); len(entries) != 0 {
		t.Errorf("an invalid plan wrote %v", entries)
	}
	l.restart(t)
	if r := l.e.Report(); r.State != StateFailed {
		t.Errorf("after restart the invalid plan is %s", r.State)
	}
}

func TestPeriodicInstructionsRunOnTheirPeriod(t *testing.T) {
	l := newLab(t)
	p := nodeplan.Plan{Instructions: []nodeplan.Instruction{inc("once")}, PeriodicInstructions: []nodeplan.PeriodicInstruction{
		{CommonInstruction: sh("tick", `printf x >> "$EDGEFLEET_PLAN_ROOT/tick"; echo ticked`).CommonInstruction, PeriodSeconds: 60, SaveStderrOutput: true},
		{CommonInstruction: sh("broken", `exit 7`).CommonInstruction, PeriodSeconds: 600},
	}}
	l.set(t, p)
	ctx := context.Background()
	// Not before the plan is applied.
	if _, _, err := l.e.Tick(ctx); err != nil || l.count(t, "tick") != 0 {
		t.Fatalf("periodic ran before the plan was applied (%v)", err)
	}
	l.apply(t)
	next, changed, err := l.e.Tick(ctx)
	if err != nil || !changed || l.count(t, "tick") != 1 || !next.Equal(l.clk.now().Add(time.Minute)) {
		t.Fatalf("first tick: changed %v next %v count %d err %v", changed, next, l.count(t, "tick"), err)
	}
	l.clk.advance(30 * time.Second)
	l.e.Tick(ctx)
	if l.count(t, "tick") != 1 {
		t.Fatal("ran again before its period")
	}
	l.clk.advance(31 * time.Second)
	l.e.Tick(ctx)
	if l.count(t, "tick") != 2 {
		t.Fatal("did not run after its period")
	}
	// The broken one ran twice: a failing periodic instruction is retried
	// after the backoff (1m here) when that is shorter than its period.
	r := l.e.Report()
	if len(r.Periodic) != 2 || r.Periodic[0].Output != "ticked\n" || r.Periodic[1].ExitCode != 7 || r.Periodic[1].Failures != 2 {
		t.Fatalf("periodic results %+v", r.Periodic)
	}
	// The one-time part is untouched by ticks, and a restart keeps the
	// periodic schedule.
	l.restart(t)
	l.set(t, p)
	l.e.Tick(ctx)
	if l.count(t, "once") != 1 || l.count(t, "tick") != 2 {
		t.Fatalf("after restart once=%d tick=%d", l.count(t, "once"), l.count(t, "tick"))
	}
}

func TestProbeThresholds(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusServiceUnavailable)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(int(status.Load())) }))
	defer srv.Close()
	l := newLab(t)
	l.set(t, nodeplan.Plan{Probes: map[string]nodeplan.Probe{
		"api": {HTTPGet: nodeplan.HTTPGetAction{URL: srv.URL}, SuccessThreshold: 2, FailureThreshold: 2, PeriodSeconds: 5, InitialDelaySeconds: 10},
	}})
	l.apply(t)
	ctx := context.Background()
	probe := func() ProbeResult {
		t.Helper()
		l.e.Tick(ctx)
		return l.e.Report().Probes[0]
	}
	if p := probe(); p.SuccessCount+p.FailureCount != 0 {
		t.Fatalf("probed before initialDelaySeconds: %+v", p)
	}
	steps := []struct {
		status       int
		healthy      bool
		succ, failed int
	}{
		{503, false, 0, 1},
		{200, false, 1, 0}, // one success is not enough
		{200, true, 2, 0},
		{200, true, 2, 0}, // counts are capped at the threshold
		{500, true, 0, 1}, // one failure is not enough
		{302, true, 1, 0}, // a redirect is a success
		{500, true, 0, 1},
		{500, false, 0, 2},
	}
	l.clk.advance(10 * time.Second)
	for i, s := range steps {
		status.Store(int32(s.status))
		p := probe()
		if p.Healthy != s.healthy || p.SuccessCount != s.succ || p.FailureCount != s.failed {
			t.Fatalf("step %d (%d): %+v, want healthy=%v %d/%d", i, s.status, p, s.healthy, s.succ, s.failed)
		}
		// Within the period the probe does not run.
		if p2 := probe(); p2 != p {
			t.Fatalf("step %d: probed again within the period", i)
		}
		l.clk.advance(5 * time.Second)
	}
	if p := probe(); !strings.Contains(p.LastError, "500") {
		t.Errorf("last error %q", p.LastError)
	}
}

func withTimeout(in nodeplan.Instruction, s int) nodeplan.Instruction {
	in.TimeoutSeconds = s
	return in
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
