package agent

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edgefleet/edgefleet/internal/node/planner"
)

// The node reports only its own fields, and a failure only while the
// current plan is failed: a stale failure must not outlive the fix.
func TestPlanStatus(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	failure := &planner.Failure{Instruction: "install", ExitCode: 3, Message: "instruction install exited with code 3", Output: "disk full", Time: now}
	for _, tc := range []struct {
		name                  string
		r                     planner.Report
		applied, failed       string
		wantFailure, wantNext bool
	}{
		{"applied", planner.Report{Checksum: "b", AppliedChecksum: "b", State: planner.StateApplied, LastApplied: now}, "b", "", false, false},
		{"applying a new plan", planner.Report{Checksum: "c", AppliedChecksum: "b", State: planner.StateApplying}, "b", "", false, false},
		{"failed", planner.Report{Checksum: "c", AppliedChecksum: "b", State: planner.StateFailed, Failure: failure, Attempts: 2, NextRetry: now.Add(time.Minute)}, "b", "c", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := planStatus(tc.r)
			if s.Checksum != "" || s.State != "" {
				t.Errorf("the node set the manager's fields: %+v", s)
			}
			if s.AppliedChecksum != tc.applied || s.FailedChecksum != tc.failed || (s.Failure != nil) != tc.wantFailure || (s.NextRetryTime != nil) != tc.wantNext {
				t.Errorf("status %+v", s)
			}
			if tc.wantFailure && (s.Failure.Instruction != "install" || s.Failure.ExitCode != 3 || s.Failure.Output != "disk full" || s.Attempts != 2) {
				t.Errorf("failure %+v", s.Failure)
			}
		})
	}
}

func TestJitterStaysWithinTwentyPercent(t *testing.T) {
	for range 1000 {
		if d := jitter(10 * time.Second); d < 8*time.Second || d > 12*time.Second {
			t.Fatalf("jitter(10s) = %s", d)
		}
	}
}

func TestReportedTextIsBoundedAndClean(t *testing.T) {
	long := strings.Repeat("files[0].path: bad; ", 5000)
	s := planStatus(planner.Report{Checksum: "c", State: planner.StateFailed, Failure: &planner.Failure{Message: long, Output: "bin\x00ary \xff\xfe out"},
		Instructions: []planner.InstructionResult{{Name: "i", Output: "a\x00b"}}})
	if n := len(s.Failure.Message); n > maxMessage+20 || !strings.HasSuffix(s.Failure.Message, "(truncated)") {
		t.Errorf("message %d bytes", n)
	}
	for _, out := range []string{s.Failure.Output, s.Instructions[0].Output} {
		if strings.ContainsRune(out, 0) || !utf8.ValidString(out) {
			t.Errorf("output %q is not clean", out)
		}
	}
}
