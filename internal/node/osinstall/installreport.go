package osinstall

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/nodekube"
	"github.com/edgefleet/edgefleet/internal/wire/nodestatus"
)

// attemptRef finds the attempt number in an Installing/InstallFailed
// message this package wrote.
var attemptRef = regexp.MustCompile(`\(attempt (\d{1,6})\)`)

// InstallCondition is the OSReady condition of a machine starting an
// install (installErr nil) or whose install failed, given the OSReady
// condition its inventory has now. An attempt that follows an Installing
// one that never finished says so: the machine lost power or restarted
// while installing.
func InstallCondition(prev *nodestatus.Condition, image, device string, started time.Time, installErr error) nodestatus.Condition {
	last := 0
	if prev != nil && (prev.Reason == nodestatus.InstallingReason || prev.Reason == nodestatus.InstallFailedReason) {
		last = 1
		if m := attemptRef.FindStringSubmatch(prev.Message); m != nil {
			last, _ = strconv.Atoi(m[1])
		}
	}
	c := nodestatus.Condition{Type: nodestatus.OSReadyCondition, Status: nodestatus.False}
	if installErr != nil {
		// prev is this attempt's Installing.
		c.Reason = nodestatus.InstallFailedReason
		c.Message = fmt.Sprintf("installing %s to %s failed (attempt %d): %v", image, device, max(last, 1), installErr)
		return c
	}
	note := ""
	if prev != nil && prev.Reason == nodestatus.InstallingReason {
		note = fmt.Sprintf("; attempt %d did not finish (the machine lost power or restarted while installing)", last)
	}
	c.Reason = nodestatus.InstallingReason
	c.Message = fmt.Sprintf("installing %s to %s since %s (attempt %d)%s", image, device, started.UTC().Format(time.RFC3339), last+1, note)
	return c
}

// ReportInstall writes the OSReady condition of an install starting
// (installErr nil) or failed on the machine's own MachineInventory, as
// FieldManager: the live system has no status.os, so an earlier one (a
// machine installed again from its seed media) is cleared.
func ReportInstall(ctx context.Context, kube *nodekube.Client, namespace, name, image, device string, started time.Time, installErr error) error {
	inv, err := kube.GetInventory(ctx, namespace, name)
	if err != nil {
		return err
	}
	var prev *nodestatus.Condition
	for i, c := range inv.Status.Conditions {
		if c.Type == nodestatus.OSReadyCondition {
			prev = &inv.Status.Conditions[i]
		}
	}
	conds := []nodestatus.Condition{InstallCondition(prev, image, device, started, installErr)}
	nodestatus.KeepTransitions(conds, inv.Status.Conditions, time.Now())
	conds[0].ObservedGeneration = inv.Metadata.Generation
	return kube.ApplyStatus(ctx, namespace, name, FieldManager, map[string]any{"conditions": conds})
}
