package machineregistration

import (
	"strings"
	"testing"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
)

const dmidecodeDump = `# dmidecode 3.4
Getting SMBIOS data from sysfs.
SMBIOS 3.2.0 present.

Handle 0x0000, DMI type 0, 26 bytes
BIOS Information
	Vendor: Dell Inc.
	Version: 2.17.1
	Characteristics:
		PCI is supported
		BIOS is upgradeable

Handle 0x0100, DMI type 1, 27 bytes
System Information
	Manufacturer: Dell Inc.
	Product Name: PowerEdge R640
	Serial Number: 7X1Y2Z3
	UUID: 4c4c4544-0058-3110-8059-b7c04f325a33

Handle 0x0101, DMI type 1, 27 bytes
System Information
	Manufacturer: Second Structure Inc.
`

func TestPreviewFromDmidecode(t *testing.T) {
	data, err := ParseDmidecode(strings.NewReader(dmidecodeDump))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"System Information/Manufacturer": "Dell Inc.", "System Information/Product Name": "PowerEdge R640",
		"System Information/UUID": "4c4c4544-0058-3110-8059-b7c04f325a33", "BIOS Information/Version": "2.17.1",
	} {
		if data[k] != want {
			t.Errorf("%s = %q, want %q", k, data[k], want)
		}
	}
	if _, ok := data["BIOS Information/Characteristics"]; ok {
		t.Error("a key without a value (a list header) was kept")
	}
	mr := &machinesv1.MachineRegistration{Spec: machinesv1.MachineRegistrationSpec{
		MachineName: "m-${System Information/Serial Number}",
		MachineInventoryLabels: map[string]string{
			"vendor": "${System Information/Manufacturer}", "model": "${System Information/Product Name}",
			"cores": "${CPU/TotalCores}",
		},
	}}
	p := PreviewMetadata(mr, data)
	if p.Name != "m-7x1y2z3" || p.Labels["vendor"] != "Dell-Inc" || p.Labels["model"] != "PowerEdge-R640" || p.Labels[machinesv1.LabelManufacturer] != "Dell-Inc" {
		t.Fatalf("preview = %+v", p)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "CPU/TotalCores") {
		t.Fatalf("warnings = %v, want one for the template dmidecode cannot fill", p.Warnings)
	}
	if _, err := ParseDmidecode(strings.NewReader("Dell Inc.\n")); err == nil {
		t.Fatal("dmidecode -s output accepted")
	}
}
