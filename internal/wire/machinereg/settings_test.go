package machinereg

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
)

// The registration settings the manager sends (the API types' JSON)
// decode strictly into the node's wire types and back: a field added to
// the API needs the wire type too.
func TestSettingsMatchTheAPI(t *testing.T) {
	f := false
	api := []struct{ from, wire, back any }{
		{machinesv1.InstallConfig{Device: "/dev/sda", DeviceSelector: []machinesv1.DeviceSelectorRequirement{{Key: "Size", Operator: "Gt", Values: []string{"10Gi"}}},
			Reboot: true, PowerOff: true, SystemURI: "oci:x", ISO: "http://i", ConfigURLs: []string{"u"}, Debug: true, Firmware: "efi", DisableBootEntry: true,
			NoFormat: true, TTY: "ttyS0", EjectCD: true, ConfigDir: "/oem", Snapshotter: &machinesv1.SnapshotterConfig{Type: "loopdevice", MaxSnaps: 2}},
			&InstallConfig{}, &machinesv1.InstallConfig{}},
		{machinesv1.ResetConfig{Enabled: true, ResetPersistent: &f, ResetOEM: &f, Reboot: &f, PowerOff: true, ConfigURLs: []string{"u"}, SystemURI: "s", Debug: true, DisableBootEntry: true},
			&ResetConfig{}, &machinesv1.ResetConfig{}},
	}
	for _, tt := range api {
		b, _ := json.Marshal(tt.from)
		for _, into := range []any{tt.wire, tt.back} {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(into); err != nil {
				t.Fatalf("%T: %v\n%s", into, err, b)
			}
			b, _ = json.Marshal(into)
		}
		if got := reflect.ValueOf(tt.back).Elem().Interface(); !reflect.DeepEqual(got, tt.from) {
			t.Errorf("round trip through the wire type lost fields:\n got %+v\nwant %+v", got, tt.from)
		}
	}
	d := ResetConfig{}.Defaults()
	if !*d.ResetPersistent || !*d.ResetOEM || !*d.Reboot {
		t.Errorf("Defaults: %+v", d)
	}
}
