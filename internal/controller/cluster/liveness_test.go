package cluster

import (
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

func TestConnectedCondition(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	const offline, stale = 90 * time.Second, 45 * time.Second
	for _, tc := range []struct {
		name             string
		lastSeen, probed time.Time
		status, reason   string
	}{
		{"never heard of", time.Time{}, time.Time{}, "False", fleetv1.WaitingForCheckInReason},
		{"heartbeat and fresh probe", ago(5 * time.Second), ago(10 * time.Second), "True", fleetv1.AgentConnectedReason},
		{"heartbeat, agent without tunnel", ago(5 * time.Second), time.Time{}, "True", fleetv1.AgentConnectedReason},
		{"heartbeat but tunnel stale", ago(5 * time.Second), ago(60 * time.Second), "False", fleetv1.TunnelDisconnectedReason},
		{"probe alone keeps it heard of", ago(200 * time.Second), ago(10 * time.Second), "True", fleetv1.AgentConnectedReason},
		{"both older than the threshold", ago(91 * time.Second), ago(95 * time.Second), "False", fleetv1.AgentOfflineReason},
		{"heartbeat only, too old", ago(91 * time.Second), time.Time{}, "False", fleetv1.AgentOfflineReason},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Connected(tc.lastSeen, tc.probed, now, offline, stale)
			if string(c.Status) != tc.status || c.Reason != tc.reason || c.Message == "" {
				t.Fatalf("got %s/%s (%q), want %s/%s", c.Status, c.Reason, c.Message, tc.status, tc.reason)
			}
		})
	}
}

func TestAgentStatusFromLeaseIsBounded(t *testing.T) {
	now := time.Now()
	future := metav1.NewMicroTime(now.Add(time.Hour))
	hb := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: &future}}
	hb.Annotations = map[string]string{
		clusterjoin.AnnotationAgentVersion:      "v1\n<script>" + strings.Repeat("x", 200),
		clusterjoin.AnnotationKubernetesVersion: "v1.37.1",
		clusterjoin.AnnotationAgentImage:        "registry.local/agent:v1 \n" + strings.Repeat("y", 600),
	}
	got := AgentStatusFrom(hb, fleetv1.AgentStatus{}, now)
	if len(got.Image) != maxAgentImage || !strings.HasPrefix(got.Image, "registry.local/agent:v1yyy") {
		t.Fatalf("image %q not bounded to printable ASCII of %d bytes", got.Image, maxAgentImage)
	}
	if got.LastSeen.After(now) {
		t.Fatalf("lastSeen %v is in the future", got.LastSeen)
	}
	if len(got.Version) != maxAgentFact || strings.ContainsAny(got.Version, "\n ") || got.KubernetesVersion != "v1.37.1" {
		t.Fatalf("versions %q %q not bounded", got.Version, got.KubernetesVersion)
	}
	// An older renewTime never moves lastSeen back.
	past := metav1.NewMicroTime(now.Add(-time.Hour))
	hb.Spec.RenewTime = &past
	if again := AgentStatusFrom(hb, got, now); !again.LastSeen.Equal(&got.LastSeen) {
		t.Fatalf("lastSeen moved back to %v", again.LastSeen)
	}
}
