package agentupgrade

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Upgrade states, in the state ConfigMap's "state" key.
const (
	StateUpToDate    = "UpToDate"
	StateProgressing = "Progressing"
	StatePaused      = "Paused"
	StateRolledBack  = "RolledBack"
)

// member is one cluster as the planner sees it: what its agent bundle
// deploys and what its agent reports.
type member struct {
	Cluster types.NamespacedName
	// HasBundle is false before the cluster's agent bundle exists.
	HasBundle bool
	// BundleImage is the image the agent bundle deploys; PreviousImage the
	// one it deployed before the current upgrade ("" when none).
	BundleImage, PreviousImage string
	// Started is when the bundle was moved to BundleImage by a wave (zero
	// for a bundle created at its image).
	Started time.Time
	// AgentImage is the image the agent reports (status.agent.image).
	AgentImage string
	// CheckedIn is the image whose agent was seen checking in after the
	// wave moved the bundle (recorded on the bundle: during the rolling
	// update old and new agents both heartbeat, so the live report can
	// flip back for a moment).
	CheckedIn string
	// Connected is the Cluster's Connected condition.
	Connected bool
}

// write is one agent bundle to create or change.
type write struct {
	Cluster                types.NamespacedName
	Image, PreviousImage   string
	Started                time.Time
	CheckedIn              string
	Create, Rollback, Wave bool
	// Mark records a check-in (CheckedIn) and changes nothing else.
	Mark bool
}

// plan is what one reconcile does.
type plan struct {
	Writes  []write
	State   string
	Message string
	// Failed is the image that did not check in and was rolled back ("" to
	// keep the recorded one).
	Failed string
	// Requeue is when to look again while a wave is in flight.
	Requeue time.Duration
}

// settings of one planning round.
type settings struct {
	Desired  string
	Failed   string
	WaveSize int
	Timeout  time.Duration
	Paused   bool
	Now      time.Time
}

// planWaves decides the next step of an agent upgrade. Waves are strict:
// the next wave starts only when every cluster of the current one has an
// agent reporting the new image. A cluster of the wave whose agent has not
// checked in with it within the timeout halts the upgrade and rolls every
// cluster on the new image back to its previous one, so the fleet is on
// one image again; that image is then recorded as failed and not retried
// until the manager's agent image changes again (or the record is cleared).
func planWaves(members []member, s settings) plan {
	sort.Slice(members, func(i, j int) bool {
		return members[i].Cluster.String() < members[j].Cluster.String()
	})
	var p plan
	target := s.Desired
	blocked := s.Failed != "" && s.Failed == s.Desired

	// New clusters get their bundle at the image their agent runs (so
	// taking them over restarts nothing); waves upgrade them later.
	for _, m := range members {
		if m.HasBundle {
			continue
		}
		img := m.AgentImage
		if img == "" {
			// An agent that does not report its image (older than agent
			// upgrades, or not run by a Deployment) is taken over at once.
			img = target
		}
		if blocked && img == s.Failed {
			continue
		}
		p.Writes = append(p.Writes, write{Cluster: m.Cluster, Image: img, Create: true})
	}

	var inFlight, late []member
	for _, m := range members {
		if !m.HasBundle || m.BundleImage != target || m.Started.IsZero() || m.CheckedIn == target {
			continue
		}
		if m.AgentImage == target {
			p.Writes = append(p.Writes, write{Cluster: m.Cluster, Image: m.BundleImage, PreviousImage: m.PreviousImage, Started: m.Started, CheckedIn: target, Mark: true})
			continue
		}
		inFlight = append(inFlight, m)
		if s.Now.Sub(m.Started) > s.Timeout {
			late = append(late, m)
		}
	}

	if blocked || len(late) > 0 {
		// A rollback supersedes recording check-ins of the failed image.
		kept := p.Writes[:0]
		for _, w := range p.Writes {
			if !w.Mark {
				kept = append(kept, w)
			}
		}
		p.Writes = kept
		var names []string
		for _, m := range members {
			if m.HasBundle && m.BundleImage == target && m.PreviousImage != "" && m.PreviousImage != target {
				p.Writes = append(p.Writes, write{Cluster: m.Cluster, Image: m.PreviousImage, Rollback: true})
				names = append(names, m.Cluster.String())
			}
		}
		p.State, p.Failed = StateRolledBack, target
		if len(late) > 0 {
			var lateNames []string
			for _, m := range late {
				lateNames = append(lateNames, m.Cluster.String())
			}
			p.Message = fmt.Sprintf("Agents of %s did not check in with %s within %s: upgrade halted, %d cluster(s) rolled back to their previous agent image (%s). Fix the image and change --agent-image, or clear failedImage in this ConfigMap to retry",
				strings.Join(lateNames, ", "), target, s.Timeout, len(names), strings.Join(names, ", "))
		} else {
			p.Message = fmt.Sprintf("Agent image %s failed an earlier wave and is not rolled out again: change --agent-image, or clear failedImage in this ConfigMap to retry", target)
			p.Failed = ""
			if len(names) > 0 {
				p.Message += fmt.Sprintf("; rolling back %s", strings.Join(names, ", "))
			}
		}
		return p
	}

	var pending []member
	for _, m := range members {
		if m.HasBundle && m.BundleImage != target {
			pending = append(pending, m)
		}
	}
	takenOver := 0
	for _, w := range p.Writes {
		if w.Create && w.Image != target {
			takenOver++
		}
	}
	switch {
	case len(pending) == 0 && takenOver > 0:
		p.State, p.Requeue = StateProgressing, time.Second
		p.Message = fmt.Sprintf("Taking over the agents of %d cluster(s) not on %s; waves upgrade them next", takenOver, target)
	case len(inFlight) > 0:
		var names []string
		for _, m := range inFlight {
			names = append(names, m.Cluster.String())
		}
		p.State, p.Requeue = StateProgressing, time.Second
		p.Message = fmt.Sprintf("Waiting for the agents of %s to check in with %s (%d cluster(s) after this wave)", strings.Join(names, ", "), target, len(pending))
	case len(pending) == 0:
		p.State, p.Message = StateUpToDate, fmt.Sprintf("Every agent bundle deploys %s", target)
	case s.Paused:
		p.State, p.Message = StatePaused, fmt.Sprintf("Agent upgrades are paused: %d cluster(s) not on %s", len(pending), target)
	default:
		var names []string
		for _, m := range pending {
			if len(names) == max(s.WaveSize, 1) {
				break
			}
			if !m.Connected {
				// An offline agent could not check in: it is upgraded when
				// it is back, not counted as a failed wave.
				continue
			}
			p.Writes = append(p.Writes, write{Cluster: m.Cluster, Image: target, PreviousImage: m.BundleImage, Started: s.Now, Wave: true})
			names = append(names, m.Cluster.String())
		}
		p.State, p.Requeue = StateProgressing, time.Second
		if len(names) == 0 {
			p.Requeue = 10 * time.Second
			p.Message = fmt.Sprintf("%d cluster(s) not on %s, none connected", len(pending), target)
		} else {
			p.Message = fmt.Sprintf("Upgrading the agents of %s to %s (%d cluster(s) after this wave)", strings.Join(names, ", "), target, len(pending)-len(names))
		}
	}
	return p
}
