package machineregistration

import (
	"strings"
	"testing"
)

func TestParseDMIDecode(t *testing.T) {
	for _, tc := range []struct {
		name, dump string
		want       map[string]string // keys of DMIDecodeData; "" = absent
		err        string
	}{
		{"first structure of a type wins, as in the kernel", "Handle 0x1, DMI type 2, 15 bytes\nBase Board Information\n\tManufacturer: A\n\nHandle 0x2, DMI type 2, 15 bytes\nBase Board Information\n\tManufacturer: B\n",
			map[string]string{"Base Board Information/Manufacturer": "A"}, ""},
		{"placeholders are empty values", "Handle 0x1, DMI type 1, 27 bytes\nSystem Information\n\tVersion: Not Specified\n\tUUID: Not Settable\n\tSerial Number:    \n\tFamily: Unknown\n",
			map[string]string{"System Information/Version": "", "System Information/UUID": "", "System Information/Serial Number": "", "System Information/Family": "Unknown"}, ""},
		{"UUID lower case, chassis type number", "Handle 0x1, DMI type 1, 27 bytes\r\nSystem Information\r\n\tUUID: 4C4C4544-0058-4A10-8034-B8C04F4B5132\r\n\r\nHandle 0x3, DMI type 3, 22 bytes\r\nChassis Information\r\n\tType: Blade\r\n",
			map[string]string{"System Information/UUID": "4c4c4544-0058-4a10-8034-b8c04f4b5132", "Chassis Information/Type": "28"}, ""},
		{"list items are not keys; other sections are not sent", "Handle 0x0, DMI type 0, 26 bytes\nBIOS Information\n\tCharacteristics:\n\t\tVendor: not a key\n\tVersion: 1.2\n\nHandle 0x9, DMI type 9, 17 bytes\nSystem Slot Information\n\tDesignation: PCIe Slot 1\n",
			map[string]string{"BIOS Information/Vendor": "", "BIOS Information/Version": "1.2", "System Slot Information/Designation": ""}, ""},
		{"memory sizes add up, absent modules count nothing", "Handle 0x1, DMI type 17, 84 bytes\nMemory Device\n\tSize: 512 MB\n\nHandle 0x2, DMI type 17, 84 bytes\nMemory Device\n\tSize: No Module Installed\n\nHandle 0x3, DMI type 17, 84 bytes\nMemory Device\n\tSize: 1 TB\n",
			map[string]string{"Memory/Total Physical Bytes": "1100048498688"}, ""},
		{"absurd memory size is ignored", "Handle 0x1, DMI type 17, 84 bytes\nMemory Device\n\tSize: 99999999999999 TB\n",
			map[string]string{"Memory/Total Physical Bytes": ""}, ""},
		{"unpopulated sockets do not count", "Handle 0x1, DMI type 4, 48 bytes\nProcessor Information\n\tStatus: Unpopulated\n\tCore Count: 0\n\nHandle 0x2, DMI type 4, 48 bytes\nProcessor Information\n\tStatus: Populated, Enabled\n\tManufacturer: Advanced Micro Devices, Inc.\n\tVersion: AMD EPYC 7313 16-Core Processor\n\tCore Count: 16\n\tThread Count: 32\n",
			map[string]string{"CPU/TotalProcessors": "1", "CPU/TotalCores": "16", "CPU/TotalThreads": "32", "CPU/Processor/Vendor": "AuthenticAMD", "CPU/Processors/0/Model": "AMD EPYC 7313 16-Core Processor", "CPU/Processors/1/Model": ""}, ""},
		{"not dmidecode output", "Linux host 6.1.0 x86_64\n", nil, "no SMBIOS records"},
		{"broken handle line", "Handle 0x1, DMI type x\n", nil, "not a dmidecode handle line"},
		{"a line too long", "Handle 0x1, DMI type 1, 27 bytes\nSystem Information\n\tVersion: " + strings.Repeat("x", 70<<10) + "\n", nil, "longer than 64 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := ParseDMIDecode(strings.NewReader(tc.dump))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			data := DMIDecodeData(recs)
			for k, want := range tc.want {
				if got := data[k]; got != want {
					t.Errorf("%s = %q, want %q (data %v)", k, got, want, data)
				}
			}
		})
	}
}

func TestParseDMIDecodeRefusesHugeInput(t *testing.T) {
	dump := "Handle 0x1, DMI type 1, 27 bytes\nSystem Information\n" + strings.Repeat("\tVersion: 1\n", MaxDMIDecodeBytes/11+1)
	if _, err := ParseDMIDecode(strings.NewReader(dump)); err == nil || !strings.Contains(err.Error(), "not a dmidecode dump") {
		t.Fatalf("err %v, want a refusal of a dump larger than %d bytes", err, MaxDMIDecodeBytes)
	}
}
