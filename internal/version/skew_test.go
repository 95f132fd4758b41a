package version

import "testing"

func TestCompareAgent(t *testing.T) {
	for _, tc := range []struct {
		manager, agent string
		want           Skew
	}{
		{"v0.7.2", "v0.7.0", SkewCurrent},
		{"v0.7.2", "v0.7.9", SkewCurrent},
		{"v0.7.0-rc.1", "v0.7.0", SkewCurrent},
		{"v0.7.2", "v0.6.5", SkewOutdated},
		{"v1.0.0", "v0.9.0", SkewUnsupported}, // another major
		{"v0.7.2", "v0.5.9", SkewUnsupported},
		{"v0.7.2", "v0.8.0", SkewUnsupported},
		{"v0.7.2", "v1.7.2", SkewUnsupported},
		{"v0.1.0", "v0.0.9", SkewOutdated},
		{"c306c53-dirty", "v0.7.0", SkewUnknown},
		{"v0.7.2", "", SkewUnknown},
		{"v0.7.2", "v0.7", SkewUnknown},
	} {
		got, msg := CompareAgent(tc.manager, tc.agent)
		if got != tc.want || msg == "" {
			t.Errorf("CompareAgent(%q, %q) = %s %q, want %s", tc.manager, tc.agent, got, msg, tc.want)
		}
	}
}

func TestSupportedAgents(t *testing.T) {
	for m, want := range map[string]string{"v0.7.2": "v0.7.x and v0.6.x", "v2.0.1": "v2.0.x", "dev": "any (development build)"} {
		if got := SupportedAgents(m); got != want {
			t.Errorf("SupportedAgents(%q) = %q, want %q", m, got, want)
		}
	}
}
