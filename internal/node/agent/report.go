package agent

import (
	"context"
	"reflect"
	"strings"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/nodekube"
	"github.com/edgefleet/edgefleet/internal/node/planner"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// report sends the latest plan report to the MachineInventory's status,
// retrying with jittered backoff while the manager is unreachable; a newer
// report replaces one not sent yet, so what arrives when the manager is
// back is the current state.
//
// An idle agent (nothing new to report) sends its last report again every
// Heartbeat, so status.lastSeen tells the manager it is alive (a pool's
// nodeAgentSilentTimeout) with one status write per machine per
// heartbeat, never more: a report sent meanwhile restarts the wait.
func (a *agent) report(ctx context.Context, id *identity, ids <-chan *identity) {
	var sent *nodeplan.Status
	var last planner.Report
	have := false
	heartbeat := time.NewTimer(jitter(a.o.Heartbeat))
	defer heartbeat.Stop()
	for {
		var r planner.Report
		select {
		case <-ctx.Done():
			return
		case id = <-ids:
			continue
		case r = <-a.reports:
		case <-heartbeat.C:
			if !have {
				heartbeat.Reset(jitter(a.o.Heartbeat))
				continue // nothing reported yet: the first report says it all
			}
			r, sent = last, nil // the same report, with a fresh lastSeen
		}
		last, have = r, true
		wait := minRetry
		for {
			status := planStatus(r)
			if sent != nil && reflect.DeepEqual(*sent, status) {
				break
			}
			err := a.apply(ctx, id, status)
			if err == nil {
				sent = &status
				heartbeat.Reset(jitter(a.o.Heartbeat))
				break
			}
			if nodekube.IsUnauthorized(err) {
				a.credentialRefused()
			}
			a.o.Log.Warn("Reporting the plan status failed; retrying", "err", err, "in", wait.Round(time.Millisecond))
			// Newer reports replace r while waiting; they do not cut the
			// wait short (a periodic instruction reports every run).
			timer := time.NewTimer(jitter(wait))
		waiting:
			for {
				select {
				case <-ctx.Done():
					timer.Stop()
					return
				case id = <-ids:
					timer.Stop()
					break waiting
				case r = <-a.reports:
					last = r
				case <-timer.C:
					break waiting
				}
			}
			wait = nextWait(wait)
		}
	}
}

// apply writes the node's fields of status.plan (and lastSeen) with
// server-side apply: the manager's checksum/state, the conditions and
// other components' fields (status.os) are left alone.
func (a *agent) apply(ctx context.Context, id *identity, status nodeplan.Status) error {
	return id.kube.ApplyStatus(ctx, id.namespace, id.inventory, FieldManager,
		map[string]any{"plan": status, "lastSeen": time.Now().UTC().Format(time.RFC3339)})
}

// planStatus is the node's part of status.plan (never checksum or state,
// which the manager sets).
func planStatus(r planner.Report) nodeplan.Status {
	s := nodeplan.Status{AppliedChecksum: r.AppliedChecksum, Attempts: int32(r.Attempts)}
	if r.State == planner.StateFailed {
		s.FailedChecksum = r.Checksum
		s.NextRetryTime = wireTime(r.NextRetry)
		if f := r.Failure; f != nil {
			s.Failure = &nodeplan.Failure{Instruction: f.Instruction, ExitCode: int32(f.ExitCode), Message: head(f.Message, maxMessage), Output: clean(f.Output), Time: wireTime(f.Time)}
		}
	}
	s.LastAppliedTime = wireTime(r.LastApplied)
	for _, in := range r.Instructions {
		s.Instructions = append(s.Instructions, nodeplan.InstructionRun{Name: in.Name, ExitCode: int32(in.ExitCode), Output: clean(in.Output),
			FinishedTime: wireTime(in.Finished), DurationMilliseconds: in.Duration.Milliseconds()})
	}
	for _, p := range r.Periodic {
		s.PeriodicInstructions = append(s.PeriodicInstructions, nodeplan.PeriodicRun{Name: p.Name, ExitCode: int32(p.ExitCode), Output: clean(p.Output),
			LastRunTime: wireTime(p.LastRun), LastSuccessTime: wireTime(p.LastSuccess), Failures: int32(p.Failures)})
	}
	for _, p := range r.Probes {
		s.Probes = append(s.Probes, nodeplan.ProbeState{Name: p.Name, Healthy: p.Healthy, SuccessCount: int32(p.SuccessCount), FailureCount: int32(p.FailureCount), LastError: head(p.LastError, 1000)})
	}
	return s
}

// maxMessage keeps a failure message (an invalid plan's list of
// problems can be long) well inside the CRD's limit: a report the API
// refuses would never arrive.
const maxMessage = 8 << 10

// head is the start of s, at most n bytes, valid UTF-8.
func head(s string, n int) string {
	s = clean(s)
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + " …(truncated)"
}

// clean makes command output safe to store: valid UTF-8, no NUL bytes.
func clean(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// wireTime is t in UTC whole seconds (metav1.Time's precision), nil when
// zero.
func wireTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC().Truncate(time.Second)
	return &u
}
