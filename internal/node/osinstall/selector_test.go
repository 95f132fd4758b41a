package osinstall

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
)

func TestSelectDevice(t *testing.T) {
	// A copy of /sys/block's layout (a fake: the test cannot add disks).
	sys := t.TempDir()
	for name, sectors := range map[string]string{"vda": "2097152", "vdb": "41943040", "sda": "209715200", "loop0": "1000", "sr0": "2000"} {
		os.MkdirAll(filepath.Join(sys, name), 0o755)
		os.WriteFile(filepath.Join(sys, name, "size"), []byte(sectors+"\n"), 0o644)
	}
	disks, err := ListDisks(sys)
	if err != nil {
		t.Fatal(err)
	}
	if len(disks) != 3 || disks[0].Name != "/dev/sda" || disks[2].Size != 20<<30 {
		t.Fatalf("disks = %+v", disks)
	}
	req := func(k, op string, v ...string) machinesv1.DeviceSelectorRequirement {
		return machinesv1.DeviceSelectorRequirement{Key: k, Operator: op, Values: v}
	}
	tests := []struct {
		name    string
		reqs    []machinesv1.DeviceSelectorRequirement
		inUse   string
		want    string
		wantErr string
	}{
		{"by name", []machinesv1.DeviceSelectorRequirement{req("Name", "In", "/dev/vdb")}, "", "/dev/vdb", ""},
		{"short name", []machinesv1.DeviceSelectorRequirement{req("Name", "In", "vda")}, "", "/dev/vda", ""},
		{"size range", []machinesv1.DeviceSelectorRequirement{req("Size", "Gt", "10Gi"), req("Size", "Lt", "50Gi")}, "", "/dev/vdb", ""},
		{"not in, first by name", []machinesv1.DeviceSelectorRequirement{req("Name", "NotIn", "/dev/sda")}, "", "/dev/vda", ""},
		{"skips the disk in use", []machinesv1.DeviceSelectorRequirement{req("Size", "Gt", "512Mi")}, "/dev/sda", "/dev/vda", ""},
		{"no match", []machinesv1.DeviceSelectorRequirement{req("Size", "Gt", "1Ti")}, "", "", "no disk matches install.device-selector (disks: /dev/sda (102400 MiB)"},
		{"bad size", []machinesv1.DeviceSelectorRequirement{req("Size", "Gt", "big")}, "", "", `size "big"`},
		{"Gt on Name", []machinesv1.DeviceSelectorRequirement{req("Name", "Gt", "x")}, "", "", "Name takes In or NotIn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SelectDevice(tt.reqs, disks, func(d string) bool { return d == tt.inUse })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestMergePatchOSClearsFields: a field that became empty is sent as null,
// so the merge patch clears it on the inventory.
func TestMergePatchOSClearsFields(t *testing.T) {
	m := mergePatchOS(machinesv1.OSStatus{Version: "2", ActiveSlot: "b", LastUpgrade: &machinesv1.OSUpgradeStatus{Result: "Succeeded"}})
	if v, ok := m["trySlot"]; !ok || v != nil {
		t.Errorf("trySlot = %v, %v: want an explicit null", v, ok)
	}
	if m["version"] != "2" {
		t.Errorf("version = %v", m["version"])
	}
	if lu := m["lastUpgrade"].(map[string]any); lu["message"] != nil || lu["result"] != "Succeeded" {
		t.Errorf("lastUpgrade = %v", lu)
	}
	if _, ok := mergePatchOS(machinesv1.OSStatus{})["lastUpgrade"]; !ok {
		t.Error("a missing lastUpgrade is not cleared")
	}
}
