package hwinfo

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCollectReadsSMBIOSAndHardware(t *testing.T) {
	dmi := t.TempDir()
	for k, v := range map[string]string{"sys_vendor": "Acme\n", "product_uuid": "ABC-1\n", "board_name": "B1\n"} {
		if err := os.WriteFile(filepath.Join(dmi, k), []byte(v), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := Collect(Options{DMIDir: dmi})
	for k, want := range map[string]string{"System Information/Manufacturer": "Acme", "System Information/UUID": "ABC-1", "Base Board Information/Product Name": "B1"} {
		if data[k] != want {
			t.Errorf("%s = %q, want %q", k, data[k], want)
		}
	}
	for _, k := range []string{"CPU/TotalThreads", "Memory/Total Physical Bytes", "Storage/TotalDisks", "Network/TotalNICs", "Runtime/Arch"} {
		if data[k] == "" {
			t.Errorf("%s missing", k)
		}
	}
	if d, _ := Collect(Options{DMIDir: dmi, NoSMBIOS: true}); d["System Information/Manufacturer"] != "" {
		t.Error("no-smbios still sent SMBIOS data")
	}
}

func TestIdentities(t *testing.T) {
	data := map[string]string{
		"Network/NICs/0/MacAddress": "02:00:00:00:00:0B", "Network/NICs/0/IsVirtual": "false",
		"Network/NICs/1/MacAddress": "02:00:00:00:00:0a", "Network/NICs/1/IsVirtual": "true",
		"Network/NICs/2/MacAddress": "02:00:00:00:00:0c", "Network/NICs/2/IsVirtual": "false",
	}
	if got := PrimaryMAC(data); got != "02:00:00:00:00:0b" {
		t.Errorf("PrimaryMAC = %q", got)
	}
	for uuid, want := range map[string]string{"": "", "Not Settable": "", "00000000-0000-0000-0000-000000000000": "", "ABC": "abc"} {
		if got := SystemUUID(map[string]string{"System Information/UUID": uuid}); got != want {
			t.Errorf("SystemUUID(%q) = %q, want %q", uuid, got, want)
		}
	}
}
