package agentupgrade

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func TestPlanWaves(t *testing.T) {
	now := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	const old, next = "reg/agent:v1", "reg/agent:v2"
	key := func(n string) types.NamespacedName { return types.NamespacedName{Namespace: "fleet-default", Name: n} }
	onOld := func(n string) member {
		return member{Cluster: key(n), HasBundle: true, BundleImage: old, AgentImage: old, Connected: true}
	}
	upgrading := func(n string, since time.Duration, agent string) member {
		return member{Cluster: key(n), HasBundle: true, BundleImage: next, PreviousImage: old, Started: now.Add(-since), AgentImage: agent, Connected: true}
	}
	base := settings{Desired: next, WaveSize: 2, Timeout: time.Minute, Now: now}
	for _, tc := range []struct {
		name    string
		members []member
		s       func(settings) settings
		state   string
		writes  []string // "cluster=image" with a marker: +create, ^wave, <rollback
		failed  string
	}{
		{
			name:    "first wave takes wave-size clusters in name order",
			members: []member{onOld("c"), onOld("a"), onOld("b")},
			state:   StateProgressing, writes: []string{"^a=" + next, "^b=" + next},
		},
		{
			name:    "next wave waits for the current one to check in",
			members: []member{upgrading("a", 10*time.Second, next), upgrading("b", 10*time.Second, old), onOld("c")},
			state:   StateProgressing, writes: []string{"=a=" + next},
		},
		{
			name: "a recorded check-in holds while the old agent's last heartbeat flips the report back",
			members: []member{func() member { m := upgrading("a", 2*time.Minute, old); m.CheckedIn = next; return m }(),
				upgrading("b", 10*time.Second, old)},
			state: StateProgressing,
		},
		{
			name:    "checked-in wave lets the next one start",
			members: []member{upgrading("a", 10*time.Second, next), upgrading("b", 10*time.Second, next), onOld("c")},
			state:   StateProgressing, writes: []string{"=a=" + next, "=b=" + next, "^c=" + next},
		},
		{
			name:    "offline clusters are skipped, not counted as failures",
			members: []member{{Cluster: key("a"), HasBundle: true, BundleImage: old, AgentImage: old}, onOld("b")},
			state:   StateProgressing, writes: []string{"^b=" + next},
		},
		{
			name: "a late agent rolls back every cluster on the new image",
			members: []member{upgrading("a", 2*time.Minute, next), upgrading("b", 2*time.Minute, old), onOld("c"),
				{Cluster: key("d"), HasBundle: true, BundleImage: next, AgentImage: next, Connected: true}},
			state: StateRolledBack, writes: []string{"<a=" + old, "<b=" + old}, failed: next,
		},
		{
			name:    "a failed image is not retried",
			members: []member{onOld("a"), onOld("b")},
			s:       func(s settings) settings { s.Failed = next; return s },
			state:   StateRolledBack,
		},
		{
			name:    "a new image after a failed one rolls out",
			members: []member{onOld("a")},
			s:       func(s settings) settings { s.Failed = "reg/agent:broken"; return s },
			state:   StateProgressing, writes: []string{"^a=" + next},
		},
		{
			name:    "paused starts no wave",
			members: []member{onOld("a")},
			s:       func(s settings) settings { s.Paused = true; return s },
			state:   StatePaused,
		},
		{
			name:    "paused still rolls back a late wave",
			members: []member{upgrading("a", 2*time.Minute, old)},
			s:       func(s settings) settings { s.Paused = true; return s },
			state:   StateRolledBack, writes: []string{"<a=" + old}, failed: next,
		},
		{
			name: "new clusters are taken over at the image their agent runs",
			members: []member{{Cluster: key("a"), AgentImage: old, Connected: true}, {Cluster: key("b"), Connected: true},
				{Cluster: key("c"), HasBundle: true, BundleImage: next, AgentImage: next, Connected: true}},
			state: StateProgressing, writes: []string{"+a=" + old, "+b=" + next},
		},
		{
			name:    "all on the image",
			members: []member{{Cluster: key("a"), HasBundle: true, BundleImage: next, PreviousImage: old, Started: now.Add(-time.Hour), AgentImage: next, Connected: true}},
			state:   StateUpToDate, writes: []string{"=a=" + next},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base
			if tc.s != nil {
				s = tc.s(s)
			}
			p := planWaves(tc.members, s)
			var got []string
			for _, w := range p.Writes {
				mark := "?"
				switch {
				case w.Create:
					mark = "+"
				case w.Wave:
					mark = "^"
					if w.PreviousImage != old || !w.Started.Equal(now) {
						t.Errorf("wave write %+v does not record the previous image and start", w)
					}
				case w.Rollback:
					mark = "<"
				case w.Mark:
					mark = "="
					if w.CheckedIn != w.Image || w.PreviousImage != old || w.Started.IsZero() {
						t.Errorf("check-in write %+v must keep the wave's record", w)
					}
				}
				got = append(got, mark+w.Cluster.Name+"="+w.Image)
			}
			if p.State != tc.state || strings.Join(got, ",") != strings.Join(tc.writes, ",") || p.Failed != tc.failed || p.Message == "" {
				t.Fatalf("got %s %v failed=%q (%s), want %s %v failed=%q", p.State, got, p.Failed, p.Message, tc.state, tc.writes, tc.failed)
			}
		})
	}
}
