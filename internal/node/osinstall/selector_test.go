package osinstall

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
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
	req := func(k, op string, v ...string) machinereg.DeviceSelectorRequirement {
		return machinereg.DeviceSelectorRequirement{Key: k, Operator: op, Values: v}
	}
	tests := []struct {
		name    string
		reqs    []machinereg.DeviceSelectorRequirement
		inUse   string
		want    string
		wantErr string
	}{
		{"by name", []machinereg.DeviceSelectorRequirement{req("Name", "In", "/dev/vdb")}, "", "/dev/vdb", ""},
		{"short name", []machinereg.DeviceSelectorRequirement{req("Name", "In", "vda")}, "", "/dev/vda", ""},
		{"size range", []machinereg.DeviceSelectorRequirement{req("Size", "Gt", "10Gi"), req("Size", "Lt", "50Gi")}, "", "/dev/vdb", ""},
		{"not in, first by name", []machinereg.DeviceSelectorRequirement{req("Name", "NotIn", "/dev/sda")}, "", "/dev/vda", ""},
		{"skips the disk in use", []machinereg.DeviceSelectorRequirement{req("Size", "Gt", "512Mi")}, "/dev/sda", "/dev/vda", ""},
		{"no match", []machinereg.DeviceSelectorRequirement{req("Size", "Gt", "1Ti")}, "", "", "no disk matches install.device-selector (disks: /dev/sda (102400 MiB)"},
		{"bad size", []machinereg.DeviceSelectorRequirement{req("Size", "Gt", "big")}, "", "", `size "big"`},
		{"Gt on Name", []machinereg.DeviceSelectorRequirement{req("Name", "Gt", "x")}, "", "", "Name takes In or NotIn"},
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

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"1073741824", 1 << 30, false}, {"100Gi", 100 << 30, false}, {"1.5Ti", 3 << 39, false}, {"500G", 500e9, false},
		{"8k", 8000, false}, {"", 0, true}, {"Gi", 0, true}, {"big", 0, true}, {"-1", 0, true}, {"1Xi", 0, true}, {"99999999Ei", 0, true},
	} {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}
