package osinstall

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/wire/nodestatus"
)

func TestInstallCondition(t *testing.T) {
	started := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	cond := func(reason, msg string) *nodestatus.Condition {
		return &nodestatus.Condition{Type: nodestatus.OSReadyCondition, Status: nodestatus.False, Reason: reason, Message: msg}
	}
	for _, tc := range []struct {
		name       string
		prev       *nodestatus.Condition
		err        error
		wantReason string
		want       []string // substrings of the message
		not        string
	}{
		{"first install", nil, nil, nodestatus.InstallingReason,
			[]string{"installing oci:r/os:1 to /dev/vda since 2026-12-07T01:00:00Z (attempt 1)"}, "did not finish"},
		{"installed machine installed again from its seed", &nodestatus.Condition{Type: nodestatus.OSReadyCondition, Status: nodestatus.True, Reason: nodestatus.OSInstalledReason}, nil,
			nodestatus.InstallingReason, []string{"(attempt 1)"}, "did not finish"},
		{"power lost during the first attempt", cond(nodestatus.InstallingReason, "installing oci:r/os:1 to /dev/vda since 2026-12-07T00:50:00Z (attempt 1)"), nil,
			nodestatus.InstallingReason, []string{"(attempt 2)", "attempt 1 did not finish (the machine lost power or restarted while installing)"}, ""},
		{"power lost twice", cond(nodestatus.InstallingReason, "installing x to y since z (attempt 2); attempt 1 did not finish (…)"), nil,
			nodestatus.InstallingReason, []string{"(attempt 3)", "attempt 2 did not finish"}, ""},
		{"after a failed attempt", cond(nodestatus.InstallFailedReason, "installing x to y failed (attempt 1): registry unreachable"), nil,
			nodestatus.InstallingReason, []string{"(attempt 2)"}, "did not finish"},
		{"this attempt fails", cond(nodestatus.InstallingReason, "installing oci:r/os:1 to /dev/vda since … (attempt 2)"), errors.New("the target disk has 360 MiB; this OS image needs at least 472 MiB"),
			nodestatus.InstallFailedReason, []string{"installing oci:r/os:1 to /dev/vda failed (attempt 2): the target disk has 360 MiB"}, ""},
		{"an unreadable attempt number counts as one", cond(nodestatus.InstallingReason, "(attempt 99999999999)"), nil,
			nodestatus.InstallingReason, []string{"(attempt 2)"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := InstallCondition(tc.prev, "oci:r/os:1", "/dev/vda", started, tc.err)
			if c.Type != nodestatus.OSReadyCondition || c.Status != nodestatus.False || c.Reason != tc.wantReason {
				t.Fatalf("condition %+v, want OSReady False %s", c, tc.wantReason)
			}
			for _, w := range tc.want {
				if !strings.Contains(c.Message, w) {
					t.Errorf("message %q lacks %q", c.Message, w)
				}
			}
			if tc.not != "" && strings.Contains(c.Message, tc.not) {
				t.Errorf("message %q has %q", c.Message, tc.not)
			}
		})
	}
}
