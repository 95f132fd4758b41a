package planner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// runResult is one run of an instruction.
type runResult struct {
	ExitCode int
	// Output is the combined stdout and stderr, its tail when it was longer
	// than the limit.
	Output   string
	Duration time.Duration
	// Err says why the instruction did not exit 0: exit code, timeout,
	// command not found.
	Err error
}

// runEnv is what an instruction run knows about its context.
type runEnv struct {
	root, workDir, checksum string
	attempt                 int
	outputLimit             int
	// imageDir is the extracted image of an image instruction.
	imageDir string
}

// run executes one instruction with its timeout. The instruction gets its
// own process group, killed as a whole on timeout or cancel, so a shell's
// children cannot keep it (or its output pipe) alive.
func run(ctx context.Context, in nodeplan.CommonInstruction, e runEnv) runResult {
	ctx, cancel := context.WithTimeout(ctx, in.Timeout())
	defer cancel()
	command := in.Command
	dir := e.workDir
	if in.Image != "" {
		// system-agent's convention: the command is a path inside the image
		// (default /run.sh), run from the image's directory.
		if command == "" {
			command = nodeplan.DefaultRunCommand
		}
		if filepath.IsAbs(command) {
			command = filepath.Join(e.imageDir, command)
		}
		dir = e.imageDir
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return runResult{ExitCode: -1, Err: fmt.Errorf("creating the work directory: %w", err)}
	}
	cmd := exec.CommandContext(ctx, command, in.Args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"EDGEFLEET_PLAN_ROOT="+e.root,
		"EDGEFLEET_PLAN_CHECKSUM="+e.checksum,
		"EDGEFLEET_PLAN_ATTEMPT="+strconv.Itoa(e.attempt),
		// system-agent's names, for its installer images' scripts.
		"CATTLE_AGENT_EXECUTION_PWD="+dir,
		"CATTLE_AGENT_ATTEMPT_NUMBER="+strconv.Itoa(e.attempt),
	)
	cmd.Env = append(cmd.Env, in.Env...)
	out := newTail(e.outputLimit)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	res := runResult{Output: out.String(), Duration: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return res
	case ctx.Err() == context.DeadlineExceeded:
		res.ExitCode, res.Err = -1, fmt.Errorf("timed out after %s (timeoutSeconds) and was killed", in.Timeout())
	case ctx.Err() != nil:
		res.ExitCode, res.Err = -1, errors.New("interrupted: the node agent stopped")
	case errors.As(err, &exit):
		res.ExitCode, res.Err = exit.ExitCode(), fmt.Errorf("exited with code %d", exit.ExitCode())
		if exit.ExitCode() == -1 {
			res.Err = fmt.Errorf("killed: %s", exit.ProcessState)
		}
	default:
		res.ExitCode, res.Err = -1, fmt.Errorf("could not start: %w", err)
	}
	return res
}

// tail keeps the last limit bytes written to it and counts the rest.
type tail struct {
	mu      sync.Mutex
	limit   int
	buf     []byte
	dropped int64
}

func newTail(limit int) *tail { return &tail{limit: limit} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.dropped += int64(over)
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return n, nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dropped > 0 {
		return fmt.Sprintf("[%d earlier bytes dropped]\n%s", t.dropped, t.buf)
	}
	return string(t.buf)
}

// lastBytes is the end of s, at most n bytes, for status fields.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
