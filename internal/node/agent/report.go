package agent

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/node/planner"
)

var inventories = machinesv1.GroupVersion.WithResource("machineinventories")

// report sends the latest plan report to the MachineInventory's status,
// retrying with jittered backoff while the manager is unreachable; a newer
// report replaces one not sent yet, so what arrives when the manager is
// back is the current state.
func (a *agent) report(ctx context.Context, id *identity, ids <-chan *identity) {
	var sent *machinesv1.PlanStatus
	for {
		var r planner.Report
		select {
		case <-ctx.Done():
			return
		case id = <-ids:
			continue
		case r = <-a.reports:
		}
		wait := minRetry
		for {
			status := planStatus(r)
			if sent != nil && reflect.DeepEqual(*sent, status) {
				break
			}
			err := a.apply(ctx, id, status)
			if err == nil {
				sent = &status
				break
			}
			if apierrors.IsUnauthorized(err) {
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
func (a *agent) apply(ctx context.Context, id *identity, status machinesv1.PlanStatus) error {
	c, err := dynamic.NewForConfig(id.rest)
	if err != nil {
		return err
	}
	planJSON, err := json.Marshal(status)
	if err != nil {
		return err
	}
	var plan map[string]any
	if err := json.Unmarshal(planJSON, &plan); err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": machinesv1.GroupVersion.String(),
		"kind":       "MachineInventory",
		"metadata":   map[string]any{"name": id.inventory, "namespace": id.namespace},
		"status":     map[string]any{"plan": plan, "lastSeen": time.Now().UTC().Format(time.RFC3339)},
	}}
	// JSON numbers decode as float64; unstructured wants int64.
	fixNumbers(u.Object)
	_, err = c.Resource(inventories).Namespace(id.namespace).ApplyStatus(ctx, id.inventory, u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	return err
}

// planStatus is the node's part of status.plan (never checksum or state,
// which the manager sets).
func planStatus(r planner.Report) machinesv1.PlanStatus {
	s := machinesv1.PlanStatus{AppliedChecksum: r.AppliedChecksum, Attempts: int32(r.Attempts)}
	if r.State == planner.StateFailed {
		s.FailedChecksum = r.Checksum
	}
	if f := r.Failure; f != nil && r.State == planner.StateFailed {
		s.Failure = &machinesv1.PlanFailure{Instruction: f.Instruction, ExitCode: int32(f.ExitCode), Message: head(f.Message, maxMessage), Output: clean(f.Output), Time: mtime(f.Time)}
	}
	if r.State == planner.StateFailed {
		s.NextRetryTime = mtime(r.NextRetry)
	}
	s.LastAppliedTime = mtime(r.LastApplied)
	for _, in := range r.Instructions {
		s.Instructions = append(s.Instructions, machinesv1.PlanInstructionStatus{Name: in.Name, ExitCode: int32(in.ExitCode), Output: clean(in.Output),
			FinishedTime: mtime(in.Finished), DurationMilliseconds: in.Duration.Milliseconds()})
	}
	for _, p := range r.Periodic {
		s.PeriodicInstructions = append(s.PeriodicInstructions, machinesv1.PlanPeriodicStatus{Name: p.Name, ExitCode: int32(p.ExitCode), Output: clean(p.Output),
			LastRunTime: mtime(p.LastRun), LastSuccessTime: mtime(p.LastSuccess), Failures: int32(p.Failures)})
	}
	for _, p := range r.Probes {
		s.Probes = append(s.Probes, machinesv1.PlanProbeStatus{Name: p.Name, Healthy: p.Healthy, SuccessCount: int32(p.SuccessCount), FailureCount: int32(p.FailureCount), LastError: head(p.LastError, 1000)})
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

func mtime(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	return &metav1.Time{Time: t.UTC().Truncate(time.Second)}
}

// fixNumbers turns JSON's float64 into int64, as unstructured requires.
func fixNumbers(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if f, ok := e.(float64); ok {
				x[k] = int64(f)
				continue
			}
			fixNumbers(e)
		}
	case []any:
		for i, e := range x {
			if f, ok := e.(float64); ok {
				x[i] = int64(f)
				continue
			}
			fixNumbers(e)
		}
	}
}
