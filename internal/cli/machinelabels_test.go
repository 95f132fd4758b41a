package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMachineLabelsGolden previews MachineRegistrations over dmidecode
// dumps of a Dell, an HPE and a QEMU machine (testdata/machinelabels) and
// compares the output with <case>.golden. Run with -update to rewrite them
// after an intended change, and review the diff.
func TestMachineLabelsGolden(t *testing.T) {
	dir := filepath.Join("testdata", "machinelabels")
	for _, tc := range []struct {
		name string
		args []string
		// stdin is a file of dir fed to "-".
		stdin string
	}{
		// Every SMBIOS field as the kernel shows it: the chassis type as its
		// number (23), the UUID in lower case; two populated processors;
		// Storage/... is not in a dump: disk0 is skipped with the reason.
		{"dell-r640", []string{"--registration", "registration.yaml", "--smbios", "dell-r640.dmidecode"}, ""},
		// Trailing blanks and blank asset tags (HPE writes spaces): rack is
		// skipped; the unpopulated second socket does not count.
		{"hpe-dl380-gen10", []string{"--registration", "registration.yaml", "--smbios", "hpe-dl380-gen10.dmidecode"}, ""},
		// The VM of TestOSLifecycleInVM (-smbios serial VM9): "Not
		// Specified" fields are empty, as in /sys/class/dmi/id.
		{"qemu-pc", []string{"--registration", "registration.yaml", "--smbios", "qemu-pc.dmidecode"}, ""},
		// The dump from stdin, values it lacks given with --set, as JSON.
		{"dell-r640-set-json", []string{"--registration", "registration.yaml", "--smbios", "-", "--set", "Storage/Disks/0/Name=nvme0n1", "--set", "Chassis Information/Asset Tag=R12 U07", "-o", "json"}, "dell-r640.dmidecode"},
		// An Elemental registration unchanged: the default name
		// m-${System Information/UUID}.
		{"elemental-hpe", []string{"--registration", "elemental-registration.yaml", "--smbios", "hpe-dl380-gen10.dmidecode"}, ""},
		// A name template the machine has no value for: a random name.
		{"name-fallback", []string{"--registration", "registration.yaml", "--smbios", "qemu-pc.dmidecode", "--set", "System Information/Serial Number=", "--set", "System Information/Manufacturer= "}, ""},
		{"not-dmidecode", []string{"--registration", "registration.yaml", "--smbios", "uname.txt"}, ""},
		{"not-a-registration", []string{"--registration", "cluster.yaml", "--smbios", "qemu-pc.dmidecode"}, ""},
		{"bad-set", []string{"--registration", "registration.yaml", "--smbios", "qemu-pc.dmidecode", "--set", "CPU/TotalCores"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			root := NewRoot(&stdout, &stderr)
			args := []string{"machine", "labels"}
			for _, a := range tc.args {
				if _, err := os.Stat(filepath.Join(dir, a)); err == nil && !strings.Contains(a, "=") {
					a = filepath.Join(dir, a)
				}
				args = append(args, a)
			}
			root.SetArgs(args)
			if tc.stdin != "" {
				f, err := os.Open(filepath.Join(dir, tc.stdin))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				root.SetIn(f)
			}
			root.SilenceErrors, root.SilenceUsage = true, true
			if err := root.ExecuteContext(context.Background()); err != nil {
				stderr.WriteString("error: " + err.Error() + "\n")
			}
			got := stdout.String() + stderr.String()
			golden := filepath.Join(dir, tc.name+".golden")
			if *updateGolden {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (-update rewrites it):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}
