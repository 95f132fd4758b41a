package agent

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
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

// The node's wire status must be exactly the API's PlanStatus fields (the
// node does not link the API package): every field it sends decodes
// strictly, and it never sends the manager's checksum or state.
func TestWireStatusMatchesTheAPI(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 500, time.UTC)
	s := planStatus(planner.Report{Checksum: "c", AppliedChecksum: "b", State: planner.StateFailed, Attempts: 1, NextRetry: now, LastApplied: now,
		Failure:      &planner.Failure{Instruction: "i", ExitCode: 2, Message: "m", Output: "o", Time: now},
		Instructions: []planner.InstructionResult{{Name: "i", ExitCode: 2, Output: "o", Finished: now, Duration: time.Second}},
		Periodic:     []planner.PeriodicResult{{Name: "p", ExitCode: 1, Output: "o", LastRun: now, LastSuccess: now, Failures: 1}},
		Probes:       []planner.ProbeResult{{Name: "pr", Healthy: true, SuccessCount: 1, FailureCount: 1, LastError: "e"}}})
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var api machinesv1.PlanStatus
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&api); err != nil {
		t.Fatalf("the wire status is not the API's: %v\n%s", err, b)
	}
	if api.Checksum != "" || api.State != "" {
		t.Errorf("the node sends the manager's fields: %s", b)
	}
	if api.Failure == nil || api.Failure.Time == nil || !api.Failure.Time.Time.Equal(now.Truncate(time.Second)) || len(api.Probes) != 1 || api.Instructions[0].DurationMilliseconds != 1000 {
		t.Errorf("decoded %+v", api)
	}
	// Every API field is sent when set: a field added to the API needs
	// the node to send it too.
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, f := range []string{"appliedChecksum", "failedChecksum", "failure", "attempts", "nextRetryTime", "lastAppliedTime", "instructions", "periodicInstructions", "probes"} {
		if _, ok := m[f]; !ok {
			t.Errorf("%s not sent", f)
		}
	}
}
