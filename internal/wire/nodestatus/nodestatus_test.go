package nodestatus

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
)

func strict(t *testing.T, v, into any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("the wire type is not the API's: %v\n%s", err, b)
	}
	return b
}

// The node's OS status and conditions are exactly the API's (the node does
// not link the API package): every field decodes strictly, and every API
// field has a wire field (the round trip keeps them all).
func TestWireOSMatchesTheAPI(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	o := OS{Image: "i", Digest: "d", Name: "n", Version: "v", ActiveSlot: "a", BootedSlot: "b", TrySlot: "b",
		LastUpgrade: &Upgrade{Image: "i2", Version: "v2", Slot: "b", Result: "Pending", Time: &now, Message: "m"}}
	var api machinesv1.OSStatus
	strict(t, o, &api)
	if api.LastUpgrade == nil || !api.LastUpgrade.Time.Time.Equal(now) || api.TrySlot != "b" {
		t.Errorf("decoded %+v", api)
	}
	var back OS
	strict(t, api, &back)
	if back.LastUpgrade == nil || *back.LastUpgrade.Time != now || back.Digest != "d" {
		t.Errorf("round trip %+v", back)
	}

	c := Condition{Type: OSReadyCondition, Status: True, ObservedGeneration: 2, LastTransitionTime: now, Reason: OSInstalledReason, Message: "m"}
	var mc metav1.Condition
	strict(t, c, &mc)
	if mc.Type != "OSReady" || mc.Status != metav1.ConditionTrue || mc.ObservedGeneration != 2 || !mc.LastTransitionTime.Time.Equal(now) || mc.Reason != "OSInstalled" || mc.Message != "m" {
		t.Errorf("decoded %+v", mc)
	}
	var backC Condition
	strict(t, mc, &backC)
}

func TestConstantsAreTheAPIs(t *testing.T) {
	for wire, api := range map[string]string{
		OSReadyCondition: machinesv1.OSReadyCondition, RolledBackCondition: machinesv1.RolledBackCondition,
		OSInstalledReason: machinesv1.OSInstalledReason, UpgradePendingReason: machinesv1.UpgradePendingReason,
		UpgradeFailedReason: machinesv1.UpgradeFailedReason, UpgradeRolledBackReason: machinesv1.UpgradeRolledBackReason,
		NoRollbackReason: machinesv1.NoRollbackReason, RecoveryBootedReason: machinesv1.RecoveryBootedReason,
		InstallingReason: machinesv1.InstallingReason, InstallFailedReason: machinesv1.InstallFailedReason,
		True: string(metav1.ConditionTrue), False: string(metav1.ConditionFalse),
	} {
		if wire != api {
			t.Errorf("wire %q, API %q", wire, api)
		}
	}
}

func TestKeepTransitions(t *testing.T) {
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := time.Date(2026, 12, 6, 12, 0, 0, 700, time.UTC)
	conds := []Condition{{Type: OSReadyCondition, Status: True}, {Type: RolledBackCondition, Status: True}, {Type: "New", Status: False}}
	KeepTransitions(conds, []Condition{{Type: OSReadyCondition, Status: True, LastTransitionTime: old}, {Type: RolledBackCondition, Status: False, LastTransitionTime: old}}, now)
	if !conds[0].LastTransitionTime.Equal(old) {
		t.Errorf("unchanged condition got a new transition time: %v", conds[0].LastTransitionTime)
	}
	if want := now.Truncate(time.Second); !conds[1].LastTransitionTime.Equal(want) || !conds[2].LastTransitionTime.Equal(want) {
		t.Errorf("changed/new conditions: %v %v", conds[1].LastTransitionTime, conds[2].LastTransitionTime)
	}
}

func TestWireNetworkMatchesTheAPI(t *testing.T) {
	n := Network{PrimaryAddress: "10.0.0.2", Addresses: []string{"10.0.0.2", "fd00::2"}}
	var api machinesv1.NetworkStatus
	strict(t, n, &api)
	if api.PrimaryAddress != "10.0.0.2" || len(api.Addresses) != 2 {
		t.Errorf("decoded %+v", api)
	}
	var back Network
	strict(t, api, &back)
	if back.PrimaryAddress != n.PrimaryAddress || len(back.Addresses) != 2 {
		t.Errorf("round trip %+v", back)
	}
}
