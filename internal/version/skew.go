package version

import (
	"fmt"

	"github.com/Masterminds/semver/v3"
)

// Skew is how an agent's version relates to the manager's.
type Skew string

// The agent version skew contract: a manager supports agents of its own
// minor version and of the minor version before it, so a fleet keeps
// working while the manager is upgraded first and its agents follow in
// waves. Anything else is reported, never refused.
const (
	// SkewCurrent: the agent has the manager's major and minor version.
	SkewCurrent Skew = "Current"
	// SkewOutdated: the agent is one minor version older; supported, but it
	// should be upgraded before the manager's next minor upgrade.
	SkewOutdated Skew = "Outdated"
	// SkewUnsupported: the agent is two or more minor versions older, of
	// another major version, or newer than the manager.
	SkewUnsupported Skew = "Unsupported"
	// SkewUnknown: either version is not a semantic version (a development
	// build), so nothing can be said.
	SkewUnknown Skew = "Unknown"
)

// CompareAgent places agent against manager in the skew contract and says
// why, in words an operator can act on.
func CompareAgent(manager, agent string) (Skew, string) {
	m, err := semver.StrictNewVersion(trimV(manager))
	if err != nil {
		return SkewUnknown, fmt.Sprintf("The manager's version %q is not a semantic version (a development build): agent version %q is not checked", manager, agent)
	}
	supported := SupportedAgents(manager)
	a, err := semver.StrictNewVersion(trimV(agent))
	if err != nil {
		return SkewUnknown, fmt.Sprintf("The agent's version %q is not a semantic version; the manager %s supports agents %s", agent, manager, supported)
	}
	switch {
	case a.Major() == m.Major() && a.Minor() == m.Minor():
		return SkewCurrent, fmt.Sprintf("Agent %s matches the manager %s (supported: %s)", agent, manager, supported)
	case a.Major() == m.Major() && m.Minor() > 0 && a.Minor() == m.Minor()-1:
		return SkewOutdated, fmt.Sprintf("Agent %s is one minor version older than the manager %s: supported, upgrade it before the manager's next minor upgrade (supported: %s)", agent, manager, supported)
	case a.GreaterThan(m):
		return SkewUnsupported, fmt.Sprintf("Agent %s is newer than the manager %s: upgrade the manager first (supported: %s)", agent, manager, supported)
	default:
		return SkewUnsupported, fmt.Sprintf("Agent %s is too old for the manager %s: upgrade the agent (supported: %s)", agent, manager, supported)
	}
}

// SupportedAgents is the agent versions manager supports, e.g. "v0.7.x and
// v0.6.x" for v0.7.2.
func SupportedAgents(manager string) string {
	m, err := semver.StrictNewVersion(trimV(manager))
	if err != nil {
		return "any (development build)"
	}
	if m.Minor() == 0 {
		return fmt.Sprintf("v%d.0.x", m.Major())
	}
	return fmt.Sprintf("v%d.%d.x and v%d.%d.x", m.Major(), m.Minor(), m.Major(), m.Minor()-1)
}

func trimV(v string) string {
	if len(v) > 0 && v[0] == 'v' {
		return v[1:]
	}
	return v
}
